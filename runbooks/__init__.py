"""Runbooks: operator procedures run by committing a ``RunbookRun`` manifest.

Each runbook is a module of named, idempotent steps (``runbooks/base.py``)
with a Markdown page beside it. ``CATALOGUE`` lists them: it is the one
source of truth for their names, parameters and steps, read by ``lensops
validate`` (through ``RunbookRunSpec``), ``lensops schema``, ``lensops
runbook list|show`` and the executor (``runbooks/executor.py``). Adding a
runbook: its module building a ``Runbook``, its page, one line below.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from controller.manifests.types import Spec
from runbooks import dr_restore, rollback
from runbooks.base import Parameter, Runbook, Step, catalogue

__all__ = ["CATALOGUE", "Parameter", "Runbook", "RunbookRunSpec", "Step"]

CATALOGUE: dict[str, Runbook] = catalogue(dr_restore.RUNBOOK, rollback.RUNBOOK)


class RunbookRunSpec(Spec):
    """One execution of a runbook: which one, with which parameters."""

    runbook: str
    parameters: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known(self) -> "RunbookRunSpec":
        found = CATALOGUE.get(self.runbook)
        if found is None:
            raise ValueError(f"unknown runbook {self.runbook!r}; known: {', '.join(sorted(CATALOGUE))}")
        problems = found.problems(self.parameters)
        if problems:
            raise ValueError("; ".join(problems))
        return self
