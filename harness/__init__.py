"""The development harness: the local mode (``harness.local``) and the benchmark (``harness.bench``).

It lives beside ``executor/``, ``lambdas/`` and ``infra/`` and is not part of the shipped wheel: it runs from a
clone, from the repository's root (``python -m harness.local demo``, ``python -m harness.bench``), and imports the
Lambda handlers and the stack as the top-level packages they are there. ``harness.aws_shapes`` is the one place
that builds what AWS hands the handlers (ECS task-state events, SQS events, Lambda contexts) for the local mode,
the bench and the tests.
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
