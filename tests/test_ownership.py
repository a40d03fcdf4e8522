"""Ownership and the annotations: adopt, suspend, ignore-fields; tags that mark what lensops owns."""

from __future__ import annotations

from conftest import alarm, writes


def _foreign_alarm(client, name: str = "api-5xx", threshold: float = 50) -> None:
    client("cloudwatch").put_metric_alarm(
        AlarmName=name, Namespace="AWS/Lambda", MetricName="Errors", Statistic="Sum", Period=60,
        EvaluationPeriods=1, Threshold=threshold, ComparisonOperator="GreaterThanThreshold",
        Dimensions=[{"Name": "FunctionName", "Value": "scenario-processor"}],
    )


def test_existing_unowned_resource_is_a_conflict(aws, client, tree, lensops):
    _foreign_alarm(client)
    tree.environment("dev")
    tree.write("environments/dev/a.yaml", alarm("api-5xx"))
    result = lensops("apply", "--repo", str(tree.root))
    assert result.code == 1
    assert "not managed by lensops" in result.out and "lensops.io/adopt" in result.out
    assert client("cloudwatch").describe_alarms(AlarmNames=["api-5xx"])["MetricAlarms"][0]["Threshold"] == 50


def test_adopt_takes_over_and_tags(aws, client, tree, lensops):
    _foreign_alarm(client)
    tree.environment("dev")
    tree.write("environments/dev/a.yaml", alarm("api-5xx").replace("  name: api-5xx\n", '  name: api-5xx\n  annotations: {lensops.io/adopt: "true"}\n'))
    plan = lensops("plan", "--repo", str(tree.root))
    assert plan.code == 2 and "(adopt)" in plan.out
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    cw = client("cloudwatch")
    live = cw.describe_alarms(AlarmNames=["api-5xx"])["MetricAlarms"][0]
    assert live["Threshold"] == 5
    tags = {t["Key"]: t["Value"] for t in cw.list_tags_for_resource(ResourceARN=live["AlarmArn"])["Tags"]}
    assert tags["lensops:id"] == "MetricAlarm/api-5xx" and tags["lensops:environment"] == "dev"
    assert lensops("plan", "--repo", str(tree.root)).code == 0


def test_ownership_survives_a_lost_state_store(aws, client, tree, lensops, monkeypatch, tmp_path):
    tree.environment("dev")
    tree.write("environments/dev/a.yaml", alarm("api-5xx"))
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    monkeypatch.setenv("LENSOPS_STATE_URL", f"sqlite:///{tmp_path}/other/state.db")
    plan = lensops("plan", "--repo", str(tree.root))
    assert plan.code == 0, plan.out


def test_suspended_resource_is_observed_not_changed(aws, client, tree, lensops):
    tree.environment("dev")
    tree.write("environments/dev/a.yaml", alarm("api-5xx"))
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    suspended = alarm("api-5xx", 9).replace("  name: api-5xx\n", '  name: api-5xx\n  annotations: {lensops.io/suspend: "true"}\n')
    tree.write("environments/dev/a.yaml", suspended)
    plan = lensops("plan", "--repo", str(tree.root))
    assert "suspend" in plan.out and "threshold: 5.0 -> 9.0" in plan.out
    aws.clear_requests()
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    assert writes(aws.requests()) == {}
    assert client("cloudwatch").describe_alarms(AlarmNames=["api-5xx"])["MetricAlarms"][0]["Threshold"] == 5


def test_ignored_fields_are_not_diffed(aws, client, tree, lensops):
    tree.environment("dev")
    ignoring = alarm("api-5xx").replace("  name: api-5xx\n", '  name: api-5xx\n  annotations: {lensops.io/ignore-fields: "threshold,alarmDescription"}\n')
    tree.write("environments/dev/a.yaml", ignoring)
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    _foreign_alarm(client, threshold=77)
    assert lensops("plan", "--repo", str(tree.root)).code == 0
    aws.clear_requests()
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    assert writes(aws.requests()) == {}
