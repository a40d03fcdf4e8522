"""The runbook framework: a runbook is named, idempotent steps; a step answers done, wait or fail.

Where this stands in the house: ``runbooks/`` sits beside ``reconcilers/``
and depends only on the engine's small core (the error taxonomy, the AWS
client factory through ``RunContext.client``). It never sees the daemon,
the scheduler or the state store: ``runbooks/executor.py`` owns claims,
checkpoints, time and retries, and calls one step at a time.

A step must be safe to run again: the executor checkpoints a step only
after it returns, so a crash between the AWS call and the checkpoint runs
the step a second time. A step never sleeps: it returns ``wait(seconds,
reason)`` and the executor asks to be called again then.

Each runbook module builds one ``Runbook`` (``RUNBOOK = Runbook(...)``);
``runbooks/__init__.py`` lists them explicitly in ``CATALOGUE``, the one
source of truth for names, parameters and steps (validate, schema, the
CLI and the executor all read it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping

if TYPE_CHECKING:
    from controller.kinds import Context

STEP_TIMEOUT_SECONDS = 60 * 60.0
"""Default time a step may take from its first attempt, waits included."""
RUN_TIMEOUT_SECONDS = 4 * 60 * 60.0
"""Default time a whole run may take from its claim."""

Notifier = Callable[[str, dict[str, Any]], None]
"""``notify(subject, fields)``: send to the environment's SNS topic and webhook (best effort)."""
RollbackRequester = Callable[[str | None], str]
"""``request_rollback(revision_or_None) -> revision``: see ``RunContext.request_rollback``."""


@dataclass(frozen=True)
class Parameter:
    """One parameter a ``RunbookRun`` may (or must) give in ``spec.parameters``."""

    name: str
    description: str
    required: bool = False


# --- what a step answers ------------------------------------------------------


@dataclass(frozen=True)
class StepResult:
    """The answer of one attempt of a step: ``done``, ``wait`` or ``fail``."""

    outcome: Literal["done", "wait", "fail"]
    outputs: dict[str, Any] = field(default_factory=dict)
    """JSON values the step produced (``done``); later steps read them in ``RunContext.outputs``."""
    seconds: float = 0.0
    """``wait``: check again after this long."""
    message: str = ""
    """``wait``: why; ``fail``: what went wrong (shown in status, logs and the notification)."""


def done(outputs: Mapping[str, Any] | None = None) -> StepResult:
    """The step is complete; ``outputs`` are checkpointed with it (JSON values, never secrets)."""
    return StepResult("done", outputs=dict(outputs or {}))


def wait(seconds: float, reason: str) -> StepResult:
    """Not yet: call the step again after ``seconds`` (AWS is still working)."""
    return StepResult("wait", seconds=max(1.0, float(seconds)), message=reason)


def fail(message: str) -> StepResult:
    """The run cannot go on: it is finished, failed, with ``message``."""
    return StepResult("fail", message=message)


# --- what a step is given ---------------------------------------------------------


@dataclass
class RunContext:
    """What one attempt of one step sees.

    ``parameters`` are those of the run as claimed (a later edit of the
    manifest does not change a run in progress); ``outputs`` merges the
    outputs of every step done so far.
    """

    environment: str
    name: str
    """``metadata.name`` of the RunbookRun."""
    runbook: str
    revision: str
    """The commit at which the run was claimed."""
    parameters: dict[str, Any]
    outputs: dict[str, Any]
    aws: "Context"
    """The environment's AWS context (account, region, role); use ``client``."""
    step: str
    attempt: int
    """1 on the first attempt of this step, 2 on the next (after a wait or a takeover) ..."""
    now: float
    """Wall-clock time of this attempt (the executor's clock)."""
    notify: Notifier | None = None
    request_rollback: RollbackRequester | None = None
    """Injected by the daemon: ``request_rollback(revision_or_None) -> str`` puts the
    environment back on ``revision`` (None: its last healthy revision), holds it
    there until a commit changes its manifests, and returns the revision it holds. None
    when the caller (``lensops apply``) cannot hold an environment."""

    @property
    def run_id(self) -> str:
        """``<environment>/<name>``: the key of the run's claim, and the value of the tag it leaves."""
        return f"{self.environment}/{self.name}"

    def client(self, service: str) -> Any:
        """The boto3 client for ``service`` in the environment's account and region."""
        return self.aws.client(service)


# --- steps and runbooks -------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One named, idempotent step of a runbook."""

    name: str
    run: Callable[[RunContext], StepResult]
    description: str
    touches: tuple[str, ...] = ()
    """The IAM actions the step may call (``rds:RestoreDBInstanceFromDBSnapshot``)."""
    timeout: float = STEP_TIMEOUT_SECONDS


ParameterCheck = Callable[[Mapping[str, Any]], list[str]]


@dataclass(frozen=True)
class Runbook:
    """A runbook: its parameters, its steps in order, and its page beside the module."""

    name: str
    summary: str
    parameters: tuple[Parameter, ...]
    steps: tuple[Step, ...]
    page: str
    """The Markdown page in ``runbooks/`` (``dr-restore.md``)."""
    timeout: float = RUN_TIMEOUT_SECONDS
    report: tuple[str, ...] = ()
    """Output keys put in the result notification and the CLI summary."""
    check: ParameterCheck | None = None
    """Checks beyond known/required names (one of two parameters, value shapes)."""

    def __post_init__(self) -> None:
        names = [s.name for s in self.steps]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"runbook {self.name}: steps must be named, uniquely: {names}")

    def step(self, name: str) -> Step:
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(name)

    @property
    def touches(self) -> tuple[str, ...]:
        """Every IAM action the runbook may call, sorted."""
        return tuple(sorted({action for step in self.steps for action in step.touches}))

    def problems(self, parameters: Mapping[str, Any]) -> list[str]:
        """What is wrong with ``parameters`` for this runbook (empty when they are fine)."""
        names = {p.name for p in self.parameters}
        out = []
        unknown = sorted(set(parameters) - names)
        if unknown:
            out.append(f"unknown parameter(s) {', '.join(unknown)} for runbook {self.name}")
        missing = [p.name for p in self.parameters if p.required and p.name not in parameters]
        if missing:
            out.append(f"missing parameter(s) {', '.join(missing)} for runbook {self.name}")
        if not out and self.check is not None:
            out.extend(self.check(parameters))
        return out


def catalogue(*runbooks: Runbook) -> dict[str, Runbook]:
    """The registry: runbooks by name, refusing two of one name."""
    out: dict[str, Runbook] = {}
    for runbook in runbooks:
        if runbook.name in out:
            raise ValueError(f"two runbooks named {runbook.name}")
        out[runbook.name] = runbook
    return out
