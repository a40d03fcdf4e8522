"""Several replicas on one DynamoDB state store: each environment applied by exactly one,
taken over after a crash, and a paused holder that wakes up past its lease writes nothing."""

from __future__ import annotations

import signal
import time

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

    def start() -> DaemonProcess:
        process = DaemonProcess(tmp_path, settings)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.proc.poll() is None:
            process.proc.send_signal(signal.SIGCONT)
        process.terminate()


def _thresholds(client) -> dict[str, float]:
    alarms = client("cloudwatch").describe_alarms(AlarmNames=[f"{e}-api-5xx" for e in ENVS])["MetricAlarms"]
    return {a["AlarmName"].split("-")[0]: a["Threshold"] for a in alarms}


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
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait(10)
    killed = time.monotonic()
    b.wait_until(lambda: _leaders(b) == set(ENVS), timeout=TTL + 10, every=0.1)
    took = time.monotonic() - killed
    print(f"{sorted(a_held)} taken over {took:.1f}s after the holder was killed (lease {TTL}s)")
    assert took < TTL + 2 + 2  # the lease, the 2 s of the issue, and the heartbeat that marks the replica dead


def test_a_paused_holder_writes_nothing_when_it_wakes(replicas, client, git_remote):
    a = replicas()
    a.wait_until(lambda: _leaders(a) == set(ENVS) and len(_thresholds(client)) == 4, timeout=30)
    a.proc.send_signal(signal.SIGSTOP)
    paused_at = len(a.events())
    b = replicas()
    b.wait_until(lambda: _leaders(b) == set(ENVS), timeout=TTL + 15)
    for env in ENVS:
        git_remote.tree.write(f"environments/{env}/alarms.yaml", alarm("api-5xx", 8, physical=f"{env}-api-5xx"))
    git_remote.commit("raise every threshold")
    b.wait_until(lambda: set(_thresholds(client).values()) == {8.0}, timeout=20)

    a.proc.send_signal(signal.SIGCONT)
    time.sleep(TTL)
    woke = [e for e in a.events()[paused_at:]]
    # Woken past its lease, the old holder finds it lost (the store refuses its
    # stale epoch) and applies nothing: the thresholds stay as b set them. It
    # may then take its share back under a new epoch, with nothing left to do.
    assert not [e for e in woke if e.get("event") == "resource_applied"]
    assert {e["environment"] for e in woke if e.get("event") in ("lease_lost", "lease_released", "lease_acquired")} == set(ENVS)
    assert all(e["epoch"] > 1 for e in woke if e.get("event") == "lease_acquired")
    assert set(_thresholds(client).values()) == {8.0}
    a.wait_until(lambda: not (_leaders(a) & _leaders(b)) and (_leaders(a) | _leaders(b)) == set(ENVS), timeout=10)
