"""Health gates and automatic rollback: a transition to ALARM during the bake puts back what the
revision changed; the failed commit is held; an alarm already firing does not block a hotfix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from conftest import alarm, run_cli
from daemon_helpers import wait_for

HEALTH = "econlens-api-health"


def _health_alarm(client) -> None:
    client("cloudwatch").put_metric_alarm(
        AlarmName=HEALTH, Namespace="EconLens", MetricName="Health", Statistic="Sum", Period=60,
        EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanThreshold",
    )


def _set(client, state: str) -> None:
    client("cloudwatch").set_alarm_state(AlarmName=HEALTH, StateValue=state, StateReason="test")


def _env(tree, bake: str = "3s", rollback: str = "auto") -> None:
    tree.environment("dev", f"health: {{alarms: [{HEALTH}], bakeTime: {bake}, rollback: {rollback}}}\nsync: {{prune: true, allowMassPrune: true}}")


def _topic(name: str, display: str) -> str:
    return f"apiVersion: lensops.io/v1\nkind: Topic\nmetadata: {{name: {name}}}\nspec:\n  attributes: {{DisplayName: {display}}}\n"


def _threshold(client, name: str = "api-5xx") -> float:
    return client("cloudwatch").describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["Threshold"]


def _apply_in_background(tree) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("lensops")
    return subprocess.Popen([str(exe), "apply", "--repo", str(tree.root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())


def test_apply_bakes_in_the_foreground_and_rolls_back(aws, client, tree):
    _health_alarm(client)
    _env(tree)
    tree.write("environments/dev/a.yaml", alarm("api-5xx", 5) + "---\n" + _topic("alerts", "v1"))
    first = run_cli("apply", "--repo", str(tree.root))
    assert first.code == 0, first.err
    assert "baking" in first.err and "healthy after the bake" in first.err

    tree.write("environments/dev/a.yaml", alarm("api-5xx", 6) + "---\n" + _topic("alerts", "v2") + "---\n" + _topic("extra", "new"))
    running = _apply_in_background(tree)
    # The new threshold is written: the pass has started, so an ALARM from now on is during its bake.
    wait_for(lambda: _threshold(client) == 6, timeout=20, what="the apply's write of threshold 6", alive=running)
    _set(client, "ALARM")
    out, err = running.communicate(timeout=60)
    assert running.returncode == 1, out + err
    assert f"{HEALTH} went to ALARM during the bake" in err
    assert "MetricAlarm/api-5xx restored" in err and "Topic/extra deleted" in err

    assert _threshold(client) == 5
    sns = client("sns")
    topics = {t["TopicArn"].rsplit(":", 1)[1] for t in sns.list_topics()["Topics"]}
    assert topics == {"alerts"}
    attrs = sns.get_topic_attributes(TopicArn="arn:aws:sns:us-east-1:123456789012:alerts")["Attributes"]
    assert attrs["DisplayName"] == "v1"

    history = json.loads(run_cli("history", "--output", "json").out)["revisions"]
    assert history[0]["result"] == "rolled_back"
    status = json.loads(run_cli("status", "--output", "json").out)["environments"]["dev"]
    assert status["status"] == "rolled_back" and status["failedRevision"]

    _set(client, "OK")
    again = run_cli("apply", "--repo", str(tree.root))
    assert again.code == 1 and "held until a commit changes the environment" in again.err
    assert _threshold(client) == 5

    # Live is the restored spec: the held commit's changes are pending, and nothing has drifted.
    plan = json.loads(run_cli("plan", "--repo", str(tree.root), "--output", "json").out)
    resources = {f"{r['kind']}/{r['name']}": r for env in plan["environments"] for r in env["resources"]}
    assert resources["MetricAlarm/api-5xx"]["changes"] and not resources["MetricAlarm/api-5xx"]["drift"]


def test_hotfix_goes_out_while_the_alarm_already_fires(aws, client, tree):
    _health_alarm(client)
    _env(tree, bake="2s")
    tree.write("environments/dev/a.yaml", alarm("api-5xx", 5))
    assert run_cli("apply", "--repo", str(tree.root)).code == 0
    _set(client, "ALARM")
    # Part of the scenario: the alarm must have gone to ALARM clearly before the hotfix's pass starts
    # (more than health.CLOCK_SLACK earlier). A slow machine only lengthens the gap: it cannot flake.
    time.sleep(1.1)
    tree.write("environments/dev/a.yaml", alarm("api-5xx", 7))
    hotfix = run_cli("apply", "--repo", str(tree.root))
    assert hotfix.code == 0, hotfix.err
    assert _threshold(client) == 7


def test_rollback_off_reports_only(aws, client, tree):
    _health_alarm(client)
    _env(tree, bake="3s", rollback="off")
    tree.write("environments/dev/a.yaml", alarm("api-5xx", 5))
    assert run_cli("apply", "--repo", str(tree.root)).code == 0
    tree.write("environments/dev/a.yaml", alarm("api-5xx", 6))
    running = _apply_in_background(tree)
    # The new threshold is written: the pass has started, so an ALARM from now on is during its bake.
    wait_for(lambda: _threshold(client) == 6, timeout=20, what="the apply's write of threshold 6", alive=running)
    _set(client, "ALARM")
    out, err = running.communicate(timeout=60)
    assert running.returncode == 1
    assert "rollback: off" in err
    assert _threshold(client) == 6


def test_insufficient_data_never_rolls_back(aws, client, tree):
    _health_alarm(client)
    _env(tree, bake="2s")
    tree.write("environments/dev/a.yaml", alarm("api-5xx", 5))
    assert run_cli("apply", "--repo", str(tree.root)).code == 0
    tree.write("environments/dev/a.yaml", alarm("api-5xx", 6))
    running = _apply_in_background(tree)
    wait_for(lambda: _threshold(client) == 6, timeout=20, what="the apply's write of threshold 6", alive=running)
    _set(client, "INSUFFICIENT_DATA")  # during the bake
    out, err = running.communicate(timeout=60)
    assert running.returncode == 0, err
    assert _threshold(client) == 6


def _daemon_healthy_on_v1(daemon, git_remote, client, bake: str):
    """A daemon whose dev environment has passed its first bake (threshold 5)."""
    _health_alarm(client)
    _env(git_remote.tree, bake=bake)
    git_remote.tree.write("environments/dev/a.yaml", alarm("api-5xx", 5))
    first = git_remote.commit("v1")
    d = daemon()
    d.wait_until(lambda: d.status()["environments"]["dev"]["healthyRevision"] == first, timeout=30)
    return d


def test_resyncs_more_often_than_the_bake_checks_never_push_a_check_back(daemon, git_remote, client):
    """A 20 s bake is checked every 2 s while the daemon resyncs every second: an ALARM is acted
    on at the next check, not when the bake is over (each resync used to put the check off)."""
    _health_alarm(client)
    _env(git_remote.tree, bake="20s")
    git_remote.tree.write("environments/dev/a.yaml", alarm("api-5xx", 5))
    first = git_remote.commit("v1")
    d = daemon(LENSOPS_RESYNC_INTERVAL="1s")
    d.wait_until(lambda: d.status()["environments"]["dev"]["healthyRevision"] == first, timeout=45)

    git_remote.tree.write("environments/dev/a.yaml", alarm("api-5xx", 6))
    git_remote.commit("v2")
    d.wait_until(lambda: _threshold(client) == 6, timeout=20, every=0.05)
    _set(client, "ALARM")
    alarmed = time.monotonic()
    d.wait_until(lambda: d.status()["environments"]["dev"]["status"] == "rolled_back", timeout=30)
    assert time.monotonic() - alarmed < 10, "the ALARM waited for the end of the bake"
    assert _threshold(client) == 5
    _set(client, "OK")


def test_daemon_rolls_back_holds_the_commit_and_applies_a_newer_one(daemon, git_remote, client):
    d = _daemon_healthy_on_v1(daemon, git_remote, client, "4s")

    git_remote.tree.write("environments/dev/a.yaml", alarm("api-5xx", 6))
    bad = git_remote.commit("v2")
    d.wait_until(lambda: _threshold(client) == 6, timeout=20, every=0.05)
    _set(client, "ALARM")
    status = d.wait_until(lambda: (s := d.status()["environments"]["dev"])["status"] == "rolled_back" and s, timeout=30)
    assert status["failedRevision"] == bad
    assert _threshold(client) == 5

    families = {f.name: f for f in text_string_to_metric_families(d.get("/metrics")[1].decode())}
    rollbacks = [s for s in families["lensops_rollbacks"].samples if s.name.endswith("_total") and s.labels["kind"] == "MetricAlarm"]
    assert rollbacks and rollbacks[0].value == 1
    rolled = [s for s in families["lensops_reconcile"].samples if s.labels.get("result") == "rolled_back" and s.name.endswith("_total")]
    assert rolled and rolled[0].value == 1
    assert any(e.get("event") == "resource_rolled_back" and e.get("name") == "api-5xx" for e in d.events())

    _set(client, "OK")
    d.wait_passes("dev", 3)  # several resyncs: the held commit must not come back
    assert _threshold(client) == 5

    git_remote.tree.write("environments/dev/a.yaml", alarm("api-5xx", 8))
    newer = git_remote.commit("v3")
    d.wait_until(lambda: _threshold(client) == 8, timeout=20)
    d.wait_until(lambda: d.status()["environments"]["dev"]["healthyRevision"] == newer, timeout=30)


def test_a_hotfix_committed_while_the_alarm_fires_goes_out_after_the_rollback(daemon, git_remote, client):
    """The bake of a revision is read before a newer revision is applied: the failed one is rolled
    back first (whichever of the bake check and the new commit comes first), then the hotfix goes out
    from the healthy point, and the alarm already firing does not roll it back."""
    d = _daemon_healthy_on_v1(daemon, git_remote, client, "3s")
    _env(git_remote.tree, bake="20s")
    git_remote.tree.write("environments/dev/a.yaml", alarm("api-5xx", 6))
    bad = git_remote.commit("v2")
    d.wait_until(lambda: _threshold(client) == 6 and (d.status()["environments"]["dev"]["bake"] or {}).get("revision") == bad, timeout=20)

    _set(client, "ALARM")
    _env(git_remote.tree, bake="3s")
    git_remote.tree.write("environments/dev/a.yaml", alarm("api-5xx", 8))
    hotfix = git_remote.commit("v3: the hotfix")
    status = d.wait_until(lambda: (s := d.status()["environments"]["dev"])["healthyRevision"] == hotfix and s, timeout=40)
    assert _threshold(client) == 8
    assert status["failedRevision"] == "", "other content is applied: the failed revision's hold is over (history keeps it)"
    history = json.loads(run_cli("history", "--output", "json", env={"LENSOPS_STATE_URL": d.env["LENSOPS_STATE_URL"]}).out)["revisions"]
    rows = [(r["revision"], r["trigger"], r["result"]) for r in history if r["environment"] == "dev"]
    assert (bad, "rollback", "rolled_back") in rows and rows[0][0] == hotfix, rows
