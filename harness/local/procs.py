"""Process plumbing for the local mode: free ports, waiting with deadlines, process groups that always end."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    check: Callable[[], Any],
    *,
    timeout: float,
    what: str,
    interval: float = 0.2,
    alive: Callable[[], str | None] | None = None,
) -> Any:
    """Poll ``check`` until it returns something truthy; raise TimeoutError naming ``what`` at the deadline.

    ``alive`` returns a reason when waiting is pointless (a process it depends on died), which fails at once.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:
            last_error = exc
        if alive is not None and (dead := alive()):
            raise RuntimeError(f"gave up waiting for {what}: {dead}")
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            raise TimeoutError(f"{what} not ready after {timeout:.0f}s{detail}")
        time.sleep(interval)


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """Return True when ``url`` answers with a status below 500."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status) < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False


class ManagedProcess:
    """A child in its own process group, its output in a log file; ``stop()`` ends the whole group."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        log_path: Path,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log: IO[bytes] = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        # A new session: Ctrl-C in the terminal reaches only us, and we end the child's whole tree.
        self.popen = subprocess.Popen(
            self.argv,
            env=dict(env),
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def exit_reason(self) -> str | None:
        """Return why the process is gone (with its log's tail), or None while it runs."""
        code = self.popen.poll()
        if code is None:
            return None
        return f"{self.name} exited with {code}; last lines of {self.log_path}:\n{self.tail()}"

    def tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the process group (SIGKILL: a crash, nothing gets to clean up)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the group, wait up to ``grace`` seconds, then SIGKILL what is left."""
        if self.popen.poll() is None:
            self.kill(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=grace)
        # The leader may be gone while children of the group live on.
        self.kill(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)
        self._log.close()
