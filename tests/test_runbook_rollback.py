"""The `rollback` runbook: back on the last healthy revision, held there until a commit changes the environment."""

from __future__ import annotations

from conftest import alarm
from daemon_helpers import DaemonProcess

ROLLBACK = "apiVersion: lensops.io/v1\nkind: RunbookRun\nmetadata: {name: back-to-healthy}\nspec: {runbook: rollback}\n"


def _threshold(client) -> float:
    return client("cloudwatch").describe_alarms(AlarmNames=["api-5xx"])["MetricAlarms"][0]["Threshold"]


def test_rollback_runbook_holds_the_last_healthy_revision_until_a_newer_commit(aws, client, git_remote, tmp_path):
    tree = git_remote.tree
    tree.environment("dev")
    tree.write("environments/dev/alarms.yaml", alarm("api-5xx", 5))
    good = git_remote.commit("good")
    d = DaemonProcess(tmp_path, {"LENSOPS_REPO_URL": git_remote.url, "LENSOPS_POLL_INTERVAL": "1s", "LENSOPS_RESYNC_INTERVAL": "1s"})
    try:
        d.wait_until(lambda: d.status()["environments"]["dev"]["healthyRevision"] == good)
        tree.write("environments/dev/alarms.yaml", alarm("api-5xx", 9))
        bad = git_remote.commit("bad, but no alarm says so")
        d.wait_until(lambda: d.status()["environments"]["dev"]["healthyRevision"] == bad)
        assert _threshold(client) == 9

        tree.write("environments/dev/rollback.yaml", ROLLBACK)
        run = git_remote.commit("run the rollback runbook")
        status = d.wait_until(lambda: (s := d.status()["environments"]["dev"]).get("hold") and s, timeout=30)
        assert (status["hold"]["revision"], status["hold"]["after"]) == (good, run)
        assert _threshold(client) == 5
        d.wait_passes("dev", 3)  # resyncs keep the held revision, not the head commit
        assert _threshold(client) == 5
        runs = d.status()["environments"]["dev"]["runbooks"]
        assert runs and runs[0]["state"] == "succeeded"

        tree.write("README.md", "a commit elsewhere in the repository\n")
        elsewhere = git_remote.commit("docs only")
        d.wait_until(lambda: d.status()["source"]["revision"] == elsewhere, timeout=10)
        d.wait_passes("dev", 2)  # resyncs on that commit: the environment's manifests did not change, the hold stays
        assert d.status()["environments"]["dev"]["hold"]["revision"] == good
        assert _threshold(client) == 5

        tree.write("environments/dev/alarms.yaml", alarm("api-5xx", 7))
        newer = git_remote.commit("the fix")
        d.wait_until(lambda: _threshold(client) == 7, timeout=20)
        assert d.status()["environments"]["dev"].get("hold") is None
        assert any(e.get("event") == "hold_lifted" and e.get("revision") == newer for e in d.events())
    finally:
        d.stop()
