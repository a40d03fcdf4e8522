"""``lensops iam-policy`` grants every action lensops calls, read from the code itself.

Each kind's reconciler and each runbook step is read as Python (AST): the
boto3 client methods it calls (``client.put_metric_alarm(``,
``ctx.client("ssm").put_parameter(``), the operations it names for a
paginator or a declared listing (``get_paginator("describe_alarms")``,
``Listing("budgets", "describe_budgets", ...)``), followed through the
module's own functions and base classes and the helpers it imports
(``reconcilers/tags.py``, ``reconcilers/listing.py``,
``controller/alarms.py``). botocore's service model names the operation of
each method; the service authorization reference gives its IAM action and
the actions it depends on (``DEPENDENT``). Each must be among the actions
the kind or the step declares. The engine's own calls (account guard,
notifications, health alarms, the DynamoDB state store) are checked against
``controller/iam.py``.
"""

from __future__ import annotations

import ast
import json
from functools import cache
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore import xform_name

from controller import iam
from controller.catalog import registry
from runbooks import CATALOGUE

ROOT = Path(__file__).resolve().parent.parent
SESSION = botocore.session.get_session()
HELPERS = ("reconcilers.tags", "reconcilers.listing", "controller.alarms")
"""Modules whose functions a reconciler calls for its AWS reads and writes: followed into."""

IAM_PREFIX = {"resourcegroupstaggingapi": "tag"}
"""boto3 client name -> IAM service prefix, where they differ."""

DEPENDENT: dict[tuple[str, str], set[str]] = {
    # AWS Backup's "Create a backup vault": the vault's storage, and grants on its KMS key.
    ("backup", "CreateBackupVault"): {
        "backup:TagResource", "backup-storage:MountCapsule",
        "kms:CreateGrant", "kms:DescribeKey", "kms:RetireGrant", "kms:Decrypt", "kms:GenerateDataKey",
    },
    ("backup", "CreateBackupPlan"): {"backup:TagResource"},
    ("backup", "CreateBackupSelection"): {"iam:PassRole"},
    ("backup", "StartRestoreJob"): {"iam:PassRole"},
    # Tags given at creation are authorized as a TagResource too (lensops tags what it creates).
    ("cloudwatch", "PutMetricAlarm"): {"cloudwatch:TagResource"},
    ("cloudwatch", "PutCompositeAlarm"): {"cloudwatch:TagResource"},
    ("sns", "CreateTopic"): {"sns:TagResource"},
    ("logs", "CreateLogGroup"): {"logs:TagResource"},
    ("wafv2", "CreateIPSet"): {"wafv2:TagResource"},
    ("wafv2", "CreateWebACL"): {"wafv2:TagResource"},
    # A Stack's roleARN is passed to CloudFormation.
    ("cloudformation", "CreateChangeSet"): {"iam:PassRole"},
    ("cloudformation", "CreateStack"): {"iam:PassRole"},
    # RDS "Grant permission to tag resources during creation", and a snapshot under a
    # customer managed key ("Authorizing use of a customer managed key").
    ("rds", "RestoreDBInstanceFromDBSnapshot"): {"rds:AddTagsToResource", "kms:CreateGrant", "kms:DescribeKey"},
    # Each action inside a transaction is authorized on its own.
    ("dynamodb", "TransactWriteItems"): {"dynamodb:ConditionCheckItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"},
}


def action_of(service: str, operation: str) -> str:
    """The IAM action that authorizes an operation (where it is not the operation's own name: Budgets, S3 reads)."""
    if service == "budgets" and operation not in ("TagResource", "UntagResource", "ListTagsForResource"):
        return "budgets:ViewBudget" if operation.startswith("Describe") else "budgets:ModifyBudget"
    renamed = {("s3", "HeadObject"): "GetObject", ("s3", "HeadBucket"): "ListBucket", ("s3", "ListObjectsV2"): "ListBucket"}
    return f"{IAM_PREFIX.get(service, service)}:{renamed.get((service, operation), operation)}"


def needed(calls: set[tuple[str, str]]) -> dict[str, tuple[str, str]]:
    """IAM action -> the (service, operation) that needs it."""
    out: dict[str, tuple[str, str]] = {}
    for call in sorted(calls):
        for action in (action_of(*call), *sorted(DEPENDENT.get(call, ()))):
            out.setdefault(action, call)
    return out


@cache
def operations(service: str) -> dict[str, str]:
    """boto3 method name -> operation name of one service (``put_metric_alarm`` -> ``PutMetricAlarm``)."""
    return {xform_name(name): name for name in SESSION.get_service_model(service).operation_names}


# --- reading the code ---------------------------------------------------------------------


