"""The daemon when Git misbehaves: an unreachable remote, a force-push of older history,
a commit that empties an environment, removes one, names one badly or holds a value the
loader cannot use. Live AWS keeps the last applied state; errors are reported in
/api/v1/status and counted, never a crash."""

from __future__ import annotations

import json
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


STACK = "apiVersion: lensops.io/v1\nkind: Stack\nmetadata:\n  name: network\nspec:\n  template: {template}\n"


def test_a_template_that_cannot_be_a_file_name_refuses_only_its_environment(daemon, git_remote, client):
    """A NUL byte in one Stack's template once stopped the loading of every environment (ValueError)."""
    git_remote.tree.environment("dev")
    git_remote.tree.write("environments/dev/stack.yaml", STACK.format(template='"net\\0work.yaml"'))
    git_remote.tree.environment("prod")
    git_remote.tree.write("environments/prod/alarms.yaml", alarm("api-5xx"))
    revision = git_remote.commit("a NUL byte in dev's template")
    d = daemon()
    d.wait_until(lambda: d.applied_revision("prod") == revision)
    dev = d.wait_until(lambda: d.status()["environments"].get("dev", {}).get("invalid"))
    assert dev == ["environments/dev/stack.yaml:6: Stack/network: template 'net\\x00work.yaml' is not a usable file name"]
    assert _threshold(client) == 5 and d.get("/readyz")[0] == 200


def test_a_loader_crash_is_one_event_and_the_next_fetch_loads_again(aws, git_remote, tmp_path, monkeypatch):
    """An exception the loader did not mean (a bug) leaves the revision unloaded: logged once as an
    event, counted, shown as the source's error; the fetch job returns, and the next fetch tries again."""
    from structlog.testing import capture_logs

    from controller import daemon as daemon_module, metrics
    from controller.daemon import Daemon
    from controller.settings import load_settings

    git_remote.tree.environment("dev")
    git_remote.tree.write("environments/dev/alarms.yaml", alarm("api-5xx"))
    revision = git_remote.commit()
    d = Daemon(load_settings(environ={
        "LENSOPS_REPO_URL": git_remote.url, "LENSOPS_STATE_URL": f"sqlite:///{tmp_path}/daemon-state.db",
        "LENSOPS_CACHE_DIR": str(tmp_path / "daemon-cache"), "LENSOPS_HTTP_ADDR": "127.0.0.1:0",
    }))

    def load_failed() -> float:
        return metrics.REGISTRY.get_sample_value("lensops_git_fetch_total", {"result": "load_failed"}) or 0.0

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a loader bug")

    try:
        before = load_failed()
        monkeypatch.setattr(daemon_module, "load_tree", crash)
        with capture_logs() as events:
            d.fetch()
        crashed = [e for e in events if e["log_level"] == "error"]
        assert [(e["event"], e["revision"], e["error"]) for e in crashed] == [("load_crashed", revision, "RuntimeError: a loader bug")]
        assert crashed[0]["at"].startswith("test_git_failures.py:")
        assert load_failed() == before + 1
        assert not d.loaded and not d.first_loaded.is_set()
        assert d.status()["source"]["error"].startswith(f"revision {revision[:12]} could not be loaded: internal error RuntimeError")

        monkeypatch.undo()
        d.fetch()
        assert set(d.loaded) == {"dev"} and d.fetched_revision == revision
        assert d.status()["source"]["error"] == ""
    finally:
        d.leases.release_all()
        d.server.httpd.server_close()
        d.runner.close()


def _series(d: DaemonProcess, environment: str) -> set[str]:
    """The names of the metric series that carry ``environment``."""
    return {
        sample.name
        for family in text_string_to_metric_families(d.get("/metrics")[1].decode())
        for sample in family.samples
        if sample.labels.get("environment") == environment
    }


