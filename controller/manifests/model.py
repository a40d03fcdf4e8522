"""The manifest envelope, the Environment kind, and the resource the loader hands on."""

from __future__ import annotations

import hashlib
import json
import re
import zoneinfo
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from controller.manifests.cron import cron_trigger
from controller.manifests.graph import is_ref, parse_ref
from controller.manifests.types import NAME_RE, Duration, Spec, parse_duration

API_VERSION = "lensops.io/v1"
_REF_RE = re.compile(r"^(?P<kind>[A-Za-z]+)/(?P<name>[a-z0-9]([-a-z0-9]*[a-z0-9])?)$")

ANNOTATION_ADOPT = "lensops.io/adopt"
ANNOTATION_PRUNE = "lensops.io/prune"
ANNOTATION_SUSPEND = "lensops.io/suspend"
ANNOTATION_IGNORE = "lensops.io/ignore-fields"


class Metadata(BaseModel):
    """``metadata`` of every manifest."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=63)
    environment: str | None = None
    dependsOn: list[str] = Field(default_factory=list)
    annotations: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_RE.match(value):
            raise ValueError(f"invalid name {value!r}: lowercase letters, digits and '-', starting and ending alphanumeric")
        return value

    @field_validator("dependsOn")
    @classmethod
    def _depends(cls, value: list[str]) -> list[str]:
        for item in value:
            if not _REF_RE.match(item):
                raise ValueError(f"dependsOn entry {item!r} is not Kind/name")
        return value


class Envelope(BaseModel):
    """The envelope of a manifest; ``spec`` is validated by the kind's own model."""

    model_config = ConfigDict(extra="forbid")

    apiVersion: Literal["lensops.io/v1"]
    kind: str
    metadata: Metadata
    spec: dict[str, Any] = Field(default_factory=dict)


class SyncWindow(Spec):
    kind: Literal["allow", "deny"]
    schedule: str
    duration: Duration
    timezone: str = "UTC"

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        try:
            cron_trigger(value)
        except ValueError as exc:
            raise ValueError(f"schedule {value!r} is not a cron expression: {exc}") from None
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {value!r}") from None
        return value


class SyncPolicy(Spec):
    prune: bool = False
    selfHeal: bool = True
    interval: Duration | None = None
    windows: list[SyncWindow] = Field(default_factory=list)
    allowMassPrune: bool = False


def _yaml_switch(value: Any) -> Any:
    """YAML 1.1 reads a bare ``off`` as false: take it as the word the user wrote."""
    if value is False:
        return "off"
    if value is True:
        return "auto"
    return value


class HealthPolicy(Spec):
    alarms: list[str] = Field(default_factory=list)
    bakeTime: Duration = "5m"
    rollback: Annotated[Literal["auto", "off"], BeforeValidator(_yaml_switch)] = "auto"


class Notifications(Spec):
    topic: str | None = None
    webhookUrl: str | None = None


class EnvironmentSpec(Spec):
    """An AWS account and region target, and how lensops syncs it."""

    region: str = Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d+$")
    account: str | None = Field(default=None, pattern=r"^\d{12}$")
    assumeRoleArn: str | None = Field(default=None, pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$")
    tags: dict[str, str] = Field(default_factory=dict)
    vars: dict[str, str | int | float | bool] = Field(default_factory=dict)
    sync: SyncPolicy = Field(default_factory=SyncPolicy)
    health: HealthPolicy = Field(default_factory=HealthPolicy)
    notifications: Notifications = Field(default_factory=Notifications)
    # An S3 bucket for Stack templates too large to send inline (controller/docs.py says more).
    templateBucket: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")

    @model_validator(mode="before")
    @classmethod
    def _account_as_string(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("account"), int):
            data = {**data, "account": f"{data['account']:012d}"}
        return data

    def interval_seconds(self, default: int) -> int:
        return parse_duration(self.sync.interval) if self.sync.interval is not None else default


class Identity:
    """What a resource's kind, name and annotations say: its ``Kind/name`` and the ``lensops.io/`` switches."""

    kind: str
    name: str
    annotations: dict[str, str]

    @property
    def ident(self) -> str:
        return f"{self.kind}/{self.name}"

    def annotation_true(self, key: str) -> bool:
        return self.annotations.get(key, "").strip().lower() == "true"

    def annotation_false(self, key: str) -> bool:
        return self.annotations.get(key, "").strip().lower() == "false"

    @property
    def ignored_fields(self) -> frozenset[str]:
        raw = self.annotations.get(ANNOTATION_IGNORE, "")
        return frozenset(f.strip() for f in raw.split(",") if f.strip())


@dataclass
class Resource(Identity):
    """One validated manifest of one environment, ready for planning."""

    kind: str
    name: str
    environment: str
    spec: dict[str, Any]
    """The spec as validated (defaults applied), references not yet resolved."""
    physical: str
    path: str
    line: int
    depends_on: list[str] = field(default_factory=list)
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass
class EnvironmentDesired:
    """Everything one environment wants: its settings and its resources in dependency order."""

    name: str
    spec: EnvironmentSpec
    path: str
    resources: list[Resource]
    """The AWS resources, in dependency order."""
    runs: list[Resource] = field(default_factory=list)
    """The runbook runs (``kind: RunbookRun``), in dependency order."""
    revision: str = ""
    _digests: dict[bool, str] = field(default_factory=dict, repr=False, compare=False)

    def by_ident(self) -> dict[str, Resource]:
        return {r.ident: r for r in self.resources}

    def alarm_names(self, items: list[str]) -> list[str]:
        """Physical names of the alarms ``items`` gives by name or ``ref:Kind/name``, each once
        (a reference to no resource of this environment names none)."""
        by_ident = self.by_ident()
        names: list[str] = []
        for item in items:
            if is_ref(item):
                ref = parse_ref(item)
                target = by_ident.get(ref.ident) if ref else None
                name = target.physical if target else ""
            else:
                name = item
            if name and name not in names:
                names.append(name)
        return names

    @property
    def digest(self) -> str:
        """This environment's content as one digest: its settings and its resources after overlays,
        vars and templates (RunbookRuns aside: running one changes no resource). An environment's
        revision is its commit and this digest: a commit that leaves it unchanged changes nothing here."""
        return self._digest(runbooks=False)

    @property
    def manifests_digest(self) -> str:
        """``digest`` with the RunbookRuns too: every manifest of the environment."""
        return self._digest(runbooks=True)

    def _digest(self, runbooks: bool) -> str:
        if runbooks not in self._digests:
            content = {
                "environment": self.spec.model_dump(mode="json"),
                "resources": sorted(
                    [r.ident, r.physical, r.spec, r.annotations, sorted(r.depends_on)]
                    for r in [*self.resources, *(self.runs if runbooks else [])]
                ),
            }
            text = json.dumps(content, sort_keys=True, default=str, separators=(",", ":"))
            self._digests[runbooks] = hashlib.sha256(text.encode()).hexdigest()[:24]
        return self._digests[runbooks]
