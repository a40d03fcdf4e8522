"""`lensops run` as a subprocess against a bare Git remote and the emulator."""

from __future__ import annotations

import json
import time

from prometheus_client.parser import text_string_to_metric_families

from conftest import alarm, alarms
from lensops_emulator.faults import FaultPlan

SECRET = "s3cret-webhook-key"


def _estate(git_remote, threshold: float = 5, self_heal: bool = True) -> str:
    git_remote.tree.environment("dev", f"sync: {{selfHeal: {str(self_heal).lower()}}}")
    git_remote.tree.write("environments/dev/alarms.yaml", alarm("api-5xx", threshold))
    return git_remote.commit(f"threshold {threshold}")


def _threshold(client) -> float:
    return client("cloudwatch").describe_alarms(AlarmNames=["api-5xx"])["MetricAlarms"][0]["Threshold"]


def test_pushed_commit_is_applied_and_drift_reverted(daemon, git_remote, client):
    first = _estate(git_remote, 5)
    d = daemon()
    d.wait_until(lambda: d.applied_revision("dev") == first)
    assert _threshold(client) == 5
    assert d.get("/readyz")[0] == 200 and d.get("/healthz")[0] == 200

    second = _estate(git_remote, 6)
    d.wait_until(lambda: d.applied_revision("dev") == second)
    assert _threshold(client) == 6

    alarm_live = client("cloudwatch").describe_alarms(AlarmNames=["api-5xx"])["MetricAlarms"][0]
    client("cloudwatch").put_metric_alarm(
        AlarmName="api-5xx", Namespace=alarm_live["Namespace"], MetricName=alarm_live["MetricName"], Statistic="Sum",
        Period=60, EvaluationPeriods=1, Threshold=42, ComparisonOperator="GreaterThanThreshold", Dimensions=alarm_live["Dimensions"],
    )
    d.wait_until(lambda: _threshold(client) == 6, timeout=20)
    assert d.terminate() == 0


def test_drift_is_only_reported_without_self_heal(daemon, git_remote, client):
    first = _estate(git_remote, 5, self_heal=False)
    d = daemon()
    d.wait_until(lambda: d.applied_revision("dev") == first)
    client("cloudwatch").put_metric_alarm(
        AlarmName="api-5xx", Namespace="AWS/Lambda", MetricName="Errors", Statistic="Sum", Period=60,
        EvaluationPeriods=1, Threshold=42, ComparisonOperator="GreaterThanThreshold",
        Dimensions=[{"Name": "FunctionName", "Value": "scenario-processor"}],
    )

    def drift_counted():
        for family in text_string_to_metric_families(d.get("/metrics")[1].decode()):
            if family.name == "lensops_drift_detected":
                return any(s.value >= 1 for s in family.samples if s.labels.get("kind") == "MetricAlarm" and s.name.endswith("_total"))
        return False

    d.wait_until(drift_counted, timeout=20)
    assert _threshold(client) == 42


def test_invalid_commit_is_refused_and_live_state_stays(daemon, git_remote, client):
    first = _estate(git_remote, 5)
    d = daemon()
    d.wait_until(lambda: d.applied_revision("dev") == first)
    git_remote.tree.write("environments/dev/alarms.yaml", alarm("api-5xx", 9).replace("  threshold:", "  threshhold:"))
    bad = git_remote.commit("typo")
    status = d.wait_until(lambda: (s := d.status())["environments"]["dev"].get("invalid") and s)
    assert any("alarms.yaml:11: MetricAlarm/api-5xx: unknown field 'spec.threshhold'" in p for p in status["environments"]["dev"]["invalid"])
    assert d.applied_revision("dev") == first
    assert _threshold(client) == 5
    assert any(e.get("event") == "manifest_invalid" and e.get("revision") == bad for e in d.events())
    metrics_text = d.get("/metrics")[1].decode()
    assert 'lensops_reconcile_total{environment="dev",result="invalid"} 1.0' in metrics_text


