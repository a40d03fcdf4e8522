"""Several replicas on one DynamoDB state store: each environment applied by exactly one,
taken over after a crash, and a paused holder that wakes up past its lease writes nothing."""

from __future__ import annotations

import signal
import subprocess
import time
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import alarm
from daemon_helpers import DaemonProcess

ENVS = ("dev", "qa", "staging", "prod")
TTL = 4


def _leaders(d: DaemonProcess) -> set[str]:
    for family in text_string_to_metric_families(d.get("/metrics")[1].decode()):
        if family.name == "lensops_leader":
            return {s.labels["environment"] for s in family.samples if s.value == 1}
    return set()


def _applied_by(d: DaemonProcess) -> set[str]:
    return {e["environment"] for e in d.events() if e.get("event") == "resource_applied"}


@pytest.fixture
def replicas(aws, git_remote, tmp_path):
    for env in ENVS:
        git_remote.tree.environment(env)
        git_remote.tree.write(f"environments/{env}/alarms.yaml", alarm("api-5xx", 5, physical=f"{env}-api-5xx"))
    git_remote.commit("four environments")
    settings = {
        "LENSOPS_REPO_URL": git_remote.url,
        "LENSOPS_POLL_INTERVAL": "1s",
        "LENSOPS_RESYNC_INTERVAL": "1s",
        "LENSOPS_STATE_URL": "dynamodb://lensops-replicas",
        "LENSOPS_LEASE_TTL": f"{TTL}s",
    }
    started: list[DaemonProcess] = []

    def start(**env: str) -> DaemonProcess:
        # Replicas are separate hosts: each its own Git cache (the cache is locked within one
        # process only; two processes cloning into one cache dir see each other's half-made clone).
        process = DaemonProcess(tmp_path, {**settings, "LENSOPS_CACHE_DIR": str(tmp_path / f"cache-{len(started)}"), **env})
        started.append(process)
        return process

    yield start
    for process in started:
        if process.proc.poll() is None:
            process.proc.send_signal(signal.SIGCONT)
    ended = [(process, process.end()) for process in started]
    problems = [(process, found) for process, found in ended if found]
    assert not problems, "\n\n".join("; ".join(found) + ":\n" + process.logs()[-3000:] for process, found in problems)


def _thresholds(client) -> dict[str, float]:
    alarms = client("cloudwatch").describe_alarms(AlarmNames=[f"{e}-api-5xx" for e in ENVS])["MetricAlarms"]
    return {a["AlarmName"].split("-")[0]: a["Threshold"] for a in alarms}


def _woken_and_passed(a: DaemonProcess, b: DaemonProcess, since: int) -> bool:
    """``a`` woke, its leases settled with ``b``'s, and each environment ``a`` took has had its first
    pass: finished, or declined because ``a``'s Git is behind what ``b`` applied."""
    woke = a.events()[since:]
    leases = {e["environment"] for e in woke if e.get("event") in ("lease_lost", "lease_released", "lease_acquired")}
    taken = [(i, e["environment"]) for i, e in enumerate(woke) if e.get("event") == "lease_acquired"]
    ends = ("reconcile_finished", "behind_on_git")
    passed = all(any(f.get("event") in ends and f.get("environment") == env for f in woke[i + 1:]) for i, env in taken)
    held_a, held_b = _leaders(a), _leaders(b)
    return leases == set(ENVS) and bool(taken) and passed and bool(held_a) and held_a | held_b == set(ENVS) and not held_a & held_b


def _paused_while_another_raises_every_threshold(a: DaemonProcess, replicas: Any, client: Any, git_remote: Any) -> tuple[int, DaemonProcess]:
    """Pause ``a`` (SIGSTOP); a second replica takes every lease and applies a commit raising every
    threshold to 8. Returns where ``a``'s events stood at the pause, and the second replica."""
    a.proc.send_signal(signal.SIGSTOP)
    paused_at = len(a.events())
    b = replicas()
    b.wait_until(lambda: _leaders(b) == set(ENVS), timeout=TTL + 15)
    for env in ENVS:
        git_remote.tree.write(f"environments/{env}/alarms.yaml", alarm("api-5xx", 8, physical=f"{env}-api-5xx"))
    git_remote.commit("raise every threshold")
    b.wait_until(lambda: set(_thresholds(client).values()) == {8.0}, timeout=20)
    return paused_at, b


