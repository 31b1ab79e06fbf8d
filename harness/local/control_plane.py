"""The local control plane: the Lambda handlers, unchanged, fed by pollers that stand in for AWS's plumbing.

- An SQS event source mapping (the launch queue -> launcher): a poller receives up to BatchSize messages, hands
  them to the function in Lambda's SQS event shape, deletes the ones that succeeded and leaves the reported batch
  item failures to the visibility timeout (the launcher's backoff; after maxReceiveCount receives SQS's redrive
  moves a message to the DLQ).
- A rule with a Lambda target (the ECS rule -> status Lambda): moto delivers the matched events to a capture
  queue; a poller invokes the function with each event, one at a time, as Lambda's asynchronous invoke does: on
  an error it retries (the function's MaximumRetryAttempts), then sends Lambda's invocation record to the
  on-failure destination queue, which the reconciler replays.
- A rule with an SQS target and InputPath: a bridge applies the path (moto ignores it, see resources.py).

It runs in its own process (``python -m harness.local control-plane``): the handlers read their settings
from ``os.environ`` and reach moto through ``AWS_ENDPOINT_URL``, which must not leak into anyone else's process.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
from ecs_event_executor.control import environment as env_vars

from harness.aws_shapes import LambdaContext, apply_input_path, lambda_failure_record, received_sqs_event
from harness.local.resources import AsyncInvoke, Bridge, LocalResources, QueueFeed, Schedule
from harness.local.runner import Faults, LocalEcsRunner, append_jsonl

log = logging.getLogger(__name__)

# Scheduled functions (the reconciler) run at most this far apart locally.
LOCAL_SCHEDULE_MAX_SECONDS = 60.0

# Environment variables that legitimately differ between the functions (each names its own service).
_PER_FUNCTION_ENV = frozenset({env_vars.POWERTOOLS_SERVICE_NAME})


def _context(function_name: str) -> LambdaContext:
    """Return the context of one local invocation: 512 MB, a minute to run."""
    return LambdaContext(function_name, memory_limit_in_mb=512, timeout_seconds=60.0)


class Poller:
    """A thread that repeats ``step`` until stopped; a failing step is logged and retried."""

    def __init__(self, name: str, step: Callable[[], None]) -> None:
        self._step = step
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except Exception:
                log.exception("%s failed; retrying", self.thread.name)
                self._stop.wait(1.0)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()


class ControlPlane:
    """The pollers and the ECS runner, wired to the handlers the template names."""

    def __init__(
        self,
        resources: LocalResources,
        *,
        container_env: dict[str, str],
        journal_path: Path,
        faults: Faults,
        concurrency: int,
    ) -> None:
        self.resources = resources
        self.faults = faults
        self.journal = append_jsonl(journal_path)
        session = boto3.Session(region_name=resources.region)
        self._sqs = session.client("sqs", endpoint_url=resources.endpoint)
        self.handlers = self._load_handlers()
        self.pollers = [Poller(f"feed-{f.function}", self._feed_step(f)) for f in resources.feeds]
        self.pollers += [
            Poller(f"bridge-{b.queue_url.rsplit('/', 1)[-1]}", self._bridge_step(b))
            for b in resources.bridges
        ]
        self.pollers += [
            Poller(f"schedule-{s.function}", self._schedule_step(s)) for s in resources.schedules
        ]
        self.pollers += [Poller(f"invoke-{i.function}", self._invoke_step(i)) for i in resources.invokes]
        self.runner = LocalEcsRunner(
            lambda service: session.client(service, endpoint_url=resources.endpoint),
            cluster_arn=resources.cluster_arn,
            container_name=resources.container_name,
            log_group=resources.log_group,
            log_stream_prefix=resources.log_stream_prefix,
            container_env=container_env,
            journal=self.journal,
            faults=faults,
            concurrency=concurrency,
        )

    def _load_handlers(self) -> dict[str, Callable[[dict[str, Any], Any], Any]]:
        """Set the functions' environment in this process, import their handlers and count RunTask calls."""
        merged: dict[str, str] = {}
        for spec in self.resources.functions.values():
            for key, value in spec.env.items():
                if key in _PER_FUNCTION_ENV:
                    continue
                if merged.get(key, value) != value:
                    raise RuntimeError(f"functions disagree on {key}: {merged[key]!r} != {value!r}")
                merged[key] = value
        os.environ.update(merged)
        handlers = {}
        for logical, spec in self.resources.functions.items():
            module_name, _, attr = spec.handler.rpartition(".")
            module = importlib.import_module(module_name)
            if hasattr(module, "reset"):
                module.reset()
            handlers[logical] = getattr(module, attr)
        return handlers

    def _feed_step(self, feed: QueueFeed) -> Callable[[], None]:
        handler = self.handlers[feed.function]

        def step() -> None:
            messages = self._sqs.receive_message(
                QueueUrl=feed.queue_url,
                MaxNumberOfMessages=min(10, feed.batch_size),
                WaitTimeSeconds=1,
                AttributeNames=["All"],
            ).get("Messages", [])
            if not messages:
                return
            failed = self._invoke_batch(feed, handler, messages, extra_receives=0)
            if self.faults.duplicate_deliveries:
                # At-least-once: the same messages delivered again before the first delivery was deleted.
                failed |= self._invoke_batch(feed, handler, messages, extra_receives=1)
            done = [m for m in messages if m["MessageId"] not in failed]
            for i in range(0, len(done), 10):
                self._sqs.delete_message_batch(
                    QueueUrl=feed.queue_url,
                    Entries=[
                        {"Id": str(j), "ReceiptHandle": m["ReceiptHandle"]}
                        for j, m in enumerate(done[i : i + 10])
                    ],
                )

        return step

    def _invoke_batch(
        self,
        feed: QueueFeed,
        handler: Callable[..., Any],
        messages: list[dict[str, Any]],
        *,
        extra_receives: int,
    ) -> set[str]:
        """Invoke the function with one batch; return the ids to leave on the queue."""
        try:
            response = handler(
                received_sqs_event(messages, feed.queue_arn, extra_receives=extra_receives),
                _context(feed.function),
            )
        except Exception:
            log.exception("%s failed on a batch; the whole batch will be retried", feed.function)
            return {m["MessageId"] for m in messages}
        if not feed.partial_batch:
            return set()
        return {f["itemIdentifier"] for f in (response or {}).get("batchItemFailures", [])}

    def _bridge_step(self, bridge: Bridge) -> Callable[[], None]:
        def step() -> None:
            messages = self._sqs.receive_message(
                QueueUrl=bridge.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
            ).get("Messages", [])
            for message in messages:
                self._sqs.send_message(
                    QueueUrl=bridge.target_queue_url,
                    MessageBody=apply_input_path(message["Body"], bridge.input_path),
                )
                self._sqs.delete_message(QueueUrl=bridge.queue_url, ReceiptHandle=message["ReceiptHandle"])

        return step

    def _invoke_step(self, invoke: AsyncInvoke) -> Callable[[], None]:
        handler = self.handlers[invoke.function]

        def step() -> None:
            messages = self._sqs.receive_message(
                QueueUrl=invoke.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
            ).get("Messages", [])
            for message in messages:
                event = json.loads(message["Body"])
                record = self._invoke_async(invoke, handler, event)
                if record is not None and invoke.on_failure_queue_url:
                    self._sqs.send_message(
                        QueueUrl=invoke.on_failure_queue_url, MessageBody=json.dumps(record)
                    )
                self._sqs.delete_message(QueueUrl=invoke.queue_url, ReceiptHandle=message["ReceiptHandle"])

        return step

    def _invoke_async(
        self, invoke: AsyncInvoke, handler: Callable[..., Any], event: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Invoke once plus the retries; return Lambda's on-failure record if every attempt failed, else None."""
        error: Exception | None = None
        for _ in range(1 + invoke.retry_attempts):
            try:
                handler(event, _context(invoke.function))
                return None
            except Exception as exc:
                error = exc
        log.warning("%s failed on an event after its retries: %s", invoke.function, error)
        return lambda_failure_record(invoke.function, event, error, invoke_count=1 + invoke.retry_attempts)

    def _schedule_step(self, schedule: Schedule) -> Callable[[], None]:
        handler = self.handlers[schedule.function]
        # The first run happens at once (so the heartbeat exists before Airflow starts); a local demo is short,
        # so the period is capped.
        period = min(schedule.period_seconds(), LOCAL_SCHEDULE_MAX_SECONDS)
        wake = threading.Event()

        def step() -> None:
            event = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}
            handler(event, _context(schedule.function))
            wake.wait(period)

        return step

    def start(self) -> None:
        self.runner.start()
        for poller in self.pollers:
            poller.start()

    def stop(self) -> None:
        for poller in self.pollers:
            poller.stop()
        self.runner.stop()


