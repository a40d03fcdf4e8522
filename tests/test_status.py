"""`lensops status` and `lensops history`: tables for people, JSON for scripts, read from the state store."""

from __future__ import annotations

import json

from conftest import alarm


def test_status_and_history_after_applies(aws, client, tree, lensops):
    tree.environment("dev")
    tree.write("environments/dev/alarms.yaml", alarm("a") + "---\n" + alarm("b"))
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    suspended = alarm("b").replace("  name: b\n", '  name: b\n  annotations: {lensops.io/suspend: "true"}\n')
    tree.write("environments/dev/alarms.yaml", alarm("a") + "---\n" + suspended)
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    client("cloudwatch").put_metric_alarm(
        AlarmName="a", Namespace="AWS/Lambda", MetricName="Errors", Statistic="Sum", Period=60,
        EvaluationPeriods=1, Threshold=50, ComparisonOperator="GreaterThanThreshold",
        Dimensions=[{"Name": "FunctionName", "Value": "scenario-processor"}],
    )
    assert lensops("plan", "--repo", str(tree.root)).code == 2

    doc = json.loads(lensops("status", "--output", "json").out)["environments"]["dev"]
    assert doc["status"] == "synced" and doc["appliedRevision"]
    assert doc["counts"] == {"total": 2, "synced": 2, "drifted": 0, "failed": 0, "suspended": 1, "orphans": 0}

    text = lensops("status").out.splitlines()
    assert text[0].split() == ["ENVIRONMENT", "STATUS", "REVISION", "AGE", "RESOURCES", "SYNCED", "DRIFTED", "FAILED", "SUSPENDED", "ORPHANS"]
    row = text[1].split()
    assert row[0] == "dev" and row[1] == "synced" and row[-6:] == ["2", "2", "0", "0", "1", "0"]

    history = lensops("history")
    lines = history.out.splitlines()
    assert lines[0].startswith("STARTED") and "RESULT" in lines[0]
    assert "dev" in lines[1] and "success" in lines[1] and " cli " in lines[1]
    assert json.loads(lensops("history", "--output", "json").out)["revisions"][-1]["changes"][0]["action"] == "create"
