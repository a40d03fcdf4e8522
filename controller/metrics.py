"""Every Prometheus metric lensops exports, named as in CONTRACT.md section 6.

One registry for the process. Labels take only a few enumerable values:
never ARNs, resource names, account ids or error text (those go to logs).
Beside the contract's metrics: ``lensops_build_info{version}`` and the
``process_*`` series of prometheus-client's process collector (CPU, memory,
open file descriptors, start time), which a custom registry does not get
by itself.

Counters whose every series must exist at 0 from the start (CONTRACT.md
section 6), so that ``increase()`` sees the first event:
``lensops_reconcile_total`` per environment and result from the moment an
environment is known (``environment_seen``), ``lensops_runbook_runs_total``
per runbook of the catalogue and result at process start (``runbooks_known``).
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

import controller

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)


def _version() -> str:
    """The installed distribution's version; the package's own when run from a source tree that is not installed."""
    try:
        return importlib.metadata.version("lensops")
    except importlib.metadata.PackageNotFoundError:
        return controller.__version__


BUILD_INFO = Gauge(
    "lensops_build_info",
    "The running lensops's version (value 1).",
    ["version"],
    registry=REGISTRY,
)
BUILD_INFO.labels(_version()).set(1)

RECONCILE_TOTAL = Counter(
    "lensops_reconcile_total",
    "Reconcile passes by environment and result (success, failed, rolled_back, invalid).",
    ["environment", "result"],
    registry=REGISTRY,
)
RECONCILE_DURATION = Histogram(
    "lensops_reconcile_duration_seconds",
    "Duration of one reconcile pass of an environment.",
    ["environment"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
    registry=REGISTRY,
)
RESOURCES = Gauge(
    "lensops_resources",
    "Managed resources by environment, kind, sync status and health.",
    ["environment", "kind", "sync", "health"],
    registry=REGISTRY,
)
DRIFT_DETECTED = Counter(
    "lensops_drift_detected_total",
    "Resources found drifted from their last applied spec.",
    ["environment", "kind"],
    registry=REGISTRY,
)
APPLIED_CHANGES = Counter(
    "lensops_applied_changes_total",
    "Changes written to AWS, by action (create, update, delete).",
    ["environment", "kind", "action"],
    registry=REGISTRY,
)
ROLLBACKS = Counter(
    "lensops_rollbacks_total",
    "Resources put back to their last healthy spec.",
    ["environment", "kind"],
    registry=REGISTRY,
)
REVISION_INFO = Gauge(
    "lensops_revision_info",
    "The revision applied to an environment (value 1).",
    ["environment", "revision"],
    registry=REGISTRY,
)
SOURCE_REVISION_INFO = Gauge(
    "lensops_source_revision_info",
    "The revision last fetched from the source (value 1).",
    ["revision"],
    registry=REGISTRY,
)
LAST_SYNC = Gauge(
    "lensops_last_sync_timestamp_seconds",
    "Unix time of the last successful sync of an environment.",
    ["environment"],
    registry=REGISTRY,
)
AWS_API_CALLS = Counter(
    "lensops_aws_api_calls_total",
    "AWS API requests sent (each attempt), by outcome (ok, throttled, error).",
    ["service", "operation", "outcome"],
    registry=REGISTRY,
)
GIT_FETCH = Counter(
    "lensops_git_fetch_total",
    "Git fetches of the source, by result (success, failed; load_failed: a fetched revision the loader crashed on).",
    ["result"],
    registry=REGISTRY,
)
RUNBOOK_RUNS = Counter(
    "lensops_runbook_runs_total",
    "Runbook runs finished, by runbook and result.",
    ["runbook", "result"],
    registry=REGISTRY,
)
LEADER = Gauge(
    "lensops_leader",
    "1 on the replica that holds an environment's lease.",
    ["environment"],
    registry=REGISTRY,
)

ENVIRONMENTS_REMOVED = Gauge(
    "lensops_environments_removed",
    "Environments whose folder left Git and that lensops decommission has not cleaned up yet (their resources stay in AWS).",
    registry=REGISTRY,
)

RESULTS = ("success", "failed", "rolled_back", "invalid")
FETCH_RESULTS = ("success", "failed", "load_failed")
RUNBOOK_RESULTS = ("succeeded", "failed")


def count_result(environment: str, result: str) -> None:
    """Count one pass of an environment in ``lensops_reconcile_total``: the only place that does."""
    RECONCILE_TOTAL.labels(environment, result).inc()


def environment_seen(environment: str) -> None:
    """Every result series of an environment exists, at 0, from the moment it is known."""
    for result in RESULTS:
        RECONCILE_TOTAL.labels(environment, result)


def runbooks_known(runbooks: Iterable[str]) -> None:
    """Every result series of each runbook exists, at 0, from process start: the first failed run
    is then an increase from 0 that alerts see, not a series that appears at 1."""
    for runbook in runbooks:
        for result in RUNBOOK_RESULTS:
            RUNBOOK_RUNS.labels(runbook, result)


_applied_revision: dict[str, str] = {}
_source_revision: list[str] = []


def forget_environment(environment: str) -> None:
    """Drop every gauge series of an environment gone from Git (its counters stay: they only count up)."""
    for gauge, labels in (
        (RESOURCES, ("environment", "kind", "sync", "health")),
        (REVISION_INFO, ("environment", "revision")),
        (LAST_SYNC, ("environment",)),
        (LEADER, ("environment",)),
    ):
        for metric in list(gauge.collect()):
            for sample in metric.samples:
                if sample.labels.get("environment") == environment:
                    try:
                        gauge.remove(*(sample.labels[name] for name in labels))
                    except KeyError:  # removed meanwhile
                        pass
    _applied_revision.pop(environment, None)


def set_applied_revision(environment: str, revision: str) -> None:
    """Point ``lensops_revision_info`` at a new revision, removing the previous series."""
    previous = _applied_revision.get(environment)
    if previous == revision:
        return
    if previous is not None:
        REVISION_INFO.remove(environment, previous)
    REVISION_INFO.labels(environment, revision).set(1)
    _applied_revision[environment] = revision


def set_source_revision(revision: str) -> None:
    """Point ``lensops_source_revision_info`` at the fetched commit."""
    for previous in _source_revision:
        if previous != revision:
            SOURCE_REVISION_INFO.remove(previous)
    SOURCE_REVISION_INFO.labels(revision).set(1)
    _source_revision[:] = [revision]


SYNC_VALUES = ("synced", "out_of_sync", "unknown")
HEALTH_VALUES = ("healthy", "progressing", "degraded", "unknown")


def set_resource_counts(environment: str, counts: dict[tuple[str, str, str], int]) -> None:
    """Replace the ``lensops_resources`` series of an environment.

    ``counts`` maps (kind, sync, health) to a number; every combination seen
    before and absent now is set to 0 so that dashboards do not keep stale values.
    """
    for metric in list(RESOURCES.collect()):
        for sample in metric.samples:
            labels = sample.labels
            if labels.get("environment") == environment:
                key = (labels["kind"], labels["sync"], labels["health"])
                if key not in counts:
                    RESOURCES.labels(environment, *key).set(0)
    for (kind, sync, health), value in counts.items():
        RESOURCES.labels(environment, kind, sync, health).set(value)
