"""AWS Backup additions: updating backup plans, and backup selections.

Part of the embedded AWS emulator used by tests and ``lensops demo`` (moto in
server mode plus what moto lacks). moto 5.2.5 creates, gets, lists and deletes
backup plans, but has no UpdateBackupPlan and no backup selections. Written
from the AWS Backup API reference, on moto's own plan objects, so moto's
GetBackupPlan and ListBackupPlans see every change:

- ``UpdateBackupPlan`` replaces the plan document (rules get moto's defaults
  and new RuleIds) and gives the plan a new VersionId.
- ``CreateBackupSelection``, ``GetBackupSelection``, ``ListBackupSelections``
  (paged by MaxResults/NextToken) and ``DeleteBackupSelection``; selections
  are kept on their moto plan.
- ``DeleteBackupPlan`` of a plan that still has selections fails with
  InvalidRequestException, as in AWS; otherwise it is moto's.
"""

from __future__ import annotations

from copy import deepcopy
from typing import Any

from moto.backup.exceptions import InvalidParameterValueException, InvalidRequestException, ResourceNotFoundException
from moto.backup.models import Plan
from moto.backup.responses import BackupResponse
from moto.core.responses import ActionResult, EmptyResult
from moto.core.utils import utcnow
from moto.moto_api._internal import mock_random

from .dispatch import Addition

DEFAULT_MAX_RESULTS = 1000


class BackupAdditions(BackupResponse):
    """Backup operations moto lacks; the rest stay moto's."""

    def __init__(self) -> None:
        super().__init__()
        # Parse parameters (path labels included) from the API model, as for
        # moto's newer services, instead of moto Backup's hand-written parsing.
        self.automated_parameter_parsing = True

    def update_backup_plan(self) -> ActionResult:
        plan = self._plan()
        # A throwaway moto Plan fills in the rule defaults moto's CreateBackupPlan applies.
        revised = Plan(deepcopy(self._get_param("BackupPlan")), creator_request_id="", backend=self.backup_backend)
        plan.backup_plan = revised.backup_plan
        plan.advanced_backup_settings = revised.advanced_backup_settings
        plan.version_id = revised.version_id
        return ActionResult(
            {
                "BackupPlanId": plan.backup_plan_id,
                "BackupPlanArn": plan.backup_plan_arn,
                "CreationDate": plan.creation_date,
                "VersionId": plan.version_id,
                "AdvancedBackupSettings": plan.advanced_backup_settings or None,
            }
        )

    def delete_backup_plan(self) -> str:
        plan = self.backup_backend.plans.get(self._get_param("BackupPlanId"))
        if plan is not None and plan.deletion_date is None and _selections(plan):
            raise InvalidRequestException(msg="Related backup plan selections must be deleted prior to backup plan deletion")
        return super().delete_backup_plan()

    def create_backup_selection(self) -> ActionResult:
        plan = self._plan()
        selection = {
            "SelectionId": str(mock_random.uuid4()),
            "BackupPlanId": plan.backup_plan_id,
            "BackupSelection": self._get_param("BackupSelection"),
            "CreationDate": utcnow(),
            "CreatorRequestId": self._get_param("CreatorRequestId"),
        }
        _selections(plan)[selection["SelectionId"]] = selection
        return ActionResult({key: selection[key] for key in ("SelectionId", "BackupPlanId", "CreationDate")})

    def get_backup_selection(self) -> ActionResult:
        return ActionResult(self._selection())

    def list_backup_selections(self) -> ActionResult:
        selections = list(_selections(self._plan()).values())
        token = self._get_param("NextToken")
        if token and not token.isdigit():
            raise InvalidParameterValueException(msg=f"Invalid NextToken: {token}")
        start = int(token or 0)
        end = start + (self._get_param("MaxResults") or DEFAULT_MAX_RESULTS)
        result: dict[str, Any] = {"BackupSelectionsList": [_summary(s) for s in selections[start:end]]}
        if end < len(selections):
            result["NextToken"] = str(end)
        return ActionResult(result)

    def delete_backup_selection(self) -> EmptyResult:
        selection = self._selection()
        del _selections(self._plan())[selection["SelectionId"]]
        return EmptyResult()

    def _plan(self) -> Plan:
        plan_id = self._get_param("BackupPlanId")
        plan = self.backup_backend.plans.get(plan_id)
        if plan is None or plan.deletion_date is not None:
            raise ResourceNotFoundException(msg=f"Failed reading Backup plan {plan_id}")
        return plan

    def _selection(self) -> dict[str, Any]:
        selection_id = self._get_param("SelectionId")
        selection = _selections(self._plan()).get(selection_id)
        if selection is None:
            raise ResourceNotFoundException(msg=f"Failed reading backup selection {selection_id}")
        return selection


ADDITION = Addition(
    service="backup",
    operations=frozenset(
        {
            "UpdateBackupPlan",
            "DeleteBackupPlan",
            "CreateBackupSelection",
            "GetBackupSelection",
            "ListBackupSelections",
            "DeleteBackupSelection",
        }
    ),
    handler=BackupAdditions,
)


def _selections(plan: Plan) -> dict[str, dict[str, Any]]:
    """The plan's selections by SelectionId, kept on moto's Plan so moto's reset drops them."""
    selections: dict[str, dict[str, Any]] = vars(plan).setdefault("selections", {})
    return selections


def _summary(selection: dict[str, Any]) -> dict[str, Any]:
    return {
        "SelectionId": selection["SelectionId"],
        "SelectionName": selection["BackupSelection"]["SelectionName"],
        "BackupPlanId": selection["BackupPlanId"],
        "CreationDate": selection["CreationDate"],
        "CreatorRequestId": selection["CreatorRequestId"],
        "IamRoleArn": selection["BackupSelection"]["IamRoleArn"],
    }
