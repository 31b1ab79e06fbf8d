"""Lambda code packaging without Docker: a runtime layer and one small asset per handler, bundled locally.

- The runtime layer holds ``aws-lambda-powertools[parser]`` (and pydantic) installed by pip for the Lambda
  platform, plus the ``ecs_event_executor`` package (the control-plane contract; it imports Airflow lazily only).
  Versions come from ``requirements/dev.lock`` used as a pip constraints file, so the Lambdas run exactly the
  Powertools and pydantic versions the tests run. botocore is in the layer too, at the lock's version: the layer's
  trimmed botocore data (``ecs_event_executor.control.botocore_data``, written from that same version's models
  while bundling) is only read by the botocore that wrote it, not by whichever one the runtime provides.
  The pip output is cached under ``build/`` keyed on the lock,
  the platform and the Python version, so repeated synths cost a copy, not a download.
- Each function's asset holds its handler folder at ``lambdas/<name>/`` (handler ``lambdas.<name>.handler.handler``),
  the same import path the tests use.
- Both carry bytecode compiled by a Python of the runtime's version (``infra/bytecode.py``): Lambda's code is
  read-only, and a module shipped without bytecode is compiled at every cold start (the status handler's import
  took ~690 ms that way on the bench machine, ~245 ms from bytecode).

Asset hashes are computed from the inputs (lock, platform, sources), so skipping bundling in unit tests
(``aws:cdk:bundling-stacks``) keeps the template stable and needs no network.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_

from infra.bytecode import bytecode_python, compile_bytecode

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCK_FILE = REPO_ROOT / "requirements" / "dev.lock"
CONTRACT_PACKAGE = REPO_ROOT / "executor" / "ecs_event_executor"
LAMBDAS_DIR = REPO_ROOT / "lambdas"
CACHE_DIR = REPO_ROOT / "build" / "lambda-deps"

RUNTIME = lambda_.Runtime.PYTHON_3_12
PYTHON_VERSION = "3.12"
ARCHITECTURE = lambda_.Architecture.ARM_64
# Lambda's python3.12 runs on Amazon Linux 2023 (glibc 2.34): manylinux2014 and manylinux_2_28 wheels both load.
PIP_PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_28_aarch64")
# What the handlers import beyond the contract package. botocore at the lock's version rather than the runtime's:
# the trimmed data written while bundling is read only by the botocore version that wrote it.
RUNTIME_REQUIREMENTS = ("aws-lambda-powertools[parser]", "botocore")
_SKIP = ("__pycache__", "*.pyc", "*.pyo", ".mypy_cache", ".pytest_cache")


class BundlingError(RuntimeError):
    """Local bundling failed (pip could not install the runtime dependencies, or a source is missing)."""


def locked_version(package: str, lock_file: Path = LOCK_FILE) -> str:
    """Return the version ``requirements/dev.lock`` pins for ``package`` (names compared as pip normalizes them)."""
    wanted = _normalize(package)
    for line in lock_file.read_text().splitlines():
        name, sep, version = line.strip().partition("==")
        if sep and _normalize(name) == wanted:
            return version.split(";")[0].strip()
    raise BundlingError(f"{lock_file.name} pins no version of {package}")


def _normalize(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _tree_digest(root: Path, extra: Iterable[str] = ()) -> str:
    """Hash the files under ``root`` (paths and contents, caches excluded) plus ``extra`` strings."""
    h = hashlib.sha256()
    for item in extra:
        h.update(item.encode())
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not _skipped(p.relative_to(root))):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _skipped(relative: Path) -> bool:
    return any(
        part == "__pycache__" or part.startswith(".") for part in relative.parts
    ) or relative.suffix in (".pyc", ".pyo")


def dependencies_key() -> str:
    """Return the cache key of the pip-installed runtime dependencies."""
    h = hashlib.sha256(LOCK_FILE.read_bytes())
    h.update(" ".join((*RUNTIME_REQUIREMENTS, *PIP_PLATFORMS, PYTHON_VERSION)).encode())
    return h.hexdigest()[:16]


def install_dependencies(cache_dir: Path = CACHE_DIR) -> Path:
    """Install the runtime dependencies for the Lambda platform into the cache (once per key); return the dir."""
    target = cache_dir / dependencies_key()
    if (target / ".complete").exists():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="deps-", dir=cache_dir))
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", "--target", str(staging)]
    for platform in PIP_PLATFORMS:
        command += ["--platform", platform]
    command += ["--only-binary=:all:", "--implementation", "cp", "--python-version", PYTHON_VERSION]
    command += ["--constraint", str(LOCK_FILE), *RUNTIME_REQUIREMENTS]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise BundlingError(
            f"pip could not install the Lambda runtime dependencies:\n{result.stderr[-3000:]}"
        )
    # Console scripts are useless in a layer and their shebangs point at this machine's Python.
    shutil.rmtree(staging / "bin", ignore_errors=True)
    (staging / ".complete").write_text(" ".join(command))
    if target.exists():  # another synth finished first; keep its copy
        shutil.rmtree(staging, ignore_errors=True)
    else:
        os.replace(staging, target)
    return target


def _copy_tree(source: Path, destination: Path) -> None:
    shutil.copytree(source, destination, ignore=shutil.ignore_patterns(*_SKIP), dirs_exist_ok=True)


@jsii.implements(ILocalBundling)
class _LocalBundling:
    """Run a Python function instead of Docker to fill the asset's output directory."""

    def __init__(self, build: Callable[[Path], None]) -> None:
        self._build = build

    def try_bundle(self, output_dir: str, *args: Any, **kwargs: Any) -> bool:
        self._build(Path(output_dir))
        return True


