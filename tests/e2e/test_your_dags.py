"""``python -m harness.local up --dags-folder <dir> --airflow-config ...``, run as a user runs it: a DAG of one's
own with a deferrable sensor runs to success (the triggerer finishes the wait, a second launch of the same try
completes it), the setting reaches the worker, and the printed environment file drives the Airflow CLI."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import REPO_ROOT
from harness.local.procs import wait_until

pytestmark = pytest.mark.e2e

DAGS = Path(__file__).resolve().parent / "dags_yours"
DAG_ID = "deferrable_wait"
MARKER = "from-the-command-line"
START_TIMEOUT = 300.0


class UpProcess:
    """``python -m harness.local up`` in its own session; its output collected line by line."""

    def __init__(self, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "AWS_", "PYTEST"))}
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "harness.local", "up", *args],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []

    def wait_for_line(self, pattern: str, timeout: float) -> re.Match[str]:
        """Read output until a line matches ``pattern``; fail with the output if the process ends first."""
        assert self.popen.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.popen.stdout.readline()
            if not line and self.popen.poll() is not None:
                break
            self.lines.append(line.rstrip("\n"))
            if match := re.search(pattern, line):
                return match
        raise AssertionError(f"no line matching {pattern!r}; output:\n" + "\n".join(self.lines))

    def stop(self) -> int:
        """SIGTERM ``up`` (it stops everything it started) and return its exit code."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            return self.popen.wait(timeout=10)


@pytest.fixture(scope="module")
def up() -> Iterator[tuple[UpProcess, str, Path]]:
    process = UpProcess("--dags-folder", str(DAGS), "--airflow-config", f"local_mode_e2e.marker={MARKER}")
    try:
        api_url = process.wait_for_line(r"Airflow UI/API: (\S+)", START_TIMEOUT).group(1)
        env_file = Path(process.wait_for_line(r"source (\S+)", 30).group(1))
        process.wait_for_line(r"Ctrl-C stops everything", 30)
        yield process, api_url, env_file
    finally:
        process.stop()


def _api(api_url: str, method: str, path: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        f"{api_url}{path}", data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read() or b"null")


def test_a_deferrable_sensor_in_your_dags_folder_runs_to_success(up: tuple[UpProcess, str, Path]) -> None:
    process, api_url, env_file = up
    printed = "\n".join(process.lines)
    assert f"DAGs folder: {DAGS}" in printed
    assert "end-of-life" not in printed  # no Node banner
    wait_until(
        lambda: _api(api_url, "GET", f"/api/v2/dags/{DAG_ID}"),
        timeout=120,
        what="DAG parsed",
        alive=lambda: str(_api(api_url, "GET", "/api/v2/importErrors")["import_errors"] or "") or None,
    )
    run_id = _api(api_url, "POST", f"/api/v2/dags/{DAG_ID}/dagRuns", {"logical_date": None})["dag_run_id"]

    def run_state() -> str | None:
        state = _api(api_url, "GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}")["state"]
        return str(state) if state in ("success", "failed") else None

    assert wait_until(run_state, timeout=240, interval=2, what="the run to finish") == "success"
    tis = _api(api_url, "GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances")["task_instances"]
    assert {ti["task_id"]: ti["state"] for ti in tis} == {"wait": "success", "read_setting": "success"}
    # The sensor deferred: its one try ran twice on ECS, before and after the triggerer's wait.
    wait_ti = next(ti for ti in tis if ti["task_id"] == "wait")
    assert wait_ti["try_number"] == 1
    state_dir = env_file.parent
    journal = [json.loads(line) for line in (state_dir / "journal.jsonl").read_text().splitlines() if line]
    started = [r for r in journal if r["kind"] == "started" and (r.get("ti") or {}).get("task_id") == "wait"]
    assert len(started) == 2, started
    assert "trigger" in (state_dir / "logs" / "triggerer.log").read_text().lower()
    # --airflow-config reached the worker.
    xcom = _api(
        api_url,
        "GET",
        f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/read_setting/xcomEntries/return_value",
    )
    assert MARKER in str(xcom["value"])


def test_the_printed_environment_file_drives_the_airflow_cli(up: tuple[UpProcess, str, Path]) -> None:
    _, _, env_file = up
    assert env_file.stat().st_mode & 0o077 == 0  # it holds the API's signing secret
    result = subprocess.run(
        ["bash", "-c", f"source {env_file} && airflow dags list --output json"],
        env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")},
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    # Airflow may log a warning first; the JSON is the last line.
    dags = {dag["dag_id"]: dag for dag in json.loads(result.stdout.strip().splitlines()[-1])}
    assert Path(dags[DAG_ID]["fileloc"]).parent == DAGS
