"""Lambda: LambdaAlias (version, routing weights, provisioned concurrency, deployments)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from controller.manifests.types import Duration, Spec
from reconcilers.base import register_spec


class Deployment(Spec):
    """How a new version takes traffic: at once, canary, or linear steps gated by alarms."""

    type: Literal["allAtOnce", "canary", "linear"] = "allAtOnce"
    stepPercent: int | None = Field(default=None, ge=1, le=99)
    interval: Duration | None = None
    alarms: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _steps(self) -> "Deployment":
        if self.type != "allAtOnce" and (self.stepPercent is None or self.interval is None):
            raise ValueError(f"deployment type {self.type} needs stepPercent and interval")
        return self


class RoutingConfig(Spec):
    additionalVersionWeights: dict[str, float] = Field(default_factory=dict)


class LambdaAliasSpec(Spec):
    """A Lambda alias on a function version."""

    functionName: str
    name: str | None = None
    functionVersion: str
    description: str | None = None
    routingConfig: RoutingConfig | None = None
    provisionedConcurrency: int | None = Field(default=None, ge=0)
    deployment: Deployment | None = None


register_spec("LambdaAlias", LambdaAliasSpec, "name", "A Lambda alias; deployments shift weight in alarm-gated steps.")
