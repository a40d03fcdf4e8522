"""The plan a reviewer reads for a change of every kind, against the expected text in tests/golden/.

The golden file is never written by a normal run: a missing or different golden fails. To
(re)write it, run with ``LENSOPS_UPDATE_GOLDEN=1`` (the test writes the file and still fails,
so that the new text is read and committed on purpose), e.g.
``LENSOPS_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_plan_every_kind.py``.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from controller.catalog import registry
from lensops_emulator.estate import seed

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden" / "plan_every_kind.txt"
# Read at import: the autouse fixture of conftest.py clears every LENSOPS_* variable for the test itself.
UPDATE_GOLDEN = os.environ.get("LENSOPS_UPDATE_GOLDEN") == "1"
REGENERATE = f"LENSOPS_UPDATE_GOLDEN=1 .venv/bin/python -m pytest {Path(__file__).relative_to(ROOT)}"


def kinds_in_the_example_estate() -> set[str]:
    """The registered kinds that desired-state/ has manifests of (a ``kind:`` line of a YAML document)."""
    found: set[str] = set()
    for path in (ROOT / "desired-state").rglob("*.yaml"):
        found.update(re.findall(r"^kind:[ \t]*(\w+)[ \t]*$", path.read_text(), re.M))
    return found & set(registry().kinds)

CHANGES = {
    "environments/dev/environment.yaml": [
        ("lambdaErrorsPerMinute: 10", "lambdaErrorsPerMinute: 12"),  # MetricAlarm
        ("monthlyBudgetUsd: 100", "monthlyBudgetUsd: 150"),  # Budget
        ("apiRateLimit: 500", "apiRateLimit: 800"),  # WebACL
        ("backupRetentionDays: 7", "backupRetentionDays: 14"),  # BackupPlan
        ("queueRetentionSeconds: 86400", "queueRetentionSeconds: 172800"),  # Stack
        ('scenarioVersion: "2"', 'scenarioVersion: "1"'),  # LambdaAlias
        ("logRetentionDays: 30", "logRetentionDays: 60"),  # LogGroup
        ("bakeTime: 1m", "bakeTime: 1s"),
    ],
    "base/alarms.yaml": [("API is failing or slow", "API is failing or too slow")],  # CompositeAlarm
    "base/dashboard.yaml": [("title: Database CPU (%)", "title: Database CPU")],  # Dashboard
    "base/topics.yaml": [("DisplayName: EconLens {{ env.name }} alerts", "DisplayName: EconLens {{ env.name }} alarms")],  # Topic
    "base/waf.yaml": [("    - 198.51.100.0/24", "    - 198.51.100.0/25")],  # IPSet
    "base/backup.yaml": [("  backupVaultName: econlens-{{ env.name }}-vault\n", "  backupVaultName: econlens-{{ env.name }}-vault\n  tags: {tier: gold}\n")],  # BackupVault
}


def _rewrite(repo: Path, changes: dict[str, list[tuple[str, str]]]) -> None:
    for relative, edits in changes.items():
        path = repo / relative
        text = path.read_text()
        for old, new in edits:
            assert old in text, f"{relative}: {old!r} not found"
            text = text.replace(old, new)
        path.write_text(text)


def test_plan_text_for_a_change_of_every_kind(aws, tree, lensops):
    seed(aws.url)
    shutil.copytree(ROOT / "desired-state", tree.root, dirs_exist_ok=True)
    _rewrite(tree.root, {"environments/dev/environment.yaml": [("bakeTime: 1m", "bakeTime: 1s")]})
    assert lensops("apply", "--repo", str(tree.root), "--env", "dev").code == 0
    changes = dict(CHANGES)
    changes["environments/dev/environment.yaml"] = [c for c in CHANGES["environments/dev/environment.yaml"] if "bakeTime" not in c[0]]
    _rewrite(tree.root, changes)
    planned = lensops("plan", "--repo", str(tree.root), "--env", "dev")
    assert planned.code == 2, planned.err
    text = re.sub(r"\(revision [0-9a-z-]+\)", "(revision REV)", planned.out)
    text = re.sub(r"lensops-plan-[0-9a-f]+", "lensops-plan-ID", text)
    kinds = set(re.findall(r"^  ~ (\w+)/", text, re.M))
    expected = kinds_in_the_example_estate()
    assert expected, "no registered kind found in desired-state/"
    assert kinds == expected, f"CHANGES must change one resource of each kind desired-state/ uses: missing {sorted(expected - kinds)}"
    if UPDATE_GOLDEN and (not GOLDEN.exists() or GOLDEN.read_text() != text):
        GOLDEN.write_text(text)
        pytest.fail(f"wrote {GOLDEN}: review it, commit it, and run again without LENSOPS_UPDATE_GOLDEN")
    assert GOLDEN.exists(), f"{GOLDEN} is missing; write it with {REGENERATE}, then review and commit it"
    assert text == GOLDEN.read_text(), f"the plan differs from {GOLDEN.name}; if the change is intended, rewrite it with {REGENERATE}"