@cache
def module_tree(module: str) -> ast.Module:
    return ast.parse((ROOT / (module.replace(".", "/") + ".py")).read_text())


@cache
def definitions(module: str) -> dict[str, ast.AST]:
    """Top-level name -> its function, class or assignment."""
    found: dict[str, ast.AST] = {}
    for node in module_tree(module).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            found[node.name] = node
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                if isinstance(target, ast.Name):
                    found[target.id] = node
    return found


@cache
def helper_imports(module: str) -> dict[str, str]:
    """Local name -> helper module, for ``from <helper> import name``."""
    return {
        alias.asname or alias.name: node.module
        for node in module_tree(module).body
        if isinstance(node, ast.ImportFrom) and node.module in HELPERS
        for alias in node.names
    }


def reachable(module: str, roots: list[ast.AST]) -> list[ast.AST]:
    """``roots`` and every top-level definition they name, in their module or a helper's, transitively."""
    seen: set[tuple[str, str]] = set()
    out: list[ast.AST] = []
    pending = [(module, root) for root in roots]
    while pending:
        where, node = pending.pop()
        out.append(node)
        for name in {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}:
            target = (where, name) if name in definitions(where) else (helper_imports(where).get(name, ""), name)
            if target[0] and target not in seen and name in definitions(target[0]):
                seen.add(target)
                pending.append((target[0], definitions(target[0])[name]))
    return out


def aws_calls(nodes: list[ast.AST], services: list[str]) -> set[tuple[str, str]]:
    """(service, operation) of each client method called, or named as a string, in ``nodes``.

    A name is looked up in ``services`` in order: the kind's own service first, then the
    services the code makes clients of by name (``ctx.client("resourcegroupstaggingapi")``).
    """
    names: set[str] = set()
    clients: list[str] = []
    nouns = {n.value.value for node in nodes for n in ast.walk(node) if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant)
             and any(isinstance(t, ast.Name) and t.id == "method_noun" for t in n.targets)}
    for node in nodes:
        for n in ast.walk(node):
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute):
                names.add(n.func.attr)
                if n.func.attr == "client" and n.args and isinstance(n.args[0], ast.Constant):
                    clients.append(str(n.args[0].value))
                if n.func.attr == "_call" and len(n.args) >= 2 and isinstance(n.args[1], ast.Constant):
                    # wafv2's getattr(client, f"{verb}_{self.method_noun}{plural}")
                    verb = str(n.args[1].value)
                    names.update(f"{verb}_{noun}{'s' if verb == 'list' else ''}" for noun in nouns)
            elif isinstance(n, ast.Constant) and isinstance(n.value, str):
                names.add(n.value)
    found = set()
    for name in names:
        for service in dict.fromkeys([*services, *clients]):
            if name in operations(service):
                found.add((service, operations(service)[name]))
                break
    return found


def class_nodes(cls: type) -> tuple[str, list[ast.AST]]:
    module = cls.__module__
    return module, reachable(module, [definitions(module)[cls.__name__]])


def kind_calls(kind: str) -> set[tuple[str, str]]:
    reconciler = registry()[kind]
    module, nodes = class_nodes(reconciler)
    return aws_calls(nodes, [reconciler.service])


def step_calls(runbook: str, step: Any) -> set[tuple[str, str]]:
    module = step.run.__module__
    return aws_calls(reachable(module, [definitions(module)[step.run.__name__]]), [])


# --- the checks -----------------------------------------------------------------------------


def test_the_reader_finds_calls_methods_paginators_listings_and_helpers() -> None:
    """The AST reading on the shapes the code uses (a guard against a reader that finds nothing)."""
    assert ("cloudwatch", "PutMetricAlarm") in kind_calls("MetricAlarm")
    assert ("cloudwatch", "DescribeAlarms") in kind_calls("MetricAlarm"), "controller/alarms.py's paginator"
    assert ("resourcegroupstaggingapi", "GetResources") in kind_calls("MetricAlarm"), "reconcilers/tags.py"
    assert ("budgets", "DescribeBudgets") in kind_calls("Budget"), "a Listing(...) declaration"
    assert {("wafv2", "GetIPSet"), ("wafv2", "ListIPSets"), ("wafv2", "DeleteIPSet")} <= kind_calls("IPSet"), "wafv2's getattr by verb"
    assert ("wafv2", "GetIPSet") not in kind_calls("WebACL")
    (restore,) = [s for s in CATALOGUE["dr-restore"].steps if s.name == "restore"]
    assert ("rds", "RestoreDBInstanceFromDBSnapshot") in step_calls("dr-restore", restore)
    assert action_of("budgets", "DescribeNotificationsForBudget") == "budgets:ViewBudget"
    assert action_of("budgets", "CreateSubscriber") == "budgets:ModifyBudget"
    assert action_of("resourcegroupstaggingapi", "GetResources") == "tag:GetResources"