def test_webhook_signature_and_prompt_apply(daemon, git_remote, client):
    first = _estate(git_remote, 5)
    d = daemon(LENSOPS_POLL_INTERVAL="1h", LENSOPS_WEBHOOK_SECRET=SECRET)
    d.wait_until(lambda: d.applied_revision("dev") == first)
    second = _estate(git_remote, 7)
    body = json.dumps({"ref": "refs/heads/main", "after": second}).encode()
    assert d.post_hook(body, None) == 401
    assert d.post_hook(body, "wrong-secret") == 401
    d.wait_passes("dev", 2)  # the daemon has moved on (a fetch a hook triggered would have run first)
    assert d.applied_revision("dev") == first and _threshold(client) == 5

    sent = time.monotonic()
    assert d.post_hook(body, SECRET, delivery="d-1") == 202
    d.wait_until(lambda: d.applied_revision("dev") == second, timeout=10, every=0.05)
    elapsed = time.monotonic() - sent
    print(f"commit applied {elapsed:.2f}s after the webhook")
    assert elapsed < 2.0
    assert _threshold(client) == 7
    assert d.post_hook(body, SECRET, delivery="d-1") == 200  # a replay is acknowledged, not acted on
    assert SECRET not in d.logs()


def test_every_contract_metric_is_exported(daemon, git_remote):
    first = _estate(git_remote, 5)
    d = daemon()
    d.wait_until(lambda: d.applied_revision("dev") == first)
    names = {f.name for f in text_string_to_metric_families(d.get("/metrics")[1].decode())}
    contract = {
        "lensops_reconcile", "lensops_reconcile_duration_seconds", "lensops_resources", "lensops_drift_detected",
        "lensops_applied_changes", "lensops_rollbacks", "lensops_revision_info", "lensops_source_revision_info",
        "lensops_last_sync_timestamp_seconds", "lensops_aws_api_calls", "lensops_git_fetch", "lensops_runbook_runs",
        "lensops_leader",
    }
    assert contract <= names, contract - names


