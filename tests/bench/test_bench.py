"""The benchmark harness runs end to end with tiny sizes (make bench runs the real ones)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.bench.model import Actor, Sim, TokenBucket


def test_token_bucket_refills_at_its_rate_up_to_its_capacity() -> None:
    bucket = TokenBucket(capacity=2, per_second=1)
    bucket.take(0.0)
    bucket.take(0.0)
    assert not bucket.available(0.5)
    assert bucket.available(1.0)
    bucket.take(1.0)
    assert bucket.available(100.0) and bucket.tokens == 2


def test_processes_act_in_simulated_time_order_not_code_order() -> None:
    """A process that waits yields: the other's earlier request happens first, as it would on real clocks."""
    sim = Sim(start=0.0)
    log: list[tuple[str, float]] = []
    a, b = Actor("a", time=0.0), Actor("b", time=0.0)

    def slow() -> None:  # two requests of 1 s each
        for _ in range(2):
            sim.wait(a, 1.0)
            log.append(("a", sim.clock()))

    def quick() -> None:  # one request of 1.5 s, started a little later
        sim.wait(b, 1.5)
        log.append(("b", sim.clock()))

    sim.process(0.0, slow, a)
    sim.process(0.1, quick, b)
    assert sim.run_until(lambda: len(log) == 3, limit=10)
    assert log == [("a", 1.0), ("b", 1.6), ("a", 2.0)]


def test_joined_threads_wait_in_parallel_and_resume_at_the_latest() -> None:
    sim = Sim(start=0.0)
    parent = Actor("invocation", time=0.0)
    ends: list[float] = []

    def invocation() -> None:
        threads = [Actor(f"thread {i}", time=parent.time) for i in range(3)]
        procs = [
            sim.process(parent.time, lambda t=t, s=s: sim.wait(t, s), t)  # type: ignore[misc]
            for t, s in zip(threads, (0.5, 2.0, 1.0), strict=True)
        ]
        sim.join(procs)
        ends.append(sim.clock())

    sim.process(0.0, invocation, parent)
    assert sim.run_until(lambda: bool(ends), limit=10)
    assert ends == [2.0]  # not 3.5: the waits overlapped


def test_bench_runs_both_executors_and_writes_the_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.bench import world
    from harness.bench.__main__ import main

    for name, value in world._ENV.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "bench.md").write_text("old report\n<!-- history: kept by make bench -->\n| a kept row |\n")

    code = main(
        [
            "--sizes",
            "10",
            "--burst",
            "5",
            "--loops",
            "2",
            "--extra-queued",
            "5",
            "--scale-size",
            "30",
            "--scale-burst",
            "25",
            "--out",
            str(tmp_path),
            "--import-runs",
            "1",
            "--no-progress",
        ]
    )

    assert code == 0
    text = (tmp_path / "bench.md").read_text()
    assert "| 10 | 1 (max 1) |" in text  # ours: one request per loop
    assert "### 2. Burst of 5 queued tasks" in text and "### Targets" in text
    assert "| tasks not reported | 0 | 0 |" in text
    # Every target of issue 19 gets a verdict with its figure; the run names its commit; the history is kept.
    for target in ("P1 **", "P2 **", "P3 **", "P4 **", "P5 **", "Cost **"):
        assert target in text
    assert "p50 / p95 / p99" in text and "commit `" in text
    assert "old report" not in text and text.endswith("| a kept row |\n")
    assert (tmp_path / "bench.png").stat().st_size > 10_000
    # The scale run (tiny here): its steady state with the reference computed, memory, safety net and burst.
    assert "| 30 | 1 (max 1) |" in text and "(computed)" in text
    assert "memory the executor holds for 30 tracked tasks" in text
    assert "safety-net read at 30 tracked: how often" in text and "1 BatchGetItem in 2 loops" in text
    assert (
        "| burst of 25: RunTask calls (throttled answers) / tasks failed by throttling | 25 (0) / 0 |" in text
    )
    assert "(burst of 5: 100%, 0 failed; burst of 25: " in text


def test_the_emulator_answers_each_request_once() -> None:
    """moto's own stubber must not answer again after the emulator's hook: every write would run twice."""
    from ecs_event_executor.control.tasks.schema import table_definition
    from moto import mock_aws

    from harness.bench.emulator import Emulator
    from harness.bench.model import AwsModel

    definition = table_definition("once")
    with mock_aws():
        sim = Sim(start=0.0)
        emulator = Emulator(sim, AwsModel(), definition)
        dynamodb = emulator.client("dynamodb")
        dynamodb.create_table(**definition)
        dynamodb.update_item(
            TableName="once",
            Key={definition["KeySchema"][0]["AttributeName"]: {"S": "k"}},
            UpdateExpression="ADD n :one",
            ExpressionAttributeValues={":one": {"N": "1"}},
        )
        item = emulator.billing.stored({"S": "k"})

    assert item is not None and item["n"] == {"N": "1"}  # 2 when moto applied the same request twice
    assert sim.system.requests["dynamodb.UpdateItem"] == 1


