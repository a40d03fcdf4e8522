"""AWS Backup BackupVault and BackupPlan: create, update, drift, prune, idempotency, defaults, selections."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import ACCOUNT, REGION, second_apply, writes
from controller.aws import ClientFactory
from controller.errors import PermanentError
from reconcilers.backup import BackupVaultReconciler
from controller.kinds import Context, Live

ROLE = f"arn:aws:iam::{ACCOUNT}:role/backup"
DB = f"arn:aws:rds:{REGION}:{ACCOUNT}:db:econlens"
TABLE = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/scenarios"

VAULT = """
apiVersion: lensops.io/v1
kind: BackupVault
metadata:
  name: main
spec:
  tags: {{team: {team}}}
"""

PLAN = """
apiVersion: lensops.io/v1
kind: BackupPlan
metadata:
  name: nightly
spec:
  rules:
    - ruleName: daily
      targetBackupVaultName: main
      scheduleExpression: cron(0 5 ? * * *)
      lifecycle: {{deleteAfterDays: 35}}
    - ruleName: weekly
      targetBackupVaultName: main
      scheduleExpression: cron(0 6 ? * SUN *)
      startWindowMinutes: 120
      lifecycle: {{moveToColdStorageAfterDays: 30, deleteAfterDays: {weekly_days}}}
      recoveryPointTags: {{cadence: weekly}}
  selections:
    - selectionName: data
      iamRoleArn: {role}
      resources: [{resources}]
  tags: {{team: platform}}