def main(argv: list[str] | None = None) -> int:
    """Run the control plane until SIGTERM/SIGINT or until the process that started it is gone."""
    parser = argparse.ArgumentParser(prog="harness.local control-plane")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--duplicate-deliveries", action="store_true")
    parser.add_argument("--shuffle-events", action="store_true")
    parser.add_argument("--duplicate-events", action="store_true")
    parser.add_argument("--hold-first-launch", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(threadName)s %(levelname)s %(name)s: %(message)s"
    )
    resources = LocalResources.load(args.state_dir / "resources.json")
    container_env = json.loads((args.state_dir / "container_env.json").read_text())
    faults = Faults(
        duplicate_deliveries=args.duplicate_deliveries,
        shuffle_events=args.shuffle_events,
        duplicate_events=args.duplicate_events,
        hold_first_launch=args.hold_first_launch,
    )
    plane = ControlPlane(
        resources,
        container_env=container_env,
        journal_path=args.state_dir / "journal.jsonl",
        faults=faults,
        concurrency=args.concurrency,
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    parent = os.getppid()
    plane.start()
    (args.state_dir / "control_plane.ready").write_text(str(os.getpid()))
    log.info("control plane running: %s; faults %s", resources.template_origin, faults)
    while not stop.wait(1.0):
        if os.getppid() != parent:
            log.warning("the process that started the control plane is gone; stopping")
            break
    plane.stop()
    return 0
