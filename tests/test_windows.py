"""Sync windows (CONTRACT.md section 7): inside a deny window, or outside every allow window, an
environment is planned and reported but not changed; `lensops apply --force-window` still goes through."""

from __future__ import annotations

import datetime as dt
import json

from conftest import alarm, writes
from controller.daemon import Daemon
from controller.settings import load_settings

DENY_NOW = "sync:\n  windows: [{kind: deny, schedule: '* * * * *', duration: 1h}]"
"""A deny window open at any time: it opens every minute for an hour."""
ALLOW_NOW = "sync:\n  windows: [{kind: allow, schedule: '* * * * *', duration: 1h}]"


def _allow_closed_now() -> str:
    """An allow window one hour long, starting twelve hours from now (UTC): closed for the whole test."""
    hour = (dt.datetime.now(dt.timezone.utc).hour + 12) % 24
    return f"sync:\n  windows: [{{kind: allow, schedule: '0 {hour} * * *', duration: 1h, timezone: UTC}}]"


def _threshold(client, name: str = "api-5xx") -> float | None:
    """The alarm's live threshold, None when it does not exist."""
    found = client("cloudwatch").describe_alarms(AlarmNames=[name])["MetricAlarms"]
    return found[0]["Threshold"] if found else None


# --- the daemon -------------------------------------------------------------


def test_daemon_holds_a_change_inside_a_deny_window(aws, daemon, git_remote, client):
    tree = git_remote.tree
    tree.environment("dev")
    tree.write("environments/dev/a.yaml", alarm("api-5xx", 5))
    rev1 = git_remote.commit("rev1")
    d = daemon(LENSOPS_RESYNC_INTERVAL="1s")
    d.wait_until(lambda: d.applied_revision("dev") == rev1)
    assert _threshold(client) == 5

    tree.environment("dev", DENY_NOW)
    tree.write("environments/dev/a.yaml", alarm("api-5xx", 9))
    rev2 = git_remote.commit("rev2: threshold 9 inside a deny window")

    def held_passes() -> int:
        return sum(1 for e in d.events() if e.get("event") == "reconcile_finished" and e.get("revision") == rev2 and e.get("executed") is False)

    d.wait_until(lambda: held_passes() >= 1, timeout=15, every=0.1)
    aws.clear_requests()
    d.wait_until(lambda: held_passes() >= 4, timeout=15, every=0.1)  # several resyncs later
    assert writes(aws.requests()) == {}
    assert _threshold(client) == 5
    assert any(e.get("event") == "pass_planned_only" and "deny window" in e.get("reason", "") for e in d.events())

    dev = d.status()["environments"]["dev"]
    assert dev["appliedRevision"] == rev1
    assert dev["status"] == "out_of_sync"
    assert dev["lastPass"]["revision"] == rev2 and dev["lastPass"]["executed"] is False
    assert dev["lastPass"]["counts"]["update"] == 1

    # The window's removal (a new commit) lets the held change go out.
    tree.environment("dev")
    rev3 = git_remote.commit("rev3: no window")
    d.wait_until(lambda: d.applied_revision("dev") == rev3, timeout=15)
    assert _threshold(client) == 9
    assert d.status()["environments"]["dev"]["status"] == "synced"


def _in_process_daemon(tmp_path, git_remote) -> Daemon:
    settings = load_settings(environ={
        "LENSOPS_REPO_URL": git_remote.url,
        "LENSOPS_STATE_URL": f"sqlite:///{tmp_path}/daemon-state.db",
        "LENSOPS_CACHE_DIR": str(tmp_path / "daemon-cache"),
        "LENSOPS_HTTP_ADDR": "127.0.0.1:0",
    })
    return Daemon(settings, git_remote.url)


