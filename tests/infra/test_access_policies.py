"""The default stack (no scheduler roles listed) lets nobody but the relaunch rule send to the launch queue."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Template

from tests.support.policy import denied

pytestmark = pytest.mark.security


def test_without_scheduler_roles_nobody_but_the_relaunch_rule_sends(template: Template) -> None:
    t = template.to_json()
    queue = next(k for k in t["Resources"] if k.startswith("LauncherQueue"))
    rule = next(k for k in t["Resources"] if k.startswith("ControlBusRelaunchRule"))
    (policy,) = [
        r
        for r in t["Resources"].values()
        if r["Type"] == "AWS::SQS::QueuePolicy" and {"Ref": queue} in r["Properties"]["Queues"]
    ]
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    tls = {"aws:SecureTransport": "true"}
    anyone = {**tls, "aws:PrincipalArn": "arn:aws:iam::123456789012:role/airflow-scheduler"}
    assert denied(statements, "sqs:SendMessage", "*", anyone)
    relaunch = {**tls, "aws:SourceArn": {"Fn::GetAtt": [rule, "Arn"]}}
    assert not denied(statements, "sqs:SendMessage", "*", relaunch)
