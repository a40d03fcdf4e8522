"""Observation in batches: a no-op plan over 1,000 alarms reads them 100 at a time."""

from __future__ import annotations

from conftest import writes


def _many(tree, n: int) -> None:
    tree.environment("dev")
    docs = []
    for i in range(n):
        docs.append(
            f"""apiVersion: lensops.io/v1
kind: MetricAlarm
metadata:
  name: alarm-{i:04d}
spec:
  namespace: EconLens
  metricName: Errors
  statistic: Sum
  period: 60
  evaluationPeriods: 1
  threshold: {i}
  comparisonOperator: GreaterThanThreshold
"""
        )
    tree.write("environments/dev/alarms.yaml", "---\n".join(docs))


def test_noop_plan_of_1000_alarms_reads_in_batches(aws, tree, lensops):
    _many(tree, 1000)
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    aws.clear_requests()
    plan = lensops("plan", "--repo", str(tree.root))
    assert plan.code == 0, plan.out[-2000:]
    seen = aws.requests()
    print("no-op plan requests:", seen)
    assert seen[("cloudwatch", "DescribeAlarms")] == 10
    # Each batch's tags: one GetResources by the batch's ARNs (100 at most, as the API takes).
    assert seen[("resourcegroupstaggingapi", "GetResources")] == 10
    assert writes(seen) == {}
    assert sum(seen.values()) == 21  # with the account guard's GetCallerIdentity
