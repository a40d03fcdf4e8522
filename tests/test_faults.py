"""lensops under AWS weather: 20 % of calls failing, one service down, access denied.

The emulator's fault layer (emulator/lensops_emulator/faults.py) answers a seeded
share of requests with throttling or 5xx; lensops must converge in a few
applies with botocore's retries, fail only the kinds of a service that is down
(and never roll back because of an outage), and not retry errors that
retrying cannot fix. Each test prints its figures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from conftest import ACCOUNT, alarm
from controller import metrics
from lensops_emulator import FaultPlan
from lensops_emulator.faults import FaultInjector
from daemon_helpers import wait_for
from test_budget import budget
from test_wafv2 import IP_SET, WEB_ACL

HEALTH = "econlens-api-health"
SEED = 20
ALARMS = [f"api-{i}" for i in range(12)]
TOPICS = ["alerts", "billing", "ops"]


def topic(name: str, display: str = "EconLens") -> str:
    return f"apiVersion: lensops.io/v1\nkind: Topic\nmetadata: {{name: {name}}}\nspec:\n  attributes: {{DisplayName: {display} {name}}}\n  tags: {{team: platform}}\n"


DASHBOARD = """apiVersion: lensops.io/v1
kind: Dashboard
metadata:
  name: operations
spec:
  body:
    widgets:
      - {type: text, x: 0, y: 0, width: 6, height: 3, properties: {markdown: "EconLens"}}
