"""The benchmark harness runs end to end with tiny sizes (make bench runs the real ones)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.model import TokenBucket


def test_token_bucket_refills_at_its_rate_up_to_its_capacity() -> None:
    bucket = TokenBucket(capacity=2, per_second=1)
    bucket.take(0.0)
    bucket.take(0.0)
    assert not bucket.available(0.5)
    assert bucket.available(1.0)
    bucket.take(1.0)
    assert bucket.available(100.0) and bucket.tokens == 2


def test_bench_runs_both_executors_and_writes_the_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench import world
    from bench.__main__ import main

    for name, value in world._ENV.items():
        monkeypatch.setenv(name, value)

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
            "--out",
            str(tmp_path),
            "--no-progress",
        ]
    )

    assert code == 0
    text = (tmp_path / "bench.md").read_text()
    assert "| 10 | 1 (max 1) |" in text  # ours: one request per loop
    assert "### 2. Burst of 5 queued tasks" in text and "### Targets" in text
    assert "| tasks not reported | 0 | 0 |" in text
    assert (tmp_path / "bench.png").stat().st_size > 10_000
