"""WAFv2: IPSet and WebACL (full rule structure in lowerCamelCase)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from controller.apishape import shape, unknown_fields
from controller.manifests.types import Spec
from reconcilers.base import register_spec

Scope = Literal["REGIONAL", "CLOUDFRONT"]


class IPSetSpec(Spec):
    """A WAFv2 IP set."""

    name: str | None = None
    scope: Scope = "REGIONAL"
    ipAddressVersion: Literal["IPV4", "IPV6"] = "IPV4"
    addresses: list[str] = Field(default_factory=list)
    description: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)


class VisibilityConfig(Spec):
    sampledRequestsEnabled: bool = True
    cloudWatchMetricsEnabled: bool = True
    metricName: str | None = None


def _check_shape(value: Any, shape_name: str) -> Any:
    unknown = unknown_fields(value, shape("wafv2", shape_name))
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)} in {shape_name}")
    return value


class WebACLRule(Spec):
    name: str
    priority: int = Field(ge=0)
    statement: dict[str, Any]
    action: dict[str, Any] | None = None
    overrideAction: dict[str, Any] | None = None
    visibilityConfig: VisibilityConfig | None = None
    ruleLabels: list[dict[str, str]] = Field(default_factory=list)
    captchaConfig: dict[str, Any] | None = None
    challengeConfig: dict[str, Any] | None = None

    @field_validator("statement")
    @classmethod
    def _statement(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _check_shape(value, "Statement")

    @field_validator("action")
    @classmethod
    def _action(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else _check_shape(value, "RuleAction")

    @field_validator("overrideAction")
    @classmethod
    def _override(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else _check_shape(value, "OverrideAction")


class WebACLSpec(Spec):
    """A WAFv2 web ACL; ``visibilityConfig`` defaults to metrics named after the ACL."""

    name: str | None = None
    scope: Scope = "REGIONAL"
    defaultAction: dict[str, Any] = Field(default_factory=lambda: {"allow": {}})
    description: str | None = None
    rules: list[WebACLRule] = Field(default_factory=list)
    visibilityConfig: VisibilityConfig | None = None
    customResponseBodies: dict[str, dict[str, str]] = Field(default_factory=dict)
    tokenDomains: list[str] = Field(default_factory=list)
    tags: dict[str, str] = Field(default_factory=dict)

    @field_validator("defaultAction")
    @classmethod
    def _default_action(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _check_shape(value, "DefaultAction")


register_spec("IPSet", IPSetSpec, "name", "A WAFv2 IP set.")
register_spec("WebACL", WebACLSpec, "name", "A WAFv2 web ACL with rate-based and managed rule groups.")
