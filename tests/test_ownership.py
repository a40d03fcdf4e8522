"""Ownership and the annotations: adopt, suspend, ignore-fields; tags that mark what lensops owns."""

from __future__ import annotations

import json

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


def _two_environments(tree, prod_threshold: float = 9, prod_extra: str = "") -> None:
    """dev and prod in one repo (one state store), both declaring MetricAlarm/shared-5xx, alarmName shared-5xx."""
    tree.environment("dev")
    tree.environment("prod")
    tree.write("environments/dev/a.yaml", alarm("shared-5xx", 5))
    prod = alarm("shared-5xx", prod_threshold)
    if prod_extra:
        prod = prod.replace("  name: shared-5xx\n", f"  name: shared-5xx\n{prod_extra}")
    tree.write("environments/prod/a.yaml", prod)


def _live(client, name: str = "shared-5xx") -> tuple[float, dict[str, str]]:
    cw = client("cloudwatch")
    live = cw.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]
    tags = {t["Key"]: t["Value"] for t in cw.list_tags_for_resource(ResourceARN=live["AlarmArn"])["Tags"]}
    return live["Threshold"], tags


def test_another_environments_resource_is_a_conflict(aws, client, tree, lensops):
    """Same Kind/name and physical name in two environments: the second one does not take the first one's alarm."""
    _two_environments(tree)
    dev = lensops("apply", "--repo", str(tree.root), "--env", "dev", "--yes")
    assert dev.code == 0, dev.out + dev.err
    assert _live(client) == (5, {"lensops:environment": "dev", "lensops:id": "MetricAlarm/shared-5xx"})

    aws.clear_requests()
    prod = lensops("apply", "--repo", str(tree.root), "--env", "prod", "--yes")
    assert prod.code == 1, prod.out + prod.err
    assert "MetricAlarm/shared-5xx" in prod.out and "conflict" in prod.out
    assert "managed by lensops environment 'dev'" in prod.out
    assert writes(aws.requests()) == {}
    threshold, tags = _live(client)
    assert threshold == 5 and tags["lensops:environment"] == "dev" and tags["lensops:id"] == "MetricAlarm/shared-5xx"

    plan = lensops("plan", "--repo", str(tree.root), "--env", "prod", "--output", "json")
    assert plan.code == 1
    resources = [r for env in json.loads(plan.out)["environments"] for r in env["resources"]]
    assert [(r["name"], r["status"]) for r in resources] == [("shared-5xx", "conflict")]
    # dev still sees its alarm as its own, unchanged.
    assert lensops("plan", "--repo", str(tree.root), "--env", "dev").code == 0


def test_adopt_does_not_take_another_environments_resource(aws, client, tree, lensops):
    _two_environments(tree, prod_extra='  annotations: {lensops.io/adopt: "true"}\n')
    assert lensops("apply", "--repo", str(tree.root), "--env", "dev", "--yes").code == 0
    prod = lensops("apply", "--repo", str(tree.root), "--env", "prod", "--yes")
    threshold, tags = _live(client)
    assert (threshold, tags["lensops:environment"]) == (5, "dev")
    assert prod.code == 1 and "MetricAlarm/shared-5xx" in prod.out and "managed by lensops environment 'dev'" in prod.out
    assert lensops("plan", "--repo", str(tree.root), "--env", "dev").code == 0
