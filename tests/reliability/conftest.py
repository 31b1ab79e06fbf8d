"""The fault-injection suite's figures: each test records one line, printed together at the end of the run."""

from __future__ import annotations

from collections.abc import Callable

import pytest

_LINES = pytest.StashKey[list[str]]()


@pytest.fixture
def figure(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Record this test's figure line (e.g. ``R1 duplicate tasks: 0 of 500``)."""
    lines = request.config.stash.setdefault(_LINES, [])

    def record(line: str) -> None:
        print(line)
        lines.append(line)

    return record


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    lines = config.stash.get(_LINES, [])
    if lines:
        terminalreporter.section("reliability figures")
        for line in sorted(lines):
            terminalreporter.write_line(line)
