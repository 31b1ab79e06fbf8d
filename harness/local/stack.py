"""The whole local system: moto_server, the control plane process, and a real Airflow (api-server, scheduler,
dag-processor, triggerer) configured with EcsEventExecutor through ordinary Airflow configuration (``AIRFLOW__…``).

The Airflow is this virtualenv's (3.3) or another one's (``StackOptions.airflow_venv``, e.g. ``.compat/airflow-2.11``
with the executor installed editable): its ``airflow`` and ``python`` run the Airflow processes and every local
ECS task, while moto_server and the control plane stay in this virtualenv. Airflow 2.11 runs ``webserver`` (the
REST API ``/api/v1``), ``scheduler`` (which parses the DAGs itself) and ``triggerer``, on an embedded PostgreSQL
(``harness.local.postgres``): 2.11 refuses SQLite beside a parallel executor.

Every process runs in its own process group and is ended by ``stop()``, which also runs at exit and on SIGTERM.
"""

from __future__ import annotations

import atexit
import importlib.metadata
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
# Printed masked: the API server's token-signing secret and 2.11's webserver session key (random per run, local
# only), and the metadata database's address (on ECS an injected secret).
CLI_SECRETS = frozenset(
    {"AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__WEBSERVER__SECRET_KEY", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"}
)
# Airflow 2.11's webserver: one gunicorn worker, the REST API without login (local only, on 127.0.0.1).
AIRFLOW2_WEBSERVER_DEFAULTS = {
    "AIRFLOW__WEBSERVER__WORKERS": "1",
    "AIRFLOW__API__AUTH_BACKENDS": "airflow.api.auth.backend.default",
    "AIRFLOW__WEBSERVER__WEB_SERVER_HOST": "127.0.0.1",
}
# Its Flask-AppBuilder config ($AIRFLOW_HOME/webserver_config.py): callers without login are admins, as Airflow 3's
# simple auth manager makes them locally (SIMPLE_AUTH_MANAGER_ALL_ADMINS).
AIRFLOW2_WEBSERVER_CONFIG = """\
from flask_appbuilder.const import AUTH_DB

AUTH_TYPE = AUTH_DB
AUTH_ROLE_PUBLIC = "Admin"
"""
DATABASE_TIMEOUT = 120.0


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
    # The virtualenv whose Airflow runs (None: this one's). The executor must be installed in it.
    airflow_venv: Path | None = None


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
        self.airflow_bin = (
            (self.options.airflow_venv / "bin").absolute() if self.options.airflow_venv else VENV_BIN
        )
        self.airflow_version = installed_airflow_version(self.airflow_bin)
        # Airflow 2 (2.11): webserver and /api/v1, the DAG processor inside the scheduler, PostgreSQL.
        self.airflow2 = self.airflow_version.split(".")[0] == "2"
        self.database_url = f"sqlite:///{self.airflow_home}/airflow.db"
        self._stopped = False

    # ------------------------------------------------------------------ start

    def start(self) -> LocalStack:
        atexit.register(self.stop)
        self.start_aws()
        self.start_database()
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

    def start_database(self) -> None:
        """Start the metadata database Airflow 2.11 needs (PostgreSQL); Airflow 3 uses SQLite, nothing to start."""
        if not self.airflow2:
            return
        url_file = self.state_dir / "database.url"
        url_file.unlink(missing_ok=True)
        self.processes["postgres"] = ManagedProcess(
            "postgres",
            [
                str(self.airflow_bin / "python"),
                "-m",
                "harness.local.postgres",
                "--pgdata",
                str(self.state_dir / "postgres"),
                "--url-file",
                str(url_file),
            ],
            env=_clean_env(self.airflow_bin),
            cwd=REPO_ROOT,
            log_path=self.state_dir / "logs" / "postgres.log",
        )
        wait_until(
            url_file.exists,
            timeout=DATABASE_TIMEOUT,
            what="postgres",
            alive=self.processes["postgres"].exit_reason,
        )
        self.database_url = url_file.read_text().strip()

    def start_control_plane(self) -> None:
        """Start the handlers' pollers and the local ECS runner in their own process."""
        assert self.resources is not None
        self.airflow_env = self._airflow_env()
        # Owner-only: the runner's container environment holds the database URL and the API's signing secret.
        container_env = self.state_dir / "container_env.json"
        container_env.touch(mode=0o600)
        container_env.write_text(json.dumps(self.airflow_env))
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
        # PATH starts with the Airflow's virtualenv: every Airflow process and every local task (the runner's
        # container command, ``airflow tasks run`` or ``python -m ...``) runs that Airflow.
        env = _clean_env(self.airflow_bin) | LOCAL_AIRFLOW_DEFAULTS
        env |= {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__EXECUTOR": "ecs_event_executor.EcsEventExecutor",
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.options.dags_folder),
            # On ECS the worker gets this from the task definition's secret (the stack's metadataDbSecretArn);
            # locally the runner passes the same variable in the container environment.
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.database_url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.api_port}/execution/",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{self.api_port}",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            # The executor's settings, exactly as the stack's outputs print them for a deployed scheduler.
            **self.resources.airflow_env,
            # The local "image" is the Airflow virtualenv itself (the stack's setting names the worker image's).
            "AIRFLOW__ECS_EVENT_EXECUTOR__WORKER_AIRFLOW_VERSION": self.airflow_version,
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
            # boto3's own setting, for an Airflow without the Amazon provider (the .compat virtualenvs): the
            # executor then builds its clients with boto3's defaults and never reads the connection.
            "AWS_ENDPOINT_URL": self.resources.endpoint,
        }
        if self.airflow2:
            (home / "webserver_config.py").write_text(AIRFLOW2_WEBSERVER_CONFIG)
            env |= AIRFLOW2_WEBSERVER_DEFAULTS | {
                "AIRFLOW__WEBSERVER__WEB_SERVER_PORT": str(self.api_port),
                "AIRFLOW__WEBSERVER__BASE_URL": f"http://127.0.0.1:{self.api_port}",
                "AIRFLOW__WEBSERVER__SECRET_KEY": secrets.token_urlsafe(32),
            }
        env |= self.options.airflow_config
        return env

    def start_airflow(self) -> None:
        """Migrate the metadata database, then start the api-server (2.11: webserver), the dag-processor (2.11: in
        the scheduler), the triggerer and the scheduler."""
        airflow = str(self.airflow_bin / "airflow")
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
        if self.airflow2:
            self.processes["webserver"] = ManagedProcess(
                "airflow webserver",
                [
                    airflow,
                    "webserver",
                    "--hostname",
                    "127.0.0.1",
                    "--port",
                    str(self.api_port),
                    "--workers",
                    "1",
                ],
                env=self.airflow_env,
                log_path=self.state_dir / "logs" / "webserver.log",
            )
        else:
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
            lambda: http_ok(f"{self.api_url}{self.api_root}/version"),
            timeout=READY_TIMEOUT,
            what="airflow api-server",
            alive=self._airflow_dead,
        )
        self.wait_scheduler_healthy()

    def start_scheduler(self) -> None:
        self.processes["scheduler"] = ManagedProcess(
            "airflow scheduler",
            [str(self.airflow_bin / "airflow"), "scheduler"],
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
            status = self.api("GET", "/api/v1/health" if self.airflow2 else "/api/v2/monitor/health")
            return bool(status.get("scheduler", {}).get("status") == "healthy")

        wait_until(healthy, timeout=timeout, what="airflow scheduler heartbeat", alive=self._airflow_dead)

    def _airflow_dead(self) -> str | None:
        for name in (
            "api-server",
            "webserver",
            "scheduler",
            "dag-processor",
            "triggerer",
            "control-plane",
            "postgres",
            "moto",
        ):
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
        lines = [f'export PATH={shlex.quote(str(self.airflow_bin))}:"$PATH"']
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

    @property
    def api_root(self) -> str:
        """The REST API's prefix: Airflow 2's ``/api/v1`` (webserver) or 3's ``/api/v2`` (api-server)."""
        return "/api/v1" if self.airflow2 else "/api/v2"

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
            lambda: self.api("GET", f"{self.api_root}/dags/{dag_id}"),
            timeout=timeout,
            what=f"DAG {dag_id} parsed",
            alive=self._airflow_dead,
        )

    def trigger(self, dag_id: str, run_id: str | None = None) -> str:
        # Airflow 3 needs logical_date (null: none); 2's /api/v1 takes none (it defaults to now).
        body: dict[str, Any] = {"conf": {}} if self.airflow2 else {"logical_date": None, "conf": {}}
        if run_id:
            body["dag_run_id"] = run_id
        return str(self.api("POST", f"{self.api_root}/dags/{dag_id}/dagRuns", body)["dag_run_id"])

    def dag_run_state(self, dag_id: str, run_id: str) -> str:
        return str(self.api("GET", f"{self.api_root}/dags/{dag_id}/dagRuns/{run_id}")["state"])

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return list(
            self.api("GET", f"{self.api_root}/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=1000")[
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

    def running_on_ecs(self) -> set[str]:
        """Return the ARNs of the tasks whose process the local ECS started and that have not finished (the items
        stay PENDING until their task stops: the ECS rule does not deliver plain RUNNING)."""
        started: set[str] = set()
        for entry in self.journal():
            if entry.get("kind") == "started":
                started.add(entry["arn"])
            elif entry.get("kind") in ("finished", "start_failed"):
                started.discard(entry["arn"])
        return started

    def logs(self) -> Iterator[tuple[str, str]]:
        for name, proc in self.processes.items():
            yield name, str(proc.log_path)

    # ------------------------------------------------------------------- stop

    def stop(self) -> None:
        """Stop everything this stack started (Airflow first, so nothing launches while AWS goes away)."""
        if self._stopped:
            return
        self._stopped = True
        for name in (
            "scheduler",
            "triggerer",
            "dag-processor",
            "api-server",
            "webserver",
            "control-plane",
            "postgres",
            "moto",
        ):
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


def _clean_env(bin_dir: Path = VENV_BIN) -> dict[str, str]:
    """This process's environment without AWS or Airflow settings that could point anything at real AWS, with
    ``bin_dir`` first on PATH."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "AIRFLOW", "BOTO", "PYTEST", "POWERTOOLS"))
    }
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def installed_airflow_version(bin_dir: Path) -> str:
    """Return the version of the Airflow installed beside ``bin_dir``'s python (read from its metadata: quick)."""
    if bin_dir == VENV_BIN:
        return importlib.metadata.version("apache-airflow")
    python = bin_dir / "python"
    if not python.exists():
        raise FileNotFoundError(
            f"no virtualenv at {bin_dir.parent} (make .compat/airflow-X.Y/.installed makes one)"
        )
    out = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('apache-airflow'))"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return out.stdout.strip()


def monotonic_since(start: float) -> float:
    return time.monotonic() - start
