"""Fixtures for the CDK tests: one real ``npx cdk synth`` and one in-process synth (with cdk-nag) per session."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Template

from infra import NODE_BANNER_VARIABLE, NODE_MAJOR_VERSIONS
from infra.stack import STACK_ID, EcsEventExecutorStack
from infra.template import build_app

REPO_ROOT = Path(__file__).resolve().parents[2]
# Generous: the first run installs the Lambda dependencies into build/ (later runs copy them from there).
CLI_SYNTH_TIMEOUT_SECONDS = 600


@dataclass(frozen=True)
class CliSynth:
    """The cloud assembly that the real CDK CLI wrote."""

    outdir: Path
    template_path: Path
    template: dict[str, Any]
    seconds: float
    stderr: str

    def asset_dir(self, logical_id_prefix: str) -> Path:
        """Return the staged asset directory of the first resource whose logical id starts with the prefix."""
        for logical_id, resource in self.template["Resources"].items():
            if logical_id.startswith(logical_id_prefix):
                return self.outdir / resource["Metadata"]["aws:asset:path"]
        raise KeyError(logical_id_prefix)


def offline_environment() -> dict[str, str]:
    """Return this process's environment without AWS credentials or profiles, with the venv first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CDK_"))}
    env.update(
        {
            "AWS_EC2_METADATA_DISABLED": "true",  # no instance-metadata credential lookups
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            NODE_BANNER_VARIABLE: NODE_MAJOR_VERSIONS,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        }
    )
    return env


@pytest.fixture(scope="session")
def cli_synth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliSynth]:
    """Run ``npx cdk synth`` once, offline and without credentials, into a temporary directory."""
    if shutil.which("npx") is None or not (REPO_ROOT / "node_modules" / ".bin" / "cdk").exists():
        pytest.fail("the CDK CLI is not installed: run `make setup` (npm ci)")
    outdir = tmp_path_factory.mktemp("cdk.out")
    command = ["npx", "--no-install", "cdk", "synth", "--quiet", "--no-notices", "--output", str(outdir)]
    started = time.monotonic()
    result = subprocess.run(
        command,
        cwd=REPO_ROOT,
        env=offline_environment(),
        capture_output=True,
        text=True,
        timeout=CLI_SYNTH_TIMEOUT_SECONDS,
        check=False,
    )
    seconds = time.monotonic() - started
    assert result.returncode == 0, (
        f"cdk synth failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    )
    template_path = outdir / f"{STACK_ID}.template.json"
    yield CliSynth(outdir, template_path, json.loads(template_path.read_text()), seconds, result.stderr)


@dataclass(frozen=True)
class InProcessSynth:
    stack: EcsEventExecutorStack
    template: Template
    outdir: Path


def synth_in_process(outdir: Path, **overrides: Any) -> InProcessSynth:
    """Synthesize with cdk-nag's AwsSolutions checks (synth raises on an unacknowledged finding)."""
    app, stack = build_app(overrides, nag=True, outdir=str(outdir))
    assembly = app.synth()
    return InProcessSynth(
        stack, Template.from_json(assembly.get_stack_by_name(stack.stack_name).template), outdir
    )


@pytest.fixture(scope="session")
def default_synth(tmp_path_factory: pytest.TempPathFactory) -> InProcessSynth:
    """The stack with cdk.json's defaults (new VPC, cluster and task definition)."""
    return synth_in_process(tmp_path_factory.mktemp("default"))


@pytest.fixture(scope="session")
def template(default_synth: InProcessSynth) -> Template:
    return default_synth.template


EXISTING: dict[str, Any] = {
    "account": "123456789012",
    "region": "eu-west-1",
    "availabilityZones": ["eu-west-1a", "eu-west-1b"],
    "vpcId": "vpc-0123456789abcdef0",
    "subnetIds": ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"],
    "securityGroupIds": ["sg-0123456789abcdef0"],
    "assignPublicIp": False,
    "cluster": "arn:aws:ecs:eu-west-1:123456789012:cluster/airflow-prod",
    "taskDefinitionArn": "arn:aws:ecs:eu-west-1:123456789012:task-definition/airflow-worker:42",
    "taskRoleArn": "arn:aws:iam::123456789012:role/airflow-worker-task",
    "executionRoleArn": "arn:aws:iam::123456789012:role/airflow-worker-execution",
    "logGroupName": "/ecs/airflow-worker",
    "launchType": None,
    "capacityProviderStrategy": [
        {"capacityProvider": "FARGATE_SPOT", "weight": 3},
        {"capacityProvider": "FARGATE", "weight": 1},
    ],
    "alarmTopicArn": "arn:aws:sns:eu-west-1:123456789012:ops-alarms",
    "reconcileEveryMinutes": 2,
    "reconcileStaleAfterSeconds": 900,
}


@pytest.fixture(scope="session")
def existing_synth(tmp_path_factory: pytest.TempPathFactory) -> InProcessSynth:
    """The stack on an existing VPC, cluster and task definition, in a fixed account and region."""
    return synth_in_process(tmp_path_factory.mktemp("existing"), **EXISTING)
