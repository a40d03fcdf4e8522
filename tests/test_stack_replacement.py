"""Stacks (issue 16): replacements made visible, stateful ones guarded, new stacks planned from their template.

A change set's ``Replacement: True`` is how CloudFormation says a resource
will be deleted and made anew. The plan prints each resource change of a
stack's change set on its own line, ``!`` where a stateful resource would be
replaced or removed; apply refuses such a change set (deleted, never
executed) unless the Stack's ``lensops.io/allow-replace`` names the logical
id. A new stack's plan lists the resources its template creates, and asks
CloudFormation nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
from conftest import Result, alarm, run_cli
from daemon_helpers import wait_for

from reconcilers.cloudformation import change_set_outline, refused_changes

SCHEMA = json.loads((Path(__file__).resolve().parent.parent / "docs" / "plan.schema.json").read_text())

STORAGE = """
Resources:
  Jobs:
    Type: AWS::SQS::Queue
    Properties: {QueueName: dev-jobs}
  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      TableName: dev-orders
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions: [{AttributeName: id, AttributeType: S}]
      KeySchema: [{AttributeName: id, KeyType: HASH}]
  Archive:
    Type: AWS::SQS::Queue
    DeletionPolicy: Retain
    Properties: {QueueName: dev-archive}
"""
RENAMED_TABLE = STORAGE.replace("TableName: dev-orders", "TableName: dev-orders-v2")
RENAMED_QUEUE = STORAGE.replace("QueueName: dev-jobs", "QueueName: dev-jobs-v2")
WITHOUT_ARCHIVE = STORAGE[: STORAGE.index("  Archive:")]

MANIFEST = """apiVersion: lensops.io/v1
kind: Stack
metadata:
  name: storage
ANNOTATIONSspec:
  stackName: dev-storage
  template: storage.yaml
