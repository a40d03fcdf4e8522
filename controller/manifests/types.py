"""Value types shared by the spec models: durations, names, the strict base model."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
"""A ``metadata.name`` and an environment's folder name (``\\Z``: ``$`` would let a final newline through)."""
_DURATION_RE = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


class Spec(BaseModel):
    """Base of every spec model: unknown fields are errors, names as written."""

    model_config = ConfigDict(extra="forbid", frozen=False, populate_by_name=True)


MAX_DURATION = 366 * 24 * 3600


def parse_duration(value: Any) -> int:
    """Seconds in a duration written as ``90``, ``"90s"``, ``"5m"``, ``"1h30m"`` (at most a year)."""
    seconds = _duration_seconds(value)
    if seconds > MAX_DURATION:
        raise ValueError(f"{value!r} is longer than a year")
    return seconds


def _duration_seconds(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like 30s, 5m, 1h")
    if isinstance(value, (int, float)):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("a duration must be a finite number")
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return int(value)
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    match = _DURATION_RE.match(text)
    if not text or not match or not any(match.groups()):
        raise ValueError(f"{value!r} is not a duration (like 30s, 5m, 1h, 1h30m)")
    hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def _check_duration(value: Any) -> Any:
    parse_duration(value)
    return value


Duration = Annotated[str | int, BeforeValidator(_check_duration), Field(json_schema_extra={"pattern": r"^(\d+h)?(\d+m)?(\d+s)?$|^\d+$"})]
"""A duration as written in a manifest; ``parse_duration`` gives seconds."""

StrMap = dict[str, str]
