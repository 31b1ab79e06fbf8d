"""Bytecode for the Lambda assets, compiled by a Python of the runtime's version (``infra/bundling.py``).

Lambda's code and layers are read-only: a module shipped without bytecode is compiled from source at every cold
start (the bench measures both: ``make bench``'s P5 lines). The bytecode is ``unchecked-hash`` (PEP 552): an
asset's zip does not keep the sources' times, and timestamp-checked bytecode would be judged stale and compiled
again on every cold start. Bytecode is specific to a Python version (``__pycache__/<module>.cpython-312.pyc``), so
only an interpreter of the runtime's version can write it: without one, the assets ship sources only and synth
says so. Free of CDK imports: the bench lays a handler out as deployed with it.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

# A Python of the runtime's version to compile with, when the one running synth is not one and none is found on
# the PATH or among pyenv's.
BYTECODE_PYTHON_VARIABLE = "LAMBDA_BYTECODE_PYTHON"


def bytecode_python(version: str) -> str | None:
    """Return a Python interpreter of ``version`` (``3.12``) to compile the assets' bytecode with, or None.

    Tried in order: ``$LAMBDA_BYTECODE_PYTHON``, the interpreter running synth, ``python<version>`` on the PATH,
    then the pyenv-installed ones of that version (pyenv's shim on the PATH runs only the versions a project or the
    global setting selects); each is run to ask its version.
    """
    return _find_python(version, os.environ.get(BYTECODE_PYTHON_VARIABLE), os.environ.get("PYENV_ROOT"))


@functools.cache
def _find_python(version: str, explicit: str | None, pyenv_root: str | None) -> str | None:
    # Once per synth: each asset asks.
    versions = Path(pyenv_root or Path.home() / ".pyenv") / "versions"
    pyenv_installed = sorted(versions.glob(f"{version}.*/bin/python{version}"), reverse=True)
    for candidate in (explicit, sys.executable, shutil.which(f"python{version}"), *pyenv_installed):
        if not candidate:
            continue
        try:
            answer = subprocess.run(
                [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except OSError:
            continue
        if answer.returncode == 0 and answer.stdout.strip() == version:
            return str(candidate)
    return None


def compile_bytecode(root: Path, python: str | None, version: str) -> bool:
    """Compile every module under ``root`` to ``unchecked-hash`` bytecode with ``python``; return whether it did.

    ``python`` None (no interpreter of the runtime's version here): nothing is compiled, and a warning says what
    the deployed cold starts pay for it.
    """
    if python is None:
        _warn_sources_only(version)
        return False
    command = [
        python,
        "-m",
        "compileall",
        "-q",
        "-j",
        "0",
        "--invalidation-mode",
        "unchecked-hash",
        str(root),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(
            f"compiling the Lambda bytecode failed:\n{(result.stdout + result.stderr)[-3000:]}"
        )
    return True


@functools.cache
def _warn_sources_only(version: str) -> None:
    print(
        f"WARNING: no Python {version} to compile the Lambda assets' bytecode with: they ship sources "
        f"only, and each cold start compiles what it imports (~2.5x the import time). Set "
        f"{BYTECODE_PYTHON_VARIABLE} to a python{version} interpreter.",
        file=sys.stderr,
    )
