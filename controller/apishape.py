"""AWS request/response shapes <-> manifest lowerCamelCase, driven by botocore's models.

Manifests name fields as the API does, in lowerCamelCase (``OKActions`` ->
``okActions``). Converting back by string rules is ambiguous, so both ways
walk botocore's shape of the operation: structure members are renamed, map
keys (user data) are left alone. Service models are loaded once per process.
"""

from __future__ import annotations

import functools
from typing import Any

import botocore.session
from botocore.model import ListShape, MapShape, Shape, StructureShape


@functools.lru_cache(maxsize=4096)
def lower_camel(name: str) -> str:
    """``AlarmName`` -> ``alarmName``, ``OKActions`` -> ``okActions``, ``ARN`` -> ``arn``."""
    run = 0
    while run < len(name) and name[run].isupper():
        run += 1
    if run == 0:
        return name
    if run == 1 or run == len(name):
        return name[:run].lower() + name[run:]
    if name[run].isalpha():
        return name[: run - 1].lower() + name[run - 1 :]
    return name[:run].lower() + name[run:]


@functools.lru_cache(maxsize=None)
def _session() -> botocore.session.Session:
    return botocore.session.get_session()


@functools.lru_cache(maxsize=None)
def service_model(service: str) -> Any:
    return _session().get_service_model(service)


def input_shape(service: str, operation: str) -> StructureShape:
    """The request shape of an operation."""
    return service_model(service).operation_model(operation).input_shape


def output_shape(service: str, operation: str) -> StructureShape:
    """The response shape of an operation."""
    return service_model(service).operation_model(operation).output_shape


def shape(service: str, name: str) -> Shape:
    """A named shape of a service (``Statement`` of wafv2, ...)."""
    return service_model(service).shape_for(name)


@functools.lru_cache(maxsize=None)
def _members(struct: StructureShape) -> dict[str, str]:
    return {lower_camel(member): member for member in struct.members}


def to_api(value: Any, s: Shape | None) -> Any:
    """Manifest value (lowerCamelCase keys) -> API value (the shape's member names)."""
    if s is None:
        return value
    if isinstance(s, StructureShape) and isinstance(value, dict):
        members = _members(s)
        out = {}
        for key, item in value.items():
            member = members.get(key, key)
            out[member] = to_api(item, s.members.get(member))
        return out
    if isinstance(s, ListShape) and isinstance(value, list):
        return [to_api(item, s.member) for item in value]
    if isinstance(s, MapShape) and isinstance(value, dict):
        return {key: to_api(item, s.value) for key, item in value.items()}
    return value


_SCALAR_TYPES = frozenset({"string", "integer", "long", "double", "float", "boolean", "timestamp", "blob"})


@functools.lru_cache(maxsize=None)
def _renames(struct: StructureShape) -> dict[str, tuple[str, Shape | None]]:
    """API member -> (manifest name, its shape, or None for a scalar that converts as it is)."""
    return {
        member: (lower_camel(member), None if sub.type_name in _SCALAR_TYPES else sub) for member, sub in struct.members.items()
    }


def from_api(value: Any, s: Shape | None) -> Any:
    """API value -> manifest value: structure members in lowerCamelCase, map keys kept."""
    if s is None:
        return value
    if isinstance(s, StructureShape) and isinstance(value, dict):
        renames = _renames(s)
        out: dict[str, Any] = {}
        for key, item in value.items():
            found = renames.get(key)
            if found is not None:
                out[found[0]] = item if found[1] is None else from_api(item, found[1])
        return out
    if isinstance(s, ListShape) and isinstance(value, list):
        return [from_api(item, s.member) for item in value]
    if isinstance(s, MapShape) and isinstance(value, dict):
        return {k: from_api(v, s.value) for k, v in value.items()}
    return value


def unknown_fields(value: Any, s: Shape, path: str = "") -> list[str]:
    """Dotted paths of manifest keys that the shape does not have (for free-form specs)."""
    found: list[str] = []
    if isinstance(s, StructureShape) and isinstance(value, dict):
        members = _members(s)
        for key, item in value.items():
            sub = f"{path}.{key}" if path else str(key)
            if key not in members:
                found.append(sub)
            else:
                found.extend(unknown_fields(item, s.members[members[key]], sub))
    elif isinstance(s, ListShape) and isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(unknown_fields(item, s.member, f"{path}[{index}]"))
    elif isinstance(s, MapShape) and isinstance(value, dict):
        for key, item in value.items():
            found.extend(unknown_fields(item, s.value, f"{path}.{key}"))
    return found


def tags_to_map(tags: list[dict[str, str]] | None) -> dict[str, str]:
    """``[{Key, Value}]`` -> ``{key: value}``."""
    return {t["Key"]: t.get("Value", "") for t in tags or []}


def map_to_tags(tags: dict[str, str]) -> list[dict[str, str]]:
    """``{key: value}`` -> ``[{Key, Value}]`` in key order."""
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]