"""


def mixed_estate(tree: Any, env_extra: str = "") -> int:
    """Alarms (one notifying a topic), topics, a dashboard, a budget, an IP set and a web ACL; returns the count."""
    tree.environment("dev", env_extra)
    docs = [alarm(n, 5 + i % 5) for i, n in enumerate(ALARMS[:-1])]
    docs.append(alarm(ALARMS[-1], 9, extra="alarmActions: [ref:Topic/alerts]"))
    tree.write("environments/dev/alarms.yaml", "---\n".join(docs))
    tree.write("environments/dev/topics.yaml", "---\n".join(topic(t) for t in TOPICS))
    tree.write("environments/dev/dashboard.yaml", DASHBOARD)
    tree.write("environments/dev/budget.yaml", budget())
    tree.write("environments/dev/ipset.yaml", IP_SET.format(addresses='"203.0.113.0/24", "198.51.100.7/32"'))
    tree.write("environments/dev/acl.yaml", WEB_ACL.format(default="allow", action="block"))
    return len(ALARMS) + len(TOPICS) + 4


def api_calls() -> Counter[tuple[str, str, str]]:
    """lensops_aws_api_calls_total of this process, by (service, operation, outcome)."""
    found: Counter[tuple[str, str, str]] = Counter()
    for family in text_string_to_metric_families(generate_latest(metrics.REGISTRY).decode()):
        if family.name == "lensops_aws_api_calls":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    labels = sample.labels
                    found[(labels["service"], labels["operation"], labels["outcome"])] += int(sample.value)
    return found


def since(before: Counter[tuple[str, str, str]]) -> Counter[tuple[str, str, str]]:
    after = api_calls()
    after.subtract(before)
    return +after


def by_outcome(calls: Counter[tuple[str, str, str]]) -> Counter[str]:
    out: Counter[str] = Counter()
    for (_, _, outcome), n in calls.items():
        out[outcome] += n
    return out


def live_estate(client: Any, budgets: bool = True) -> dict[str, set[str]]:
    """The names of what exists in the emulator, per kind of the mixed estate (budgets: False while Budgets is down)."""
    waf, cloudwatch = client("wafv2"), client("cloudwatch")
    live = {
        "alarms": {a["AlarmName"] for a in cloudwatch.describe_alarms(MaxRecords=100)["MetricAlarms"]},
        "topics": {t["TopicArn"].rsplit(":", 1)[1] for t in client("sns").list_topics()["Topics"]},
        "dashboards": {d["DashboardName"] for d in cloudwatch.list_dashboards()["DashboardEntries"]},
        "ipsets": {s["Name"] for s in waf.list_ip_sets(Scope="REGIONAL")["IPSets"]},
        "acls": {s["Name"] for s in waf.list_web_acls(Scope="REGIONAL")["WebACLs"]},
    }
    if budgets:
        live["budgets"] = {b["BudgetName"] for b in client("budgets").describe_budgets(AccountId=ACCOUNT).get("Budgets", [])}
    return live


def test_mixed_estate_converges_with_20_percent_of_calls_failing(aws, client, tree, lensops):
    count = mixed_estate(tree)
    before = api_calls()
    aws.clear_requests()
    aws.set_faults(FaultPlan(error_rate=0.2, kinds={"throttle", "5xx"}, seed=SEED))
    codes = []
    started = time.monotonic()
    while len(codes) < 3:
        result = lensops("apply", "--repo", str(tree.root))
        codes.append(result.code)
        assert "Traceback" not in result.err and "internal error" not in result.err, result.err
        if result.code == 0:
            break
    elapsed = time.monotonic() - started
    aws.set_faults(None)
    calls = since(before)
    sent = sum(aws.requests().values())

    plan = lensops("plan", "--repo", str(tree.root))
    outcomes = by_outcome(calls)
    print(
        f"\n20 % faults (throttle+5xx, seed {SEED}), {count} resources: {len(codes)} apply run(s) {codes} in {elapsed:.1f}s; "
        f"AWS requests {sum(outcomes.values())} (ok {outcomes['ok']}, throttled {outcomes['throttled']}, error {outcomes['error']}); "
        f"the emulator saw {sent}"
    )
    assert codes[-1] == 0, result.out + result.err
    assert plan.code == 0, plan.out + plan.err
    live = live_estate(client)
    assert live["alarms"] == set(ALARMS) and live["topics"] == set(TOPICS)
    assert live["dashboards"] == {"operations"} and live["budgets"] == {"monthly"}
    assert live["ipsets"] == {"blocked"} and live["acls"] == {"edge"}
    # Every attempt, retries included, is counted once, by its outcome.
    assert sum(outcomes.values()) == sent
    assert outcomes["throttled"] > 0 and outcomes["error"] > 0
    assert 0.05 <= (outcomes["throttled"] + outcomes["error"]) / sent <= 0.4


def _health_alarm(client: Any) -> None:
    client("cloudwatch").put_metric_alarm(
        AlarmName=HEALTH, Namespace="EconLens", MetricName="Health", Statistic="Sum", Period=60,
        EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanThreshold",
    )


def _report(result: Any) -> tuple[dict[str, str], list[str]]:
    """(failed Kind/name -> message, applied Kind/name) of an apply's JSON output."""
    report = json.loads(result.out)
    failed = {f"{r['kind']}/{r['name']}": r["message"] for env in report["environments"] for r in env["resources"] if r["status"] == "failed"}
    applied = [f"{a['kind']}/{a['name']}" for env in report["environments"] for a in env["applied"]]
    return failed, applied


