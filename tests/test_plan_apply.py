"""apply then plan, idempotency, drift found by plan and reverted by apply."""

from __future__ import annotations

import json

from conftest import alarm, second_apply, writes


def _estate(tree, threshold: float = 5) -> None:
    tree.environment("dev", "tags: {app: econlens}")
    tree.write(
        "environments/dev/topics.yaml",
        """
        apiVersion: lensops.io/v1
        kind: Topic
        metadata:
          name: alerts
        spec:
          attributes: {DisplayName: EconLens alerts}
          subscriptions:
            - {protocol: email, endpoint: ops@econlens.example}
          tags: {team: platform}
        """,
    )
    tree.write(
        "environments/dev/alarms.yaml",
        alarm("lambda-errors", threshold, extra="alarmActions: [ref:Topic/alerts]")
        + "---\n"
        + """
apiVersion: lensops.io/v1
kind: CompositeAlarm
metadata:
  name: api-health
spec:
  alarmRule: ALARM("lambda-errors")
  dependsOn: []
""".replace("  dependsOn: []\n", "")
        + "---\n"
        + """
apiVersion: lensops.io/v1
kind: Dashboard
metadata:
  name: operations
spec:
  body:
    widgets:
      - {type: text, x: 0, y: 0, width: 6, height: 3, properties: {markdown: "EconLens"}}
""",
    )


def test_apply_creates_everything_then_plan_is_clean(aws, client, tree, lensops):
    _estate(tree)
    first = lensops("apply", "--repo", str(tree.root))
    assert first.code == 0, first.err
    cw = client("cloudwatch")
    alarm_live = cw.describe_alarms(AlarmNames=["lambda-errors"])["MetricAlarms"][0]
    assert alarm_live["Threshold"] == 5.0
    assert alarm_live["AlarmActions"] == ["arn:aws:sns:us-east-1:123456789012:alerts"]
    composite = cw.describe_alarms(AlarmNames=["api-health"], AlarmTypes=["CompositeAlarm"])["CompositeAlarms"]
    assert composite and composite[0]["AlarmRule"] == 'ALARM("lambda-errors")'
    assert json.loads(cw.get_dashboard(DashboardName="operations")["DashboardBody"])["widgets"][0]["type"] == "text"
    sns = client("sns")
    arn = "arn:aws:sns:us-east-1:123456789012:alerts"
    assert sns.get_topic_attributes(TopicArn=arn)["Attributes"]["DisplayName"] == "EconLens alerts"
    tags = {t["Key"]: t["Value"] for t in sns.list_tags_for_resource(ResourceArn=arn)["Tags"]}
    assert tags == {"app": "econlens", "team": "platform", "lensops:environment": "dev", "lensops:id": "Topic/alerts"}
    subs = sns.list_subscriptions_by_topic(TopicArn=arn)["Subscriptions"]
    assert [(s["Protocol"], s["Endpoint"]) for s in subs] == [("email", "ops@econlens.example")]

    plan = lensops("plan", "--repo", str(tree.root))
    assert plan.code == 0, plan.out + plan.err


def test_second_apply_makes_no_write_call(aws, tree, lensops):
    _estate(tree)
    seen = second_apply(aws, tree, lensops)
    assert seen, "the second apply must still read AWS"


def test_out_of_band_change_is_planned_and_reverted(aws, client, tree, lensops):
    _estate(tree)
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    cw = client("cloudwatch")
    live = cw.describe_alarms(AlarmNames=["lambda-errors"])["MetricAlarms"][0]
    cw.put_metric_alarm(
        AlarmName="lambda-errors",
        Namespace=live["Namespace"],
        MetricName=live["MetricName"],
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=99,
        ComparisonOperator="GreaterThanThreshold",
        Dimensions=live["Dimensions"],
        AlarmActions=live["AlarmActions"],
    )
    plan = lensops("plan", "--repo", str(tree.root))
    assert plan.code == 2
    assert "MetricAlarm/lambda-errors" in plan.out
    assert "threshold: 99.0 -> 5.0" in plan.out
    assert "drifted" in plan.out

    plan_json = json.loads(lensops("plan", "--repo", str(tree.root), "--output", "json").out)
    changed = [r for r in plan_json["environments"][0]["resources"] if r["action"] != "noop"]
    assert [(r["kind"], r["name"], r["action"]) for r in changed] == [("MetricAlarm", "lambda-errors", "update")]

    assert lensops("apply", "--repo", str(tree.root)).code == 0
    assert cw.describe_alarms(AlarmNames=["lambda-errors"])["MetricAlarms"][0]["Threshold"] == 5.0
    assert lensops("plan", "--repo", str(tree.root)).code == 0


def test_changed_manifest_updates_only_that_field(aws, client, tree, lensops):
    _estate(tree)
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    tree.write("environments/dev/alarms.yaml", alarm("lambda-errors", 7, extra="alarmActions: [ref:Topic/alerts]"))
    plan = lensops("plan", "--repo", str(tree.root))
    assert plan.code == 2 and "threshold: 5.0 -> 7.0" in plan.out
    aws.clear_requests()
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    assert writes(aws.requests()) == {("cloudwatch", "PutMetricAlarm"): 1}
    assert client("cloudwatch").describe_alarms(AlarmNames=["lambda-errors"])["MetricAlarms"][0]["Threshold"] == 7.0
