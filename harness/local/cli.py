"""Command line of the local mode: ``up`` (run until Ctrl-C), ``demo`` (run the example DAG, or yours, and check it).

Both take ``--dags-folder`` (the DAGs Airflow and the local workers run), ``--airflow-config SECTION.KEY=VALUE``
(an Airflow setting for every Airflow process and every worker) and ``--airflow-venv PATH`` (another Airflow, e.g.
``.compat/airflow-2.11``; ``make demo AIRFLOW=2.11`` makes and passes it).
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ecs_event_executor.control import environment as env_vars
from ecs_event_executor.control.executor_config import IMAGE_KEY
from ecs_event_executor.control.launch_profiles import parse_profiles, profile_for_queue
from ecs_event_executor.control.tasks.item import TaskItem
from ecs_event_executor.control.tasks.table import TaskTable

from harness.local.runner import Faults
from harness.local.stack import EXAMPLES, LocalStack, StackOptions, stop_on_sigterm

DEMO_DAG_FILE = EXAMPLES / "ecs_event_demo.py"
FINISHED_RUN_STATES = ("success", "failed")


def _module_constants(dag_file: Path) -> dict[str, Any]:
    """Read the literal DAG_ID and EXPECTED of a DAG file's source, without importing Airflow."""
    values: dict[str, Any] = {}
    for node in ast.parse(dag_file.read_text()).body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id in ("DAG_ID", "EXPECTED")
        ):
            values[node.targets[0].id] = ast.literal_eval(node.value)
    return values


def expected_states(dag_file: Path = DEMO_DAG_FILE) -> tuple[str, dict[str, str]]:
    """Read DAG_ID and EXPECTED from the example DAG's source, without importing Airflow."""
    values = _module_constants(dag_file)
    return values["DAG_ID"], values["EXPECTED"]


def demo_dags(dags_folder: Path, dag_ids: Sequence[str] = ()) -> list[tuple[str, dict[str, str]]]:
    """Return the DAGs ``demo`` runs and how each task must end ({}: every task succeeds).

    Named DAGs (``--dag-id``) are run as given; otherwise every file of the folder that declares a literal
    ``DAG_ID`` (and optionally ``EXPECTED``), as the example DAG does.
    """
    declared: dict[str, dict[str, str]] = {}
    for path in sorted(dags_folder.rglob("*.py")):
        try:
            values = _module_constants(path)
        except (SyntaxError, ValueError, OSError):
            continue  # not a DAG file we can read without importing it; Airflow reports its own errors
        if isinstance(values.get("DAG_ID"), str):
            declared[values["DAG_ID"]] = dict(values.get("EXPECTED") or {})
    if dag_ids:
        return [(dag_id, declared.get(dag_id, {})) for dag_id in dag_ids]
    return sorted(declared.items())


def airflow_config_env(values: Sequence[str]) -> dict[str, str]:
    """Turn ``--airflow-config`` values (``section.key=value`` or ``AIRFLOW__SECTION__KEY=value``) into variables.

    Raise ValueError naming a value that is neither form.
    """
    env: dict[str, str] = {}
    for value in values:
        name, sep, setting = value.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(
                f"--airflow-config {value!r}: expected SECTION.KEY=VALUE or AIRFLOW__SECTION__KEY=VALUE"
            )
        if name.startswith("AIRFLOW__"):
            env[name] = setting
            continue
        section, dot, key = name.partition(".")
        if not dot or not section or not key or "." in key:
            raise ValueError(
                f"--airflow-config {value!r}: expected SECTION.KEY=VALUE (e.g. core.parallelism=8)"
            )
        env[f"AIRFLOW__{section.upper()}__{key.upper()}"] = setting
    return env


def ti_name(ti: dict[str, Any]) -> str:
    index = ti.get("map_index", -1)
    return f"{ti['task_id']}[{index}]" if index is not None and index >= 0 else str(ti["task_id"])


