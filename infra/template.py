"""Synthesize the stack in-process (no CDK CLI), for tests and for the local mode's resource definitions.

``synthesize_template()`` returns the CloudFormation template as a dict. Resource properties are kept plain
(the table's KeySchema and GlobalSecondaryIndexes, the queues' attributes, the rules' EventPattern), so another
program can create local equivalents from the same definitions.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aws_cdk as cdk

from infra.settings import CONTEXT_KEY, load_settings
from infra.stack import EcsEventExecutorStack, add_stack

CDK_JSON = Path(__file__).resolve().parent.parent / "cdk.json"
# Context key that names the stacks whose assets are bundled; empty: none (no pip, no network, stable hashes).
BUNDLING_STACKS = "aws:cdk:bundling-stacks"


def cdk_json_context() -> dict[str, Any]:
    """Return the ``context`` of cdk.json: the settings and the feature flags the CLI would pass."""
    return dict(json.loads(CDK_JSON.read_text())["context"])


def build_app(
    settings_overrides: Mapping[str, Any] | None = None,
    *,
    nag: bool = True,
    bundle: bool = False,
    outdir: str | None = None,
) -> tuple[cdk.App, EcsEventExecutorStack]:
    """Build the app as ``app.py`` does, with cdk.json's context and ``settings_overrides`` over its settings."""
    context = copy.deepcopy(cdk_json_context())
    context[CONTEXT_KEY] = {**context.get(CONTEXT_KEY, {}), **dict(settings_overrides or {})}
    if not bundle:
        context[BUNDLING_STACKS] = []
    app = cdk.App(context=context, outdir=outdir)
    stack = add_stack(app, load_settings(context[CONTEXT_KEY]), nag=nag)
    return app, stack


def synthesize_template(settings_overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Synthesize the stack in-process and return its CloudFormation template (assets are not bundled)."""
    app, stack = build_app(settings_overrides, nag=False)
    template: dict[str, Any] = app.synth().get_stack_by_name(stack.stack_name).template
    return template
