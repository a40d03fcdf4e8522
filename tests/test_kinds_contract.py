"""A contract over the registry: every kind forbids unknown fields, declares its IAM actions,
and has a test against the emulator."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconcilers.base import KINDS

TESTS = Path(__file__).resolve().parent
CONTRACT_KINDS = {
    "Stack", "LambdaAlias", "MetricAlarm", "CompositeAlarm", "Dashboard", "Topic", "Budget",
    "BackupVault", "BackupPlan", "IPSet", "WebACL",
}


def test_every_contract_kind_is_registered():
    assert set(KINDS) == CONTRACT_KINDS


@pytest.mark.parametrize("kind", sorted(CONTRACT_KINDS))
def test_spec_forbids_unknown_fields(kind):
    assert KINDS[kind].spec_model.model_config.get("extra") == "forbid"


@pytest.mark.parametrize("kind", sorted(k for k, i in KINDS.items() if i.reconciler is not None))
def test_reconciler_declares_iam_actions_and_has_a_test(kind):
    reconciler = KINDS[kind].reconciler
    assert reconciler.iam_read and reconciler.iam_write
    for action in (*reconciler.iam_read, *reconciler.iam_write):
        service, _, name = action.partition(":")
        assert service and name and name[0].isupper(), action
    tested = [p for p in TESTS.glob("test_*.py") if f"kind: {kind}\n" in p.read_text() or f'"{kind}"' in p.read_text()]
    assert tested, f"no test under tests/ applies a {kind}"
