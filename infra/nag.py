"""cdk-nag acknowledgments: each names one finding (rule and, for wildcards, the exact resource) and says why."""

from __future__ import annotations

from typing import Any

from aws_cdk import Acknowledgment, Stack, Validations
from constructs import IConstruct


def acknowledge(scope: IConstruct, rule: str, reason: str) -> None:
    """Acknowledge one cdk-nag finding on ``scope`` (and its children) with a written reason."""
    if len(reason) < 20:
        raise ValueError(f"the acknowledgment of {rule} needs a real reason, got {reason!r}")
    Validations.of(scope).acknowledge(Acknowledgment(id=rule, reason=reason))


def acknowledge_wildcard_resource(scope: IConstruct, resource: str, reason: str) -> None:
    """Acknowledge the IAM5 finding for one resource ARN that ends in a wildcard (a family or a cluster's tasks)."""
    rendered = render(Stack.of(scope).resolve(resource))
    if "*" in rendered:
        acknowledge(scope, f"AwsSolutions-IAM5[Resource::{rendered}]", reason)


def render(value: Any) -> str:
    """Render a resolved CloudFormation value the way cdk-nag names it in findings (``<Ref>``, ``<Id.Attr>``)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        ((fn, arg),) = value.items()
        if fn == "Ref":
            return f"<{arg}>"
        if fn == "Fn::GetAtt":
            return f"<{arg[0]}.{arg[1]}>" if isinstance(arg, list) else f"<{arg}>"
        if fn == "Fn::Join":
            separator, parts = arg
            return str(separator).join(render(p) for p in parts)
    raise ValueError(f"cannot name {value!r} as cdk-nag does")