def latest_items(items: Sequence[TaskItem], dag_id: str, run_id: str) -> dict[str, TaskItem]:
    """The newest launch of every task instance of one run, keyed like EXPECTED."""
    latest: dict[str, TaskItem] = {}
    for item in items:
        if item.key is None or item.key.dag_id != dag_id or item.key.run_id != run_id:
            continue
        name = f"{item.key.task_id}[{item.key.map_index}]" if item.key.map_index >= 0 else item.key.task_id
        best = latest.get(name)
        best_order = (best.key.try_number if best.key else 0, best.queued_at or 0) if best else None
        if best_order is None or (item.key.try_number, item.queued_at or 0) > best_order:
            latest[name] = item
    return latest


def _seconds(start_ms: int | None, end_ms: int | None) -> str:
    return f"{(end_ms - start_ms) / 1000:.1f}s" if start_ms and end_ms else "-"


def launch_facts(stack: LocalStack, item: TaskItem) -> tuple[str, str, str]:
    """Return (launch profile, capacity, image) of a launch: the profile its queue picked (from the stored launch
    request), and what ECS ran it on (the task's capacity provider or launch type, its task definition's image)."""
    assert stack.resources is not None
    res = stack.resources
    launcher_env = next((f.env for f in res.functions.values() if env_vars.LAUNCH_QUEUE_URL in f.env), {})
    profiles = parse_profiles(json.loads(launcher_env.get(env_vars.LAUNCH_PROFILES) or "{}"))
    request = TaskTable(res.table_name, client=stack.client("dynamodb")).read_request(item.launch_id)
    profile = profile_for_queue(request.queue if request else None, profiles) if request else "-"
    if not item.task_arn:
        return profile, "-", str((request.executor_config if request else {}).get(IMAGE_KEY, "-"))
    ecs = stack.client("ecs")
    task = ecs.describe_tasks(cluster=item.cluster_arn or res.cluster_arn, tasks=[item.task_arn])["tasks"][0]
    capacity = task.get("capacityProviderName") or task.get("launchType") or "-"
    definition = ecs.describe_task_definition(taskDefinition=task["taskDefinitionArn"])["taskDefinition"]
    image = next(
        (c["image"] for c in definition["containerDefinitions"] if c["name"] == res.container_name), "-"
    )
    return profile, capacity, image


def outcome_table(stack: LocalStack, dag_id: str, run_id: str, expected: dict[str, str]) -> tuple[str, bool]:
    """Return the per-task table and whether every task ended as expected."""
    assert stack.resources is not None
    res = stack.resources
    tis = {ti_name(ti): ti for ti in stack.task_instances(dag_id, run_id)}
    items = latest_items(stack.items(), dag_id, run_id)
    rows = [
        (
            "task",
            "state",
            "expected",
            "profile",
            "capacity",
            "image",
            "ECS task id",
            "queue→launch",
            "launch→end",
            "log (group/stream)",
        )
    ]
    ok = True
    for name in sorted(set(expected) | set(tis)):
        state = str((tis.get(name) or {}).get("state"))
        # A DAG without EXPECTED is expected to succeed in full.
        want = expected.get(name, "?") if expected else "success"
        ok &= state == want
        item = items.get(name)
        task_id = item.task_arn.rsplit("/", 1)[-1] if item and item.task_arn else "-"
        stream = f"{res.log_stream_prefix}/{res.container_name}/{task_id}" if task_id != "-" else ""
        profile, capacity, image = launch_facts(stack, item) if item else ("-", "-", "-")
        rows.append(
            (
                name,
                state,
                want if want == state else f"{want}  <-- MISMATCH",
                profile,
                capacity,
                image,
                task_id,
                # The item has no RUNNING step (the rule delivers only stopping events): launch and end.
                _seconds(item.queued_at, item.launched_at) if item else "-",
                _seconds(item.launched_at, item.finished_at) if item else "-",
                f"{res.log_group}/{stream}" if stream else "-",
            )
        )
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines), ok