def test_one_service_down_fails_only_its_kind_and_never_rolls_back(aws, client, tree, lensops):
    _health_alarm(client)
    mixed_estate(tree, f"health: {{alarms: [{HEALTH}], bakeTime: 1s, rollback: auto}}")
    aws.set_faults(FaultPlan(down={"budgets"}))

    result = lensops("apply", "--repo", str(tree.root), "--output", "json")
    text = lensops("plan", "--repo", str(tree.root))  # still down: the plan names the failing kind too

    assert result.code == 1, result.out + result.err
    assert "Traceback" not in result.err
    failed, applied = _report(result)
    print(f"\nbudgets down: applied {len(applied)} resources, failed {sorted(failed)}: {failed.get('Budget/monthly', '')[:100]}")
    assert list(failed) == ["Budget/monthly"]
    assert "ServiceUnavailable" in failed["Budget/monthly"]
    assert text.code == 1 and "! Budget/monthly (monthly): failed: observe: ServiceUnavailable" in text.out
    live = live_estate(client, budgets=False)
    assert live["alarms"] == set(ALARMS) | {HEALTH} and live["topics"] == set(TOPICS)
    assert live["dashboards"] == {"operations"} and live["ipsets"] == {"blocked"} and live["acls"] == {"edge"}
    assert len(applied) == len(ALARMS) + len(TOPICS) + 3

    status = json.loads(lensops("status", "--output", "json").out)["environments"]["dev"]
    history = json.loads(lensops("history", "--output", "json").out)["revisions"]
    assert status["status"] == "failed" and "Budget/monthly" in status["message"]
    assert "rolled_back" not in {status["status"], *(h["result"] for h in history)}

    aws.set_faults(None)
    again = lensops("apply", "--repo", str(tree.root), "--output", "json")
    assert again.code == 0, again.out + again.err
    assert _report(again)[1] == ["Budget/monthly"]
    history = json.loads(lensops("history", "--output", "json").out)["revisions"]
    status = json.loads(lensops("status", "--output", "json").out)["environments"]["dev"]
    assert [h["result"] for h in history] == ["success", "failed"]
    assert status["status"] == "synced" and status["healthyRevision"]
    assert lensops("plan", "--repo", str(tree.root)).code == 0


def test_a_resource_whose_service_is_down_is_reported_and_marked_failed(aws, client, tree, lensops):
    mixed_estate(tree)
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    tree.write("environments/dev/budget.yaml", budget(amount=500))
    aws.set_faults(FaultPlan(down={"budgets"}))

    result = lensops("apply", "--repo", str(tree.root))

    assert result.code == 1
    status = json.loads(lensops("status", "--output", "json").out)["environments"]["dev"]
    record = next(r for r in status["resources"] if r["kind"] == "Budget")
    assert "Budget/monthly" in result.err  # a progress line "! Budget/monthly failed: observe: ..."
    assert (record["sync"], record["health"]) != ("synced", "healthy"), record