def test_daemon_applies_a_held_change_once_its_allow_window_opens(aws, git_remote, client, tmp_path):
    """In-process, on an injected clock: the allow window (one hour a day, starting twelve hours from the real now) is chosen so that
    the real clock is outside it, so only the injected clock can open it."""
    hour = (dt.datetime.now(dt.timezone.utc).hour + 12) % 24
    tree = git_remote.tree
    tree.environment("dev", f"sync:\n  windows: [{{kind: allow, schedule: '0 {hour} * * *', duration: 1h, timezone: UTC}}]")
    tree.write("environments/dev/a.yaml", alarm("api-5xx", 5))
    rev1 = git_remote.commit("rev1")
    day = dt.datetime(2030, 6, 3, tzinfo=dt.timezone.utc)
    inside = day.replace(hour=hour, minute=30)
    before = inside - dt.timedelta(minutes=45)  # 15 minutes before the window opens
    opened = inside + dt.timedelta(days=1, minutes=-29)  # one minute after it opens, the next day

    d = _in_process_daemon(tmp_path, git_remote)
    try:
        d.fetch()
        d.leases.tick(["dev"])
        assert d.leases.holds("dev")
        d.clock = lambda: inside
        d.reconcile("dev", "revision")
        assert _threshold(client) == 5
        assert d.status()["environments"]["dev"]["appliedRevision"] == rev1

        tree.write("environments/dev/a.yaml", alarm("api-5xx", 9))
        rev2 = git_remote.commit("rev2: threshold 9")
        d.fetch()
        d.clock = lambda: before
        aws.clear_requests()
        for reason in ("revision", "resync", "resync"):
            d.reconcile("dev", reason)
        assert writes(aws.requests()) == {}
        assert _threshold(client) == 5
        dev = d.status()["environments"]["dev"]
        assert dev["appliedRevision"] == rev1 and dev["status"] == "out_of_sync"
        assert dev["lastPass"]["revision"] == rev2 and dev["lastPass"]["executed"] is False

        d.clock = lambda: opened
        d.reconcile("dev", "resync")
        assert _threshold(client) == 9
        dev = d.status()["environments"]["dev"]
        assert dev["appliedRevision"] == rev2 and dev["status"] == "synced" and dev["lastPass"]["executed"] is True
    finally:
        d.leases.release_all()
        d.server.httpd.server_close()
        d.runner.close()


# --- the command line ---------------------------------------------------------


def test_apply_inside_a_deny_window_needs_force_window(aws, client, tree, lensops):
    tree.environment("dev")
    tree.write("environments/dev/a.yaml", alarm("api-5xx", 5))
    assert lensops("apply", "--repo", str(tree.root), "--yes").code == 0
    tree.environment("dev", DENY_NOW)
    tree.write("environments/dev/a.yaml", alarm("api-5xx", 9))

    aws.clear_requests()
    held = lensops("apply", "--repo", str(tree.root), "--yes", "--output", "json")
    assert held.code == 0, held.out + held.err  # today: a held environment is not an error
    report = json.loads(held.out)
    assert "deny window" in report["held"]["dev"]
    assert writes(aws.requests()) == {}
    assert _threshold(client) == 5
    assert lensops("plan", "--repo", str(tree.root)).code == 2  # the change is still pending

    forced = lensops("apply", "--repo", str(tree.root), "--yes", "--force-window")
    assert forced.code == 0, forced.out + forced.err
    assert _threshold(client) == 9
    assert lensops("plan", "--repo", str(tree.root)).code == 0


def test_apply_outside_every_allow_window_is_held_and_inside_one_goes_through(aws, client, tree, lensops):
    tree.environment("dev")
    tree.write("environments/dev/a.yaml", alarm("api-5xx", 5))
    assert lensops("apply", "--repo", str(tree.root), "--yes").code == 0
    tree.write("environments/dev/a.yaml", alarm("api-5xx", 9))

    tree.environment("dev", _allow_closed_now())
    aws.clear_requests()
    closed = lensops("apply", "--repo", str(tree.root), "--yes", "--output", "json")
    assert closed.code == 0, closed.out + closed.err
    assert json.loads(closed.out)["held"] == {"dev": "outside every allow window"}
    assert writes(aws.requests()) == {}
    assert _threshold(client) == 5

    tree.environment("dev", ALLOW_NOW)
    opened = lensops("apply", "--repo", str(tree.root), "--yes", "--output", "json")
    assert opened.code == 0, opened.out + opened.err
    assert json.loads(opened.out)["held"] == {}
    assert _threshold(client) == 9