def wait_for_run(stack: LocalStack, dag_id: str, run_id: str, *, timeout: float, show: bool = True) -> str:
    """Wait for the run to finish, printing a progress line whenever the task states change."""
    deadline = time.monotonic() + timeout
    last = ""
    start = time.monotonic()
    while time.monotonic() < deadline:
        state = stack.dag_run_state(dag_id, run_id)
        counts: dict[str, int] = {}
        for ti in stack.task_instances(dag_id, run_id):
            counts[str(ti["state"])] = counts.get(str(ti["state"]), 0) + 1
        line = f"run {state}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        if show and line != last:
            print(f"  [{time.monotonic() - start:5.0f}s] {line}", flush=True)
            last = line
        if state in FINISHED_RUN_STATES:
            return state
        if dead := stack._airflow_dead():
            raise RuntimeError(dead)
        time.sleep(2)
    raise TimeoutError(f"run {run_id} of {dag_id} did not finish in {timeout:.0f}s")


def wait_items_final(stack: LocalStack, dag_id: str, run_id: str, *, timeout: float) -> None:
    """Wait (bounded) until every launch of the run has reached a terminal state in the task table."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = latest_items(stack.items(), dag_id, run_id)
        if all(item.state.terminal for item in items.values()):
            return
        time.sleep(1)


def ecs_tasks_per_try(stack: LocalStack) -> dict[tuple[Any, ...], int]:
    """Count the ECS tasks started per Airflow task try (moto makes one task per RunTask; the runner sees all)."""
    counts: dict[tuple[Any, ...], int] = {}
    for record in stack.journal():
        if record["kind"] in ("discovered", "held") and record.get("ti"):
            ti = record["ti"]
            key = (ti["dag_id"], ti["run_id"], ti["task_id"], ti["map_index"], ti["try_number"])
            counts[key] = counts.get(key, 0) + 1
    return counts


def stack_options(args: argparse.Namespace, faults: Faults | None = None) -> StackOptions:
    """Return the local system's options from ``up``'s or ``demo``'s arguments."""
    return StackOptions(
        dags_folder=args.dags_folder,
        concurrency=args.concurrency,
        faults=faults or Faults(),
        airflow_config=args.airflow_config,
        use_template=not args.contract_only,
        airflow_venv=args.airflow_venv,
    )


def demo(args: argparse.Namespace) -> int:
    started = time.monotonic()
    dags = demo_dags(args.dags_folder, args.dag_id)

    def step(text: str) -> None:
        print(f"[{time.monotonic() - started:5.1f}s] {text}", flush=True)

    if not dags:
        step(f"no DAG to run in {args.dags_folder}: name one with --dag-id (or declare DAG_ID in its file)")
        return 2
    stack = LocalStack(stack_options(args))
    try:
        step(f"state and logs in {stack.state_dir}")
        step("starting moto_server and creating the stack's resources")
        resources = stack.start_aws()
        step(f"resources from the {resources.template_origin}; local AWS at {resources.endpoint}")
        if stack.airflow2:
            step(f"Airflow {stack.airflow_version}: starting its metadata database (embedded PostgreSQL)")
            stack.start_database()
        stack.start_control_plane()
        step("control plane running: launcher and status handlers, local ECS runner")
        components = (
            "db migrate, webserver, scheduler, triggerer"
            if stack.airflow2
            else "db migrate, api-server, dag-processor, scheduler, triggerer"
        )
        step(f"starting Airflow {stack.airflow_version} ({components})")
        stack.start_airflow()
        ok = True
        for dag_id, expected in dags:
            step(f"Airflow up at {stack.api_url}; waiting for {dag_id} to be parsed")
            stack.wait_dag(dag_id)
            run_id = stack.trigger(dag_id)
            step(f"triggered {dag_id} run {run_id}")
            state = wait_for_run(stack, dag_id, run_id, timeout=args.timeout)
            # Airflow records a task's end from the worker, before its ECS task has stopped: wait for the
            # STOPPED events.
            wait_items_final(stack, dag_id, run_id, timeout=60)
            table, dag_ok = outcome_table(stack, dag_id, run_id, expected)
            step(f"run finished: {state}\n\n{table}\n")
            ok &= dag_ok
        tasks = ecs_tasks_per_try(stack)
        step(
            f"{sum(tasks.values())} ECS tasks for {len(tasks)} task tries; logs of every process under {stack.state_dir / 'logs'}"
        )
        if ok:
            step("every task ended as the DAG expects")
        else:
            step("some tasks did NOT end as the DAG expects (see MISMATCH above)")
        return 0 if ok else 1
    except KeyboardInterrupt:
        step("interrupted; stopping everything")
        return 130
    except Exception as exc:
        step(f"demo failed: {exc}")
        for name, path in stack.logs():
            print(f"  {name}: {path}")
        return 1
    finally:
        stack.stop()
        step("stopped every process the demo started")