def _cloudwatch_down_during_a_bake(aws: Any, client: Any, tree: Any, lensops: Any) -> tuple[int, str, dict[str, Any], list[str], str]:
    """Apply a change in a subprocess; once it bakes, CloudWatch goes down. -> (exit, stderr, status, history results, DisplayName)."""
    _health_alarm(client)
    tree.environment("dev")
    tree.write("environments/dev/topics.yaml", topic("alerts", "v1"))
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    tree.environment("dev", f"health: {{alarms: [{HEALTH}], bakeTime: 3s, rollback: auto}}")
    tree.write("environments/dev/topics.yaml", topic("alerts", "v2"))
    exe = Path(sys.executable).with_name("lensops")
    running = subprocess.Popen([str(exe), "apply", "--repo", str(tree.root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        wait_for(
            lambda: json.loads(lensops("status", "--output", "json").out)["environments"].get("dev", {}).get("status") == "baking",
            timeout=30, every=0.05, what="the apply's bake", alive=running,
        )
        aws.set_faults(FaultPlan(down={"cloudwatch"}))
        _, err = running.communicate(timeout=90)
    finally:
        aws.set_faults(None)
        if running.poll() is None:
            running.kill()
    display = client("sns").get_topic_attributes(TopicArn=f"arn:aws:sns:us-east-1:{ACCOUNT}:alerts")["Attributes"]["DisplayName"]
    history = [h["result"] for h in json.loads(lensops("history", "--output", "json").out)["revisions"]]
    status = json.loads(lensops("status", "--output", "json").out)["environments"]["dev"]
    return running.returncode, err, status, history, display


def test_cloudwatch_outage_during_the_bake_does_not_roll_back(aws, client, tree, lensops):
    """The health alarms cannot be read: an outage is not an unhealthy revision, nothing is put back."""
    code, err, status, history, display = _cloudwatch_down_during_a_bake(aws, client, tree, lensops)
    print(f"\ncloudwatch down during the bake: apply exit {code}, status {status['status']}, history {history}, "
          f"DisplayName {display!r}; last stderr line: {err.strip().splitlines()[-1:]}")
    assert "rolled_back" not in {status["status"], *history}
    assert display == "v2 alerts"  # applied before the bake, and not put back
    assert "Traceback" not in err
    assert code == 1
    aws.set_faults(None)
    again = lensops("apply", "--repo", str(tree.root))  # CloudWatch back: the revision is confirmed healthy
    assert again.code == 0, again.err
    status = json.loads(lensops("status", "--output", "json").out)["environments"]["dev"]
    assert status["status"] == "synced" and status["bake"] is None


def test_cloudwatch_outage_during_the_bake_is_a_clean_error(aws, client, tree, lensops):
    code, err, status, history, display = _cloudwatch_down_during_a_bake(aws, client, tree, lensops)
    assert code == 1
    assert "internal error" not in err, err
    assert "health" in err.splitlines()[-1]


def _seed_failing_first_request_only() -> int:
    """A seed whose 50 % plan fails the first request and serves the second (ListTopics retried once)."""
    for seed in range(100):
        injector = FaultInjector()
        injector.set_plan(FaultPlan(error_rate=0.5, kinds={"5xx"}, services={"sns"}, seed=seed))
        if injector.draw("sns") is not None and injector.draw("sns") is None:
            return seed
    raise AssertionError("no such seed")


def test_access_denied_is_not_retried(aws, tree, lensops):
    tree.environment("dev")
    tree.write("environments/dev/alarms.yaml", alarm("api-5xx"))
    tree.write("environments/dev/topics.yaml", topic("alerts"))
    plans = {
        "denied": FaultPlan(error_rate=1.0, kinds={"denied"}, services={"sns"}),
        "5xx": FaultPlan(error_rate=0.5, kinds={"5xx"}, services={"sns"}, seed=_seed_failing_first_request_only()),
    }
    figures = {}
    for kind, plan in plans.items():
        aws.reset()
        before = api_calls()
        aws.set_faults(plan)
        result = lensops("apply", "--repo", str(tree.root), "--output", "json")
        aws.set_faults(None)
        counted = since(before)
        figures[kind] = aws.requests().get(("sns", "ListTopics"), 0)
        report = json.loads(result.out)
        by_ident = {f"{r['kind']}/{r['name']}": r for env in report["environments"] for r in env["resources"]}
        assert by_ident["MetricAlarm/api-5xx"]["status"] == "ok"
        if kind == "denied":
            assert result.code == 1, result.out + result.err
            assert by_ident["Topic/alerts"]["status"] == "failed"
            assert "AccessDenied" in by_ident["Topic/alerts"]["message"]
            assert "is not authorized to perform" in by_ident["Topic/alerts"]["message"]
            assert counted[("sns", "ListTopics", "error")] == 1
        else:  # a transient error on the same call is retried, and the apply succeeds
            assert result.code == 0, result.out + result.err
            assert counted[("sns", "ListTopics", "error")] == 1 and counted[("sns", "ListTopics", "ok")] == 1
    print(f"\nListTopics requests in one apply: access denied {figures['denied']} (not retried), one 5xx {figures['5xx']} (retried)")
    assert figures == {"denied": 1, "5xx": 2}


# --- a crash between an AWS write and its record in the state store -----------------------------
# (tests/soak/ kills real `lensops apply` processes at random points; this is the one point that
# matters for ownership, hit on purpose: KeyboardInterrupt is a BaseException, so it ends the
# process's pass like a SIGKILL would, after AWS has the resource and before the store knows.)


def _crash_before_recording(monkeypatch: Any, kinds: set[str]) -> Any:
    from controller.state.sqlite import SqliteStore

    real = SqliteStore.put_resource

    def crash(self: Any, record: Any) -> None:
        if record.kind in kinds:
            raise KeyboardInterrupt(f"killed after {record.kind}/{record.name} was written to AWS")
        real(self, record)

    monkeypatch.setattr(SqliteStore, "put_resource", crash)
    return lambda: monkeypatch.setattr(SqliteStore, "put_resource", real)


def test_a_crash_before_recording_a_tagged_resource_is_recovered(aws, client, tree, lensops, monkeypatch):
    tree.environment("dev")
    tree.write("environments/dev/a.yaml", alarm("api-5xx") + "---\n" + topic("alerts"))
    restore = _crash_before_recording(monkeypatch, {"Topic", "MetricAlarm"})
    assert lensops("apply", "--repo", str(tree.root)).code == 130
    restore()
    assert {t["TopicArn"].rsplit(":", 1)[1] for t in client("sns").list_topics()["Topics"]} == {"alerts"}

    again = lensops("apply", "--repo", str(tree.root))  # the ownership tags written with the resource prove it is ours

    assert again.code == 0, again.out + again.err
    assert lensops("plan", "--repo", str(tree.root)).code == 0


def test_a_crash_before_recording_an_untaggable_resource_is_recovered(aws, tree, lensops, monkeypatch):
    tree.environment("dev")
    tree.write("environments/dev/a.yaml", DASHBOARD + "---\n" + budget())
    restore = _crash_before_recording(monkeypatch, {"Dashboard", "Budget"})
    assert lensops("apply", "--repo", str(tree.root)).code == 130
    restore()

    again = lensops("apply", "--repo", str(tree.root))

    assert "conflict" not in again.out, again.out
    assert again.code == 0


def test_a_killed_apply_does_not_stay_running_in_history(aws, tree, lensops):
    tree.environment("dev")
    tree.write("environments/dev/alarms.yaml", "---\n".join(alarm(f"slow-{i}") for i in range(8)))
    aws.set_faults(FaultPlan(latency_ms=300, services={"cloudwatch"}))
    exe = Path(sys.executable).with_name("lensops")
    killed = subprocess.Popen([str(exe), "apply", "--repo", str(tree.root)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    try:
        wait_for(
            # until the apply has made the state store, history says it does not exist (exit 1)
            lambda: (found := lensops("history", "--output", "json")).code == 0
            and any(h["result"] == "running" for h in json.loads(found.out)["revisions"]),
            timeout=30, every=0.05, what="the apply's history row", alive=killed,
        )
        killed.kill()  # SIGKILL, mid-apply: its history row is written, its result not yet
        killed.wait(10)
    finally:
        aws.set_faults(None)
    assert killed.returncode == -9
    assert lensops("apply", "--repo", str(tree.root)).code == 0

    results = [h["result"] for h in json.loads(lensops("history", "--output", "json").out)["revisions"]]
    assert results[0] == "success" and len(results) == 2
    assert "running" not in results, results


def test_a_crash_before_recording_an_update_is_not_reported_as_drift(aws, tree, lensops, monkeypatch):
    tree.environment("dev")
    tree.write("environments/dev/a.yaml", topic("alerts", "v1"))
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    tree.write("environments/dev/a.yaml", topic("alerts", "v2"))
    restore = _crash_before_recording(monkeypatch, {"Topic"})
    assert lensops("apply", "--repo", str(tree.root)).code == 130
    restore()

    again = lensops("apply", "--repo", str(tree.root), "--output", "json")

    assert again.code == 0, again.err
    resources = json.loads(again.out)["environments"][0]["resources"]
    assert [r["action"] for r in resources] == ["noop"]  # the change reached AWS before the crash
    assert resources[0]["drift"] == [], resources[0]["drift"]
