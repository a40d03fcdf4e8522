"""Stacks hand the environment's health alarms to CloudFormation's own RollbackConfiguration."""

from __future__ import annotations

from typing import Any

import pytest

from controller.aws import ClientFactory

TEMPLATE = "Resources:\n  Queue:\n    Type: AWS::SQS::Queue\n"
STACK = "apiVersion: lensops.io/v1\nkind: Stack\nmetadata: {name: queue}\nspec: {template: queue.yaml}\n"


@pytest.fixture
def change_sets(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The CreateChangeSet parameters lensops sends over HTTP (moto ignores RollbackConfiguration)."""
    sent: list[dict[str, Any]] = []
    original = ClientFactory._instrument

    def instrument(self: ClientFactory, made: Any, *args: Any, **kwargs: Any) -> None:
        original(self, made, *args, **kwargs)
        made.meta.events.register("provide-client-params.cloudformation.CreateChangeSet", lambda params, **_: sent.append(dict(params)))

    monkeypatch.setattr(ClientFactory, "_instrument", instrument)
    return sent


def _stack(tree: Any, health: str) -> None:
    tree.environment("dev", f"health: {health}")
    tree.write("templates/queue.yaml", TEMPLATE)
    tree.write("environments/dev/stack.yaml", STACK)


def test_change_sets_carry_the_health_alarms_and_bake_time(aws, client, tree, lensops, change_sets):
    client("cloudwatch").put_metric_alarm(
        AlarmName="api-health", Namespace="EconLens", MetricName="Health", Statistic="Sum", Period=60,
        EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanThreshold",
    )
    _stack(tree, "{alarms: [api-health], bakeTime: 1s}")
    result = lensops("apply", "--repo", str(tree.root))
    assert result.code == 0, result.err
    assert change_sets and change_sets[-1]["RollbackConfiguration"] == {
        "RollbackTriggers": [{"Arn": "arn:aws:cloudwatch:us-east-1:123456789012:alarm:api-health", "Type": "AWS::CloudWatch::Alarm"}],
        "MonitoringTimeInMinutes": 1,
    }


def test_no_rollback_configuration_when_rollback_is_off(aws, tree, lensops, change_sets):
    _stack(tree, "{alarms: [api-health], bakeTime: 1s, rollback: off}")
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    assert change_sets and all("RollbackConfiguration" not in p for p in change_sets)