@pytest.mark.parametrize("kind", registry().kinds)
def test_every_call_of_a_kind_is_a_declared_action(kind: str) -> None:
    reconciler = registry()[kind]
    calls = kind_calls(kind)
    assert calls, f"{kind}: no AWS call found in {reconciler.__module__}.{reconciler.__name__}"
    # with every setting an Environment may give it (a templateBucket): the actions scoped to what it names
    scoped = {a for granted in reconciler.iam_scoped({"templateBucket": "bucket"}).values() for a in granted}
    declared = {*reconciler.iam_read, *reconciler.iam_write, *scoped}
    missing = {action: call for action, call in needed(calls).items() if action not in declared}
    assert not missing, f"{kind} calls without declaring (action: (service, operation)): {missing}"


@pytest.mark.parametrize("runbook, step", [(r.name, s.name) for r in CATALOGUE.values() for s in r.steps])
def test_every_call_of_a_runbook_step_is_in_its_touches(runbook: str, step: str) -> None:
    (found,) = [s for s in CATALOGUE[runbook].steps if s.name == step]
    missing = {action: call for action, call in needed(step_calls(runbook, found)).items() if action not in found.touches}
    assert not missing, f"{runbook} step {step} calls without declaring in touches: {missing}"


def test_the_engine_calls_what_the_policy_grants() -> None:
    """The account guard, notifications, health alarms and the DynamoDB state store."""
    granted = {*iam.ALWAYS, iam.NOTIFY, iam.HEALTH}
    for module, services in (("controller.aws", ["sts"]), ("controller.notify", ["sns"]), ("controller.health", ["cloudwatch"])):
        calls = aws_calls(reachable(module, list(module_tree(module).body)), services)
        assert calls and set(needed(calls)) <= granted, (module, needed(calls))
    store = aws_calls(list(module_tree("controller.state.dynamodb").body), ["dynamodb"])
    assert ("dynamodb", "TransactWriteItems") in store
    assert set(needed(store)) <= set(iam.STATE_STORE), set(needed(store)) - set(iam.STATE_STORE)


def _policy(lensops: Any, root: Path, *env: str) -> dict[str, Any]:
    result = lensops("iam-policy", "--repo", str(root), *env)
    assert result.code == 0, result.err
    return {statement["Sid"]: statement for statement in json.loads(result.out)["Statement"]}


def test_the_example_estate_policy_can_create_a_backup_vault_and_run_a_dr_restore(lensops: Any) -> None:
    statements = _policy(lensops, ROOT / "desired-state")
    reconcile = set(statements["LensopsReconcile"]["Action"])
    assert {"backup:CreateBackupVault", "backup-storage:MountCapsule", "kms:CreateGrant", "kms:DescribeKey", "kms:RetireGrant", "kms:Decrypt", "kms:GenerateDataKey"} <= reconcile
    runbooks = set(statements["LensopsRunbooks"]["Action"])
    assert {"rds:DescribeDBSnapshots", "rds:RestoreDBInstanceFromDBSnapshot", "rds:AddTagsToResource", "ssm:GetParameter", "ssm:PutParameter"} <= runbooks
    assert runbooks == set(iam.runbook_actions()), "every runbook of the catalogue, whether a RunbookRun is committed or not"
    assert "LensopsStateStore" not in statements, "SQLite: no DynamoDB"


def test_a_dynamodb_state_store_gets_its_table(lensops: Any, tree: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    tree.environment("dev")
    monkeypatch.setenv("LENSOPS_STATE_URL", "dynamodb://lensops-state")
    store = _policy(lensops, tree.root)["LensopsStateStore"]
    assert store["Resource"] == "arn:aws:dynamodb:*:*:table/lensops-state"
    assert set(store["Action"]) == set(iam.STATE_STORE)


def test_reconcilers_and_runbooks_name_real_services() -> None:
    """Every declared action's prefix is an IAM service prefix lensops knows how to reach (no typo such as ``cloudwach:``)."""
    prefixes = {IAM_PREFIX.get(s, s) for s in SESSION.get_available_services()} | {"backup-storage", "tag"}
    declared = {a for kind in registry().kinds for a in (*registry()[kind].iam_read, *registry()[kind].iam_write)}
    declared |= set(iam.runbook_actions()) | set(iam.STATE_STORE) | {*iam.ALWAYS, iam.NOTIFY, iam.HEALTH}
    assert {a.split(":")[0] for a in declared} <= prefixes
