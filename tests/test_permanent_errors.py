"""Errors that retrying cannot fix are reported with AWS's message and not retried by the daemon
until the spec or the revision changes; the calls after one are bounded."""

from __future__ import annotations

from daemon_helpers import DaemonProcess
from test_lambda_alias import alias


def test_daemon_does_not_retry_a_permanent_error_until_the_revision_changes(aws, git_remote, tmp_path):
    git_remote.tree.environment("dev")
    git_remote.tree.write("environments/dev/alias.yaml", alias("live", function="billing"))
    first = git_remote.commit("alias on a function that does not exist")
    d = DaemonProcess(tmp_path, {"LENSOPS_REPO_URL": git_remote.url, "LENSOPS_POLL_INTERVAL": "1s", "LENSOPS_RESYNC_INTERVAL": "1s"})
    try:
        d.wait_until(lambda: "billing" in d.status()["environments"]["dev"]["message"])
        d.wait_passes("dev", 4)  # four resyncs
        tries = aws.requests().get(("lambda", "CreateAlias"), 0)
        print("CreateAlias calls over four resyncs:", tries)
        assert tries == 1
        status = d.status()["environments"]["dev"]
        assert "function billing" in status["message"]
        assert status["lastPass"]["errors"] and "not retried until the spec or the revision changes" in status["lastPass"]["errors"][0]

        git_remote.tree.write("environments/dev/alias.yaml", alias("live", function="billing", version="2"))
        second = git_remote.commit("another version")
        d.wait_until(lambda: d.status()["environments"]["dev"]["lastPass"]["revision"] == second)
        assert aws.requests().get(("lambda", "CreateAlias"), 0) == 2
        assert first != second
    finally:
        d.stop()
