"""The worker image: worker/Dockerfile (the scheduler's Airflow, your DAGs and requirements, no executor package),
built as a CDK image asset when ``workerImage`` is set, with synth needing no Docker either way; the workers'
Airflow version reaches the scheduler as a stack output."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Template

from harness import REPO_ROOT
from infra.bundling import locked_version
from infra.settings import Settings, SettingsError, WorkerImage, load_settings
from tests.infra.conftest import EXISTING, InProcessSynth, synth_in_process
from tests.infra.helpers import only

DOCKERFILE = REPO_ROOT / "worker" / "Dockerfile"
VERSION_OUTPUT = "AIRFLOW__ECS_EVENT_EXECUTOR__WORKER_AIRFLOW_VERSION="


def _container(template: Template) -> dict[str, Any]:
    _, task_definition = only(template, "AWS::ECS::TaskDefinition")
    (container,) = task_definition["Properties"]["ContainerDefinitions"]
    return dict(container)


def _outputs(template: Template) -> dict[str, Any]:
    return {name: output["Value"] for name, output in template.to_json().get("Outputs", {}).items()}


def _docker_assets(outdir: Path) -> dict[str, Any]:
    manifest = json.loads(next(outdir.glob("*.assets.json")).read_text())
    return dict(manifest.get("dockerImages", {}))


@pytest.fixture(scope="module")
def built_synth(tmp_path_factory: pytest.TempPathFactory) -> InProcessSynth:
    """The stack with workerImage set, synthesized with no docker on PATH."""
    saved = os.environ["PATH"]
    docker_free = [d for d in saved.split(os.pathsep) if not (Path(d) / "docker").exists()]
    os.environ["PATH"] = os.pathsep.join(docker_free)
    try:
        assert shutil.which("docker") is None
        return synth_in_process(
            tmp_path_factory.mktemp("worker-image"),
            workerImage={"airflowVersion": "3.3.1", "pythonVersion": "3.11"},
        )
    finally:
        os.environ["PATH"] = saved


def test_the_dockerfile_builds_the_schedulers_airflow_with_your_dags_and_no_executor_package() -> None:
    text = DOCKERFILE.read_text()
    scheduler_airflow = locked_version("apache-airflow")
    # The default version is the one the scheduler side is locked to, and the settings' default follows it.
    assert f"ARG AIRFLOW_VERSION={scheduler_airflow}\n" in text
    assert WorkerImage().airflow_version == scheduler_airflow
    assert re.search(r"^FROM apache/airflow:\$\{AIRFLOW_VERSION\}-python\$\{PYTHON_VERSION\}$", text, re.M)
    assert re.search(r"^COPY .*\$\{DAGS_FOLDER\} /opt/airflow/dags$", text, re.M)
    assert re.search(r'^RUN pip install .*"apache-airflow==\$\{AIRFLOW_VERSION\}" -r ', text, re.M)
    instructions = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert not [line for line in instructions if "ecs_event_executor" in line or "ecs-event-executor" in line]
    assert not [line for line in instructions if re.search(r"pip install .*(\s\.|-e)\b", line)]
    # Every build argument the stack passes is declared.
    for arg in WorkerImage().build_args:
        assert re.search(rf"^ARG {arg}\b", text, re.M), arg


def test_unset_the_task_definition_runs_the_configured_image_and_synth_stages_no_docker_asset(
    default_synth: InProcessSynth,
) -> None:
    assert _container(default_synth.template)["Image"] == "apache/airflow:3.3.2"
    assert _docker_assets(default_synth.outdir) == {}
    assert _outputs(default_synth.template)["AirflowWorkerAirflowVersion"] == f"{VERSION_OUTPUT}3.3.2"


def test_set_the_task_definition_runs_the_image_asset_built_from_the_dockerfile(
    built_synth: InProcessSynth,
) -> None:
    image = json.dumps(_container(built_synth.template)["Image"])
    assert "container-assets" in image  # the bootstrap's ECR repository, tagged with the asset's hash
    (asset,) = _docker_assets(built_synth.outdir).values()
    source = asset["source"]
    assert source["dockerFile"] == "Dockerfile"
    assert source["dockerBuildArgs"] == {
        "AIRFLOW_VERSION": "3.3.1",
        "PYTHON_VERSION": "3.11",
        "DAGS_FOLDER": "dags",
        "REQUIREMENTS": "requirements.txt",
    }
    assert source["platform"] == "linux/amd64"
    staged = built_synth.outdir / source["directory"]
    assert (staged / "Dockerfile").read_text() == DOCKERFILE.read_text()
    assert _outputs(built_synth.template)["AirflowWorkerAirflowVersion"] == f"{VERSION_OUTPUT}3.3.1"


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"workerImage": {"directory": "no-such-dir"}}, "workerImage.directory"),
        ({"workerImage": {"dagsFolder": "missing"}}, "workerImage.dagsFolder"),
        ({"workerImage": {"requirements": "../pyproject.toml"}}, "workerImage.requirements"),
        ({"workerImage": {"airflowVersion": "latest"}}, "workerImage.airflowVersion"),
        ({"workerImage": {"bogus": 1}}, "workerImage.bogus"),
        ({"workerImage": {}, "image": "example.com/worker:1"}, "image"),
        ({"workerImage": {}, **EXISTING}, "workerImage"),
    ],
)
def test_a_wrong_worker_image_setting_fails_synth_naming_it(settings: dict[str, Any], problem: str) -> None:
    with pytest.raises(SettingsError, match=rf"^ecsEventExecutor\.{re.escape(problem)}: "):
        load_settings(settings)


@pytest.mark.parametrize(
    ("settings", "version"),
    [
        ({}, "3.3.2"),
        ({"image": "apache/airflow:3.1.0-python3.11"}, "3.1.0"),
        ({"image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/worker:7"}, None),
        ({"workerImage": {"airflowVersion": "3.2.0"}}, "3.2.0"),
        (EXISTING, None),
    ],
)
def test_the_workers_airflow_version_comes_from_the_settings_when_they_tell_it(
    settings: dict[str, Any], version: str | None
) -> None:
    loaded: Settings = load_settings(settings)
    assert loaded.worker_airflow_version == version
