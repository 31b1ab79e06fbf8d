"""Launch profiles, per-task images and cost tags in the launcher (moto): a task's queue picks its profile, its
image a task definition derived once, and every ECS task is tagged with what it ran for."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from ecs_event_executor.control import environment as env_vars
from ecs_event_executor.control.environment import EnvironmentVariableError
from ecs_event_executor.control.launching import Launcher, LauncherSettings, Result, RetryLater
from ecs_event_executor.control.messages import TaskKey
from ecs_event_executor.control.reconciling import Reconciler, ReconcilerSettings
from ecs_event_executor.control.task_definitions import DERIVED_MARK, family_of
from ecs_event_executor.control.tasks.lifecycle import TaskState
from ecs_event_executor.control.tasks.table import TaskTable

from tests.conftest import ControlPlane
from tests.support.aws import CallCounter
from tests.support.requests import launch_request

ACCOUNT_ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
GPU_IMAGE = f"{ACCOUNT_ECR}/airflow-gpu:1"
SLIM_IMAGE = f"{ACCOUNT_ECR}/airflow-slim:1"
SPOT = [{"capacityProvider": "FARGATE_SPOT", "weight": 1}]


def launcher(cp: ControlPlane, **env: str) -> Launcher:
    settings = LauncherSettings.from_env(
        {
            **cp.env,
            env_vars.ALLOWED_IMAGES: f"{ACCOUNT_ECR}/*",
            env_vars.LAUNCH_PROFILES: json.dumps(
                {"spot": {"capacityProviderStrategy": SPOT, "memory": 1024}}
            ),
            **env,
        }
    )
    return Launcher(settings)


def run_task_params(client: Any) -> list[dict[str, Any]]:
    """Record the parameters of every RunTask call the client makes."""
    seen: list[dict[str, Any]] = []
    client.meta.events.register("provide-client-params.ecs.RunTask", lambda params, **_: seen.append(params))
    return seen


def image_request(task_id: str, image: str | None, **fields: Any) -> str:
    config = {"image": image} if image else {}
    return launch_request(task_id, executor_config=config, deadline_in=None, **fields).to_json()


def task_image(cp: ControlPlane, task_definition: str) -> str:
    described = cp.client("ecs").describe_task_definition(taskDefinition=task_definition)["taskDefinition"]
    return str(next(c for c in described["containerDefinitions"] if c["name"] == "base")["image"])


def test_fifty_tasks_of_one_image_register_one_task_definition_and_a_second_image_one_more(
    control_plane: ControlPlane,
) -> None:
    launch = launcher(control_plane)
    calls = CallCounter().attach(launch.ecs)
    runs = run_task_params(launch.ecs)
    batches = [[(image_request(f"t{b}-{i}", GPU_IMAGE), 1) for i in range(10)] for b in range(5)]
    for batch in batches:
        assert launch.handle_many(batch) == [Result.LAUNCHED] * 10
    assert calls.calls["RegisterTaskDefinition"] == 1
    derived = {p["taskDefinition"] for p in runs}
    assert len(derived) == 1 and len(runs) == 50
    (arn,) = derived
    assert task_image(control_plane, arn) == GPU_IMAGE
    assert family_of(arn).startswith("airflow-worker" + DERIVED_MARK)
    # A second launcher (a new execution environment) finds the registration in the table.
    other = launcher(control_plane)
    other_calls = CallCounter().attach(other.ecs)
    assert other.handle(image_request("again", GPU_IMAGE)) is Result.LAUNCHED
    assert other_calls.calls["RegisterTaskDefinition"] == 0
    # Another image: one more registration, another family; no image: the base task definition.
    assert launch.handle(image_request("slim", SLIM_IMAGE)) is Result.LAUNCHED
    assert launch.handle(image_request("plain", None)) is Result.LAUNCHED
    assert calls.calls["RegisterTaskDefinition"] == 2
    assert task_image(control_plane, runs[-2]["taskDefinition"]) == SLIM_IMAGE
    assert family_of(runs[-2]["taskDefinition"]) != family_of(arn)
    assert runs[-1]["taskDefinition"] == control_plane.ecs.task_definition


def test_two_launchers_racing_register_the_image_once(control_plane: ControlPlane) -> None:
    """Both launchers (separate memories) derive the definition at the same moment; the conditional claim lets
    one register; the other comes back shortly and runs the revision the first recorded."""
    first, second = launcher(control_plane), launcher(control_plane)
    both_described = threading.Barrier(2, timeout=30)
    registrations = 0
    lock = threading.Lock()

    def count(**_: Any) -> None:
        nonlocal registrations
        with lock:
            registrations += 1

    for one in (first, second):
        one.ecs.meta.events.register(
            "after-call.ecs.DescribeTaskDefinition", lambda **_: both_described.wait()
        )
        one.ecs.meta.events.register("before-call.ecs.RegisterTaskDefinition", count)
    bodies = {name: image_request(name, GPU_IMAGE) for name in ("a", "b")}
    outcomes: dict[str, Any] = {}

    def launch(name: str, one: Launcher) -> None:
        outcomes[name] = one.handle_many([(bodies[name], 1)])[0]

    threads = [threading.Thread(target=launch, args=(n, o)) for n, o in (("a", first), ("b", second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert registrations == 1
    (loser,) = [n for n, o in outcomes.items() if isinstance(o, RetryLater)]
    assert "being registered by another launcher" in outcomes[loser].reason
    assert [o for o in outcomes.values() if o is Result.LAUNCHED]
    # The message comes back: the loser runs the revision the winner recorded, registering nothing.
    both_described.reset()
    retry_launcher = first if loser == "a" else second
    retry_launcher.ecs.meta.events.unregister("after-call.ecs.DescribeTaskDefinition")
    assert retry_launcher.handle(bodies[loser], receive_count=2) is Result.LAUNCHED
    assert registrations == 1
    families = control_plane.client("ecs").list_task_definition_families(
        familyPrefix="airflow-worker" + DERIVED_MARK
    )
    assert len(families["families"]) == 1


def test_a_task_on_the_spot_queue_runs_with_the_spot_profile(control_plane: ControlPlane) -> None:
    launch = launcher(control_plane)
    runs = run_task_params(launch.ecs)
    assert launch.handle(launch_request("spot", queue="spot").to_json()) is Result.LAUNCHED
    assert launch.handle(launch_request("default", queue="default").to_json()) is Result.LAUNCHED
    spot, default = runs
    assert spot["capacityProviderStrategy"] == SPOT and "launchType" not in spot
    assert spot["overrides"]["memory"] == "1024"
    assert default["launchType"] == "FARGATE" and "capacityProviderStrategy" not in default
    assert "memory" not in default["overrides"]


def test_an_unknown_queue_uses_the_default_profile_or_fails_naming_the_setting(
    control_plane: ControlPlane,
) -> None:
    runs = run_task_params((lenient := launcher(control_plane)).ecs)
    assert lenient.handle(launch_request("gpu", queue="gpu").to_json()) is Result.LAUNCHED
    assert runs[0]["launchType"] == "FARGATE"
    strict = launcher(control_plane, **{env_vars.UNKNOWN_QUEUE: "refuse"})
    request = launch_request("gpu2", queue="gpu")
    assert strict.handle(request.to_json()) is Result.LAUNCH_FAILED
    failed = TaskTable(control_plane.table).get(request.launch_id)
    assert failed is not None and failed.state is TaskState.FAILED
    assert "queue 'gpu' names no launch profile" in (failed.reason or "")
    assert "UNKNOWN_QUEUE is refuse" in (failed.reason or "")


def test_an_image_outside_allowed_images_fails_the_launch_naming_the_setting(
    control_plane: ControlPlane,
) -> None:
    launch = launcher(control_plane)
    calls = CallCounter().attach(launch.ecs)
    request = launch_request("evil", executor_config={"image": "docker.io/evil/miner:latest"})
    assert launch.handle(request.to_json()) is Result.LAUNCH_FAILED
    failed = TaskTable(control_plane.table).get(request.launch_id)
    assert failed is not None and "is not allowed by ALLOWED_IMAGES" in (failed.reason or "")
    assert calls.calls["RegisterTaskDefinition"] == 0 and calls.calls["RunTask"] == 0


def test_every_task_is_tagged_for_cost_attribution(control_plane: ControlPlane) -> None:
    launch = launcher(control_plane)
    runs = run_task_params(launch.ecs)
    key = TaskKey(
        dag_id="sales", task_id="load", run_id="manual__2026-12-01T00:00:00+00:00 (ré)", try_number=2
    )
    request = launch_request(
        "x", team="finance", executor_config={"tags": [{"key": "owner", "value": "ana"}]}
    )
    request = request.model_copy(update={"key": key})
    from tests.support.requests import workload_command

    request = request.model_copy(update={"command": workload_command(key)})
    assert launch.handle(request.to_json()) is Result.LAUNCHED
    params = runs[0]
    tags = {t["key"]: t["value"] for t in params["tags"]}
    assert tags == {
        "owner": "ana",
        "airflow:dag_id": "sales",
        "airflow:task_id": "load",
        "airflow:run_id": "manual__2026-12-01T00:00:00+00:00 _ré_",
        "airflow:try_number": "2",
        "airflow:team": "finance",
    }
    assert params["enableECSManagedTags"] is True and params["propagateTags"] == "TASK_DEFINITION"


def test_the_reconciler_deregisters_a_derived_task_definition_unused_for_n_days(
    control_plane: ControlPlane,
) -> None:
    now = [1_800_000_000.0]
    env = {
        **control_plane.env,
        env_vars.ALLOWED_IMAGES: f"{ACCOUNT_ECR}/*",
        env_vars.DERIVED_TASK_DEFINITION_UNUSED_DAYS: "7",
    }
    settings = LauncherSettings.from_env(env)
    assert Launcher(settings, clock=lambda: now[0]).handle(image_request("gpu", GPU_IMAGE)) is Result.LAUNCHED
    assert (
        Launcher(settings, clock=lambda: now[0]).handle(image_request("slim", SLIM_IMAGE)) is Result.LAUNCHED
    )
    ecs = control_plane.client("ecs")
    reconciler = Reconciler(ReconcilerSettings.from_env(env), clock=lambda: now[0])
    day = 24 * 3600

    def active_images() -> list[str]:
        families = ecs.list_task_definition_families(familyPrefix="airflow-worker" + DERIVED_MARK)["families"]
        return sorted(
            task_image(control_plane, arn)
            for family in families
            for arn in ecs.list_task_definitions(familyPrefix=family, status="ACTIVE")["taskDefinitionArns"]
        )

    assert active_images() == [GPU_IMAGE, SLIM_IMAGE]
    now[0] += 6 * day
    # The slim image is used again on day 6 (by a new launcher: its memory is empty).
    assert (
        Launcher(settings, clock=lambda: now[0]).handle(image_request("slim-2", SLIM_IMAGE))
        is Result.LAUNCHED
    )
    assert reconciler.run().deregistered == 0
    now[0] += 1 * day + 60
    assert reconciler.run().deregistered == 1
    assert active_images() == [SLIM_IMAGE]
    # The gpu image launched again: registered anew (its registration item went with it).
    again = Launcher(settings, clock=lambda: now[0])
    calls = CallCounter().attach(again.ecs)
    assert again.handle(image_request("gpu-2", GPU_IMAGE)) is Result.LAUNCHED
    assert calls.calls["RegisterTaskDefinition"] == 1
    assert active_images() == [GPU_IMAGE, SLIM_IMAGE]


@pytest.mark.parametrize(
    "profiles",
    [
        '{"default": {}}',
        '{"spot": {"launchType": "EC2", "capacityProviderStrategy": [{"capacityProvider": "x"}]}}',
        '{"spot": {"runTaskKwargs": {"count": 2}}}',
        "[]",
    ],
)
def test_bad_launch_profiles_fail_naming_the_variable(profiles: str) -> None:
    env = {
        env_vars.TASKS_TABLE_NAME: "t",
        env_vars.CLUSTER: "c",
        env_vars.TASK_DEFINITION: "td:1",
        env_vars.CONTAINER_NAME: "base",
        env_vars.LAUNCH_PROFILES: profiles,
    }
    with pytest.raises(EnvironmentVariableError, match="LAUNCH_PROFILES"):
        LauncherSettings.from_env(env)


def test_a_profile_on_another_cluster_launches_there_and_its_events_are_tracked(
    control_plane: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The status handler reads LAUNCH_PROFILES: a profile's cluster is one of the control plane's."""
    from lambdas.status import handler as status_handler
    from tests.support.ecs_events import task_event
    from tests.support.handlers import send

    ecs = control_plane.client("ecs")
    gpu_cluster = ecs.create_cluster(clusterName="airflow-gpu")["cluster"]["clusterArn"]
    profiles = json.dumps({"gpu": {"cluster": gpu_cluster}})
    monkeypatch.setenv(env_vars.LAUNCH_PROFILES, profiles)
    status_handler.reset()
    launch = launcher(control_plane, **{env_vars.LAUNCH_PROFILES: profiles})
    request = launch_request("gpu", queue="gpu")
    assert launch.handle(request.to_json()) is Result.LAUNCHED
    stored = TaskTable(control_plane.table).get(request.launch_id)
    assert stored is not None and stored.task_arn and stored.cluster_arn == gpu_cluster
    task = ecs.describe_tasks(cluster=gpu_cluster, tasks=[stored.task_arn])["tasks"][0]
    assert send(task_event(task, last_status="RUNNING", version=3)) == "Applied"
    tracked = TaskTable(control_plane.table).get(request.launch_id)
    assert tracked is not None and tracked.state is TaskState.RUNNING