def test_the_narrowed_index_query_answers_as_moto_does() -> None:
    """The emulator's short cut for index Queries (no sort of the whole table) must not change the answer or its
    order, ties on the index's sort key included."""
    import boto3
    from ecs_event_executor.control.tasks.schema import table_definition
    from moto import mock_aws

    from harness.bench.emulator import fast_moto_projection

    definition = table_definition("narrow")
    query = {
        "TableName": "narrow",
        "IndexName": "by_owner_changed",
        "KeyConditionExpression": "#o = :o AND changed_at >= :since",
        "ExpressionAttributeNames": {"#o": "owner"},
        "ExpressionAttributeValues": {":o": {"S": "me"}, ":since": {"N": "5"}},
    }
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(**definition)
        for i in range(40):
            client.put_item(
                TableName="narrow",
                Item={
                    "pk": {"S": f"launch-{(i * 7) % 40:02d}"},
                    "owner": {"S": "me" if i % 3 else "other"},
                    "changed_at": {"N": str(i % 10)},  # ties: several items per changed_at
                    "state": {"S": "RUNNING"},
                },
            )
        expected = [client.query(**query, ScanIndexForward=f)["Items"] for f in (True, False)]
        with fast_moto_projection():
            answered = [client.query(**query, ScanIndexForward=f)["Items"] for f in (True, False)]

    assert expected[0] and answered == expected


def test_retained_bytes_counts_what_an_object_holds_not_shared_clients_or_code() -> None:
    import boto3

    from harness.bench.scenarios import retained_bytes

    client = boto3.client("sqs", region_name="us-east-1")

    class Holder:
        def __init__(self, n: int) -> None:
            self.client = client  # shared by the process: not counted
            self.tracked = {f"launch-{i}": ("dag", f"task-{i}", i) for i in range(n)}

    small, large = retained_bytes(Holder(10)), retained_bytes(Holder(1_010))
    assert small < 10_000  # the client (megabytes of service model) is not followed
    assert 100 * 1_000 < large - small < 1_000 * 1_000  # about 100-1,000 B for each entry added


def test_the_reference_at_an_unrun_size_is_computed_from_its_describe_tasks_per_100() -> None:
    from collections import Counter

    from harness.bench.model import AwsModel
    from harness.bench.report import reference_at
    from harness.bench.scenarios import SteadyResult

    measured = [
        SteadyResult(100, 2, 2, 0.2, 0.01, Counter({"ecs.DescribeTasks": 5, "sqs.X": 5})),
        # 5 loops at 10,000: 100 DescribeTasks and 2 others each
        SteadyResult(10_000, 102, 102, 11.0, 1.0, Counter({"ecs.DescribeTasks": 500, "sqs.X": 10})),
    ]

    requests, blocking = reference_at(measured, 50_000, AwsModel())

    assert requests == 502 and blocking == 55.0


def test_the_ecs_model_lists_tasks_by_started_by_and_desired_status_100_a_page() -> None:
    """The launcher's past-deadline check pages through ListTasks: the model must answer it as ECS does."""
    from ecs_event_executor.control.tasks.schema import table_definition
    from moto import mock_aws

    from harness.bench.emulator import Emulator
    from harness.bench.model import AwsModel

    with mock_aws():
        emulator = Emulator(Sim(start=0.0), AwsModel(), table_definition("unused"))
        for i in range(130):
            emulator.ecs.run_task({"taskDefinition": "td", "startedBy": "ours" if i % 13 else "someone-else"})
        stopped = list(emulator.ecs.tasks)[1]  # one of ours
        emulator.ecs.transition(stopped, "STOPPED", desired="STOPPED", quiet=True)
        ecs = emulator.client("ecs")
        with emulator.free():
            pages = list(ecs.get_paginator("list_tasks").paginate(cluster="airflow", startedBy="ours"))
            stopped_pages = list(
                ecs.get_paginator("list_tasks").paginate(cluster="airflow", desiredStatus="STOPPED")
            )

    listed = [arn for page in pages for arn in page["taskArns"]]
    assert len(pages) == 2 and len(listed) == 120 - 1  # 10 started by another, 1 stopped (it was ours)
    assert stopped not in listed and [p["taskArns"] for p in stopped_pages] == [[stopped]]


def test_the_deployed_layout_imports_the_handler_from_its_copies_alone() -> None:
    """P5's cold import is measured on the handler laid out as deployed: an interpreter that sees no site-packages
    imports it, and everything it loads outside the standard library, from the copies, which hold no bytecode
    of this machine's."""
    import subprocess
    import sys

    from harness.bench.scenarios import deployed_layout

    with deployed_layout("status") as root:
        probe = (
            "import sys, lambdas.status.handler\n"
            "print(sorted(m for m, mod in sys.modules.items() if m.split('.')[0] not in sys.stdlib_module_names\n"
            f"    and getattr(mod, '__file__', None) and not mod.__file__.startswith({str(root)!r})))"
        )
        result = subprocess.run(
            [sys.executable, "-S", "-B", "-c", probe],
            cwd=root,
            env={"PYTHONPATH": str(root)},
            capture_output=True,
            text=True,
            check=True,
        )
        assert result.stdout.strip() == "[]"
        assert not list(root.rglob("*.pyc"))
