"""Backup additions: UpdateBackupPlan and backup selections."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from lensops_emulator import Emulator

ROLE = "arn:aws:iam::123456789012:role/backup"
DB = "arn:aws:rds:us-east-1:123456789012:db:econlens"


@pytest.fixture
def backup(client: Any) -> Any:
    backup = client("backup")
    backup.create_backup_vault(BackupVaultName="main")
    return backup


@pytest.fixture
def plan_id(backup: Any) -> str:
    plan = backup.create_backup_plan(
        BackupPlan={
            "BackupPlanName": "daily",
            "Rules": [{"RuleName": "daily", "TargetBackupVaultName": "main", "ScheduleExpression": "cron(0 5 * * ? *)"}],
        }
    )
    return str(plan["BackupPlanId"])


def code_of(raised: pytest.ExceptionInfo[ClientError]) -> str:
    return str(raised.value.response["Error"]["Code"])


def create_selection(backup: Any, plan_id: str, name: str = "databases") -> str:
    created = backup.create_backup_selection(
        BackupPlanId=plan_id,
        BackupSelection={"SelectionName": name, "IamRoleArn": ROLE, "Resources": [DB]},
    )
    assert created["BackupPlanId"] == plan_id
    return str(created["SelectionId"])


def test_update_backup_plan_replaces_rules_and_changes_version(backup: Any, plan_id: str) -> None:
    before = backup.get_backup_plan(BackupPlanId=plan_id)

    updated = backup.update_backup_plan(
        BackupPlanId=plan_id,
        BackupPlan={
            "BackupPlanName": "twice-daily",
            "Rules": [
                {
                    "RuleName": "twice",
                    "TargetBackupVaultName": "main",
                    "ScheduleExpression": "cron(0 5,17 * * ? *)",
                    "Lifecycle": {"DeleteAfterDays": 35},
                }
            ],
        },
    )

    after = backup.get_backup_plan(BackupPlanId=plan_id)
    [rule] = after["BackupPlan"]["Rules"]
    assert updated["BackupPlanId"] == plan_id
    assert updated["VersionId"] == after["VersionId"] != before["VersionId"]
    assert after["BackupPlan"]["BackupPlanName"] == "twice-daily"
    assert rule["RuleName"] == "twice"
    assert rule["ScheduleExpression"] == "cron(0 5,17 * * ? *)"
    assert rule["Lifecycle"] == {"DeleteAfterDays": 35}
    assert rule["StartWindowMinutes"] == 480  # moto's defaults, as on create
    assert [p["BackupPlanName"] for p in backup.list_backup_plans()["BackupPlansList"]] == ["twice-daily"]


def test_update_backup_plan_of_a_missing_plan_is_not_found(backup: Any) -> None:
    with pytest.raises(ClientError) as raised:
        backup.update_backup_plan(
            BackupPlanId="missing", BackupPlan={"BackupPlanName": "x", "Rules": [{"RuleName": "r", "TargetBackupVaultName": "main"}]}
        )

    assert code_of(raised) == "ResourceNotFoundException"


def test_backup_selections_are_created_read_listed_and_deleted(backup: Any, plan_id: str) -> None:
    selection_id = create_selection(backup, plan_id)

    got = backup.get_backup_selection(BackupPlanId=plan_id, SelectionId=selection_id)
    [listed] = backup.list_backup_selections(BackupPlanId=plan_id)["BackupSelectionsList"]

    assert got["BackupSelection"] == {"SelectionName": "databases", "IamRoleArn": ROLE, "Resources": [DB]}
    assert got["SelectionId"] == selection_id
    assert got["BackupPlanId"] == plan_id
    assert listed["SelectionId"] == selection_id
    assert listed["SelectionName"] == "databases"
    assert listed["IamRoleArn"] == ROLE
    assert listed["CreationDate"] == got["CreationDate"]

    backup.delete_backup_selection(BackupPlanId=plan_id, SelectionId=selection_id)

    assert backup.list_backup_selections(BackupPlanId=plan_id)["BackupSelectionsList"] == []
    with pytest.raises(ClientError) as raised:
        backup.get_backup_selection(BackupPlanId=plan_id, SelectionId=selection_id)
    assert code_of(raised) == "ResourceNotFoundException"


def test_list_backup_selections_pages(backup: Any, plan_id: str) -> None:
    ids = [create_selection(backup, plan_id, name) for name in ("a", "b", "c")]

    paged = [
        selection["SelectionId"]
        for page in backup.get_paginator("list_backup_selections").paginate(
            BackupPlanId=plan_id, PaginationConfig={"PageSize": 2}
        )
        for selection in page["BackupSelectionsList"]
    ]

    assert paged == ids


def test_selection_of_a_missing_plan_is_not_found(backup: Any) -> None:
    with pytest.raises(ClientError) as raised:
        create_selection(backup, "missing")

    assert code_of(raised) == "ResourceNotFoundException"


def test_a_plan_with_selections_cannot_be_deleted(backup: Any, plan_id: str) -> None:
    selection_id = create_selection(backup, plan_id)

    with pytest.raises(ClientError) as raised:
        backup.delete_backup_plan(BackupPlanId=plan_id)

    assert code_of(raised) == "InvalidRequestException"
    assert [p["BackupPlanId"] for p in backup.list_backup_plans()["BackupPlansList"]] == [plan_id]
    backup.delete_backup_selection(BackupPlanId=plan_id, SelectionId=selection_id)
    backup.delete_backup_plan(BackupPlanId=plan_id)
    assert backup.list_backup_plans()["BackupPlansList"] == []


def test_reset_wipes_selections(emulator: Emulator, backup: Any, plan_id: str) -> None:
    selection_id = create_selection(backup, plan_id)

    emulator.reset()

    with pytest.raises(ClientError) as raised:
        backup.get_backup_selection(BackupPlanId=plan_id, SelectionId=selection_id)
    assert code_of(raised) == "ResourceNotFoundException"