def _bundling(build: Callable[[Path], None]) -> BundlingOptions:
    # The image is never pulled: local bundling always succeeds or raises.
    return BundlingOptions(
        image=DockerImage.from_registry("unused-local-bundling-only"), local=_LocalBundling(build)
    )


def runtime_layer_code() -> lambda_.Code:
    """Return the layer code: pip-installed runtime dependencies and the contract package, under ``python/``."""

    def build(output: Path) -> None:
        deps = install_dependencies()
        _copy_tree(deps, output / "python")
        (output / "python" / ".complete").unlink(missing_ok=True)
        _copy_tree(CONTRACT_PACKAGE, output / "python" / CONTRACT_PACKAGE.name)
        write_botocore_data(output / "python")
        compile_bytecode(output / "python", python, PYTHON_VERSION)

    python = bytecode_python(PYTHON_VERSION)
    digest = _tree_digest(CONTRACT_PACKAGE, extra=[dependencies_key(), _bytecode_key(python)])
    return lambda_.Code.from_asset(
        str(CONTRACT_PACKAGE),
        asset_hash=digest,
        asset_hash_type=AssetHashType.CUSTOM,
        bundling=_bundling(build),
    )


def write_botocore_data(python_dir: Path) -> Path:
    """Write the Lambdas' trimmed botocore data into the layer's copy of the contract package (``python_dir``)."""
    from ecs_event_executor.control import botocore_data

    control = python_dir / CONTRACT_PACKAGE.name / "control"
    return botocore_data.write(control / botocore_data.BUNDLED_DIR.name)


def handler_code(name: str) -> lambda_.Code:
    """Return one handler's code asset: ``lambdas/<name>/`` and nothing else."""
    source = LAMBDAS_DIR / name
    if not (source / "handler.py").is_file():
        raise BundlingError(f"{source / 'handler.py'} does not exist")

    def build(output: Path) -> None:
        _copy_tree(source, output / "lambdas" / name)
        compile_bytecode(output / "lambdas", python, PYTHON_VERSION)

    python = bytecode_python(PYTHON_VERSION)
    return lambda_.Code.from_asset(
        str(source),
        asset_hash=_tree_digest(source, extra=[name, _bytecode_key(python)]),
        asset_hash_type=AssetHashType.CUSTOM,
        bundling=_bundling(build),
    )


def _bytecode_key(python: str | None) -> str:
    # An asset with bytecode differs from one without: a deploy from a machine that can compile it replaces one
    # that could not.
    return f"bytecode {PYTHON_VERSION} unchecked-hash" if python else "sources only"


def handler_path(name: str) -> str:
    """Return the Lambda handler string for ``lambdas/<name>/handler.py``'s ``handler`` function."""
    return f"lambdas.{name}.handler.handler"
