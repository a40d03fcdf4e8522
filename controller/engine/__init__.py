"""The engine: plan and apply one environment, every change through one writer.

Where it stands in the house: below the runner, the daemon and the health
gate; above the reconcilers, the state store and the manifests. Its parts:

- ``targets.py``: what a pass takes AWS to (manifests; the healthy point; a rollout step)
- ``decide.py``: pure decisions: observed state, desired state and records in, a plan out
- ``schedule.py``: the dependency scheduler (ready queue, bounded in flight, re-checks)
- ``journal.py``: intents, remembered failures, and the changes since the healthy point
- ``write.py``: the one writer of every create, update and delete lensops makes
- ``walk.py``: one pass: observe -> decide and write in dependency order -> delete
- ``passes.py``: ``Engine``: the passes (reconcile, restore, step, decommission) and their records
"""

from controller.engine.passes import (
    APPLIED_DIGEST,
    BAKE_KEY,
    BASELINE_KEY,
    DECOMMISSIONED,
    FAILED_DIGEST,
    HEALTHY_DIGEST,
    LAST_DRIFT_KEY,
    LAST_PASS_KEY,
    REFUSED_KEY,
    TARGET_KEY,
    Engine,
    Outcome,
    content_changed,
    failed_content,
    healthy_revision,
    put_back,
)

__all__ = [
    "APPLIED_DIGEST",
    "BAKE_KEY",
    "BASELINE_KEY",
    "DECOMMISSIONED",
    "FAILED_DIGEST",
    "HEALTHY_DIGEST",
    "LAST_DRIFT_KEY",
    "LAST_PASS_KEY",
    "REFUSED_KEY",
    "TARGET_KEY",
    "Engine",
    "Outcome",
    "content_changed",
    "failed_content",
    "healthy_revision",
    "put_back",
]
