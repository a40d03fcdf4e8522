"""``lensops schema``: one JSON Schema for every manifest, for editors and CI."""

from __future__ import annotations

from typing import Any

from controller.kinds import RUNBOOK_RUN, Registry
from controller.manifests.model import API_VERSION, EnvironmentSpec, Metadata


def schema(registry: Registry) -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) whose ``oneOf`` has one branch per kind of ``registry``."""
    specs: dict[str, Any] = {"Environment": EnvironmentSpec}
    if registry.runbook_spec is not None:
        specs[RUNBOOK_RUN] = registry.runbook_spec
    specs.update({cls.kind: cls.spec_model for cls in registry})
    defs: dict[str, Any] = {}
    branches = []
    meta = Metadata.model_json_schema(ref_template="#/$defs/{model}")
    defs.update(meta.pop("$defs", {}))
    defs["Metadata"] = meta
    for kind in sorted(specs):
        spec_schema = specs[kind].model_json_schema(ref_template="#/$defs/{model}")
        defs.update(spec_schema.pop("$defs", {}))
        defs[f"{kind}Spec"] = spec_schema
        branches.append(
            {
                "type": "object",
                "title": kind,
                "additionalProperties": False,
                "required": ["apiVersion", "kind", "metadata", "spec"],
                "properties": {
                    "apiVersion": {"const": API_VERSION},
                    "kind": {"const": kind},
                    "metadata": {"$ref": "#/$defs/Metadata"},
                    "spec": {"$ref": f"#/$defs/{kind}Spec"},
                },
            }
        )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://lensops.io/schema/v1/manifest.json",
        "title": "lensops manifest",
        "oneOf": branches,
        "$defs": _allow_placeholders(defs),
    }


_PLACEHOLDER = {"type": "string", "pattern": r"^\{\{\s*(env|vars)\.[A-Za-z0-9_-]+\s*\}\}$"}


def _allow_placeholders(node: Any) -> Any:
    """Let a number or boolean field be written as one ``{{ vars.x }}`` placeholder."""
    if isinstance(node, list):
        return [_allow_placeholders(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _allow_placeholders(v) for k, v in node.items()}
    if out.get("type") in ("number", "integer", "boolean"):
        typed = {k: out.pop(k) for k in list(out) if k not in ("title", "description", "default")}
        out["anyOf"] = [typed, _PLACEHOLDER]
    return out