"""


def _estate(tree: Any, team: str = "platform", weekly_days: int = 365, resources: str = f"{DB}, {TABLE}") -> None:
    tree.environment("dev", "sync: {prune: true, allowMassPrune: true}")
    tree.write("environments/dev/vault.yaml", VAULT.format(team=team))
    tree.write("environments/dev/plan.yaml", PLAN.format(weekly_days=weekly_days, role=ROLE, resources=resources))


def _plan(backup: Any, name: str = "nightly") -> dict[str, Any] | None:
    listed = backup.list_backup_plans()["BackupPlansList"]
    found = next((p for p in listed if p["BackupPlanName"] == name), None)
    return None if found is None else backup.get_backup_plan(BackupPlanId=found["BackupPlanId"])  # type: ignore[no-any-return]


def _selections(backup: Any, plan_id: str) -> list[dict[str, Any]]:
    summaries = backup.list_backup_selections(BackupPlanId=plan_id)["BackupSelectionsList"]
    return [backup.get_backup_selection(BackupPlanId=plan_id, SelectionId=s["SelectionId"]) for s in summaries]


def _vault_tags(backup: Any) -> dict[str, str]:
    return backup.list_tags(ResourceArn=f"arn:aws:backup:{REGION}:{ACCOUNT}:backup-vault:main")["Tags"]  # type: ignore[no-any-return]


def test_apply_creates_vault_plan_and_selection_then_plan_is_clean(aws, client, tree, lensops):
    _estate(tree)
    first = lensops("apply", "--repo", str(tree.root))
    assert first.code == 0, first.out + first.err

    backup = client("backup")
    assert [v["BackupVaultName"] for v in backup.list_backup_vaults()["BackupVaultList"]] == ["main"]
    assert _vault_tags(backup) == {"team": "platform", "lensops:environment": "dev", "lensops:id": "BackupVault/main"}

    plan = _plan(backup)
    assert plan is not None
    rules = {r["RuleName"]: r for r in plan["BackupPlan"]["Rules"]}
    assert rules["daily"]["Lifecycle"] == {"DeleteAfterDays": 35}
    assert rules["daily"]["StartWindowMinutes"] == 480  # AWS's default: the manifest leaves it out
    assert rules["weekly"]["StartWindowMinutes"] == 120
    assert rules["weekly"]["RecoveryPointTags"] == {"cadence": "weekly"}
    selections = _selections(backup, plan["BackupPlanId"])
    assert [s["BackupSelection"]["SelectionName"] for s in selections] == ["data"]
    assert sorted(selections[0]["BackupSelection"]["Resources"]) == sorted([DB, TABLE])
    tags = backup.list_tags(ResourceArn=plan["BackupPlanArn"])["Tags"]
    assert tags == {"team": "platform", "lensops:environment": "dev", "lensops:id": "BackupPlan/nightly"}

    again = lensops("plan", "--repo", str(tree.root))
    assert again.code == 0, again.out + again.err


def test_second_apply_makes_no_write_call(aws, tree, lensops):
    _estate(tree)
    seen = second_apply(aws, tree, lensops)
    assert seen[("backup", "ListBackupVaults")] == 1 and seen[("backup", "ListBackupPlans")] == 1
    assert seen[("backup", "GetBackupPlan")] == 1 and seen[("backup", "GetBackupSelection")] == 1


def test_changed_manifest_updates_only_that_field(aws, client, tree, lensops):
    _estate(tree)
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    backup = client("backup")

    _estate(tree, weekly_days=400)
    plan = lensops("plan", "--repo", str(tree.root))
    assert plan.code == 2 and "BackupPlan/nightly" in plan.out
    assert "rules.weekly.lifecycle.deleteAfterDays: 365 -> 400" in plan.out
    aws.clear_requests()
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    assert writes(aws.requests()) == {("backup", "UpdateBackupPlan"): 1}
    live = _plan(backup)
    assert live is not None
    weekly = next(r for r in live["BackupPlan"]["Rules"] if r["RuleName"] == "weekly")
    assert weekly["Lifecycle"]["DeleteAfterDays"] == 400

    _estate(tree, weekly_days=400, team="data")
    aws.clear_requests()
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    assert writes(aws.requests()) == {("backup", "TagResource"): 1}
    assert _vault_tags(backup)["team"] == "data"


def test_changed_selection_is_deleted_and_made_again(aws, client, tree, lensops):
    _estate(tree)
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    _estate(tree, resources=DB)
    aws.clear_requests()
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    assert writes(aws.requests()) == {("backup", "DeleteBackupSelection"): 1, ("backup", "CreateBackupSelection"): 1}
    backup = client("backup")
    plan = _plan(backup)
    assert plan is not None
    assert [s["BackupSelection"]["Resources"] for s in _selections(backup, plan["BackupPlanId"])] == [[DB]]
    assert lensops("plan", "--repo", str(tree.root)).code == 0


def test_out_of_band_change_is_planned_and_reverted(aws, client, tree, lensops):
    _estate(tree)
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    backup = client("backup")
    plan = _plan(backup)
    assert plan is not None
    backup.update_backup_plan(
        BackupPlanId=plan["BackupPlanId"],
        BackupPlan={
            "BackupPlanName": "nightly",
            "Rules": [{"RuleName": "daily", "TargetBackupVaultName": "main", "ScheduleExpression": "cron(0 1 ? * * *)"}],
        },
    )
    for selection in _selections(backup, plan["BackupPlanId"]):
        backup.delete_backup_selection(BackupPlanId=plan["BackupPlanId"], SelectionId=selection["SelectionId"])
    backup.untag_resource(ResourceArn=f"arn:aws:backup:{REGION}:{ACCOUNT}:backup-vault:main", TagKeyList=["team"])

    drift = lensops("plan", "--repo", str(tree.root))
    assert drift.code == 2
    assert "BackupPlan/nightly" in drift.out and "BackupVault/main" in drift.out
    assert "rules.daily.scheduleExpression" in drift.out and "rules.weekly" in drift.out
    assert "selections.data" in drift.out and "drifted" in drift.out

    applied = lensops("apply", "--repo", str(tree.root))
    assert applied.code == 0, applied.out + applied.err
    live = _plan(backup)
    assert live is not None
    assert sorted(r["RuleName"] for r in live["BackupPlan"]["Rules"]) == ["daily", "weekly"]
    assert len(_selections(backup, live["BackupPlanId"])) == 1
    assert _vault_tags(backup)["team"] == "platform"
    assert lensops("plan", "--repo", str(tree.root)).code == 0


def test_prune_deletes_selections_then_plan_then_vault(aws, client, tree, lensops):
    _estate(tree)
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    tree.remove("environments/dev/plan.yaml")
    tree.remove("environments/dev/vault.yaml")
    aws.clear_requests()
    pruned = lensops("apply", "--repo", str(tree.root))
    assert pruned.code == 0, pruned.out + pruned.err
    assert writes(aws.requests()) == {
        ("backup", "DeleteBackupSelection"): 1,
        ("backup", "DeleteBackupPlan"): 1,
        ("backup", "DeleteBackupVault"): 1,
    }
    backup = client("backup")
    assert _plan(backup) is None
    assert backup.list_backup_vaults()["BackupVaultList"] == []


def test_new_encryption_key_is_refused_with_replace_by_hand(aws, client, tree, lensops):
    tree.environment("dev")
    key = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/" + "{}"
    tree.write("environments/dev/vault.yaml", VAULT.format(team="platform") + f"  encryptionKeyArn: {key.format('one')}\n")
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    assert lensops("plan", "--repo", str(tree.root)).code == 0

    tree.write("environments/dev/vault.yaml", VAULT.format(team="platform") + f"  encryptionKeyArn: {key.format('two')}\n")
    aws.clear_requests()
    refused = lensops("apply", "--repo", str(tree.root))
    assert refused.code == 1
    assert "BackupVault/main" in refused.out + refused.err and "replaced by hand" in refused.out + refused.err
    assert writes(aws.requests()) == {}


def test_vault_with_recovery_points_is_not_deleted(aws):
    ctx = Context(environment="dev", region=REGION, account=ACCOUNT, role_arn="", factory=ClientFactory(max_attempts=1))
    live = Live("main", {}, arn=f"arn:aws:backup:{REGION}:{ACCOUNT}:backup-vault:main", extra={"recoveryPoints": 3})
    with pytest.raises(PermanentError, match="3 recovery points"):
        BackupVaultReconciler(ctx).delete(live)
    assert writes(aws.requests()) == {}


def _plant_recovery_points(vault: str, count: int) -> None:
    """Give a vault recovery points in the emulator's AWS.

    moto has no backup jobs (StartBackupJob is a 404) and counts no recovery points
    (NumberOfRecoveryPoints is always 0), so the count is set on moto's vault, in this
    process (the emulator serves moto's process-wide state from a thread); lensops then
    reads it through DescribeBackupVault/ListBackupVaults as it would from AWS.
    """
    from moto.backup.models import backup_backends

    backup_backends[ACCOUNT][REGION].vaults[vault].num_of_recovery_points = count


def test_prune_refuses_a_vault_holding_recovery_points(aws, client, tree, lensops):
    _estate(tree)
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    _plant_recovery_points("main", 3)
    assert client("backup").list_backup_vaults()["BackupVaultList"][0]["NumberOfRecoveryPoints"] == 3
    tree.remove("environments/dev/plan.yaml")
    tree.remove("environments/dev/vault.yaml")
    aws.clear_requests()
    refused = lensops("apply", "--repo", str(tree.root))
    assert refused.code == 1, refused.out + refused.err
    assert "BackupVault/main" in refused.out + refused.err and "3 recovery points" in refused.out + refused.err
    assert ("backup", "DeleteBackupVault") not in writes(aws.requests())
    assert [v["BackupVaultName"] for v in client("backup").list_backup_vaults()["BackupVaultList"]] == ["main"]
