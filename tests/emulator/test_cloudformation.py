"""CloudFormation additions: change sets as AWS runs them, termination protection, rollbacks, drift."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from .conftest import ACCOUNT_ID, REGION

ROLE = f"arn:aws:iam::{ACCOUNT_ID}:role/deployer"
TOPIC = f"arn:aws:sns:{REGION}:{ACCOUNT_ID}:stack-events"

TEMPLATE = """
Parameters:
  Prefix: {Type: String}
  Retention: {Type: Number, Default: 7}
Resources:
  Jobs:
    Type: AWS::SQS::Queue
  Setting:
    Type: AWS::SSM::Parameter
    Properties:
      Name: !Sub "/${Prefix}/retention"
      Type: String
      Value: !Ref Retention
Outputs:
  SettingName:
    Value: !Ref Setting
    Export: {Name: !Sub "${Prefix}-setting"}
"""


@pytest.fixture
def cfn(client: Any) -> Any:
    client("sns").create_topic(Name="stack-events")  # stack events are published to TOPIC
    return client("cloudformation")


def code_of(raised: pytest.ExceptionInfo[ClientError]) -> str:
    return str(raised.value.response["Error"]["Code"])


def message_of(raised: pytest.ExceptionInfo[ClientError]) -> str:
    return str(raised.value.response["Error"]["Message"])


def params(**values: str) -> list[dict[str, str]]:
    return [{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()]


def tags(**values: str) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in values.items()]


def stack_of(cfn: Any, name: str = "app") -> dict[str, Any]:
    return dict(cfn.describe_stacks(StackName=name)["Stacks"][0])


def outputs(stack: dict[str, Any]) -> dict[str, str]:
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def tag_map(stack: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in stack.get("Tags", [])}


def change_set(cfn: Any, kind: str = "UPDATE", name: str = "next", **extra: Any) -> dict[str, Any]:
    extra.setdefault("TemplateBody", TEMPLATE)
    extra = {k: v for k, v in extra.items() if v is not None}
    made = cfn.create_change_set(StackName="app", ChangeSetName=name, ChangeSetType=kind, **extra)
    return dict(cfn.describe_change_set(ChangeSetName=made["Id"]))


def changes(described: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["ResourceChange"]["LogicalResourceId"]: c["ResourceChange"] for c in described["Changes"]}


@pytest.fixture
def app(cfn: Any) -> dict[str, Any]:
    """Stack ``app`` made through an executed CREATE change set."""
    created = change_set(
        cfn,
        "CREATE",
        "first",
        Parameters=params(Prefix="dev"),
        Tags=tags(team="platform"),
        Capabilities=["CAPABILITY_IAM"],
        RoleARN=ROLE,
        NotificationARNs=[TOPIC],
    )
    cfn.execute_change_set(ChangeSetName=created["ChangeSetId"])
    return created


def ssm_value(client: Any, name: str) -> str:
    return str(client("ssm").get_parameter(Name=name)["Parameter"]["Value"])


# --- ExecuteChangeSet ----------------------------------------------------------


def test_executed_create_change_set_gives_the_stack_outputs_exports_and_settings(cfn: Any, app: dict[str, Any]) -> None:
    stack = stack_of(cfn)
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    assert outputs(stack) == {"SettingName": "/dev/retention"}
    assert tag_map(stack) == {"team": "platform"}
    assert stack["RoleARN"] == ROLE
    assert stack["NotificationARNs"] == [TOPIC]
    assert stack["Capabilities"] == ["CAPABILITY_IAM"]
    assert [(e["Name"], e["Value"]) for e in cfn.list_exports()["Exports"]] == [("dev-setting", "/dev/retention")]
    assert cfn.list_change_sets(StackName="app")["Summaries"] == []
    executed = cfn.describe_change_set(ChangeSetName=app["ChangeSetId"])
    assert executed["ExecutionStatus"] == "EXECUTE_COMPLETE"
    assert executed["Tags"] == tags(team="platform")


def test_executed_update_change_set_recomputes_outputs_and_drops_the_stacks_change_sets(
    cfn: Any, client: Any, app: dict[str, Any]
) -> None:
    other = change_set(cfn, name="other", Parameters=params(Prefix="dev", Retention="8"))
    update = change_set(cfn, Parameters=params(Prefix="prod"), Tags=tags(team="data"), NotificationARNs=[])
    assert [s["ChangeSetName"] for s in cfn.list_change_sets(StackName="app")["Summaries"]] == ["other", "next"]

    cfn.execute_change_set(ChangeSetName="next", StackName="app")

    stack = stack_of(cfn)
    assert stack["StackStatus"] == "UPDATE_COMPLETE"
    assert "LastUpdatedTime" in stack
    assert outputs(stack) == {"SettingName": "/prod/retention"}
    assert {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}["Prefix"] == "prod"
    assert tag_map(stack) == {"team": "data"}
    assert stack["RoleARN"] == ROLE, "no RoleARN given: the stack keeps its role"
    assert stack.get("NotificationARNs", []) == [], "an empty list removes the topics"
    assert stack.get("Capabilities", []) == []
    assert ssm_value(client, "/prod/retention") == "7"  # the Fn::Sub name changed: the parameter was replaced
    with pytest.raises(ClientError):
        client("ssm").get_parameter(Name="/dev/retention")
    assert [(e["Name"], e["Value"]) for e in cfn.list_exports()["Exports"]] == [("prod-setting", "/prod/retention")]
    assert cfn.list_change_sets(StackName="app")["Summaries"] == []
    with pytest.raises(ClientError) as raised:
        cfn.describe_change_set(ChangeSetName=other["ChangeSetId"])
    assert code_of(raised) == "ChangeSetNotFound"
    assert cfn.describe_change_set(ChangeSetName=update["ChangeSetId"])["ExecutionStatus"] == "EXECUTE_COMPLETE"


def test_a_change_set_that_is_not_available_cannot_be_executed(cfn: Any, app: dict[str, Any]) -> None:
    same = change_set(cfn, Parameters=params(Prefix="dev"))
    with pytest.raises(ClientError) as raised:
        cfn.execute_change_set(ChangeSetName=same["ChangeSetId"])
    assert code_of(raised) == "InvalidChangeSetStatus"


# --- CreateChangeSet: what counts as a change, and the Changes listed ------------


def test_a_change_set_changing_nothing_is_failed(cfn: Any, app: dict[str, Any]) -> None:
    # Retention 7.0 is the default 7 as a Number; tags, topics and role are the stack's.
    same = change_set(
        cfn, Parameters=params(Prefix="dev", Retention="7.0"), Tags=tags(team="platform"), NotificationARNs=[TOPIC]
    )
    assert same["Status"] == "FAILED"
    assert same["ExecutionStatus"] == "UNAVAILABLE"
    assert "didn't contain changes" in same["StatusReason"]
    assert same["Changes"] == []

    previous = change_set(
        cfn, name="previous", UsePreviousTemplate=True, TemplateBody=None, Parameters=[{"ParameterKey": "Prefix", "UsePreviousValue": True}]
    )
    assert previous["Status"] == "FAILED"


def test_a_tags_only_change_set_is_executable_and_lists_the_taggable_resources(cfn: Any, app: dict[str, Any]) -> None:
    retagged = change_set(cfn, Parameters=params(Prefix="dev"), Tags=tags(team="data"))
    assert retagged["Status"] == "CREATE_COMPLETE" and retagged["ExecutionStatus"] == "AVAILABLE"
    listed = changes(retagged)
    assert sorted(listed) == ["Jobs", "Setting"]
    setting = listed["Setting"]
    assert setting["Action"] == "Modify" and setting["Replacement"] == "False" and setting["Scope"] == ["Tags"]
    assert setting["PhysicalResourceId"] == "/dev/retention"
    assert setting["Details"] == [
        {"Target": {"Attribute": "Tags", "RequiresRecreation": "Never"}, "Evaluation": "Static", "ChangeSource": "DirectModification"}
    ]

    cfn.execute_change_set(ChangeSetName=retagged["ChangeSetId"])
    assert tag_map(stack_of(cfn)) == {"team": "data"}


def test_a_parameters_only_change_set_lists_the_resources_using_the_parameter(cfn: Any, client: Any, app: dict[str, Any]) -> None:
    longer = change_set(cfn, Parameters=params(Prefix="dev", Retention="30"))
    assert longer["Status"] == "CREATE_COMPLETE"
    [setting] = longer["Changes"]
    assert setting["ResourceChange"]["LogicalResourceId"] == "Setting"
    assert setting["ResourceChange"]["Replacement"] == "False"
    assert setting["ResourceChange"]["Scope"] == ["Properties"]
    assert setting["ResourceChange"]["Details"] == [
        {
            "Target": {"Attribute": "Properties", "Name": "Value", "RequiresRecreation": "Never"},
            "Evaluation": "Static",
            "ChangeSource": "ParameterReference",
            "CausingEntity": "Retention",
        }
    ]
    cfn.delete_change_set(ChangeSetName=longer["ChangeSetId"])

    renamed = change_set(cfn, Parameters=params(Prefix="prod"))
    [setting] = renamed["Changes"]
    assert setting["ResourceChange"]["Replacement"] == "True", "Name is create-only for AWS::SSM::Parameter"
    [detail] = setting["ResourceChange"]["Details"]
    assert detail["Target"] == {"Attribute": "Properties", "Name": "Name", "RequiresRecreation": "Always"}

    cfn.delete_change_set(ChangeSetName=renamed["ChangeSetId"])
    cfn.execute_change_set(ChangeSetName=change_set(cfn, Parameters=params(Prefix="dev", Retention="30"))["ChangeSetId"])
    assert ssm_value(client, "/dev/retention") == "30"


def test_template_changes_are_listed_with_what_they_replace(cfn: Any, app: dict[str, Any]) -> None:
    template = (
        TEMPLATE.replace("Jobs:\n    Type: AWS::SQS::Queue", "Jobs:\n    Type: AWS::SQS::Queue\n    Properties: {QueueName: jobs}")
        .replace("Value: !Ref Retention", "Value: !Ref Jobs")
        .replace("Outputs:", "  Audit:\n    Type: AWS::SNS::Topic\nOutputs:")
    )
    described = change_set(cfn, TemplateBody=template, Parameters=params(Prefix="dev"))
    listed = changes(described)
    assert {name: c["Action"] for name, c in listed.items()} == {"Jobs": "Modify", "Setting": "Modify", "Audit": "Add"}
    assert listed["Jobs"]["Replacement"] == "True" and listed["Jobs"]["PolicyAction"] == "ReplaceAndDelete"
    assert listed["Jobs"]["Details"] == [
        {
            "Target": {"Attribute": "Properties", "Name": "QueueName", "RequiresRecreation": "Always"},
            "Evaluation": "Static",
            "ChangeSource": "DirectModification",
        }
    ]
    setting = listed["Setting"]
    assert setting["Replacement"] == "False" and "PolicyAction" not in setting
    assert {(d["ChangeSource"], d["Evaluation"], d.get("CausingEntity")) for d in setting["Details"]} == {
        ("DirectModification", "Static", None),
        ("ResourceReference", "Dynamic", "Jobs"),
    }

    smaller = TEMPLATE.replace("  Jobs:\n    Type: AWS::SQS::Queue\n", "")
    [gone] = change_set(cfn, name="smaller", TemplateBody=smaller, Parameters=params(Prefix="dev"))["Changes"]
    assert gone["ResourceChange"]["Action"] == "Remove" and gone["ResourceChange"]["LogicalResourceId"] == "Jobs"
    assert gone["ResourceChange"]["PolicyAction"] == "Delete"
    jobs = cfn.describe_stack_resource(StackName="app", LogicalResourceId="Jobs")["StackResourceDetail"]
    assert gone["ResourceChange"]["PhysicalResourceId"] == jobs["PhysicalResourceId"]


def test_policy_actions_say_what_a_removal_or_a_replacement_keeps(cfn: Any, app: dict[str, Any]) -> None:
    kept = TEMPLATE.replace("    Type: AWS::SQS::Queue\n", "    Type: AWS::SQS::Queue\n    DeletionPolicy: Retain\n")
    kept = kept.replace("    Type: AWS::SSM::Parameter\n", "    Type: AWS::SSM::Parameter\n    UpdateReplacePolicy: Snapshot\n")
    cfn.execute_change_set(ChangeSetName=change_set(cfn, name="policies", TemplateBody=kept, Parameters=params(Prefix="dev"))["ChangeSetId"])

    renamed = changes(change_set(cfn, name="renamed", TemplateBody=kept, Parameters=params(Prefix="prod")))
    assert renamed["Setting"]["Replacement"] == "True" and renamed["Setting"]["PolicyAction"] == "ReplaceAndSnapshot"
    cfn.delete_change_set(ChangeSetName="renamed", StackName="app")
    smaller = kept.replace("  Jobs:\n    Type: AWS::SQS::Queue\n    DeletionPolicy: Retain\n", "")
    [gone] = change_set(cfn, name="smaller", TemplateBody=smaller, Parameters=params(Prefix="dev"))["Changes"]
    assert gone["ResourceChange"]["LogicalResourceId"] == "Jobs" and gone["ResourceChange"]["PolicyAction"] == "Retain"


def test_an_executed_replacement_makes_the_resource_anew_and_deletes_the_old_one(cfn: Any, client: Any) -> None:
    """moto updates a renamed queue in place and cannot update a table at all; AWS makes both anew."""
    storage = """
