"""The real CDK CLI synthesizes the app offline, the assembly passes cdk-nag and cfn-lint, and the Lambda assets
hold what the handlers import."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

from cfnlint.api import ManualArgs, lint_file

from infra import bundling, bytecode
from infra.bundling import locked_version
from tests.infra.conftest import CliSynth

# Regions the template is linted for (resource types and properties available in each).
LINT_REGIONS = ["us-east-1", "eu-west-1"]


def test_cli_synth_succeeds_offline_without_credentials(cli_synth: CliSynth) -> None:
    types = {r["Type"] for r in cli_synth.template["Resources"].values()}
    assert {"AWS::SQS::Queue", "AWS::Lambda::Function", "AWS::DynamoDB::Table", "AWS::Events::Rule"} <= types
    print(f"\ncdk synth took {cli_synth.seconds:.1f} s")


def test_cli_synth_has_no_unacknowledged_cdk_nag_findings(cli_synth: CliSynth) -> None:
    report_path = cli_synth.outdir / "validation-report.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {"pluginReports": []}
    violations = [v for plugin in report["pluginReports"] for v in plugin.get("violations", [])]
    assert violations == []


def test_cfn_lint_reports_no_errors(cli_synth: CliSynth) -> None:
    matches = lint_file(cli_synth.template_path, ManualArgs(regions=LINT_REGIONS))
    errors = [f"{m.rule.id} {m.path}: {m.message}" for m in matches if m.rule.id.startswith("E")]
    assert errors == []


def test_layer_holds_the_locked_powertools_and_the_contract_package_but_not_airflow(
    cli_synth: CliSynth,
) -> None:
    python = cli_synth.asset_dir("RuntimeLayer") / "python"
    powertools = locked_version("aws-lambda-powertools")
    assert (python / f"aws_lambda_powertools-{powertools}.dist-info").is_dir()
    assert (python / f"pydantic-{locked_version('pydantic')}.dist-info").is_dir()
    assert list((python / "pydantic_core").glob("_pydantic_core.cpython-312-aarch64-linux-gnu.so"))
    assert (python / "ecs_event_executor" / "control" / "tasks" / "table.py").is_file()
    assert not (python / "airflow").exists()


def test_assets_carry_bytecode_for_the_runtime_python_only_or_synth_says_why(cli_synth: CliSynth) -> None:
    """Lambda's code is read-only: bytecode not shipped is compiled at every cold start. Only the runtime's
    Python's bytecode is shipped (never this machine's), trusted without source times (unchecked-hash)."""
    layer = cli_synth.asset_dir("RuntimeLayer") / "python"
    handler = cli_synth.asset_dir("LauncherHandlerFunction")
    compiled = [*layer.rglob("*.pyc"), *handler.rglob("*.pyc")]
    tag = f"cpython-{bundling.PYTHON_VERSION.replace('.', '')}"
    assert all(f".{tag}." in path.name for path in compiled), {p.name for p in compiled if tag not in p.name}
    if bytecode.bytecode_python(bundling.PYTHON_VERSION) is None:
        assert compiled == [] and bytecode.BYTECODE_PYTHON_VARIABLE in cli_synth.stderr
        return
    for source in (layer / "botocore" / "session.py", handler / "lambdas" / "launcher" / "handler.py"):
        pyc = source.parent / "__pycache__" / f"{source.stem}.{tag}.pyc"
        flags = int.from_bytes(pyc.read_bytes()[4:8], "little")
        assert flags == 0b01, f"{pyc} is not unchecked-hash bytecode (flags {flags:#b})"


def test_each_function_asset_holds_its_handler_at_the_handler_path(cli_synth: CliSynth) -> None:
    functions = {
        logical_id: r
        for logical_id, r in cli_synth.template["Resources"].items()
        if r["Type"] == "AWS::Lambda::Function"
    }
    assert len(functions) == 3  # launcher, status, reconciler
    for resource in functions.values():
        module, _, function = resource["Properties"]["Handler"].rpartition(".")
        asset = cli_synth.outdir / resource["Metadata"]["aws:asset:path"]
        source = asset / (module.replace(".", "/") + ".py")
        assert source.is_file(), source
        assert f"def {function}(" in source.read_text()


def test_layer_architecture_matches_the_functions(cli_synth: CliSynth) -> None:
    resources = cli_synth.template["Resources"].values()
    layer = next(r for r in resources if r["Type"] == "AWS::Lambda::LayerVersion")
    for fn in (r for r in resources if r["Type"] == "AWS::Lambda::Function"):
        assert (
            fn["Properties"]["Architectures"] == layer["Properties"]["CompatibleArchitectures"] == ["arm64"]
        )
        assert fn["Properties"]["Runtime"] in layer["Properties"]["CompatibleRuntimes"]


def _module_level_imports(source: Path) -> set[str]:
    """Return the module names a file imports at module level (not in functions, not for type checking).

    Names from ``from package import name`` are prefixed with ``?``: they are modules or attributes.
    """
    tree = ast.parse(source.read_text())
    names: set[str] = set()
    body = list(tree.body)
    while body:
        node = body.pop(0)
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            # "from package import name": name may be a submodule (follow it) or an attribute (nothing to find).
            names.update(f"?{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Try):
            body.extend(node.body)
        elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
            body.extend(node.body + node.orelse)
    return names


def test_everything_the_handlers_import_is_in_the_runtime_or_the_assets(cli_synth: CliSynth) -> None:
    """Follow module-level imports from each handler: each must be stdlib, boto3 (in the Lambda runtime) or bundled."""
    layer = cli_synth.asset_dir("RuntimeLayer") / "python"
    runtime_provided = {"boto3", "botocore"}
    for logical_id, resource in cli_synth.template["Resources"].items():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        asset = cli_synth.outdir / resource["Metadata"]["aws:asset:path"]
        module = resource["Properties"]["Handler"].rpartition(".")[0]
        roots = [asset, layer]
        pending, seen, missing = [module], set(), []
        while pending:
            name = pending.pop()
            if name in seen:
                continue
            seen.add(name)
            optional = name.startswith("?")
            name = name.lstrip("?")
            top = name.split(".")[0]
            if top in sys.stdlib_module_names or top in runtime_provided or top == "__future__":
                continue
            parts = name.split(".")
            candidates = [root / Path(*parts) for root in roots]
            files = [c.with_suffix(".py") for c in candidates] + [c / "__init__.py" for c in candidates]
            found = [f for f in files if f.is_file()]
            is_package_dir = any(c.is_dir() for c in candidates)
            if not found and not is_package_dir:
                if not optional:
                    missing.append(name)
                continue
            if top in {"aws_lambda_powertools", "pydantic", "pydantic_core", "typing_extensions"}:
                continue  # installed by pip with their own dependencies
            for source in found:
                pending.extend(_module_level_imports(source))
        assert missing == [], f"{logical_id} imports modules its asset and layer do not have: {missing}"