def _samples(text: str, family: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples of one family (``_total`` for a counter), by their sorted labels."""
    return {
        tuple(sorted(s.labels.items())): s.value
        for f in text_string_to_metric_families(text) if f.name == family
        for s in f.samples if not s.name.endswith("_created")
    }


def test_every_series_exists_at_zero_from_the_start(daemon, git_remote):
    """CONTRACT.md section 6: an alert on increase() sees the first failed runbook run and the
    first refused revision only if the series was 0 before. Every runbook of the catalogue has
    both result series at process start (no RunbookRun committed), and an environment whose
    first revision is invalid has every result series (``invalid`` counted, the others at 0).
    Beside them, the build's version and the process collector's series."""
    from importlib.metadata import version

    from runbooks import CATALOGUE

    revision = _estate(git_remote, 5)
    git_remote.tree.environment("staging")
    git_remote.tree.write("environments/staging/alarms.yaml", alarm("api-5xx", 5).replace("  threshold:", "  threshhold:"))
    revision = git_remote.commit("staging: a typo from its first commit")
    d = daemon()
    d.wait_until(lambda: d.applied_revision("dev") == revision)
    text = d.get("/metrics")[1].decode()

    runs = _samples(text, "lensops_runbook_runs")
    assert runs == {(("result", result), ("runbook", name)): 0.0 for name in CATALOGUE for result in ("succeeded", "failed")}
    reconciles = _samples(text, "lensops_reconcile")
    staging = {dict(labels)["result"]: value for labels, value in reconciles.items() if dict(labels)["environment"] == "staging"}
    assert staging == {"success": 0.0, "failed": 0.0, "rolled_back": 0.0, "invalid": 1.0}
    dev = {dict(labels)["result"] for labels in reconciles if dict(labels)["environment"] == "dev"}
    assert dev == {"success", "failed", "rolled_back", "invalid"}

    assert _samples(text, "lensops_build_info") == {(("version", version("lensops")),): 1.0}
    families = {f.name for f in text_string_to_metric_families(text)}
    assert {"process_resident_memory_bytes", "process_cpu_seconds", "process_start_time_seconds", "process_open_fds"} <= families


def test_sigterm_exits_zero_quickly(daemon, git_remote):
    first = _estate(git_remote, 5)
    d = daemon()
    d.wait_until(lambda: d.applied_revision("dev") == first)
    started = time.monotonic()
    assert d.terminate() == 0
    assert time.monotonic() - started < 30


def test_revision_arriving_mid_pass_is_applied_right_after_it(aws, daemon, git_remote, client):
    """A commit fetched while a pass is in flight runs as soon as that pass ends, not at the next resync (60 s here)."""
    names = [f"slow-{i:02d}" for i in range(16)]
    git_remote.tree.environment("dev")
    git_remote.tree.write("environments/dev/alarms.yaml", alarms(names, 5))
    rev1 = git_remote.commit("rev1: 16 alarms")
    aws.set_faults(FaultPlan(latency_ms=400, services={"cloudwatch"}))  # each CloudWatch call 0.4 s, 2 at a time: 16 creates take seconds
    d = daemon(LENSOPS_RESYNC_INTERVAL="60s", LENSOPS_CONCURRENCY="2", LENSOPS_WEBHOOK_SECRET=SECRET)

    def some_not_all() -> bool:
        found = client("cloudwatch").describe_alarms(AlarmNamePrefix="slow-")["MetricAlarms"]
        return 0 < len(found) < len(names)

    d.wait_until(some_not_all, timeout=20, every=0.05)
    git_remote.tree.write("environments/dev/alarms.yaml", alarms(names[:-1], 5) + "---\n" + alarm(names[-1], 9))
    rev2 = git_remote.commit("rev2: one threshold")
    body = json.dumps({"ref": "refs/heads/main", "after": rev2}).encode()
    assert d.post_hook(body, SECRET) == 202  # fetched at once (the 1 s poll would too), well inside the pass

    def event(name: str, revision: str) -> int | None:
        return next((i for i, e in enumerate(d.events()) if e.get("event") == name and e.get("revision") == revision), None)

    fetched = d.wait_until(lambda: event("revision_fetched", rev2), timeout=10, every=0.05)
    aws.set_faults(None)
    finished = d.wait_until(lambda: event("reconcile_finished", rev1), timeout=20, every=0.02)
    rev1_done = time.monotonic()
    assert fetched < finished, "rev2 must have arrived while rev1's pass was in flight"
    assert d.events()[finished]["executed"] is True and d.events()[finished]["result"] == "success"

    d.wait_until(lambda: d.applied_revision("dev") == rev2, timeout=15, every=0.05)
    waited = time.monotonic() - rev1_done
    print(f"rev2 applied {waited:.2f}s after rev1's pass ended")
    assert waited < 5.0
    live = {a["AlarmName"]: a["Threshold"] for a in client("cloudwatch").describe_alarms(AlarmNamePrefix="slow-")["MetricAlarms"]}
    assert live == {**{n: 5 for n in names[:-1]}, names[-1]: 9}


def test_a_retryable_failure_is_retried_at_its_delay_not_a_resync_later(daemon, git_remote, client, aws):
    """CloudWatch answers 503 during the first pass: the alarm fails as retryable, and the daemon
    passes over the environment again at the error's delay (seconds), not at the hour-long resync."""
    aws.set_faults(FaultPlan(down={"cloudwatch"}))
    try:
        _estate(git_remote, 5)
        d = daemon(LENSOPS_RESYNC_INTERVAL="1h")
        d.wait_until(lambda: "MetricAlarm/api-5xx" in json.dumps(d.status()) and "failed" in json.dumps(d.status()), timeout=30)
    finally:
        aws.set_faults(None)
    started = time.monotonic()
    d.wait_until(lambda: client("cloudwatch").describe_alarms(AlarmNames=["api-5xx"])["MetricAlarms"], timeout=30)
    assert time.monotonic() - started < 30
    assert _threshold(client) == 5
    assert d.terminate() == 0