def up(args: argparse.Namespace) -> int:
    faults = Faults(
        duplicate_deliveries=args.duplicate_deliveries,
        shuffle_events=args.shuffle_events,
        duplicate_events=args.duplicate_events,
    )
    stack = LocalStack(stack_options(args, faults))
    try:
        stack.start()
        assert stack.resources is not None
        env_file = stack.write_cli_environment()
        print(f"Airflow UI/API: {stack.api_url}  (every user is admin)")
        print(f"DAGs folder: {stack.options.dags_folder}")
        print(f"local AWS (moto_server): {stack.resources.endpoint}")
        print(f"state and logs: {stack.state_dir}")
        print(f"For the Airflow CLI against this Airflow: source {env_file}")
        print("\n".join(f"  {line}" for line in stack.cli_environment_lines(reveal_secrets=False)))
        print("Ctrl-C stops everything.", flush=True)
        while not stack._airflow_dead():
            time.sleep(1)
        print(stack._airflow_dead(), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stack.stop()


def _existing_dir(value: str) -> Path:
    path = Path(value).expanduser().resolve()
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{value!r} is not a directory")
    return path


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["control-plane"]:
        from harness.local.control_plane import main as control_plane_main

        return control_plane_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m harness.local")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("up", "demo"):
        p = sub.add_parser(name)
        p.add_argument(
            "--dags-folder",
            type=_existing_dir,
            default=EXAMPLES,
            help="the DAGs Airflow and the local workers run (default: examples/)",
        )
        p.add_argument(
            "--airflow-config",
            action="append",
            default=[],
            metavar="SECTION.KEY=VALUE",
            help="an Airflow setting for every Airflow process and worker (repeatable; "
            "AIRFLOW__SECTION__KEY=VALUE also works)",
        )
        p.add_argument(
            "--airflow-venv",
            type=_existing_dir,
            default=None,
            help="the virtualenv of the Airflow to run, with the executor installed (default: this one's); "
            "e.g. .compat/airflow-2.11 (make demo AIRFLOW=2.11 makes it)",
        )
        p.add_argument("--concurrency", type=int, default=2, help="local ECS tasks at a time (default 2)")
        p.add_argument(
            "--contract-only",
            action="store_true",
            help="build resources from the contract modules instead of the synthesized stack template",
        )
        if name == "demo":
            p.add_argument("--timeout", type=float, default=900, help="seconds to wait for each DAG run")
            p.add_argument(
                "--dag-id",
                action="append",
                default=[],
                help="a DAG to run (repeatable); default: every DAG file of the folder that declares DAG_ID",
            )
        else:
            p.add_argument("--duplicate-deliveries", action="store_true")
            p.add_argument("--shuffle-events", action="store_true")
            p.add_argument("--duplicate-events", action="store_true")
    args = parser.parse_args(argv)
    try:
        args.airflow_config = airflow_config_env(args.airflow_config)
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=logging.WARNING)
    stop_on_sigterm()
    return demo(args) if args.command == "demo" else up(args)
