"""At AWS's request quotas (issue 18): new alarms applied as fast as the account's API rates allow, no faster.

The emulator models AWS's per-account rates as token buckets (``Quotas``:
CloudWatch's ``PutMetricAlarm`` 3 a second, ...) and every call's latency (30
ms, ``LENSOPS_BENCH_QUOTA_LATENCY_MS``). Each scenario prints its time beside
the floor the quota sets (the writes over ``PutMetricAlarm``'s rate), and the
throttled answers it drew, of every operation, against its writes:

- ``real_rate``: 100 new alarms at the real 3/s, with lensops' built-in rates
  (no ``LENSOPS_API_RATES``): floor 33.3 s, targets 1.15x and under 2 %.
- ``scaled_rates``: 1,000 new alarms at quotas raised tenfold, told to lensops
  through ``LENSOPS_API_RATES`` (the emulator's buckets, written by
  ``Quotas.setting()``): floor 33.3 s, targets 1.15x and under 2 %.
- ``three_environments``: three environments of 200 new alarms in one account,
  applied by one daemon (``lensops run`` over a Git remote), at the same raised
  quotas: from the daemon's start until all three are applied, floor 20 s (600
  writes at 30/s), targets 1.25x and under 2 %.

Run one alone: ``.venv/bin/python -m pytest -s tests/benchmarks/bench_quotas.py -p no:randomly -k real_rate``.
Nothing here asserts on time; docs/performance.md holds a run's figures.
"""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

from benchmarks.launch import lensops
from benchmarks.report import RESULTS, QuotaRow
from conftest import alarms, writes
from daemon_helpers import DaemonProcess
from lensops_emulator import Emulator, Quotas

pytestmark = pytest.mark.timeout(1800)

LATENCY_MS = int(os.environ.get("LENSOPS_BENCH_QUOTA_LATENCY_MS", "30"))
ENVIRONMENTS = ("dev", "staging", "prod")
WRITE = ("cloudwatch", "PutMetricAlarm")


def write_alarms(tree: Any, env: str, n: int) -> None:
    """``n`` alarms in ``env``, named after it (one account: alarm names are unique across environments)."""
    tree.environment(env)
    for start in range(0, n, 500):
        names = [f"{env}-alarm-{i:05d}" for i in range(start, min(n, start + 500))]
        tree.write(f"environments/{env}/alarms-{start // 500:03d}.yaml", alarms(names))


def record(label: str, aws: Emulator, quotas: Quotas, seconds: float, target: float, notes: list[str]) -> QuotaRow:
    """The scenario's row: its writes (requests made minus those throttled) against the floor at ``PutMetricAlarm``'s rate."""
    attempts, throttled = aws.requests(), aws.throttled()
    made = sum(writes(attempts).values()) - sum(writes(throttled).values())
    rate = quotas.rate(*WRITE)
    assert rate, "the scenarios time PutMetricAlarm's bucket"
    puts = attempts.get(WRITE, 0) - throttled.get(WRITE, 0)
    floor = puts / rate
    row = QuotaRow(label, made, seconds, floor, target, throttled, attempts, notes)
    RESULTS.quotas.append(row)
    return row


def apply(aws: Emulator, tree: Any, quotas: Quotas, settings: dict[str, str]) -> tuple[float, list[str]]:
    """``lensops apply --yes`` as a subprocess at ``quotas``: its wall-clock time, and what went wrong."""
    aws.set_quotas(quotas)
    aws.clear_requests()
    try:
        result = lensops("apply", "--repo", str(tree.root), "--yes", env=settings)
    finally:
        aws.set_quotas(None)
    notes = [] if result.code == 0 else [f"lensops apply exited {result.code}: {result.err.strip().splitlines()[-1:]}"]
    return result.seconds, notes


def test_quota_real_rate_100_alarms(aws, tree):
    """100 new alarms at AWS's real rates, lensops left to its built-in ones."""
    quotas = Quotas.aws(latency_ms=LATENCY_MS)
    write_alarms(tree, "dev", 100)
    assert "LENSOPS_API_RATES" not in os.environ

    seconds, notes = apply(aws, tree, quotas, {})

    record(f"100 new alarms at 3/s, no LENSOPS_API_RATES, {LATENCY_MS} ms a call", aws, quotas, seconds, 1.15, notes)


def test_quota_scaled_rates_1000_alarms(aws, tree):
    """1,000 new alarms at quotas raised tenfold, and lensops told so."""
    quotas = Quotas.aws(scale=10, latency_ms=LATENCY_MS)
    write_alarms(tree, "dev", 1000)

    seconds, notes = apply(aws, tree, quotas, {"LENSOPS_API_RATES": quotas.setting()})

    record(f"1,000 new alarms at 30/s (quotas x10 in LENSOPS_API_RATES), {LATENCY_MS} ms a call", aws, quotas, seconds, 1.15, notes)
    RESULTS.fact("quota scenarios: LENSOPS_API_RATES at quotas x10", f"`{quotas.setting()}`")


def test_quota_three_environments_one_daemon(aws, git_remote, tmp_path):
    """Three environments of 200 new alarms, one account, one daemon: they share the account's rates."""
    quotas = Quotas.aws(scale=10, latency_ms=LATENCY_MS)
    for env in ENVIRONMENTS:
        write_alarms(git_remote.tree, env, 200)
    commit = git_remote.commit("three environments of 200 alarms")
    settings = {
        "LENSOPS_REPO_URL": git_remote.url,
        "LENSOPS_POLL_INTERVAL": "1h",
        "LENSOPS_RESYNC_INTERVAL": "1h",
        "LENSOPS_API_RATES": quotas.setting(),
    }

    def applied(daemon: DaemonProcess) -> bool:
        statuses = daemon.status()["environments"]
        return all(statuses.get(env, {}).get("appliedRevision") == commit for env in ENVIRONMENTS)

    aws.set_quotas(quotas)
    aws.clear_requests()
    started = time.monotonic()
    daemon = DaemonProcess(tmp_path, settings)
    try:
        daemon.wait_until(lambda: applied(daemon), timeout=900, every=0.1)
        seconds = time.monotonic() - started
        record(
            f"3 environments x 200 new alarms, one daemon, at 30/s (quotas x10 in LENSOPS_API_RATES), {LATENCY_MS} ms a call",
            aws, quotas, seconds, 1.25, [],
        )
    finally:
        aws.set_quotas(None)
        daemon.stop()
