"""The checkpoint of one run, as kept in the state store, and its read-only view for status.

One item per run in the store's conditional items (namespace ``runbook``,
key ``<environment>/<name>``). The item is the claim (it exists from the
first conditional put on), the checkpoint of every step (each change is a
conditional put on the version read) and the record shown by ``lensops
status``. Only ``runbooks/executor.py`` writes it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from controller.state import StateStore

NAMESPACE = "runbook"
RUNNING, SUCCEEDED, FAILED = "running", "succeeded", "failed"
FINISHED = (SUCCEEDED, FAILED)
PENDING, STEP_RUNNING, WAITING, DONE, STEP_FAILED = "pending", "running", "waiting", "done", "failed"


def run_key(environment: str, name: str) -> str:
    return f"{environment}/{name}"


@dataclass
class StepRecord:
    """Where one step stands."""

    name: str
    state: str = PENDING
    attempts: int = 0
    started_at: float = 0.0
    """First attempt (the step's timeout counts from here)."""
    finished_at: float = 0.0
    next_check: float = 0.0
    """While waiting: when to try again."""
    owner: str = ""
    """While running: the executor (process) that holds the step."""
    lease_until: float = 0.0
    """While running: after this, another executor may take the step over (its holder died)."""
    message: str = ""
    outputs: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunRecord:
    """One run: what was asked, where each step stands, how it ended."""

    environment: str
    name: str
    runbook: str
    parameters: dict[str, Any]
    revision: str
    started_at: float
    deadline: float
    steps: list[StepRecord]
    state: str = RUNNING
    finished_at: float = 0.0
    message: str = ""
    outputs: dict[str, Any] = field(default_factory=dict)
    notified: bool = False
    ignored: dict[str, Any] = field(default_factory=dict)
    """The last manifest change not acted on (a finished run is never run again; a running one keeps its parameters)."""

    @property
    def key(self) -> str:
        return run_key(self.environment, self.name)

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    def first_unfinished(self) -> int | None:
        for index, step in enumerate(self.steps):
            if step.state != DONE:
                return index
        return None

    def to_item(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> "RunRecord":
        data = dict(item)
        data["steps"] = [StepRecord(**s) for s in data.get("steps", [])]
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if ts else ""


def view(record: RunRecord) -> dict[str, Any]:
    """The run as ``lensops status`` and ``/api/v1/status`` show it (camelCase, times in ISO 8601)."""
    index = record.first_unfinished()
    current = record.steps[index] if (index is not None and not record.finished) else None
    out: dict[str, Any] = {
        "name": record.name,
        "runbook": record.runbook,
        "state": record.state,
        "revision": record.revision,
        "parameters": record.parameters,
        "startedAt": _when(record.started_at),
        "finishedAt": _when(record.finished_at),
        "message": record.message,
        "currentStep": current.name if current else "",
        "nextCheck": _when(current.next_check) if current and current.state == WAITING else "",
        "stepsDone": sum(1 for s in record.steps if s.state == DONE),
        "steps": [
            {
                "name": s.name,
                "state": s.state,
                "attempts": s.attempts,
                "startedAt": _when(s.started_at),
                "finishedAt": _when(s.finished_at),
                "message": s.message,
            }
            for s in record.steps
        ],
        "outputs": record.outputs,
    }
    if record.ignored:
        out["ignoredChange"] = {k: v for k, v in record.ignored.items() if k != "digest"}
    return out


def runbook_runs(store: StateStore, environment: str) -> list[dict[str, Any]]:
    """Every run of an environment (finished or not), oldest first, as status shows them."""
    records = [RunRecord.from_item(value) for _key, value, _version in store.list_items(NAMESPACE, environment + "/")]
    return [view(r) for r in sorted(records, key=lambda r: (r.started_at, r.name))]