Resources:
  Jobs: {Type: AWS::SQS::Queue, Properties: {QueueName: jobs}}
  Archive: {Type: AWS::SQS::Queue, UpdateReplacePolicy: Retain, Properties: {QueueName: archive}}
  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      TableName: orders
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions: [{AttributeName: id, AttributeType: S}]
      KeySchema: [{AttributeName: id, KeyType: HASH}]
"""
    made = cfn.create_change_set(StackName="storage", ChangeSetName="first", ChangeSetType="CREATE", TemplateBody=storage)
    cfn.execute_change_set(ChangeSetName=made["Id"])
    renamed = storage.replace("jobs}", "jobs-v2}").replace("archive}", "archive-v2}").replace("TableName: orders", "TableName: orders-v2")
    made = cfn.create_change_set(StackName="storage", ChangeSetName="renamed", ChangeSetType="UPDATE", TemplateBody=renamed)
    listed = changes(cfn.describe_change_set(ChangeSetName=made["Id"]))
    assert {name: c["Replacement"] for name, c in listed.items()} == {"Jobs": "True", "Archive": "True", "Table": "True"}
    cfn.execute_change_set(ChangeSetName=made["Id"])

    assert client("dynamodb").list_tables()["TableNames"] == ["orders-v2"]
    queues = sorted(url.rsplit("/", 1)[1] for url in client("sqs").list_queues()["QueueUrls"])
    assert queues == ["archive", "archive-v2", "jobs-v2"], "the old archive queue is retained"
    resources = cfn.describe_stack_resources(StackName="storage")["StackResources"]
    physical = {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in resources}
    assert physical["Table"] == "orders-v2" and physical["Jobs"].endswith("/jobs-v2")


def test_change_sets_are_refused_as_aws_refuses_them(cfn: Any, app: dict[str, Any]) -> None:
    with pytest.raises(ClientError) as raised:
        change_set(cfn, name="bare")
    assert message_of(raised) == "Parameters: [Prefix] must have values"
    with pytest.raises(ClientError) as raised:
        change_set(cfn, name="extra", Parameters=params(Prefix="dev", Colour="blue"))
    assert message_of(raised) == "Parameters: [Colour] do not exist in the template"
    with pytest.raises(ClientError) as raised:
        change_set(cfn, "CREATE", "again", Parameters=params(Prefix="dev"))
    assert code_of(raised) == "AlreadyExistsException"
    with pytest.raises(ClientError) as raised:
        cfn.create_change_set(StackName="missing", ChangeSetName="x", ChangeSetType="UPDATE", TemplateBody=TEMPLATE)
    assert code_of(raised) == "ValidationError"
    with pytest.raises(ClientError) as raised:
        cfn.delete_change_set(ChangeSetName="never-made", StackName="app")
    assert code_of(raised) == "ChangeSetNotFound"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_list_change_sets_lists_only_the_named_stack(cfn: Any, app: dict[str, Any]) -> None:
    cfn.create_change_set(
        StackName="other", ChangeSetName="start", ChangeSetType="CREATE", TemplateBody=TEMPLATE, Parameters=params(Prefix="o")
    )
    change_set(cfn, Parameters=params(Prefix="dev", Retention="9"))
    assert [s["ChangeSetName"] for s in cfn.list_change_sets(StackName="app")["Summaries"]] == ["next"]
    assert [s["ChangeSetName"] for s in cfn.list_change_sets(StackName="other")["Summaries"]] == ["start"]
    with pytest.raises(ClientError) as raised:
        cfn.list_change_sets(StackName="missing")
    assert code_of(raised) == "ValidationError"


def test_a_create_change_set_whose_resource_fails_rolls_back(cfn: Any, client: Any) -> None:
    client("ssm").put_parameter(Name="/dev/retention", Value="taken", Type="String")
    created = change_set(cfn, "CREATE", "first", Parameters=params(Prefix="dev"))
    cfn.execute_change_set(ChangeSetName=created["ChangeSetId"])
    assert stack_of(cfn)["StackStatus"] == "ROLLBACK_COMPLETE"
    assert cfn.describe_change_set(ChangeSetName=created["ChangeSetId"])["ExecutionStatus"] == "EXECUTE_FAILED"
    assert ssm_value(client, "/dev/retention") == "taken"


# --- CreateStack and UpdateStack ------------------------------------------------


def test_create_stack_failure_rolls_back_and_deletes_what_was_made(cfn: Any, client: Any) -> None:
    client("ssm").put_parameter(Name="/taken", Value="x", Type="String")
    template = """