"""
HEALTH = "econlens-storage-health"


def _estate(tree: Any, template: str = STORAGE, allow: str | None = None, environment: str = "") -> None:
    tree.environment("dev", environment)
    tree.write("templates/storage.yaml", template)
    annotations = f'  annotations: {{lensops.io/allow-replace: "{allow}"}}\n' if allow is not None else ""
    tree.write("environments/dev/storage.yaml", MANIFEST.replace("ANNOTATIONS", annotations))


def _applied(lensops: Any, tree: Any) -> None:
    result = lensops("apply", "--yes", "--repo", str(tree.root))
    assert result.code == 0, result.out + result.err


def _tables(client: Any) -> list[str]:
    return list(client("dynamodb").list_tables()["TableNames"])


def _queues(client: Any) -> list[str]:
    return sorted(url.rsplit("/", 1)[1] for url in client("sqs").list_queues().get("QueueUrls", []))


def _change_sets(client: Any) -> list[dict[str, Any]]:
    return list(client("cloudformation").list_change_sets(StackName="dev-storage")["Summaries"])


def _stack_resources(client: Any) -> list[str]:
    found = client("cloudformation").describe_stack_resources(StackName="dev-storage")["StackResources"]
    return sorted(r["LogicalResourceId"] for r in found)


def test_a_table_replacement_is_shown_refused_then_allowed_by_the_annotation(aws, client, tree, lensops):
    _estate(tree)
    _applied(lensops, tree)
    assert _tables(client) == ["dev-orders"]

    _estate(tree, RENAMED_TABLE)
    plan = lensops("plan", "--repo", str(tree.root))
    assert plan.code == 2, plan.out + plan.err
    assert "      changeSet:\n        ! Modify Table (AWS::DynamoDB::Table) REPLACEMENT: True  [stateful; apply refuses it]\n" in plan.out, plan.out
    assert '        ! apply refuses this change set unless the Stack is annotated lensops.io/allow-replace: "Table"\n' in plan.out
    assert _change_sets(client) == []

    aws.clear_requests()
    applied = lensops("apply", "--yes", "--repo", str(tree.root))
    assert applied.code == 1, applied.out + applied.err
    assert "! Stack/storage (dev-storage): failed: change set refused: it replaces Table (AWS::DynamoDB::Table; stateful)" in applied.out
    assert 'annotate the Stack lensops.io/allow-replace: "Table"' in applied.out
    assert ("cloudformation", "ExecuteChangeSet") not in aws.requests()
    assert _tables(client) == ["dev-orders"]  # nothing executed
    assert _change_sets(client) == []  # the refused change set was deleted, as was the plan's

    _estate(tree, RENAMED_TABLE, allow="Table")
    plan = lensops("plan", "--repo", str(tree.root))
    assert plan.code == 2, plan.out + plan.err
    assert "! Modify Table (AWS::DynamoDB::Table) REPLACEMENT: True  [stateful; allowed by lensops.io/allow-replace]" in plan.out
    assert "apply refuses" not in plan.out
    _applied(lensops, tree)
    assert _tables(client) == ["dev-orders-v2"]
    assert lensops("plan", "--repo", str(tree.root)).code == 0


def test_removing_a_retained_resource_is_refused_and_the_rest_of_the_environment_goes_on(aws, client, tree, lensops):
    _estate(tree)
    _applied(lensops, tree)

    _estate(tree, WITHOUT_ARCHIVE)
    tree.write("environments/dev/alarms.yaml", alarm("api-5xx"))
    plan = lensops("plan", "--repo", str(tree.root))
    assert plan.code == 2, plan.out + plan.err
    assert "! Remove Archive (AWS::SQS::Queue)  [stateful: DeletionPolicy Retain; apply refuses it]" in plan.out, plan.out
    assert 'annotated lensops.io/allow-replace: "Archive"' in plan.out

    applied = lensops("apply", "--yes", "--repo", str(tree.root))
    assert applied.code == 1, applied.out + applied.err
    assert "change set refused: it removes Archive (AWS::SQS::Queue; stateful: DeletionPolicy Retain)" in applied.out
    assert _stack_resources(client) == ["Archive", "Jobs", "Table"]
    assert _change_sets(client) == []
    assert client("cloudwatch").describe_alarms(AlarmNames=["api-5xx"])["MetricAlarms"]  # the other resource was applied

    _estate(tree, WITHOUT_ARCHIVE, allow="Archive")
    _applied(lensops, tree)
    assert _stack_resources(client) == ["Jobs", "Table"]


def test_a_queue_replacement_is_shown_and_applied(aws, client, tree, lensops):
    """SQS queues are not stateful for the guard: their replacement is shown, in the update colour, and goes ahead."""
    _estate(tree)
    _applied(lensops, tree)

    _estate(tree, RENAMED_QUEUE)
    plan = lensops("plan", "--repo", str(tree.root))
    assert plan.code == 2, plan.out + plan.err
    assert "      changeSet:\n        ~ Modify Jobs (AWS::SQS::Queue) REPLACEMENT: True\n" in plan.out, plan.out
    assert "!" not in plan.out
    _applied(lensops, tree)
    assert _queues(client) == ["dev-archive", "dev-jobs-v2"]
    assert _change_sets(client) == []


def test_a_new_stack_plan_lists_the_resources_of_its_template_and_makes_no_change_set(aws, client, tree, lensops):
    _estate(tree, STORAGE.replace("  Archive:\n", "  Archive:\n    Condition: IsProd\n").replace("Resources:", "Conditions:\n  IsProd: !Equals [a, b]\nResources:"))
    aws.clear_requests()
    plan = lensops("plan", "--repo", str(tree.root))
    assert plan.code == 2, plan.out + plan.err
    assert (
        "  + Stack/storage (dev-storage)\n"
        "      resources:\n"
        "        + Jobs (AWS::SQS::Queue)\n"
        "        + Table (AWS::DynamoDB::Table)\n"
        "        + Archive (AWS::SQS::Queue) if IsProd\n"
    ) in plan.out, plan.out
    assert "template" not in plan.out and "AttributeDefinitions" not in plan.out
    requests = aws.requests()
    # a read of the stacks, and ValidateTemplate (a new stack's template, checked by CloudFormation): no change set
    assert not [op for (service, op) in requests if service == "cloudformation" and op not in ("DescribeStacks", "ValidateTemplate")], requests

    planned = lensops("plan", "--repo", str(tree.root), "--output", "json")
    doc = json.loads(planned.out)
    jsonschema.validate(doc, SCHEMA)
    changes = {c["path"]: c for c in doc["environments"][0]["resources"][0]["changes"]}
    assert changes["resources"]["new"] == ["+ Jobs (AWS::SQS::Queue)", "+ Table (AWS::DynamoDB::Table)", "+ Archive (AWS::SQS::Queue) if IsProd"]
    assert "template" not in changes
    assert client("cloudformation").list_stacks()["StackSummaries"] == []  # no REVIEW_IN_PROGRESS stack left


def test_the_change_set_of_an_update_is_in_the_json_plan_one_entry_per_resource(aws, client, tree, lensops):
    _estate(tree)
    _applied(lensops, tree)
    _estate(tree, RENAMED_TABLE.replace("QueueName: dev-jobs", "QueueName: dev-jobs-v2"))
    planned = lensops("plan", "--repo", str(tree.root), "--output", "json")
    assert planned.code == 2, planned.err
    doc = json.loads(planned.out)
    jsonschema.validate(doc, SCHEMA)
    changes = {c["path"]: c for c in doc["environments"][0]["resources"][0]["changes"]}
    assert changes["changeSet"] == {
        "path": "changeSet",
        "old": [
            "~ Modify Jobs (AWS::SQS::Queue) REPLACEMENT: True",
            "! Modify Table (AWS::DynamoDB::Table) REPLACEMENT: True  [stateful; apply refuses it]",
            '! apply refuses this change set unless the Stack is annotated lensops.io/allow-replace: "Table"',
        ],
        "new": [],
    }
    assert changes["template.Resources.Table.Properties.TableName"] == {
        "path": "template.Resources.Table.Properties.TableName", "old": "dev-orders", "new": "dev-orders-v2",
    }


def test_the_annotation_names_logical_ids(aws, tree, lensops):
    _estate(tree, allow="Table,orders-table")
    checked = lensops("validate", "--repo", str(tree.root))
    assert checked.code == 1, checked.out + checked.err
    assert (
        "environments/dev/storage.yaml:5: Stack/storage: metadata.annotations.lensops.io/allow-replace: "
        "'orders-table': not a CloudFormation logical id (letters and digits, at most 255)"
    ) in checked.err, checked.err
    _estate(tree, allow=" , ")
    checked = lensops("validate", "--repo", str(tree.root))
    assert checked.code == 1 and "lensops.io/allow-replace: names no logical id" in checked.err, checked.err
    _estate(tree, allow="Table, Archive")
    assert lensops("validate", "--repo", str(tree.root)).code == 0


def test_the_guard_reads_aws_answers_as_aws_gives_them():
    """Real change sets say what a removal or replacement keeps in ``PolicyAction``, and may say
    ``Conditional`` or ``Dynamic``; the templates are not always at hand (kept: none here)."""
    changes = [
        {"Action": "Modify", "LogicalResourceId": "Logs", "ResourceType": "AWS::Logs::LogGroup", "Replacement": "True", "PolicyAction": "ReplaceAndRetain"},
        {"Action": "Modify", "LogicalResourceId": "Db", "ResourceType": "AWS::RDS::DBInstance", "Replacement": "Conditional", "PolicyAction": "ReplaceAndDelete"},
        {"Action": "Modify", "LogicalResourceId": "Cache", "ResourceType": "AWS::RDS::DBInstance", "Replacement": "False", "Scope": ["Properties"]},
        {"Action": "Remove", "LogicalResourceId": "Old", "ResourceType": "AWS::SNS::Topic", "PolicyAction": "Delete"},
        {"Action": "Dynamic", "LogicalResourceId": "Bucket", "ResourceType": "AWS::S3::Bucket"},
        {"Action": "Add", "LogicalResourceId": "Key", "ResourceType": "AWS::KMS::Key"},
    ]
    assert [c["LogicalResourceId"] for c in refused_changes(changes, {}, frozenset({"Bucket"}))] == ["Logs", "Db"]
    assert change_set_outline(changes, {}, frozenset({"Bucket"})) == [
        "! Dynamic Bucket (AWS::S3::Bucket)  [stateful; allowed by lensops.io/allow-replace]",
        "~ Modify Cache (AWS::RDS::DBInstance)",
        "! Modify Db (AWS::RDS::DBInstance) REPLACEMENT: Conditional  [stateful; apply refuses it]",
        "+ Add Key (AWS::KMS::Key)",
        "! Modify Logs (AWS::Logs::LogGroup) REPLACEMENT: True  [stateful: PolicyAction ReplaceAndRetain; apply refuses it]",
        "- Remove Old (AWS::SNS::Topic)",
        '! apply refuses this change set unless the Stack is annotated lensops.io/allow-replace: "Bucket,Db,Logs"',
    ]


def _roll_back(client: Any, tree: Any) -> Result:
    """The table baked healthy as ``dev-orders``; the next revision renames it, allowed by its
    annotation, and goes to ALARM during its bake: the rollback would rename it back."""
    client("cloudwatch").put_metric_alarm(
        AlarmName=HEALTH, Namespace="EconLens", MetricName="Health", Statistic="Sum", Period=60,
        EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanThreshold",
    )
    health = f"health: {{alarms: [{HEALTH}], bakeTime: 3s}}"
    _estate(tree, environment=health)
    first = run_cli("apply", "--repo", str(tree.root))
    assert first.code == 0, first.err
    _estate(tree, RENAMED_TABLE, allow="Table", environment=health)
    exe = Path(sys.executable).with_name("lensops")
    running = subprocess.Popen([str(exe), "apply", "--repo", str(tree.root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: "dev-orders-v2" in _tables(client), timeout=30, what="the renamed table", alive=running)
    client("cloudwatch").set_alarm_state(AlarmName=HEALTH, StateValue="ALARM", StateReason="test")
    out, err = running.communicate(timeout=60)
    assert running.returncode == 1, out + err
    return Result(running.returncode, out, err)


def test_a_rollback_that_would_replace_a_table_is_refused_with_the_annotation_of_the_healthy_revision(aws, client, tree):
    """The healthy revision did not allow replacing the table: the rollback reports the stack and
    executes nothing, rather than drop the table the failed revision made (and the data written since)."""
    rolled = _roll_back(client, tree)
    assert "change set refused: it replaces Table (AWS::DynamoDB::Table; stateful)" in rolled.err, rolled.err
    assert _tables(client) == ["dev-orders-v2"]
    assert _change_sets(client) == []