def test_each_environment_is_applied_by_exactly_one_replica(replicas, client):
    a, b = replicas(), replicas()
    a.wait_until(lambda: len(_thresholds(client)) == 4, timeout=30)
    a.wait_until(lambda: (la := _leaders(a)) and (lb := _leaders(b)) and (la | lb) == set(ENVS) and not (la & lb), timeout=20)
    print("replica a leads", sorted(_leaders(a)), "replica b leads", sorted(_leaders(b)))
    assert _leaders(a) and _leaders(b), "the environments are shared between the replicas"
    assert not (_applied_by(a) & _applied_by(b))
    assert _applied_by(a) | _applied_by(b) == set(ENVS)


def test_a_killed_holder_is_taken_over_within_the_lease_time(replicas, client):
    a = replicas()
    a.wait_until(lambda: _leaders(a) == set(ENVS), timeout=30)
    b = replicas()
    b.wait_until(lambda: _leaders(b), timeout=20)
    a_held = _leaders(a)
    a.kill()
    killed = time.monotonic()
    b.wait_until(lambda: _leaders(b) == set(ENVS), timeout=TTL + 10, every=0.1)
    took = time.monotonic() - killed
    print(f"{sorted(a_held)} taken over {took:.1f}s after the holder was killed (lease {TTL}s)")
    assert took < TTL + 2 + 2  # the lease, the 2 s of the issue, and the heartbeat that marks the replica dead


def test_a_paused_holder_writes_nothing_when_it_wakes(replicas, client, git_remote):
    a = replicas()
    # Paused between passes: every first pass has recorded its writes (an AWS write made just
    # before the pause would otherwise be logged just after it).
    a.wait_until(lambda: _leaders(a) == set(ENVS) and all(a.applied_revision(env) for env in ENVS), timeout=30)
    assert len(_thresholds(client)) == 4
    paused_at, b = _paused_while_another_raises_every_threshold(a, replicas, client, git_remote)

    a.proc.send_signal(signal.SIGCONT)
    # Woken, the old holder finds every lease lost (or gives it up, or takes it again), and the
    # replicas share the environments again; each one it takes back has had a pass under its new
    # epoch before the events are read (any write that pass makes shows below).
    a.wait_until(lambda: _woken_and_passed(a, b, paused_at), timeout=TTL + 20)
    woke = a.events()[paused_at:]
    # Woken past its lease, the old holder finds it lost (the store refuses its
    # stale epoch) and applies nothing: the thresholds stay as b set them. It
    # may then take its share back under a new epoch, with nothing left to do.
    assert not [e for e in woke if e.get("event") == "resource_applied"]
    assert {e["environment"] for e in woke if e.get("event") in ("lease_lost", "lease_released", "lease_acquired")} == set(ENVS)
    assert all(e["epoch"] > 1 for e in woke if e.get("event") == "lease_acquired")
    assert set(_thresholds(client).values()) == {8.0}
    a.wait_until(lambda: not (_leaders(a) & _leaders(b)) and (_leaders(a) | _leaders(b)) == set(ENVS), timeout=10)


def test_a_replica_behind_on_git_does_not_take_an_environment_back(replicas, client, git_remote, tmp_path):
    # a reads a mirror of the remote that stays at the first commit (its Git host lags behind).
    mirror = tmp_path / "mirror.git"
    subprocess.run(["git", "clone", "-q", "--mirror", str(git_remote.bare), str(mirror)], check=True)
    a = replicas(LENSOPS_REPO_URL=f"file://{mirror}")
    a.wait_until(lambda: _leaders(a) == set(ENVS) and all(a.applied_revision(env) for env in ENVS), timeout=30)
    paused_at, b = _paused_while_another_raises_every_threshold(a, replicas, client, git_remote)

    a.proc.send_signal(signal.SIGCONT)
    a.wait_until(lambda: _woken_and_passed(a, b, paused_at), timeout=TTL + 20)
    applied = [(e["environment"], e["action"]) for e in a.events()[paused_at:] if e.get("event") == "resource_applied"]
    assert applied == [], f"the replica behind took {sorted({env for env, _ in applied})} back to the older revision"
    assert set(_thresholds(client).values()) == {8.0}
    behind = {e["environment"] for e in a.events()[paused_at:] if e.get("event") == "behind_on_git"}
    assert behind and behind <= _leaders(a), behind  # it says why it leaves what it holds alone


