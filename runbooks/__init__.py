"""Runbooks: operator procedures run by committing a ``RunbookRun`` manifest.

Each runbook is a module of named, idempotent steps with a Markdown page
beside it. This package declares the parameters of each runbook so that
``lensops validate`` can check a ``RunbookRun`` without running anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import Field, model_validator

from controller.manifests.types import Spec


@dataclass(frozen=True)
class Parameter:
    name: str
    description: str
    required: bool = False


@dataclass(frozen=True)
class RunbookInfo:
    name: str
    summary: str
    parameters: tuple[Parameter, ...] = field(default_factory=tuple)


CATALOGUE: dict[str, RunbookInfo] = {
    "dr-restore": RunbookInfo(
        "dr-restore",
        "Restore an RDS instance from a snapshot and point an SSM parameter at the new endpoint.",
        (
            Parameter("dbInstanceIdentifier", "the source RDS instance", required=True),
            Parameter("snapshot", "'latest' or a snapshot id", required=True),
            Parameter("targetDbInstanceIdentifier", "the instance to restore into", required=True),
            Parameter("dbInstanceClass", "instance class of the restored instance"),
            Parameter("endpointParameter", "SSM parameter name to point at the new endpoint address"),
            Parameter("recoveryPointArn", "restore from an AWS Backup recovery point instead of a snapshot"),
        ),
    ),
    "rollback": RunbookInfo(
        "rollback",
        "Put the environment back on its last healthy revision and hold it there until a newer commit.",
        (Parameter("revision", "a specific earlier healthy revision instead of the last one"),),
    ),
}


class RunbookRunSpec(Spec):
    """One execution of a runbook: which one, with which parameters."""

    runbook: str
    parameters: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known(self) -> "RunbookRunSpec":
        info = CATALOGUE.get(self.runbook)
        if info is None:
            raise ValueError(f"unknown runbook {self.runbook!r}; known: {', '.join(sorted(CATALOGUE))}")
        names = {p.name for p in info.parameters}
        unknown = sorted(set(self.parameters) - names)
        if unknown:
            raise ValueError(f"unknown parameter(s) {', '.join(unknown)} for runbook {self.runbook}")
        missing = [p.name for p in info.parameters if p.required and p.name not in self.parameters]
        if self.runbook == "dr-restore" and "recoveryPointArn" in self.parameters:
            missing = [m for m in missing if m != "snapshot"]
        if missing:
            raise ValueError(f"missing parameter(s) {', '.join(missing)} for runbook {self.runbook}")
        return self
