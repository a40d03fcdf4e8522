"""``lensops iam-policy``: the least-privilege policy the manifests in scope need.

Three statements, each one thing a role may or may not be trusted with:

- ``LensopsReconcile``: what the kinds in use declare (``iam_read`` and
  ``iam_write`` of their reconcilers, each operation's dependent actions
  included: a BackupVault's ``backup-storage:MountCapsule`` and KMS grants),
  the account guard's ``sts:GetCallerIdentity``, ``sns:Publish`` for an
  Environment's ``notifications.topic``, ``cloudwatch:DescribeAlarms`` for its
  ``health.alarms``, and what the RunbookRuns committed now touch;
- ``LensopsRunbooks``: every runbook of the catalogue (``Step.touches``),
  committed or not: a ``dr-restore`` is committed during an incident, when
  changing the role is the last thing anyone wants to do. Drop the statement
  to refuse runbooks that act on AWS themselves (their runs then fail with
  AccessDenied);
- ``LensopsStateStore``: with ``dynamodb://TABLE``, the calls of the
  DynamoDB state store on that table; ``LensopsAssumeRole``: ``sts:AssumeRole``
  on each Environment's ``assumeRoleArn``.

``tests/test_iam_policy.py`` reads every module's boto3 calls and fails while
one of them is not an action declared here or by its kind or runbook.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from controller.kinds import Registry
from controller.manifests.model import EnvironmentDesired
from runbooks import CATALOGUE as RUNBOOKS

ALWAYS = ("sts:GetCallerIdentity",)
"""The account guard (``controller/aws.py``), before any pass."""
NOTIFY = "sns:Publish"
"""An Environment's ``notifications.topic`` (``controller/notify.py``)."""
HEALTH = "cloudwatch:DescribeAlarms"
"""An Environment's ``health.alarms``, read by the bake (``controller/health.py``)."""
STATE_STORE = (
    "dynamodb:DescribeTable",
    "dynamodb:CreateTable",
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:Query",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:ConditionCheckItem",
    "dynamodb:TransactWriteItems",
)
"""``controller/state/dynamodb.py``: the table is created when missing; a fenced write is a
TransactWriteItems whose ConditionCheck, Put, Update and Delete each need their own action."""


def runbook_actions() -> list[str]:
    """Every action a runbook of the catalogue may call, sorted."""
    return sorted({action for runbook in RUNBOOKS.values() for action in runbook.touches})


def policy_for(registry: Registry, environments: Iterable[EnvironmentDesired], state_url: str = "") -> dict[str, Any]:
    """An IAM policy document with the actions each used kind's reconciler declares (on every
    resource), those it needs on resources the Environments' settings name (on those only), every
    runbook's, and the state store's at ``state_url`` when it is DynamoDB."""
    actions: set[str] = set(ALWAYS)
    roles: set[str] = set()
    scoped: dict[str, set[str]] = {}
    for env in environments:
        if env.spec.assumeRoleArn:
            roles.add(env.spec.assumeRoleArn)
        if env.spec.notifications.topic:
            actions.add(NOTIFY)
        if env.spec.health.alarms:
            actions.add(HEALTH)
        for run in env.runs:
            runbook = RUNBOOKS.get(str(run.spec.get("runbook")))
            if runbook is not None:
                actions.update(runbook.touches)
        for resource in env.resources:
            reconciler = registry.get(resource.kind)
            if reconciler is not None:
                actions.update(reconciler.iam_read)
                actions.update(reconciler.iam_write)
                for arn, on_arn in reconciler.iam_scoped(env.spec.model_dump(mode="json")).items():
                    scoped.setdefault(arn, set()).update(on_arn)
    statements: list[dict[str, Any]] = [{"Sid": "LensopsReconcile", "Effect": "Allow", "Action": sorted(actions), "Resource": "*"}]
    # Actions on resources the environments' settings name, granted on those only: one statement per set of actions.
    by_actions: dict[tuple[str, ...], list[str]] = {}
    for arn, granted in sorted(scoped.items()):
        by_actions.setdefault(tuple(sorted(granted)), []).append(arn)
    for number, (granted_actions, arns) in enumerate(sorted(by_actions.items()), start=1):
        statements.append({"Sid": f"LensopsScoped{number}", "Effect": "Allow", "Action": list(granted_actions), "Resource": arns})
    statements.append({"Sid": "LensopsRunbooks", "Effect": "Allow", "Action": runbook_actions(), "Resource": "*"})
    if state_url.startswith("dynamodb://"):
        table = state_url[len("dynamodb://") :].strip("/")
        statements.append({"Sid": "LensopsStateStore", "Effect": "Allow", "Action": list(STATE_STORE), "Resource": f"arn:aws:dynamodb:*:*:table/{table}"})
    if roles:
        statements.append({"Sid": "LensopsAssumeRole", "Effect": "Allow", "Action": ["sts:AssumeRole"], "Resource": sorted(roles)})
    return {"Version": "2012-10-17", "Statement": statements}
