"""The ``rollback`` runbook: put an environment back on its last healthy revision and hold it there.

One step. The hold itself (apply the earlier revision through the engine,
refuse to move forward until a commit changes the environment's manifests)
is the daemon's; it injects it as ``RunContext.request_rollback``.
``lensops apply`` cannot hold an environment between invocations, so
there the step fails and says so. See ``rollback.md``.
"""

from __future__ import annotations

from typing import Any, Mapping

from runbooks.base import Parameter, Runbook, RunContext, Step, StepResult, done, fail

NEEDS_DAEMON = "rollback runbook needs the daemon (lensops run)"


def request_rollback(ctx: RunContext) -> StepResult:
    """Ask the engine to put the environment back on the revision and hold it there."""
    if ctx.request_rollback is None:
        return fail(NEEDS_DAEMON)
    wanted = ctx.parameters.get("revision") or None
    held = ctx.request_rollback(wanted)
    return done({"revision": held, "requested": wanted or "last healthy"})


def _check(parameters: Mapping[str, Any]) -> list[str]:
    revision = parameters.get("revision")
    if revision is not None and (not isinstance(revision, str) or not revision.strip()):
        return ["parameter revision must be a commit id (a non-empty string)"]
    return []


RUNBOOK = Runbook(
    name="rollback",
    summary="Put the environment back on its last healthy revision and hold it there until a commit changes the environment.",
    parameters=(Parameter("revision", "a specific earlier healthy revision instead of the last one"),),
    steps=(
        Step(
            "request-rollback",
            request_rollback,
            "apply the last healthy revision (or `revision`) to every resource of the environment, "
            "as an apply does, and hold the environment on it until a commit changes its manifests",
        ),
    ),
    page="rollback.md",
    timeout=60 * 60.0,
    report=("revision",),
    check=_check,
)
