"""The whole local system: moto_server, the control plane process, and a real Airflow (api-server, scheduler,
dag-processor, triggerer) configured with EcsEventExecutor through ordinary Airflow configuration (``AIRFLOW__…``).

Every process runs in its own process group and is ended by ``stop()``, which also runs at exit and on SIGTERM.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from ecs_event_executor.control.tasks.item import TaskItem
from ecs_event_executor.control.tasks.schema import Attr

from harness import REPO_ROOT
from harness.local.procs import ManagedProcess, free_port, http_ok, wait_until
from harness.local.resources import LocalResources, create_resources, session
from harness.local.runner import Faults
from harness.local.spec import local_resources_spec

log = logging.getLogger(__name__)

VENV_BIN = Path(sys.executable).parent
EXAMPLES = REPO_ROOT / "examples"
# Startup deadlines on a busy 2-core machine: Airflow's imports alone take several seconds per process.
MIGRATE_TIMEOUT = 300.0
READY_TIMEOUT = 180.0

# Airflow settings the local mode needs beyond the executor's: quick failure detection so an adopting scheduler
# does not wait minutes, and no example DAGs.
LOCAL_AIRFLOW_DEFAULTS = {
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
    "AIRFLOW__API__WORKERS": "1",
    "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "10",
    "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "5",
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "5",
    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
    "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
}


# The Airflow CLI's environment file under the state directory, written by ``up``.
CLI_ENV_FILE = "airflow.env"
# Printed masked: the API server's token-signing secret (random per run, local only).
CLI_SECRETS = frozenset({"AIRFLOW__API_AUTH__JWT_SECRET"})


@dataclass
class StackOptions:
    """How to run the local system."""

    state_dir: Path | None = None  # default: a fresh directory under .local/
    dags_folder: Path = EXAMPLES
    concurrency: int = 2
    faults: Faults = field(default_factory=Faults)
    airflow_config: dict[str, str] = field(default_factory=dict)  # extra AIRFLOW__… values
    use_template: bool = True
    keep_state: bool = True


class LocalStack:
    """Start, inspect and stop the local system."""

    def __init__(self, options: StackOptions | None = None) -> None:
        self.options = options or StackOptions()
        base = REPO_ROOT / ".local"
        base.mkdir(parents=True, exist_ok=True)
        self.state_dir = self.options.state_dir or Path(tempfile.mkdtemp(prefix="run-", dir=base))
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.airflow_home = self.state_dir / "airflow"
        self.processes: dict[str, ManagedProcess] = {}
        self.resources: LocalResources | None = None
        self.api_port = 0
        self.airflow_env: dict[str, str] = {}
        self._stopped = False

    # ------------------------------------------------------------------ start

    def start(self) -> LocalStack:
        atexit.register(self.stop)
        self.start_aws()
        self.start_control_plane()
        self.start_airflow()
        return self

    def start_aws(self) -> LocalResources:
        """Start moto_server and create the stack's resources in it."""
        port = free_port()
        endpoint = f"http://127.0.0.1:{port}"
        self.processes["moto"] = ManagedProcess(
            "moto_server",
            [
                sys.executable,
                "-m",
                "harness.local.moto_server",
                "-H",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            env=_clean_env(),
            cwd=REPO_ROOT,
            log_path=self.state_dir / "logs" / "moto.log",
        )
        wait_until(
            lambda: http_ok(f"{endpoint}/moto-api/"),
            timeout=60,
            what="moto_server",
            alive=self.processes["moto"].exit_reason,
        )
        template, origin = local_resources_spec(use_template=self.options.use_template)
        self.resources = create_resources(endpoint, template, origin=origin)
        self.resources.save(self.state_dir / "resources.json")
        log.info("local AWS at %s; resources from %s", endpoint, origin)
        return self.resources

    def start_control_plane(self) -> None:
        """Start the handlers' pollers and the local ECS runner in their own process."""
        assert self.resources is not None
        self.airflow_env = self._airflow_env()
        (self.state_dir / "container_env.json").write_text(json.dumps(self.airflow_env))
        ready = self.state_dir / "control_plane.ready"
        ready.unlink(missing_ok=True)
        faults = self.options.faults
        flags = [
            flag
            for flag, on in (
                ("--duplicate-deliveries", faults.duplicate_deliveries),
                ("--shuffle-events", faults.shuffle_events),
                ("--duplicate-events", faults.duplicate_events),
                ("--hold-first-launch", faults.hold_first_launch),
            )
            if on
        ]
        env = _clean_env() | {
            "AWS_ENDPOINT_URL": self.resources.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": self.resources.region,
            "AWS_REGION": self.resources.region,
            "POWERTOOLS_LOG_LEVEL": "WARNING",
        }
        self.processes["control-plane"] = ManagedProcess(
            "control plane",
            [
                sys.executable,
                "-m",
                "harness.local",
                "control-plane",
                "--state-dir",
                str(self.state_dir),
                "--concurrency",
                str(self.options.concurrency),
                *flags,
            ],
            env=env,
            cwd=REPO_ROOT,
            log_path=self.state_dir / "logs" / "control-plane.log",
        )
        wait_until(
            ready.exists, timeout=60, what="control plane", alive=self.processes["control-plane"].exit_reason
        )

    def _airflow_env(self) -> dict[str, str]:
        assert self.resources is not None
        self.api_port = self.api_port or free_port()
        home = self.airflow_home
        home.mkdir(parents=True, exist_ok=True)
        env = _clean_env() | LOCAL_AIRFLOW_DEFAULTS
        env |= {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__EXECUTOR": "ecs_event_executor.EcsEventExecutor",
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.options.dags_folder),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.api_port}/execution/",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{self.api_port}",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            # The executor's settings, exactly as the stack's outputs print them for a deployed scheduler.
            **self.resources.airflow_env,
            # Every try's log after it ended, as a deployed API server reads it (docs/executor.md, "Task logs").
            "AIRFLOW__LOGGING__LOGGING_CONFIG_CLASS": "ecs_event_executor.log_config.LOGGING_CONFIG",
            # The connection the executor uses (conn_id aws_default), pointed at moto_server; dummy credentials.
            "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(
                {
                    "conn_type": "aws",
                    "extra": {"endpoint_url": self.resources.endpoint, "region_name": self.resources.region},
                }
            ),
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": self.resources.region,
        }
        env |= self.options.airflow_config
        return env

    def start_airflow(self) -> None:
        """Migrate the metadata database, then start the api-server, the dag-processor and the scheduler."""
        airflow = str(VENV_BIN / "airflow")
        migrate_log = self.state_dir / "logs" / "db-migrate.log"
        migrate_log.parent.mkdir(parents=True, exist_ok=True)
        with open(migrate_log, "ab") as out:
            subprocess.run(
                [airflow, "db", "migrate"],
                env=self.airflow_env,
                stdout=out,
                stderr=subprocess.STDOUT,
                check=True,
                timeout=MIGRATE_TIMEOUT,
            )
        self.processes["api-server"] = ManagedProcess(
            "airflow api-server",
            [airflow, "api-server", "--host", "127.0.0.1", "--port", str(self.api_port)],
            env=self.airflow_env,
            log_path=self.state_dir / "logs" / "api-server.log",
        )
        self.processes["dag-processor"] = ManagedProcess(
            "airflow dag-processor",
            [airflow, "dag-processor"],
            env=self.airflow_env,
            log_path=self.state_dir / "logs" / "dag-processor.log",
        )
        # Deferrable operators hand their wait to the triggerer; without one they stay deferred for ever.
        self.processes["triggerer"] = ManagedProcess(
            "airflow triggerer",
            [airflow, "triggerer"],
            env=self.airflow_env,
            log_path=self.state_dir / "logs" / "triggerer.log",
        )
        self.start_scheduler()
        wait_until(
            lambda: http_ok(f"{self.api_url}/api/v2/version"),
            timeout=READY_TIMEOUT,
            what="airflow api-server",
            alive=self._airflow_dead,
        )
        self.wait_scheduler_healthy()

    def start_scheduler(self) -> None:
        self.processes["scheduler"] = ManagedProcess(
            "airflow scheduler",
            [str(VENV_BIN / "airflow"), "scheduler"],
            env=self.airflow_env,
            log_path=self.state_dir / "logs" / "scheduler.log",
        )

    def kill_scheduler(self) -> None:
        """SIGKILL the scheduler's whole process group: a crash, nothing gets to clean up."""
        proc = self.processes.pop("scheduler")
        proc.kill(signal.SIGKILL)
        proc.stop(grace=0)

    def wait_scheduler_healthy(self, timeout: float = READY_TIMEOUT) -> None:
        def healthy() -> bool:
            status = self.api("GET", "/api/v2/monitor/health")
            return bool(status.get("scheduler", {}).get("status") == "healthy")

        wait_until(healthy, timeout=timeout, what="airflow scheduler heartbeat", alive=self._airflow_dead)

    def _airflow_dead(self) -> str | None:
        for name in ("api-server", "scheduler", "dag-processor", "triggerer", "control-plane", "moto"):
            proc = self.processes.get(name)
            if proc is not None and (reason := proc.exit_reason()):
                return reason
        return None

    # ------------------------------------------------------- Airflow CLI environment

    def cli_environment_lines(self, *, reveal_secrets: bool = True) -> list[str]:
        """Return ``export`` lines that point the Airflow CLI (and boto3) at this local system.

        Without ``reveal_secrets`` the API's JWT signing secret reads ``<in the file>``, for printing.
        """
        env = {key: value for key, value in self.airflow_env.items() if key.startswith(("AIRFLOW", "AWS_"))}
        if self.resources is not None:
            env["AWS_ENDPOINT_URL"] = self.resources.endpoint
        lines = [f'export PATH={shlex.quote(str(VENV_BIN))}:"$PATH"']
        for key, value in sorted(env.items()):
            shown = value if reveal_secrets or key not in CLI_SECRETS else "<in the file>"
            lines.append(f"export {key}={shlex.quote(shown)}")
        return lines

    def write_cli_environment(self) -> Path:
        """Write the CLI's environment lines to ``<state dir>/airflow.env`` (owner-only: it holds a secret)."""
        path = self.state_dir / CLI_ENV_FILE
        path.touch(mode=0o600)
        path.write_text("# source this file to use the Airflow CLI against the local mode\n")
        with path.open("a") as out:
            out.write("\n".join(self.cli_environment_lines()) + "\n")
        return path

    # ---------------------------------------------------------------- inspect

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """Call Airflow's REST API (the simple auth manager treats every caller as admin locally)."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            f"{self.api_url}{path}", data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read() or b"null")

    def wait_dag(self, dag_id: str, timeout: float = READY_TIMEOUT) -> None:
        wait_until(
            lambda: self.api("GET", f"/api/v2/dags/{dag_id}"),
            timeout=timeout,
            what=f"DAG {dag_id} parsed",
            alive=self._airflow_dead,
        )

    def trigger(self, dag_id: str, run_id: str | None = None) -> str:
        body: dict[str, Any] = {"logical_date": None, "conf": {}}
        if run_id:
            body["dag_run_id"] = run_id
        return str(self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", body)["dag_run_id"])

    def dag_run_state(self, dag_id: str, run_id: str) -> str:
        return str(self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"])

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return list(
            self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=1000")[
                "task_instances"
            ]
        )

    def client(self, service: str) -> Any:
        assert self.resources is not None
        return session(self.resources.endpoint)(service)

    def items(self) -> list[TaskItem]:
        """Every task item in the table (a scan: for inspection, never on the data path)."""
        assert self.resources is not None
        ddb = self.client("dynamodb")
        items: list[TaskItem] = []
        kwargs: dict[str, Any] = {"TableName": self.resources.table_name, "ConsistentRead": True}
        while True:
            resp = ddb.scan(**kwargs)
            # The table also holds the control plane's heartbeat, which is not a task (it has no state).
            items.extend(TaskItem.from_raw(raw) for raw in resp.get("Items", []) if Attr.STATE in raw)
            if "LastEvaluatedKey" not in resp:
                return items
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def journal(self) -> list[dict[str, Any]]:
        """What the control plane did: RunTask calls, local task processes started, stopped and finished."""
        path = self.state_dir / "journal.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def logs(self) -> Iterator[tuple[str, str]]:
        for name, proc in self.processes.items():
            yield name, str(proc.log_path)

    # ------------------------------------------------------------------- stop

    def stop(self) -> None:
        """Stop everything this stack started (Airflow first, so nothing launches while AWS goes away)."""
        if self._stopped:
            return
        self._stopped = True
        for name in ("scheduler", "triggerer", "dag-processor", "api-server", "control-plane", "moto"):
            proc = self.processes.pop(name, None)
            if proc is not None:
                proc.stop(grace=10 if name != "moto" else 2)
        if not self.options.keep_state:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stop_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt, so ``with LocalStack()`` cleans up as it does on Ctrl-C."""

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)


def _clean_env() -> dict[str, str]:
    """This process's environment without AWS or Airflow settings that could point anything at real AWS."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "AIRFLOW", "BOTO", "PYTEST", "POWERTOOLS"))
    }
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def monotonic_since(start: float) -> float:
    return time.monotonic() - start
