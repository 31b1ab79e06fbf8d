"""A small evaluator of the resource policies the stack writes (Deny statements with ARN and Bool conditions).

IAM Access Analyzer checks policies against AWS; offline, the tests ask this evaluator the same question of the
synthesized template: would AWS deny this principal the action? It follows IAM's documented rules for what the
stack uses: a statement applies when its action and principal match and every condition does; within an operator
the keys are ANDed and a key's values ORed; a negated operator (``ArnNotEquals``, ``StringNotEquals``) on a key
the request lacks matches, a positive one does not. Values are compared as the template holds them, so an
intrinsic (``{"Fn::GetAtt": ...}``) stands for itself. An explicit deny wins; the identity policy is assumed to
allow (the principal holds ``sqs:*`` or ``events:*``), which is the case the resource policy must survive.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Mapping, Sequence
from typing import Any


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _action_matches(statement: Mapping[str, Any], action: str) -> bool:
    return any(fnmatch.fnmatchcase(action.lower(), str(a).lower()) for a in _as_list(statement["Action"]))


def _principal_matches(statement: Mapping[str, Any], principal: Any) -> bool:
    declared = statement.get("Principal")
    if declared == "*" or (isinstance(declared, Mapping) and declared.get("AWS") == "*"):
        return True
    if isinstance(declared, Mapping):
        return any(_same(p, principal) for values in declared.values() for p in _as_list(values))
    return False


def _condition_matches(conditions: Mapping[str, Any], context: Mapping[str, Any]) -> bool:
    for operator, keys in conditions.items():
        negated = "Not" in operator
        for key, values in keys.items():
            values = _as_list(values)
            if key not in context:
                if not negated:
                    return False
                continue
            present = context[key]
            if operator == "Bool":
                hit = str(present).lower() == str(values[0]).lower()
            elif operator in ("ArnEquals", "ArnNotEquals", "StringEquals", "StringNotEquals"):
                hit = any(_same(present, v) for v in values)
                hit = not hit if negated else hit
            else:
                raise AssertionError(f"the evaluator does not know the condition operator {operator}")
            if not hit:
                return False
    return True


def denied(
    statements: Sequence[Mapping[str, Any]], action: str, principal: Any, context: Mapping[str, Any]
) -> bool:
    """Return whether an explicit Deny of ``statements`` applies to ``principal`` doing ``action``."""
    return any(
        s.get("Effect") == "Deny"
        and _action_matches(s, action)
        and _principal_matches(s, principal)
        and _condition_matches(s.get("Condition", {}), context)
        for s in statements
    )