Resources:
  Jobs: {Type: AWS::SQS::Queue, Properties: {QueueName: jobs}}
  Setting:
    Type: AWS::SSM::Parameter
    Properties: {Name: /taken, Type: String, Value: !GetAtt Jobs.Arn}
Outputs:
  Url: {Value: !Ref Jobs}
"""
    cfn.create_stack(StackName="app", TemplateBody=template, Capabilities=["CAPABILITY_NAMED_IAM"])

    stack = stack_of(cfn)
    assert stack["StackStatus"] == "ROLLBACK_COMPLETE"
    assert stack["Capabilities"] == ["CAPABILITY_NAMED_IAM"]
    assert "Outputs" not in stack
    assert client("sqs").list_queues().get("QueueUrls", []) == []
    assert cfn.describe_stack_resources(StackName="app")["StackResources"] == []
    events = [
        (e["LogicalResourceId"], e["ResourceStatus"], e.get("ResourceStatusReason", ""))
        for e in reversed(cfn.describe_stack_events(StackName="app")["StackEvents"])
    ]
    assert [(name, status) for name, status, _ in events] == [
        ("app", "CREATE_IN_PROGRESS"),
        ("Setting", "CREATE_FAILED"),
        ("app", "ROLLBACK_IN_PROGRESS"),
        ("Jobs", "DELETE_COMPLETE"),
        ("Setting", "DELETE_COMPLETE"),
        ("app", "ROLLBACK_COMPLETE"),
    ]
    assert "ParameterAlreadyExists" in events[1][2]
    assert events[2][2] == "The following resource(s) failed to create: [Setting]. Rollback requested by user."

    with pytest.raises(ClientError) as raised:
        cfn.update_stack(StackName="app", TemplateBody=template.replace("/taken", "/free"))
    assert message_of(raised) == f"Stack:{stack['StackId']} is in ROLLBACK_COMPLETE state and can not be updated."
    cfn.delete_stack(StackName="app")
    assert [s["StackName"] for s in cfn.describe_stacks()["Stacks"]] == []


@pytest.mark.parametrize(
    ("options", "status"),
    [({"OnFailure": "DO_NOTHING"}, "CREATE_FAILED"), ({"DisableRollback": True}, "CREATE_FAILED"), ({"OnFailure": "DELETE"}, None)],
)
def test_create_stack_failure_follows_on_failure(cfn: Any, client: Any, options: dict[str, Any], status: str | None) -> None:
    client("ssm").put_parameter(Name="/taken", Value="x", Type="String")
    template = "Resources:\n  Setting: {Type: AWS::SSM::Parameter, Properties: {Name: /taken, Type: String, Value: y}}\n"
    cfn.create_stack(StackName="app", TemplateBody=template, **options)
    if status is None:
        assert cfn.describe_stacks()["Stacks"] == []
    else:
        assert stack_of(cfn)["StackStatus"] == status


def test_create_stack_with_a_template_error_is_refused_and_leaves_no_stack(cfn: Any) -> None:
    template = """
