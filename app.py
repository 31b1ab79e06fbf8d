#!/usr/bin/env python3
"""CDK app entry point: ``npx cdk synth`` / ``npx cdk deploy`` (settings: the ``ecsEventExecutor`` key of cdk.json)."""

from __future__ import annotations

import sys

from infra.settings import CONTEXT_KEY, SettingsError, load_settings
from infra.stack import add_stack


def main() -> None:
    # Imported after the infra package, which silences Node's end-of-life banner before jsii starts Node.
    import aws_cdk as cdk

    app = cdk.App()
    try:
        settings = load_settings(app.node.try_get_context(CONTEXT_KEY))
    except SettingsError as exc:
        print(f"Invalid setting in cdk.json (context): {exc}", file=sys.stderr)
        sys.exit(1)
    add_stack(app, settings)
    app.synth()


if __name__ == "__main__":
    main()
