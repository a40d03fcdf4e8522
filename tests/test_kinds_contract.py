"""A contract over the registry: every kind forbids unknown fields, declares its IAM actions,
documents itself, and has a test file of its own that applies it against the emulator."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.catalog import registry

TESTS = Path(__file__).resolve().parent
KINDS = [cls.kind for cls in registry()]


@pytest.mark.parametrize("kind", KINDS)
def test_spec_forbids_unknown_fields(kind):
    assert registry()[kind].spec_model.model_config.get("extra") == "forbid"


@pytest.mark.parametrize("kind", KINDS)
def test_reconciler_declares_iam_actions_and_documents_itself(kind):
    reconciler = registry()[kind]
    assert reconciler.iam_read and reconciler.iam_write
    for action in (*reconciler.iam_read, *reconciler.iam_write):
        service, _, name = action.partition(":")
        assert service and name and name[0].isupper(), action
    assert reconciler.__doc__ and reconciler.example and f"kind: {kind}\n" in reconciler.example


@pytest.mark.parametrize("kind", KINDS)
def test_kind_has_a_test_that_applies_it(kind):
    others = [p for p in TESTS.glob("test_*.py") if p.name != Path(__file__).name]
    tested = [p.name for p in others if f"kind: {kind}\n" in p.read_text()]
    assert tested, f"no test file under tests/ (besides this one) has a manifest of kind {kind}"