Resources:
  Jobs: {Type: AWS::SQS::Queue}
  Setting: {Type: AWS::SSM::Parameter, Properties: {Name: /x, Type: String, Value: !GetAtt Jobs.Nope}}
"""
    with pytest.raises(ClientError) as raised:
        cfn.create_stack(StackName="app", TemplateBody=template)
    assert code_of(raised) == "ValidationError"
    assert cfn.describe_stacks()["Stacks"] == []


def test_update_stack_keeps_role_and_changes_settings(cfn: Any) -> None:
    cfn.create_stack(
        StackName="app",
        TemplateBody=TEMPLATE,
        Parameters=params(Prefix="dev"),
        RoleARN=ROLE,
        Tags=tags(team="platform"),
        Capabilities=["CAPABILITY_IAM"],
    )
    assert stack_of(cfn)["Capabilities"] == ["CAPABILITY_IAM"]

    # Template and parameters unchanged: only the stack's settings change, which is still an update.
    cfn.update_stack(
        StackName="app", TemplateBody=TEMPLATE, Parameters=params(Prefix="dev"), Tags=tags(team="data"), NotificationARNs=[TOPIC]
    )
    stack = stack_of(cfn)
    assert stack["StackStatus"] == "UPDATE_COMPLETE"
    assert tag_map(stack) == {"team": "data"}
    assert stack["NotificationARNs"] == [TOPIC]
    assert stack["RoleARN"] == ROLE
    assert stack.get("Capabilities", []) == []

    cfn.update_stack(StackName="app", UsePreviousTemplate=True, Parameters=params(Prefix="prod"), Tags=[])
    stack = stack_of(cfn)
    assert "Tags" not in stack or stack["Tags"] == []
    assert [(e["Name"], e["Value"]) for e in cfn.list_exports()["Exports"]] == [("prod-setting", "/prod/retention")]

    with pytest.raises(ClientError) as raised:
        cfn.update_stack(StackName="app", UsePreviousTemplate=True, Parameters=params(Prefix="prod"))
    assert message_of(raised) == "No updates are to be performed."


# --- termination protection, rollback, drift ------------------------------------


def test_termination_protection_blocks_delete_until_turned_off(cfn: Any, app: dict[str, Any]) -> None:
    assert stack_of(cfn)["EnableTerminationProtection"] is False
    answer = cfn.update_termination_protection(StackName="app", EnableTerminationProtection=True)
    assert answer["StackId"] == app["StackId"]
    assert stack_of(cfn)["EnableTerminationProtection"] is True

    with pytest.raises(ClientError) as raised:
        cfn.delete_stack(StackName=app["StackId"])
    assert code_of(raised) == "ValidationError"
    assert message_of(raised) == "Stack [app] cannot be deleted while TerminationProtection is enabled"
    assert stack_of(cfn)["StackStatus"] == "CREATE_COMPLETE"

    cfn.update_termination_protection(StackName="app", EnableTerminationProtection=False)
    cfn.delete_stack(StackName="app")
    assert cfn.describe_stacks()["Stacks"] == []
    with pytest.raises(ClientError) as raised:
        cfn.update_termination_protection(StackName="app", EnableTerminationProtection=True)
    assert code_of(raised) == "ValidationError"


def test_continue_update_rollback_only_from_update_rollback_failed(cfn: Any, app: dict[str, Any]) -> None:
    from moto.cloudformation.models import cloudformation_backends

    with pytest.raises(ClientError) as raised:
        cfn.continue_update_rollback(StackName="app")
    assert message_of(raised) == "ContinueUpdateRollback cannot be called from current stack status"

    # No API call leaves a stack UPDATE_ROLLBACK_FAILED: set it on moto's object (same process).
    cloudformation_backends[ACCOUNT_ID][REGION].stacks[app["StackId"]].status = "UPDATE_ROLLBACK_FAILED"
    cfn.continue_update_rollback(StackName=app["StackId"])
    assert stack_of(cfn)["StackStatus"] == "UPDATE_ROLLBACK_COMPLETE"
    latest = cfn.describe_stack_events(StackName="app")["StackEvents"][0]
    assert latest["ResourceStatus"] == "UPDATE_ROLLBACK_COMPLETE"
    assert change_set(cfn, Parameters=params(Prefix="dev", Retention="9"))["Status"] == "CREATE_COMPLETE"


def test_drift_detection_completes_at_once_in_sync(cfn: Any, app: dict[str, Any]) -> None:
    assert stack_of(cfn)["DriftInformation"] == {"StackDriftStatus": "NOT_CHECKED"}

    detection_id = cfn.detect_stack_drift(StackName="app")["StackDriftDetectionId"]

    status = cfn.describe_stack_drift_detection_status(StackDriftDetectionId=detection_id)
    assert status["StackId"] == app["StackId"]
    assert status["DetectionStatus"] == "DETECTION_COMPLETE"
    assert status["StackDriftStatus"] == "IN_SYNC"
    assert status["DriftedStackResourceCount"] == 0
    drift = stack_of(cfn)["DriftInformation"]
    assert drift["StackDriftStatus"] == "IN_SYNC"
    assert drift["LastCheckTimestamp"] == status["Timestamp"]
    assert cfn.describe_stack_resource_drifts(StackName="app")["StackResourceDrifts"] == []
    assert cfn.detect_stack_drift(StackName="app")["StackDriftDetectionId"] != detection_id

    with pytest.raises(ClientError) as raised:
        cfn.describe_stack_drift_detection_status(StackDriftDetectionId="missing")
    assert code_of(raised) == "ValidationError"
    with pytest.raises(ClientError) as raised:
        cfn.detect_stack_drift(StackName="missing")
    assert code_of(raised) == "ValidationError"


@pytest.mark.parametrize("bucket", ["templates", "s3-templates"])
def test_a_change_set_reads_its_template_from_the_buckets_regional_url(cfn: Any, client: Any, bucket: str) -> None:
    s3 = client("s3")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="lensops/templates/app.yaml", Body=TEMPLATE.encode())
    url = f"https://{bucket}.s3.{REGION}.amazonaws.com/lensops/templates/app.yaml"
    made = cfn.create_change_set(
        StackName="app", ChangeSetName="first", ChangeSetType="CREATE", TemplateURL=url, Parameters=params(Prefix="app")
    )
    cfn.execute_change_set(ChangeSetName=made["Id"])
    assert stack_of(cfn)["StackStatus"] == "CREATE_COMPLETE"
    assert "Setting" in cfn.get_template(StackName="app")["TemplateBody"]


def test_validate_template_fails_on_cfn_lint_errors_only(cfn: Any) -> None:
    unused = TEMPLATE.replace("Resources:", "  Unused: {Type: String, Default: x}\nResources:")  # a cfn-lint warning (W2001)
    assert cfn.validate_template(TemplateBody=unused)["Parameters"] == []
    with pytest.raises(ClientError) as raised:
        cfn.validate_template(TemplateBody=TEMPLATE.replace("!Ref Retention", "!Ref Retension"))
    assert code_of(raised) == "ValidationError"
    assert message_of(raised).startswith("Template format error: 'Retension' is not one of [")