def _chained_alarms(names: list[str]) -> str:
    """Alarms each depending on the one before, so a pass writes them one at a time, in order."""
    docs = []
    for before, name in zip([None, *names], names, strict=False):  # one longer on purpose: the last name comes before none
        extra = f"  dependsOn: [MetricAlarm/{before}]\n" if before else ""
        docs.append(alarm(name, 5).replace(f"  name: {name}\n", f"  name: {name}\n{extra}"))
    return "---\n".join(docs)


def test_a_pass_writes_nothing_once_the_lease_it_started_under_has_moved_on(aws, client, git_remote, tmp_path, monkeypatch):
    """Fencing, in a daemon: a pass is fenced on the lease epoch it started under. Here the lease
    moves to another replica and back while the pass is between two resources, and the pass's own
    clock still says its lease holds (a paused process, a skewed clock); the state store refuses the
    pass's next write, so nothing more reaches AWS, even though this replica holds the lease again."""
    from controller.daemon import Daemon
    from controller.settings import load_settings
    from controller.state import LeaseLost, open_store

    git_remote.tree.environment("dev")
    git_remote.tree.write("environments/dev/alarms.yaml", _chained_alarms(["first", "second", "third"]))
    git_remote.commit("three alarms, one after the other")
    url = "dynamodb://lensops-fencing"
    d = Daemon(load_settings(environ={
        "LENSOPS_REPO_URL": git_remote.url, "LENSOPS_STATE_URL": url, "LENSOPS_LEASE_TTL": "30s",
        "LENSOPS_CACHE_DIR": str(tmp_path / "daemon-cache"), "LENSOPS_HTTP_ADDR": "127.0.0.1:0",
    }))
    other = open_store(url)
    try:
        d.fetch()
        d.leases.tick(["dev"])
        epoch = d.store.lease_holder("dev")[1]
        checks: list[int] = []

        def clock_says_yes(environment: str, started_under: int) -> bool:
            checks.append(started_under)
            if len(checks) == 2:  # "first" is applied, "second" is next: the lease moves on meanwhile
                other.acquire_lease("dev", d.leases.owner, -1)
                assert other.acquire_lease("dev", "replica-b", 30) == epoch + 1
                other.release_lease("dev", "replica-b")
                d.leases.tick(["dev"])  # this replica takes it back, under a new epoch
                assert d.store.lease_holder("dev")[:2] == (d.leases.owner, epoch + 2)
            return True

        monkeypatch.setattr(d.leases, "holds_epoch", clock_says_yes)
        with pytest.raises(LeaseLost):
            d.reconcile("dev", "revision")
        assert checks[0] == epoch, "the pass is fenced on the epoch it started under"
        live = {a["AlarmName"] for a in client("cloudwatch").describe_alarms()["MetricAlarms"]}
        assert live == {"first"}, "nothing reaches AWS after the lease moved on"
        assert sorted(other.resources("dev")) == ["MetricAlarm/first"]
        assert other.environment("dev") is None or other.environment("dev").applied_revision == ""
    finally:
        d.leases.release_all()
        d.server.httpd.server_close()
        d.runner.close()


def test_apply_is_refused_while_a_daemon_holds_the_environments_lease(aws, client, tree, lensops, monkeypatch):
    from conftest import writes
    from controller.state import open_store

    url = "dynamodb://lensops-cli-lease"
    monkeypatch.setenv("LENSOPS_STATE_URL", url)
    tree.environment("dev")
    tree.write("environments/dev/a.yaml", alarm("api-5xx", 5))
    daemon_store = open_store(url)
    daemon_store.acquire_lease("dev", "daemon-a", 30)
    aws.clear_requests()
    refused = lensops("apply", "--repo", str(tree.root), "--yes")
    assert refused.code == 1 and "lensops: dev is held by replica daemon-a (lease until " in refused.err
    assert "): apply through Git, or stop that daemon" in refused.err
    assert writes(aws.requests()) == {}
    daemon_store.release_lease("dev", "daemon-a")
    assert lensops("apply", "--repo", str(tree.root), "--yes").code == 0
    assert [a["Threshold"] for a in client("cloudwatch").describe_alarms(AlarmNames=["api-5xx"])["MetricAlarms"]] == [5.0]
