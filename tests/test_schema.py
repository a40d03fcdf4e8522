"""`lensops schema`: one JSON Schema that accepts every EconLens manifest and rejects unknown fields."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parent.parent


def _schema(lensops) -> dict:
    result = lensops("schema")
    assert result.code == 0
    return json.loads(result.out)


def test_schema_is_valid_and_names_every_kind(lensops):
    from controller.catalog import registry

    schema = _schema(lensops)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert sorted(b["title"] for b in schema["oneOf"]) == registry().manifest_kinds


def test_schema_accepts_the_econlens_manifests(lensops):
    validator = jsonschema.Draft202012Validator(_schema(lensops))
    count = 0
    base = {
        (d["kind"], d["metadata"]["name"])
        for p in (ROOT / "desired-state" / "base").glob("*.yaml")
        for d in yaml.safe_load_all(p.read_text())
        if d
    }
    for path in sorted((ROOT / "desired-state").rglob("*.yaml")):
        if "templates" in path.parts:
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is None:
                continue
            if "environments" in path.parts and (doc["kind"], doc["metadata"]["name"]) in base:
                continue  # an overlay carries only the fields it changes
            errors = list(validator.iter_errors(doc))
            assert not errors, f"{path}: {doc['kind']}/{doc['metadata']['name']}: {errors[0].message}"
            count += 1
    assert count > 15


def test_schema_rejects_an_unknown_spec_field(lensops):
    validator = jsonschema.Draft202012Validator(_schema(lensops))
    doc = {"apiVersion": "lensops.io/v1", "kind": "Topic", "metadata": {"name": "alerts"}, "spec": {"nmae": "x"}}
    assert not validator.is_valid(doc)


def test_the_schema_in_desired_state_is_current(lensops):
    """desired-state/lensops.schema.json is what editors load (each manifest names it in a
    yaml-language-server modeline); regenerate with `lensops schema > desired-state/lensops.schema.json`."""
    committed = json.loads((ROOT / "desired-state" / "lensops.schema.json").read_text())
    assert committed == _schema(lensops)
    for path in (ROOT / "desired-state").rglob("*.yaml"):
        if "templates" not in path.parts:
            assert path.read_text().startswith("# yaml-language-server: $schema="), path
