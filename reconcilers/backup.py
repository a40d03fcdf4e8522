"""AWS Backup: BackupVault and BackupPlan (rules and selections)."""

from __future__ import annotations

from pydantic import Field

from controller.manifests.types import Spec
from reconcilers.base import register_spec


class BackupVaultSpec(Spec):
    """A backup vault."""

    backupVaultName: str | None = None
    encryptionKeyArn: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)


class Lifecycle(Spec):
    moveToColdStorageAfterDays: int | None = Field(default=None, ge=1)
    deleteAfterDays: int | None = Field(default=None, ge=1)
    optInToArchiveForSupportedResources: bool | None = None


class CopyAction(Spec):
    destinationBackupVaultArn: str
    lifecycle: Lifecycle | None = None


class BackupRule(Spec):
    ruleName: str
    targetBackupVaultName: str
    scheduleExpression: str | None = None
    scheduleExpressionTimezone: str | None = None
    startWindowMinutes: int | None = Field(default=None, ge=60)
    completionWindowMinutes: int | None = Field(default=None, ge=60)
    lifecycle: Lifecycle | None = None
    recoveryPointTags: dict[str, str] = Field(default_factory=dict)
    copyActions: list[CopyAction] = Field(default_factory=list)
    enableContinuousBackup: bool | None = None


class BackupSelection(Spec):
    selectionName: str
    iamRoleArn: str
    resources: list[str] = Field(default_factory=list)
    notResources: list[str] = Field(default_factory=list)


class BackupPlanSpec(Spec):
    """A backup plan with its rules and resource selections."""

    backupPlanName: str | None = None
    rules: list[BackupRule] = Field(min_length=1)
    selections: list[BackupSelection] = Field(default_factory=list)
    tags: dict[str, str] = Field(default_factory=dict)


register_spec("BackupVault", BackupVaultSpec, "backupVaultName", "An AWS Backup vault.")
register_spec("BackupPlan", BackupPlanSpec, "backupPlanName", "An AWS Backup plan with rules and selections.")