def test_an_environment_removed_from_git_is_shown_removed_and_no_longer_reconciled(daemon, git_remote, client, lensops):
    git_remote.tree.environment("dev")
    git_remote.tree.write("environments/dev/alarms.yaml", alarm("api-5xx"))
    git_remote.tree.environment("prod", "sync: {prune: true, selfHeal: true}")
    git_remote.tree.write("environments/prod/alarms.yaml", alarm("prod-5xx"))
    first = git_remote.commit("dev and prod")
    d = daemon(LENSOPS_RESYNC_INTERVAL="1s")
    d.wait_until(lambda: d.applied_revision("dev") == first and d.applied_revision("prod") == first)
    gauges = {"lensops_resources", "lensops_revision_info", "lensops_leader", "lensops_last_sync_timestamp_seconds"}
    assert gauges <= _series(d, "prod")

    shutil.rmtree(git_remote.work / "environments" / "prod")
    second = git_remote.commit("prod is gone")
    prod = d.wait_until(lambda: (s := d.status()["environments"]["prod"])["status"] == "removed" and s)
    assert prod["message"].startswith(f"removed from Git at revision {second[:12]}")
    d.wait_until(lambda: d.applied_revision("dev") == second)
    passes = d.passes("prod")
    d.wait_passes("dev", 3)
    assert d.passes("prod") == passes, "no pass over a removed environment"
    # its gauges' series are gone, its counters stay; what it made in AWS stays
    series = _series(d, "prod")
    assert not series & gauges, series
    assert {"lensops_reconcile_total", "lensops_applied_changes_total"} <= series
    assert _alarm_names(client) == {"api-5xx", "prod-5xx"}
    assert any(e.get("event") == "environment_removed" and e.get("environment") == "prod" for e in d.events())
    removed = [
        sample.value
        for family in text_string_to_metric_families(d.get("/metrics")[1].decode())
        for sample in family.samples
        if sample.name == "lensops_environments_removed"
    ]
    assert removed == [1.0], removed
    # the state store says so too, for `lensops status`
    status = json.loads(lensops("status", "--output", "json").out)["environments"]
    assert (status["prod"]["status"], status["dev"]["status"]) == ("removed", "synced")

    # back in Git: reconciled again
    git_remote.tree.environment("prod", "sync: {prune: true, selfHeal: true}")
    git_remote.tree.write("environments/prod/alarms.yaml", alarm("prod-5xx", 7))
    third = git_remote.commit("prod is back")
    d.wait_until(lambda: d.applied_revision("prod") == third and d.status()["environments"]["prod"]["status"] == "synced")
    assert _threshold(client, "prod-5xx") == 7 and gauges <= _series(d, "prod")


def test_folders_whose_names_cannot_be_environments_make_no_status_row_or_series(daemon, git_remote):
    git_remote.tree.environment("dev")
    git_remote.tree.write("environments/dev/alarms.yaml", alarm("api-5xx"))
    for name in ("Prod", "bad\nname", "x" * 250):
        git_remote.tree.write(f"environments/{name}/environment.yaml", "apiVersion: lensops.io/v1\nkind: Environment\nmetadata: {name: x}\nspec: {region: us-east-1}\n")
    revision = git_remote.commit("three folders that cannot be environments")
    d = daemon()
    d.wait_until(lambda: d.applied_revision("dev") == revision)
    status = d.status()
    assert set(status["environments"]) == {"dev"}
    assert len(status["source"]["problems"]) == 3
    assert all(p.startswith("environments/: folder ") and "\n" not in p and len(p) < 250 for p in status["source"]["problems"])
    labels = {
        sample.labels["environment"]
        for family in text_string_to_metric_families(d.get("/metrics")[1].decode())
        for sample in family.samples
        if "environment" in sample.labels
    }
    assert labels == {"dev"}


def test_a_tree_broken_as_a_whole_retires_no_environment(daemon, git_remote):
    """A commit that moves environments/ away (or leaves it unusable) is refused; it does not say
    that every environment left Git, so each stays at its last revision and keeps being reconciled."""
    git_remote.tree.environment("dev")
    git_remote.tree.write("environments/dev/alarms.yaml", alarm("api-5xx"))
    first = git_remote.commit("dev")
    d = daemon(LENSOPS_RESYNC_INTERVAL="1s")
    d.wait_until(lambda: d.applied_revision("dev") == first)
    shutil.move(git_remote.work / "environments", git_remote.work / "envs")
    git_remote.commit("environments/ renamed by mistake")
    d.wait_until(lambda: any("no environments/ folder" in p for p in d.status()["source"]["problems"]))
    d.wait_passes("dev", 2)
    dev = d.status()["environments"]["dev"]
    assert dev["status"] != "removed" and d.applied_revision("dev") == first, dev
    assert not any(e.get("event") == "environment_removed" for e in d.events())
