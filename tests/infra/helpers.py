"""Read resources from a synthesized template by their properties, never by generated logical ids."""

from __future__ import annotations

from typing import Any

from aws_cdk.assertions import Template


def only(template: Template, type_: str, props: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """Return the one resource of ``type_`` (matching ``props``) as (logical id, resource)."""
    found = template.find_resources(type_, {"Properties": props} if props else None)
    assert len(found) == 1, f"expected one {type_} matching {props}, found {len(found)}"
    logical_id, resource = next(iter(found.items()))
    return logical_id, dict(resource)


def function(template: Template, name: str) -> dict[str, Any]:
    """Return the Lambda function named ``name``."""
    return only(template, "AWS::Lambda::Function", {"FunctionName": name})[1]


def role_statements(template: Template, function_name: str) -> list[dict[str, Any]]:
    """Return every statement of the inline policies attached to the function's role."""
    role_ref = function(template, function_name)["Properties"]["Role"]["Fn::GetAtt"][0]
    statements: list[dict[str, Any]] = []
    for policy in template.find_resources("AWS::IAM::Policy").values():
        if {"Ref": role_ref} in policy["Properties"]["Roles"]:
            statements.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    role = template.find_resources("AWS::IAM::Role")[role_ref]
    assert "ManagedPolicyArns" not in role["Properties"], "the function role must have no managed policy"
    assert "Policies" not in role["Properties"]
    return statements


def actions_of(statements: list[dict[str, Any]]) -> set[str]:
    """Return every action the statements allow."""
    allowed: set[str] = set()
    for statement in statements:
        assert statement["Effect"] == "Allow"
        actions = statement["Action"]
        allowed.update([actions] if isinstance(actions, str) else actions)
    return allowed


def statement_with(statements: list[dict[str, Any]], action: str) -> dict[str, Any]:
    """Return the one statement that allows ``action``."""
    matching = [
        s for s in statements if action in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    ]
    assert len(matching) == 1, f"expected one statement allowing {action}, found {matching}"
    return matching[0]


def logical_id(template: Template, type_: str, props: dict[str, Any] | None = None) -> str:
    return only(template, type_, props)[0]
