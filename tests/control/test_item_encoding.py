"""Issue 19 P5: the control plane encodes and decodes items without boto3, exactly as boto3 does."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from ecs_event_executor.control.tasks.item import deserialize, serialize
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
scalars = (
    st.none() | st.booleans() | st.integers(-(10**30), 10**30) | st.text(max_size=20) | st.binary(max_size=8)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=8), values, max_size=6))
def test_items_are_encoded_as_boto3_encodes_them(item: dict[str, Any]) -> None:
    boto3_form = {k: TypeSerializer().serialize(v) for k, v in item.items()}
    assert serialize(item) == boto3_form
    decoded = {k: TypeDeserializer().deserialize(v) for k, v in boto3_form.items()}
    assert deserialize(boto3_form) == deserialize(
        {k: TypeSerializer().serialize(v) for k, v in decoded.items()}
    )


def test_a_float_is_refused_as_boto3_refuses_it() -> None:
    with pytest.raises(TypeError):
        serialize({"x": 1.5})
    assert serialize({"x": Decimal("1.5")}) == {"x": {"N": "1.5"}}


@pytest.mark.parametrize("handler", ["launcher", "status"])
def test_the_handlers_import_neither_boto3_nor_s3transfer(handler: str) -> None:
    code = (
        f"import sys, lambdas.{handler}.handler; print(sorted({{'boto3', 's3transfer'}} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_control_planes_clients_skip_botocore_parameter_validation() -> None:
    """Table, bus and ECS requests are built from values already validated (RunTask's against botocore's ECS model
    by build_run_task_kwargs, naming the field: test_a_parameter_botocore_refuses_fails_the_launch_with_the_field_path),
    so botocore does not check each one again."""
    from ecs_event_executor.control.aws_clients import client_config

    assert client_config("ecs").parameter_validation is False
    assert client_config("dynamodb").parameter_validation is False
    assert client_config("events").parameter_validation is False
