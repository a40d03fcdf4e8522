"""A revision the daemon refuses (invalid manifests) is shown from the refusal until a newer commit of
the environment: in `lensops status` (text and JSON, beside the applied revision, which stays live and
is still reconciled), in `status --check`, and once in `lensops history`, whatever the resyncs do."""

from __future__ import annotations

import json

from conftest import alarm

PROBLEM = "environments/dev/alarms.yaml:11: MetricAlarm/api-5xx: unknown field 'spec.threshhold' (did you mean 'threshold'?)"


def _threshold(client) -> float:
    return client("cloudwatch").describe_alarms(AlarmNames=["api-5xx"])["MetricAlarms"][0]["Threshold"]


def _status(lensops) -> dict:
    result = lensops("status", "--output", "json")
    assert result.code == 0, result.err
    return json.loads(result.out)["environments"]["dev"]


def _history(lensops) -> list[dict]:
    return json.loads(lensops("history", "--output", "json").out)["revisions"]


def _applied(daemon, git_remote):
    """A daemon (self-heal on) that has applied dev's alarm at threshold 5: (daemon, commit)."""
    git_remote.tree.environment("dev", "sync: {selfHeal: true}")
    git_remote.tree.write("environments/dev/alarms.yaml", alarm("api-5xx", 5))
    first = git_remote.commit("threshold 5")
    d = daemon()
    d.wait_until(lambda: d.applied_revision("dev") == first)
    return d, first


def _typo(git_remote, message: str = "typo") -> str:
    git_remote.tree.write("environments/dev/alarms.yaml", alarm("api-5xx", 9).replace("  threshold:", "  threshhold:"))
    return git_remote.commit(message)


def _drift(client) -> None:
    """Someone sets the alarm's threshold to 42 by hand."""
    live = client("cloudwatch").describe_alarms(AlarmNames=["api-5xx"])["MetricAlarms"][0]
    client("cloudwatch").put_metric_alarm(
        AlarmName="api-5xx", Namespace=live["Namespace"], MetricName=live["MetricName"], Statistic="Sum", Period=60,
        EvaluationPeriods=1, Threshold=42, ComparisonOperator="GreaterThanThreshold", Dimensions=live["Dimensions"],
    )


def test_a_refused_revision_is_shown_until_a_newer_commit_and_the_applied_one_stays_reconciled(daemon, git_remote, client, lensops):
    d, first = _applied(daemon, git_remote)
    # The first pass of this process took the environment at its start: trigger 'startup', not 'lease'.
    assert [(r["revision"], r["trigger"]) for r in _history(lensops)] == [(first, "startup")]
    applied = [e for e in d.events() if e.get("event") == "resource_applied"]
    assert applied and all(e["revision"] == first for e in applied)

    bad = _typo(git_remote)
    d.wait_until(lambda: (_status(lensops).get("refused") or {}).get("revision") == bad)
    d.wait_passes("dev", 3)  # resyncs of the applied revision do not wipe the refusal out

    dev = _status(lensops)
    assert (dev["status"], dev["appliedRevision"]) == ("invalid", first)
    assert dev["refused"]["revision"] == bad and dev["refused"]["problems"] == [PROBLEM]
    assert dev["invalid"] == [PROBLEM]  # the field /api/v1/status had already
    assert d.status()["environments"]["dev"]["refused"]["revision"] == bad

    text = lensops("status")
    assert text.code == 0
    row = text.out.splitlines()[1].split()
    assert row[:3] == ["dev", "invalid", first[:12]]
    assert f"refused {bad[:12]}" in text.out and f"({first[:12]} stays applied and reconciled)" in text.out
    assert f"    {PROBLEM}" in text.out.splitlines()
    assert text.out.count("threshhold") == 1  # said once, not again as the environment's last error

    check = lensops("status", "--check")
    assert check.code == 1 and f"lensops: dev: invalid: revision {bad[:12]} refused" in check.err

    invalid = [r for r in _history(lensops) if r["result"] == "invalid"]
    assert [(r["revision"], r["trigger"]) for r in invalid] == [(bad, "revision")]
    assert PROBLEM in invalid[0]["message"]
    assert " invalid " in lensops("history").out

    # The applied revision is still reconciled: drift from it is put back while the refusal stands.
    _drift(client)
    d.wait_until(lambda: _threshold(client) == 5, timeout=20)
    drift = d.wait_until(lambda: [e for e in d.events() if e.get("event") == "drift_detected"])
    assert {k: drift[0][k] for k in ("environment", "revision", "kind", "name", "fields", "reverted")} == {
        "environment": "dev", "revision": first, "kind": "MetricAlarm", "name": "api-5xx", "fields": ["threshold"], "reverted": True}
    assert "42" not in json.dumps(drift[0])  # paths, never values
    assert _status(lensops)["refused"]["revision"] == bad
    assert len([r for r in _history(lensops) if r["result"] == "invalid"]) == 1  # once per refused commit

    git_remote.tree.write("environments/dev/alarms.yaml", alarm("api-5xx", 7))
    fixed = git_remote.commit("typo fixed")
    d.wait_until(lambda: d.applied_revision("dev") == fixed)
    d.wait_until(lambda: _status(lensops)["refused"] is None)
    dev = _status(lensops)
    assert dev["status"] == "synced" and "invalid" not in dev
    assert lensops("status", "--check").code == 0
    rows = [(r["revision"], r["result"], r["trigger"]) for r in _history(lensops) if r["trigger"] != "resync"]  # resync: the drift put back
    assert rows == [(fixed, "success", "revision"), (bad, "invalid", "revision"), (first, "success", "startup")]


def test_a_daemon_started_on_a_refused_commit_still_reconciles_the_applied_revision(daemon, git_remote, client, lensops):
    d, first = _applied(daemon, git_remote)
    d.stop()

    bad = _typo(git_remote, "typo, pushed while no daemon ran")
    d = daemon()
    d.wait_until(lambda: (_status(lensops).get("refused") or {}).get("revision") == bad)
    _drift(client)
    d.wait_until(lambda: _threshold(client) == 5, timeout=20)  # the applied revision, read back from Git, self-heals
    dev = _status(lensops)
    assert (dev["status"], dev["appliedRevision"], dev["refused"]["revision"]) == ("invalid", first, bad)
    d.stop()

    d = daemon()  # a restart on the same refused commit records no second refusal
    d.wait_until(lambda: d.passes("dev") >= 2)
    assert [r["revision"] for r in _history(lensops) if r["result"] == "invalid"] == [bad]
