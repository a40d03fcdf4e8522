"""LENSOPS_* settings (CONTRACT.md section 4), from the environment or a ``--config`` file."""

from __future__ import annotations

import os
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from controller.errors import UsageError
from controller.manifests.types import parse_duration
from controller.pacing import parse_rates

_PREFIX = "LENSOPS_"


class Settings(BaseModel):
    """The daemon's and the CLI's settings; durations in seconds."""

    model_config = ConfigDict(extra="forbid")

    repo_url: str = "."
    branch: str = "main"
    path: str = "."
    poll_interval: int = 60
    resync_interval: int = 300
    state_url: str = "sqlite:///.lensops/state.db"
    http_addr: str = "0.0.0.0:8080"
    webhook_secret: str | None = Field(default=None, repr=False)
    api_token: str | None = Field(default=None, repr=False)
    """When set, ``GET /api/v1/status`` asks for ``Authorization: Bearer <api_token>``."""
    log_format: Literal["json", "console"] = "json"
    concurrency: int = Field(default=8, ge=1, le=256)
    api_rates: str = ""
    """``LENSOPS_API_RATES``: the request rates to pace to over the built-in table of AWS's
    quotas (``service:Operation=N,service:*=N``), or ``off``; empty: the built-in table."""
    lease_ttl: int = Field(default=30, ge=3)
    cache_dir: str = Field(default_factory=lambda: os.path.join(os.path.expanduser("~"), ".cache", "lensops"))

    @field_validator("poll_interval", "resync_interval", "lease_ttl", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> int:
        return parse_duration(value)

    @field_validator("api_rates", mode="before")
    @classmethod
    def _rates(cls, value: Any) -> str:
        if value is False:  # YAML reads a --config file's bare `off` as false
            value = "off"
        elif isinstance(value, dict):  # a --config file may give the rates as a mapping
            value = ",".join(f"{name}={rate}" for name, rate in value.items())
        text = str(value).strip()
        parse_rates(text)  # a ValueError naming the item that cannot be used
        return text

    @property
    def http_host_port(self) -> tuple[str, int]:
        host, _, port = self.http_addr.rpartition(":")
        return (host or "0.0.0.0").strip("[]"), int(port)


def load_settings(config_file: str | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Settings from a YAML ``--config`` file, overridden by LENSOPS_* variables."""
    environ = dict(os.environ if environ is None else environ)
    values: dict[str, Any] = {}
    if config_file:
        try:
            with open(config_file, encoding="utf-8") as handle:
                loaded = yaml.safe_load(handle) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise UsageError(f"{config_file}: cannot read settings: {exc}") from None
        if not isinstance(loaded, dict):
            raise UsageError(f"{config_file}: settings must be a mapping")
        for key, value in loaded.items():
            values[str(key).lower().removeprefix("lensops_")] = value
    for key, value in environ.items():
        if key.startswith(_PREFIX):
            field = key[len(_PREFIX) :].lower()
            if field in Settings.model_fields:
                values[field] = value
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(f"LENSOPS_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors())
        raise UsageError(problems) from None
