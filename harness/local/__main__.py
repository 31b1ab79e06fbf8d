"""``python -m harness.local up|demo`` (and ``control-plane``, which ``up`` starts itself)."""

from __future__ import annotations

import sys

from harness.local.cli import main

if __name__ == "__main__":
    sys.exit(main())