def test_a_use_between_the_reconcilers_read_and_its_delete_keeps_the_registration(
    control_plane: ControlPlane,
) -> None:
    """The reconciler deletes a registration only if its last use is still the one it read: a launcher that used
    the family in between keeps it (and its revisions stay registered)."""
    from ecs_event_executor.control.tasks.registrations import Registrations

    now = [1_800_000_000.0]
    registrations = Registrations(control_plane.table, clock=lambda: now[0])
    family = "airflow-worker" + DERIVED_MARK + "0123456789ab"
    assert registrations.claim(family, lease_seconds=30)
    registrations.record(family, f"arn:aws:ecs:us-east-1:123456789012:task-definition/{family}:1")
    seen = registrations.get(family)
    assert seen is not None and seen.task_definition_arn
    now[0] += 30 * 24 * 3600
    assert registrations.mark_used(family, seen.task_definition_arn)  # a launch, after the reconciler's read
    assert registrations.forget_unused(seen) is False
    assert registrations.get(family) is not None
    assert registrations.forget_unused(registrations.get(family)) is True  # type: ignore[arg-type]
    assert registrations.get(family) is None


def test_a_derived_family_without_a_registration_is_adopted_then_collected(
    control_plane: ControlPlane,
) -> None:
    """A derived family ECS has and the table does not (its item was lost) gets an item; its days start then."""
    from ecs_event_executor.control.task_definitions import collect_unused
    from ecs_event_executor.control.tasks.registrations import Registrations

    ecs = control_plane.client("ecs")
    family = "airflow-worker" + DERIVED_MARK + "feedfacecafe"
    ecs.register_task_definition(
        family=family, containerDefinitions=[{"name": "base", "image": GPU_IMAGE, "memory": 512}]
    )
    now = [1_800_000_000.0]
    registrations = Registrations(control_plane.table, clock=lambda: now[0])

    def collect() -> Any:
        return collect_unused(
            ecs, registrations, ["airflow-worker"], unused_days=7, now_ms=int(now[0] * 1000)
        )

    assert collect().adopted == 1
    assert registrations.get(family) is not None
    now[0] += 8 * 24 * 3600
    assert collect().deregistered == 1
    assert ecs.list_task_definitions(familyPrefix=family, status="ACTIVE")["taskDefinitionArns"] == []
