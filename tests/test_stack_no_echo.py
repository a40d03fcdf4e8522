"""A Stack's NoEcho parameters: used to apply, never shown, never stored (issue 15, item 9).

The template marks ``DbPassword`` NoEcho and writes it into an SSM parameter,
so the emulator shows which value CloudFormation was given. Every surface a
person or the pull-request workflow reads, and every row of the state store,
is searched for the value.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import Result, run_cli
from daemon_helpers import wait_for

HEALTH = "econlens-db-health"

TEMPLATE = """
Parameters:
  Prefix: {Type: String}
  DbPassword: {Type: String, NoEcho: true}
Resources:
  Setting:
    Type: AWS::SSM::Parameter
    Properties: {Name: !Sub "/${Prefix}/db-password", Type: String, Value: !Ref DbPassword}
"""
TEMPLATE_V2 = TEMPLATE.replace("Resources:", "Resources:\n  Jobs: {Type: AWS::SQS::Queue}")

MANIFEST = """apiVersion: lensops.io/v1
kind: Stack
metadata: {name: db}
spec:
  stackName: dev-db
  template: db.yaml
  parameters: {Prefix: dev, DbPassword: PASSWORD}
"""
FIRST, SECOND = "noEchoCANARYfirst41", "noEchoCANARYsecond77"


def _estate(tree: Any, password: str, template: str = TEMPLATE) -> None:
    tree.environment("dev")
    tree.write("templates/db.yaml", template)
    tree.write("environments/dev/db.yaml", MANIFEST.replace("PASSWORD", password))


def _stored() -> str:
    """Every row of the state store, as text."""
    path = os.environ["LENSOPS_STATE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        tables = [name for (name,) in db.execute("select name from sqlite_master where type='table'")]
        return "\n".join(json.dumps(row, default=str) for table in tables for row in db.execute(f"select * from {table}"))


def _surfaces(lensops: Any, tree: Any) -> dict[str, str]:
    out = {}
    for argv in (("plan",), ("plan", "--output", "json"), ("validate",)):
        result = lensops(*argv, "--repo", str(tree.root))
        out[" ".join(argv)] = result.out + result.err
    for argv in (("status",), ("status", "--output", "json"), ("history",), ("history", "--output", "json")):
        result = lensops(*argv)
        out[" ".join(argv)] = result.out + result.err
    out["state store"] = _stored()
    return out


def _value(client: Any) -> str:
    return str(client("ssm").get_parameter(Name="/dev/db-password")["Parameter"]["Value"])


def test_a_no_echo_value_is_applied_but_never_shown_or_stored(aws, client, tree, lensops):
    _estate(tree, FIRST)
    plan = lensops("plan", "--repo", str(tree.root))
    assert plan.code == 2 and '"DbPassword": "(sensitive value)"' in plan.out, plan.out
    applied = lensops("apply", "--yes", "--repo", str(tree.root))
    assert applied.code == 0, applied.out + applied.err
    assert _value(client) == FIRST  # CloudFormation was given the value itself
    assert lensops("plan", "--repo", str(tree.root)).code == 0

    _estate(tree, SECOND)
    plan = lensops("plan", "--repo", str(tree.root))
    assert plan.code == 2, plan.out + plan.err
    assert 'parameters.DbPassword: "(sensitive value)" -> "(sensitive value)"' in plan.out, plan.out
    applied_again = lensops("apply", "--yes", "--repo", str(tree.root))
    assert applied_again.code == 0, applied_again.out + applied_again.err
    assert _value(client) == SECOND
    assert lensops("plan", "--repo", str(tree.root)).code == 0

    surfaces = _surfaces(lensops, tree)
    surfaces["apply"] = applied.out + applied.err + applied_again.out + applied_again.err
    leaks = [f"{where}: {secret}" for where, text in surfaces.items() for secret in (FIRST, SECOND) if secret in text]
    assert not leaks, leaks
    assert "(sensitive sha256:" in surfaces["state store"]  # the seal, enough to see a change


def test_a_template_change_goes_back_without_the_no_echo_value(aws, client, tree, lensops):
    """Putting back an earlier template (as a rollback does) leaves an unchanged NoEcho value as
    it is: CloudFormation keeps it (UsePreviousValue), lensops never had to store it."""
    _estate(tree, FIRST)
    assert lensops("apply", "--yes", "--repo", str(tree.root)).code == 0
    _estate(tree, FIRST, TEMPLATE_V2)
    assert lensops("apply", "--yes", "--repo", str(tree.root)).code == 0
    assert client("sqs").list_queues().get("QueueUrls")
    _estate(tree, FIRST)
    back = lensops("apply", "--yes", "--repo", str(tree.root))
    assert back.code == 0, back.out + back.err
    assert not client("sqs").list_queues().get("QueueUrls")
    assert _value(client) == FIRST
    assert FIRST not in _stored()


def _baked(tree: Any, password: str, template: str = TEMPLATE) -> None:
    _estate(tree, password, template)
    tree.environment("dev", f"health: {{alarms: [{HEALTH}], bakeTime: 3s}}")


def _roll_back_v2(aws: Any, client: Any, tree: Any, password: str) -> Result:
    """v1 baked healthy, then v2 (one queue more, ``password``) goes to ALARM during its bake."""
    client("cloudwatch").put_metric_alarm(
        AlarmName=HEALTH, Namespace="EconLens", MetricName="Health", Statistic="Sum", Period=60,
        EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanThreshold",
    )
    _baked(tree, FIRST)
    first = run_cli("apply", "--repo", str(tree.root))
    assert first.code == 0, first.err
    _baked(tree, password, TEMPLATE_V2)
    exe = Path(sys.executable).with_name("lensops")
    running = subprocess.Popen([str(exe), "apply", "--repo", str(tree.root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: client("sqs").list_queues().get("QueueUrls"), timeout=30, what="v2's queue", alive=running)
    client("cloudwatch").set_alarm_state(AlarmName=HEALTH, StateValue="ALARM", StateReason="test")
    out, err = running.communicate(timeout=60)
    assert running.returncode == 1, out + err
    return Result(running.returncode, out, err)


def test_a_rollback_puts_the_template_back_and_keeps_an_unchanged_no_echo_value(aws, client, tree):
    rolled = _roll_back_v2(aws, client, tree, FIRST)
    assert "Stack/db restored" in rolled.err, rolled.err
    assert not client("sqs").list_queues().get("QueueUrls")
    assert _value(client) == FIRST
    assert FIRST not in rolled.out + rolled.err + _stored()


def test_a_rollback_refuses_a_no_echo_value_it_never_stored(aws, client, tree):
    """The value changed in the failed revision: lensops has only the earlier one's seal, so it
    says so for that stack and executes nothing, rather than put back half of it."""
    rolled = _roll_back_v2(aws, client, tree, SECOND)
    assert "NoEcho parameter(s) DbPassword: lensops keeps only a digest of their value" in rolled.err, rolled.err
    assert client("sqs").list_queues().get("QueueUrls")  # nothing executed
    assert _value(client) == SECOND
    assert not any(secret in rolled.out + rolled.err + _stored() for secret in (FIRST, SECOND))
