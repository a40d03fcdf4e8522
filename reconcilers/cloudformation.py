"""CloudFormation: Stack (templates under ``templates/``, updates through change sets)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from controller.manifests.types import Spec
from reconcilers.base import register_spec

Capability = Literal["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]


class StackSpec(Spec):
    """A stack: ``template`` is a path under ``templates/``."""

    stackName: str | None = None
    template: str
    parameters: dict[str, str | int | float | bool] = Field(default_factory=dict)
    capabilities: list[Capability] = Field(default_factory=list)
    tags: dict[str, str] = Field(default_factory=dict)
    terminationProtection: bool = False
    roleARN: str | None = None
    notificationARNs: list[str] = Field(default_factory=list)
    timeoutInMinutes: int | None = Field(default=None, ge=1)


register_spec("Stack", StackSpec, "stackName", "A CloudFormation stack; updates go through change sets.")
