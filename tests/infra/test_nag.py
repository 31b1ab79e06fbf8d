"""cdk-nag AwsSolutions runs on the app: no unacknowledged finding, and every acknowledgment says why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aws_cdk import Validations
from aws_cdk import aws_sqs as sqs

from infra.template import build_app
from tests.infra.conftest import InProcessSynth


def _violations(outdir: Path) -> list[object]:
    report = outdir / "validation-report.json"
    if not report.exists():
        return []
    return [v for p in json.loads(report.read_text())["pluginReports"] for v in p.get("violations", [])]


def test_default_stack_has_no_unacknowledged_findings(default_synth: InProcessSynth) -> None:
    # The synth would have raised on any unacknowledged AwsSolutions finding; the report agrees.
    assert _violations(default_synth.outdir) == []


def test_stack_on_existing_resources_has_no_unacknowledged_findings(existing_synth: InProcessSynth) -> None:
    assert _violations(existing_synth.outdir) == []


def test_cdk_nag_is_really_checking(tmp_path: Path) -> None:
    app, stack = build_app(nag=True, outdir=str(tmp_path))
    sqs.Queue(stack, "CarelessQueue", encryption=sqs.QueueEncryption.UNENCRYPTED)
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    rules = {v["ruleName"] for v in _violations(tmp_path)}  # type: ignore[index]
    assert {"AwsSolutions-SQS2", "AwsSolutions-SQS4"} <= rules


def test_every_acknowledgment_names_a_rule_and_gives_a_reason(default_synth: InProcessSynth) -> None:
    key = Validations.ACKNOWLEDGED_RULES_METADATA_KEY
    acknowledged = {}
    for construct in default_synth.stack.node.find_all():
        for entry in construct.node.metadata:
            if entry.type == key:
                acknowledged.update(
                    {f"{construct.node.path} {rule}": reason for rule, reason in entry.data.items()}
                )
    ours = {k: v for k, v in acknowledged.items() if "AwsSolutions-" in k}
    assert ours, "expected the acknowledgments of infra/ to be recorded"
    for rule, reason in ours.items():
        assert len(reason) >= 40, f"{rule}: the reason is too short to explain anything: {reason!r}"
    # Wildcard findings are acknowledged one resource at a time, never as a whole rule.
    assert not [k for k in ours if k.endswith("AwsSolutions-IAM5")]
