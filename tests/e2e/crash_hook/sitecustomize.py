"""Test-only crash hook for R10, imported by the scheduler's interpreter at start-up (PYTHONPATH points here).

After an SQS ``SendMessageBatch`` that carried launch messages has returned (the messages are in the queue), the
scheduler SIGKILLs itself: before the executor reports anything and before the scheduler commits the next state.
``R10_CRASH_DIR`` holds ``kills.jsonl`` (one line per kill: the launch ids it left in flight, and their owner); after
``R10_CRASH_LIMIT`` kills the scheduler runs clean. ``R10_MUTATION=no-adoption`` makes the executor adopt nothing,
the mutation R10 must catch. Nothing here is product code: only the test's environment loads it.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

_CRASH_DIR = os.environ.get("R10_CRASH_DIR")


def _launches(params: dict[str, Any]) -> dict[str, str]:
    """Return launch id -> owner of the launch messages in a SendMessageBatch request."""
    launches = {}
    for entry in params.get("Entries", []):
        try:
            body = json.loads(entry.get("MessageBody", ""))
        except ValueError:
            continue
        if isinstance(body, dict) and body.get("kind") == "launch":
            launches[str(body.get("launch_id"))] = str(body.get("owner"))
    return launches


def _note_launches(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    context["r10_launches"] = _launches(params)


def _kill_after_send(context: dict[str, Any], parsed: dict[str, Any], **_: Any) -> None:
    launches = context.get("r10_launches") or {}
    if not launches or _CRASH_DIR is None:
        return
    kills = Path(_CRASH_DIR) / "kills.jsonl"
    done = len(kills.read_text().splitlines()) if kills.exists() else 0
    if done >= int(os.environ.get("R10_CRASH_LIMIT", "10")):
        return
    sent = {entry["Id"] for entry in parsed.get("Successful", [])}
    with open(kills, "a") as fh:
        fh.write(json.dumps({"pid": os.getpid(), "launches": launches, "accepted": len(sent)}) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.kill(os.getpid(), signal.SIGKILL)


def _mutate() -> None:
    # Remove the adoption of pre-assigned launch ids: every orphaned task instance is reset and queued again.
    executor = sys.modules.get("ecs_event_executor.executor")
    if executor is not None and not getattr(executor, "_r10_mutated", False):
        executor.EcsEventExecutor.try_adopt_task_instances = lambda self, tis: list(tis)
        executor._r10_mutated = True  # type: ignore[attr-defined]


def _install() -> None:
    import botocore.session

    create_client = botocore.session.Session.create_client

    def create_client_with_hook(self: Any, service_name: str, *args: Any, **kwargs: Any) -> Any:
        if os.environ.get("R10_MUTATION") == "no-adoption":
            _mutate()  # the executor module is loaded by the time it builds its first client
        client = create_client(self, service_name, *args, **kwargs)
        if service_name == "sqs":
            client.meta.events.register("before-parameter-build.sqs.SendMessageBatch", _note_launches)
            client.meta.events.register("after-call.sqs.SendMessageBatch", _kill_after_send)
        return client

    botocore.session.Session.create_client = create_client_with_hook


if _CRASH_DIR and "scheduler" in sys.argv[1:2]:
    _install()
