"""The daemon when Git misbehaves: an unreachable remote, a force-push of older history,
and a commit that empties an environment. Live AWS keeps the last applied state; errors are
reported in /api/v1/status and counted, never a crash."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import alarm, alarms
from daemon_helpers import DaemonProcess


def _metric(d: DaemonProcess, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(d.get("/metrics")[1].decode()):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def _threshold(client, name: str = "api-5xx") -> float:
    return client("cloudwatch").describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["Threshold"]


def _alarm_names(client) -> set[str]:
    return {a["AlarmName"] for a in client("cloudwatch").describe_alarms(MaxRecords=100)["MetricAlarms"]}


def _estate(git_remote, threshold: float = 5) -> str:
    git_remote.tree.environment("dev", "sync: {selfHeal: true}")
    git_remote.tree.write("environments/dev/alarms.yaml", alarm("api-5xx", threshold))
    return git_remote.commit(f"threshold {threshold}")


def _break(git_remote, how: str) -> None:
    if how == "repository gone":
        shutil.move(str(git_remote.bare), str(git_remote.bare) + ".gone")
    else:
        subprocess.run(["git", "-C", str(git_remote.bare), "update-ref", "-d", "refs/heads/main"], check=True)


def _mend(git_remote, how: str) -> None:
    if how == "repository gone":
        shutil.move(str(git_remote.bare) + ".gone", str(git_remote.bare))
    else:
        git_remote._git("push", "-q", "origin", "main")


@pytest.mark.parametrize("how", ["repository gone", "branch deleted"])
def test_unreachable_remote_keeps_the_last_applied_state(daemon, git_remote, client, how):
    first = _estate(git_remote, 5)
    d = daemon(LENSOPS_RESYNC_INTERVAL="1s")
    d.wait_until(lambda: d.applied_revision("dev") == first)
    failed_before = _metric(d, "lensops_git_fetch_total", result="failed")

    _break(git_remote, how)
    source = d.wait_until(lambda: (s := d.status()["source"])["error"] and s)
    failed = d.wait_until(lambda: (n := _metric(d, "lensops_git_fetch_total", result="failed")) >= failed_before + 2 and n)
    print(f"\n{how}: source.error = {source['error']!r}; lensops_git_fetch_total{{result=\"failed\"}} {failed_before:.0f} -> {failed:.0f}")
    assert source["error"].startswith("git: cannot fetch") and source["revision"] == first
    assert d.applied_revision("dev") == first and d.get("/healthz")[0] == 200
    # the last applied revision stays live: drift is still reverted while Git is away
    client("cloudwatch").put_metric_alarm(
        AlarmName="api-5xx", Namespace="AWS/Lambda", MetricName="Errors", Statistic="Sum", Period=60, EvaluationPeriods=1,
        Threshold=42, ComparisonOperator="GreaterThanThreshold", Dimensions=[{"Name": "FunctionName", "Value": "scenario-processor"}],
    )
    d.wait_until(lambda: _threshold(client) == 5, timeout=20)
    assert any(e.get("event") == "fetch_failed" for e in d.events())

    _mend(git_remote, how)
    second = _estate(git_remote, 7)
    d.wait_until(lambda: d.applied_revision("dev") == second, timeout=20)
    assert d.status()["source"]["error"] == ""
    assert _threshold(client) == 7


def test_force_push_of_older_history_is_applied(daemon, git_remote, client):
    older = _estate(git_remote, 5)
    newer = _estate(git_remote, 6)
    d = daemon(LENSOPS_RESYNC_INTERVAL="1s")
    d.wait_until(lambda: d.applied_revision("dev") == newer)
    assert _threshold(client) == 6

    git_remote._git("reset", "-q", "--hard", older)
    git_remote._git("push", "-q", "--force", "origin", "main")
    d.wait_until(lambda: d.applied_revision("dev") == older, timeout=20)
    assert _threshold(client) == 5
    assert d.status()["source"] == {**d.status()["source"], "revision": older, "error": ""}

    # history rewritten on top of the older commit: a new commit is applied as usual
    git_remote.tree.write("environments/dev/alarms.yaml", alarm("api-5xx", 8) + "---\n" + alarm("api-latency", 2))
    rewritten = git_remote.commit("rewritten history")
    d.wait_until(lambda: d.applied_revision("dev") == rewritten, timeout=20)
    assert _threshold(client) == 8 and _alarm_names(client) == {"api-5xx", "api-latency"}
    print(f"\nforce-push: {newer[:8]} -> {older[:8]} applied, then {rewritten[:8]} on the rewritten branch")


def test_a_commit_that_empties_an_environment_is_refused_by_the_mass_prune_guard(aws, daemon, git_remote, client):
    names = [f"api-{i}" for i in range(4)]
    git_remote.tree.environment("dev", "sync: {prune: true}")
    git_remote.tree.write("environments/dev/alarms.yaml", alarms(names))
    first = git_remote.commit("four alarms")
    d = daemon(LENSOPS_RESYNC_INTERVAL="1s")
    d.wait_until(lambda: d.applied_revision("dev") == first)
    assert _alarm_names(client) == set(names)

    git_remote.tree.remove("environments/dev/alarms.yaml")
    empty = git_remote.commit("only environment.yaml left")
    status = d.wait_until(lambda: (s := d.status()["environments"]["dev"])["lastPass"].get("revision") == empty and s)
    d.wait_passes("dev", 2)  # a few more resyncs of the empty revision
    status = d.status()["environments"]["dev"]
    deletes = [k for k, v in aws.requests().items() if k == ("cloudwatch", "DeleteAlarms")]
    print(f"\nempty environment: status {status['status']!r}, message {status['message']!r}; DeleteAlarms calls: {len(deletes)}")
    assert _alarm_names(client) == set(names)
    assert not deletes
    assert "mass-prune guard" in status["message"] and "no manifests" in status["message"]
    assert status["status"] == "failed" and status["appliedRevision"] == first
    assert {r["name"] for r in status["resources"]} == set(names)
    assert _metric(d, "lensops_reconcile_total", environment="dev", result="failed") >= 1
