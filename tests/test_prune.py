"""Prune: only what lensops owns, only with sync.prune, never what is annotated prune=false,
and never more than 10 % of an environment at once without an explicit allowance."""

from __future__ import annotations

from conftest import alarm, alarms


def _names(client) -> set[str]:
    return {a["AlarmName"] for a in client("cloudwatch").describe_alarms()["MetricAlarms"]}


def test_removed_resource_is_kept_without_prune(aws, client, tree, lensops):
    tree.environment("dev", "sync: {prune: false}")
    tree.write("environments/dev/alarms.yaml", alarms(["a", "b"]))
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    tree.write("environments/dev/alarms.yaml", alarms(["a"]))
    plan = lensops("plan", "--repo", str(tree.root))
    assert plan.code == 0, plan.out
    assert "MetricAlarm/b" in plan.out and "sync.prune is off" in plan.out
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    assert _names(client) == {"a", "b"}


def test_removed_resource_is_deleted_with_prune(aws, client, tree, lensops):
    tree.environment("dev", "sync: {prune: true, allowMassPrune: true}")
    tree.write("environments/dev/alarms.yaml", alarms(["a", "b"]))
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    tree.write("environments/dev/alarms.yaml", alarms(["a"]))
    plan = lensops("plan", "--repo", str(tree.root))
    assert plan.code == 2 and "- MetricAlarm/b" in plan.out
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    assert _names(client) == {"a"}
    assert lensops("plan", "--repo", str(tree.root)).code == 0


def test_prune_false_annotation_keeps_the_resource(aws, client, tree, lensops):
    tree.environment("dev", "sync: {prune: true, allowMassPrune: true}")
    keep = alarm("b").replace("  name: b\n", '  name: b\n  annotations: {lensops.io/prune: "false"}\n')
    tree.write("environments/dev/alarms.yaml", alarm("a") + "---\n" + keep)
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    tree.write("environments/dev/alarms.yaml", alarm("a"))
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    assert _names(client) == {"a", "b"}


def test_unowned_resource_is_never_touched(aws, client, tree, lensops):
    cw = client("cloudwatch")
    cw.put_metric_alarm(
        AlarmName="someone-elses", Namespace="AWS/EC2", MetricName="CPUUtilization", Statistic="Average",
        Period=300, EvaluationPeriods=1, Threshold=90, ComparisonOperator="GreaterThanThreshold",
    )
    tree.environment("dev", "sync: {prune: true, allowMassPrune: true}")
    tree.write("environments/dev/alarms.yaml", alarms(["a", "b"]))
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    tree.write("environments/dev/alarms.yaml", alarms(["a"]))
    aws.clear_requests()
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    assert _names(client) == {"a", "someone-elses"}
    assert cw.describe_alarms(AlarmNames=["someone-elses"])["MetricAlarms"][0]["Threshold"] == 90


def test_mass_prune_guard_refuses_then_allows(aws, client, tree, lensops):
    tree.environment("dev", "sync: {prune: true}")
    names = [f"alarm-{i}" for i in range(10)]
    tree.write("environments/dev/alarms.yaml", alarms(names))
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    tree.write("environments/dev/alarms.yaml", alarms(names[:8]))
    refused = lensops("apply", "--repo", str(tree.root))
    assert refused.code == 1
    assert "mass-prune guard" in refused.err + refused.out
    assert _names(client) == set(names)
    allowed = lensops("apply", "--repo", str(tree.root), "--allow-mass-prune")
    assert allowed.code == 0, allowed.err
    assert _names(client) == set(names[:8])


def test_one_in_ten_is_within_the_guard(aws, client, tree, lensops):
    tree.environment("dev", "sync: {prune: true}")
    names = [f"alarm-{i}" for i in range(10)]
    tree.write("environments/dev/alarms.yaml", alarms(names))
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    tree.write("environments/dev/alarms.yaml", alarms(names[:9]))
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    assert _names(client) == set(names[:9])


def test_emptied_environment_is_refused(aws, client, tree, lensops):
    tree.environment("dev", "sync: {prune: true}")
    tree.write("environments/dev/alarms.yaml", alarms(["a"]))
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    tree.remove("environments/dev/alarms.yaml")
    refused = lensops("apply", "--repo", str(tree.root))
    assert refused.code == 1 and "no manifests" in refused.err + refused.out
    assert _names(client) == {"a"}


def test_prune_deletes_dependents_first():
    from controller.engine.decide import prune_order
    from controller.state import ResourceRecord

    def record(kind: str, name: str, deps: list[str]) -> ResourceRecord:
        return ResourceRecord("dev", kind, name, name, desired={"dependsOn": deps})

    records = [
        record("IPSet", "blocked", []),
        record("WebACL", "api", ["IPSet/blocked"]),
        record("Topic", "alerts", []),
        record("MetricAlarm", "api-5xx", ["Topic/alerts"]),
        record("CompositeAlarm", "health", ["MetricAlarm/api-5xx"]),
    ]
    order = [r.ident for r in prune_order(records)]
    assert order.index("WebACL/api") < order.index("IPSet/blocked")
    assert order.index("CompositeAlarm/health") < order.index("MetricAlarm/api-5xx") < order.index("Topic/alerts")
