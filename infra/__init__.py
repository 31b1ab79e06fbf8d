"""The AWS CDK app of the control plane: one construct per deployable unit, a stack that wires and grants."""

import os

# jsii starts Node.js on the first aws_cdk import and relays Node's end-of-life banner to stderr, printed as
# Python bytes, on every synth, test run and local-mode start. It reads a comma-separated list of the Node major
# versions whose banner to silence ("1" silences nothing). Set before any aws_cdk import (app.py imports infra
# first); the Node version itself is the one package.json and the README's prerequisites name.
NODE_BANNER_VARIABLE = "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION"
NODE_MAJOR_VERSIONS = ",".join(str(major) for major in range(14, 41))


def silence_node_banner(env: dict[str, str] | os._Environ[str] = os.environ) -> None:
    """Add every Node major version to jsii's end-of-life silence list in ``env``, keeping what it had."""
    listed = [v for v in env.get(NODE_BANNER_VARIABLE, "").split(",") if v.strip()]
    env[NODE_BANNER_VARIABLE] = ",".join(dict.fromkeys([*listed, *NODE_MAJOR_VERSIONS.split(",")]))


silence_node_banner()
