"""A Stack's template checked before AWS (issue 16): `lensops validate` parses every template and
checks its parameters and resource types offline, with cfn-lint's schemas and rules; the loader's
checks refuse the environment's revision in the daemon and `plan` too; `plan` asks CloudFormation's
ValidateTemplate about a new stack's template. Every problem is `path:line: Stack/name: message`,
pointing into the manifest or into the template."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import alarm

ROOT = Path(__file__).resolve().parent.parent
LINE = re.compile(r"^(?P<path>[^:\n]+):(?P<line>\d+): (?P<ident>[A-Za-z]+/[a-z0-9-]+): (?P<message>.+)$")

TEMPLATE = """\
AWSTemplateFormatVersion: "2010-09-09"
Parameters:
  Env:
    Type: String
    AllowedValues: [dev, staging, prod]
  Prefix:
    Type: String
    AllowedPattern: "[a-z][a-z0-9-]*"
  Retention:
    Type: Number
    Default: 345600
  Ports:
    Type: List<Number>
    Default: "80,443"
  Vpc:
    Type: AWS::EC2::VPC::Id
    Default: vpc-0123
  Secret:
    Type: String
    NoEcho: true
    Default: hunter2hunter2
    MinLength: 12
Resources:
  Jobs:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Sub "${Prefix}-${Env}-jobs"
      MessageRetentionPeriod: !Ref Retention
  Setting:
    Type: AWS::SSM::Parameter
    Properties:
      Name: !Sub "/${Prefix}/${Env}/settings"
      Type: String
      Value: !Join [",", [!Ref Vpc, !Join [",", !Ref Ports], !Ref Secret]]
"""

STACK = """\
apiVersion: lensops.io/v1
kind: Stack
metadata: {name: app}
spec:
  template: app.yaml
  # what the template declares without a Default
  parameters:
    Env: dev
    Prefix: econlens
"""


def _tree(tree: Any, template: str = TEMPLATE, stack: str = STACK, region: str = "") -> None:
    tree.environment("dev", f"region: {region}" if region else "")
    if region:  # the fixture's Environment names us-east-1: this one's region instead
        path = tree.root / "environments/dev/environment.yaml"
        path.write_text(path.read_text().replace("  region: us-east-1\n", "", 1))
    tree.write("templates/app.yaml", template)
    tree.write("environments/dev/stacks.yaml", stack)


def _validate(aws: Any, tree: Any, lensops: Any, code: int = 1) -> list[str]:
    """`lensops validate` of the tree: its exit code, no AWS call, no traceback; its lines on stderr."""
    aws.clear_requests()
    result = lensops("validate", str(tree.root))
    assert result.code == code, result.out + result.err
    assert aws.requests() == {}, "validate called AWS"
    assert "Traceback" not in result.err
    return [line for line in result.err.splitlines() if line.strip()]


def _only(lines: list[str], text: str) -> re.Match[str]:
    """The one line holding ``text``, parsed as `path:line: Kind/name: message`."""
    found = [line for line in lines if text in line]
    assert len(found) == 1, f"{text!r} in:\n" + "\n".join(lines)
    parsed = LINE.match(found[0])
    assert parsed, f"not path:line: Kind/name: message: {found[0]!r}"
    return parsed


def test_broken_yaml_points_at_the_templates_line(aws, tree, lensops):
    _tree(tree, TEMPLATE.replace("      MessageRetentionPeriod: !Ref Retention", "      MessageRetentionPeriod: [7"))
    problem = _only(_validate(aws, tree, lensops), "YAML syntax error")
    assert (problem["path"], problem["ident"]) == ("templates/app.yaml", "Stack/app")
    assert int(problem["line"]) in (28, 29)  # where libyaml notices: the line of the `[` or the next


def test_misspelt_resource_type_has_a_did_you_mean_at_its_line(aws, tree, lensops):
    _tree(tree, TEMPLATE.replace("Type: AWS::SQS::Queue", "Type: AWS::SQS::Queu"))
    lines = _validate(aws, tree, lensops)
    assert lines[0] == "templates/app.yaml:25: Stack/app: resource Jobs: unknown resource type 'AWS::SQS::Queu' (did you mean AWS::SQS::Queue?)"
    assert len([line for line in lines if "Queu'" in line]) == 1  # cfn-lint's own E3006 on that line is not repeated


def test_undeclared_parameter_points_at_its_line_in_the_manifest(aws, tree, lensops):
    _tree(tree, stack=STACK + "    Prefx: x\n")
    problem = _only(_validate(aws, tree, lensops), "Prefx")
    assert (problem["path"], problem["line"]) == ("environments/dev/stacks.yaml", "10")
    assert problem["message"] == "parameter Prefx is not declared by templates/app.yaml"


def test_misspelt_parameter_name_has_a_did_you_mean(aws, tree, lensops):
    _tree(tree, stack=STACK.replace("    Prefix: econlens\n", "    Prefixx: econlens\n"))
    lines = _validate(aws, tree, lensops)
    assert lines == [
        "environments/dev/stacks.yaml:9: Stack/app: parameter Prefixx is not declared by templates/app.yaml (did you mean Prefix?)",
        "environments/dev/stacks.yaml:7: Stack/app: parameter Prefix is required: templates/app.yaml:6 declares it without a Default",
    ]


def test_missing_required_parameter_points_at_the_manifests_parameters(aws, tree, lensops):
    _tree(tree, stack=STACK.replace("    Env: dev\n", ""))
    problem = _only(_validate(aws, tree, lensops), "parameter Env")
    assert (problem["path"], problem["line"]) == ("environments/dev/stacks.yaml", "7")
    assert problem["message"] == "parameter Env is required: templates/app.yaml:3 declares it without a Default"


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("Env: qa", "parameter Env: 'qa' is not one of the AllowedValues: dev, staging, prod"),
        ("Prefix: Econ_Lens", "parameter Prefix: 'Econ_Lens' does not match the AllowedPattern '[a-z][a-z0-9-]*'"),
        ("Prefix: econlens!", "parameter Prefix: 'econlens!' does not match the AllowedPattern '[a-z][a-z0-9-]*'"),  # the whole value
        ("Retention: seven", "parameter Retention: 'seven' is not a number (Number)"),
        ("Ports: 80,https", "parameter Ports: '80,https' has an item that is not a number: 'https' (List<Number>)"),
        ("Secret: short", "parameter Secret: its value must be at least 12 characters long (MinLength)"),  # NoEcho: never shown
    ],
)
def test_values_that_do_not_fit_the_declaration(aws, tree, lensops, given, message):
    key = given.split(":")[0]
    stack = STACK if key in ("Env", "Prefix") else STACK + f"    {given}\n"
    if key in ("Env", "Prefix"):
        stack = re.sub(rf"    {key}: .*\n", f"    {given}\n", stack)
    _tree(tree, stack=stack)
    problem = _only(_validate(aws, tree, lensops), f"parameter {key}:")
    line = stack.splitlines().index(f"    {given}") + 1
    assert (problem["path"], int(problem["line"]), problem["message"]) == ("environments/dev/stacks.yaml", line, message)


def test_values_that_fit_are_accepted_in_every_form_and_a_reference_only_by_name(aws, tree, lensops):
    """Numbers written as YAML numbers or strings, an AWS::EC2 type as a string; a `ref:` is known
    only after apply: its value cannot be checked, its name can."""
    fits = STACK + "    Retention: 86400.0\n    Ports: '8080'\n    Vpc: anything-goes\n    Secret: long-enough-secret\n"
    referring = (
        "---\napiVersion: lensops.io/v1\nkind: Stack\nmetadata: {name: twin}\nspec:\n  template: app.yaml\n"
        "  parameters: {Env: ref:Stack/app.outputs.Env, Prefix: twin, Stage: ref:Stack/app.outputs.Env}\n"
    )
    _tree(tree, stack=fits.replace("Env: dev", "Env: prod") + referring)
    assert _validate(aws, tree, lensops) == ["environments/dev/stacks.yaml:20: Stack/twin: parameter Stage is not declared by templates/app.yaml"]


CUSTOM_AND_SAM = """\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Handler: index.handler
      Runtime: python3.12
      InlineCode: "def handler(event, context): return 1"
  Seeded:
    Type: Custom::SeedData
    Properties:
      ServiceToken: !GetAtt Fn.Arn
"""


def test_custom_types_and_sam_under_its_transform_are_accepted_sam_without_it_is_not(aws, tree, lensops):
    plain = STACK.replace("  parameters:\n    Env: dev\n    Prefix: econlens\n", "")
    _tree(tree, CUSTOM_AND_SAM, plain + "---\n" + plain.replace("name: app", "name: nosam").replace("app.yaml", "nosam.yaml"))
    tree.write("templates/nosam.yaml", CUSTOM_AND_SAM.replace("Transform: AWS::Serverless-2016-10-31\n", ""))
    lines = _validate(aws, tree, lensops)
    problem = _only(lines, "resource Fn:")
    assert (problem["path"], problem["line"], problem["ident"]) == ("templates/nosam.yaml", "4", "Stack/nosam")
    assert problem["message"] == "resource Fn: type AWS::Serverless::Function needs `Transform: AWS::Serverless-2016-10-31` in the template"
    assert not [line for line in lines if "Stack/app" in line]  # Custom::SeedData, and SAM under its transform


def test_resource_types_are_those_of_the_environments_region(tree):
    from controller.catalog import registry
    from controller.manifests.loader import load_tree

    cur = "  Report:\n    Type: AWS::CUR::ReportDefinition\n"  # Cost and Usage Reports: us-east-1 only
    _tree(tree, TEMPLATE + cur)
    assert load_tree(tree.root, registry()).ok
    _tree(tree, TEMPLATE + cur, region="eu-west-1")
    assert [str(p) for p in load_tree(tree.root, registry()).all_problems] == [
        "templates/app.yaml:36: Stack/app: resource Report: type AWS::CUR::ReportDefinition is not available in eu-west-1"
    ]


def test_a_cfn_lint_warning_is_printed_and_validate_still_passes(aws, tree, lensops):
    unused = TEMPLATE.replace("Resources:\n", "  Unused:\n    Type: String\n    Default: x\nResources:\n")
    _tree(tree, unused)
    lines = _validate(aws, tree, lensops, code=0)
    assert lines == ["templates/app.yaml:23: Stack/app: warning: Parameter Unused not used. (cfn-lint W2001)"]
    result = lensops("validate", str(tree.root))
    assert result.out == "valid: dev (1 resources); 1 warning\n"
    as_json = json.loads(lensops("validate", str(tree.root), "--output", "json").out)
    assert as_json["valid"] is True
    assert as_json["warnings"] == [{"path": "templates/app.yaml", "line": 23, "resource": "Stack/app", "message": "Parameter Unused not used. (cfn-lint W2001)"}]

    silenced = unused.replace("Resources:\n", "Metadata:\n  cfn-lint: {config: {ignore_checks: [W2001]}}\nResources:\n")
    tree.write("templates/app.yaml", silenced)  # as cfn-lint documents
    assert _validate(aws, tree, lensops, code=0) == []


def test_a_cfn_lint_error_is_a_problem_at_the_templates_line(aws, tree, lensops):
    _tree(tree, TEMPLATE.replace("      MessageRetentionPeriod: !Ref Retention\n", "      MessageRetentionPeriod: !Ref Retention\n      Bogus: 1\n"))
    problem = _only(_validate(aws, tree, lensops), "cfn-lint E3002")
    assert (problem["path"], problem["line"], problem["ident"]) == ("templates/app.yaml", "29", "Stack/app")
    assert problem["message"] == "Additional properties are not allowed ('Bogus' was unexpected) (cfn-lint E3002)"


def test_plan_refuses_the_environment_on_the_offline_checks_without_asking_aws_about_the_stack(aws, tree, lensops):
    _tree(tree, TEMPLATE.replace("Type: AWS::SQS::Queue", "Type: AWS::SQS::Queu"))
    tree.environment("prod")
    tree.write("environments/prod/alarms.yaml", alarm("api-5xx"))
    plan = lensops("plan", "--repo", str(tree.root))
    assert plan.code == 1
    assert "templates/app.yaml:25: Stack/app: resource Jobs: unknown resource type 'AWS::SQS::Queu' (did you mean AWS::SQS::Queue?)" in plan.err
    assert "Environment prod" in plan.out and "MetricAlarm/api-5xx" in plan.out  # the other environment is planned
    assert not [op for service, op in aws.requests() if service == "cloudformation"]


BROKEN_REF = TEMPLATE.replace("MessageRetentionPeriod: !Ref Retention", "MessageRetentionPeriod: !Ref Retension")


def test_plan_asks_cloudformation_about_a_new_stacks_template_once(aws, tree, lensops):
    twin = STACK.replace("name: app", "name: twin").replace("Prefix: econlens", "Prefix: twin")
    _tree(tree, stack=STACK + "---\n" + twin)
    aws.clear_requests()
    plan = lensops("plan", "--repo", str(tree.root))
    assert plan.code == 2, plan.out + plan.err
    assert aws.requests().get(("cloudformation", "ValidateTemplate")) == 1  # one template, two stacks, one pass
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    aws.clear_requests()
    assert lensops("plan", "--repo", str(tree.root)).code == 0
    assert ("cloudformation", "ValidateTemplate") not in aws.requests()  # existing stacks: their change sets check


def test_plan_reports_validate_templates_answer_as_the_stacks_failure(aws, tree, lensops):
    """A Ref to a parameter the template does not declare passes the offline checks; CloudFormation refuses it."""
    _tree(tree, BROKEN_REF)
    assert lensops("validate", str(tree.root)).code == 1  # cfn-lint sees it too
    plan = lensops("plan", "--repo", str(tree.root))
    assert plan.code == 1, plan.out + plan.err
    failed = [line for line in plan.out.splitlines() if "Stack/app" in line]
    assert len(failed) == 1 and "failed: ValidateTemplate: Template format error: " in failed[0] and "Retension" in failed[0], plan.out
    assert not [op for service, op in aws.requests() if service == "cloudformation" and op.startswith(("Create", "Execute"))]


def test_the_iam_policy_lists_validate_template(tree, lensops):
    _tree(tree)
    policy = lensops("iam-policy", "--repo", str(tree.root))
    assert policy.code == 0, policy.err
    assert '"cloudformation:ValidateTemplate"' in policy.out


def test_the_daemon_refuses_a_revision_whose_stack_fails_the_checks_and_applies_the_others(daemon, git_remote, client):
    git_remote.tree.environment("dev")
    git_remote.tree.environment("prod")
    git_remote.tree.write("templates/app.yaml", TEMPLATE)
    git_remote.tree.write("environments/dev/stacks.yaml", STACK)
    git_remote.tree.write("environments/prod/alarms.yaml", alarm("api-5xx", 5))
    first = git_remote.commit("a stack and an alarm")
    d = daemon()
    d.wait_until(lambda: d.applied_revision("dev") == first and d.applied_revision("prod") == first, timeout=60)

    git_remote.tree.write("environments/dev/stacks.yaml", STACK.replace("Env: dev", "Env: qa"))
    git_remote.tree.write("environments/prod/alarms.yaml", alarm("api-5xx", 6))
    second = git_remote.commit("a value the template does not allow, and a new threshold")
    d.wait_until(lambda: d.applied_revision("prod") == second, timeout=60)
    status = d.wait_until(lambda: (s := d.status())["environments"]["dev"].get("invalid") and s, timeout=60)
    refusal = "environments/dev/stacks.yaml:8: Stack/app: parameter Env: 'qa' is not one of the AllowedValues: dev, staging, prod"
    assert any(refusal in problem for problem in status["environments"]["dev"]["invalid"]), status["environments"]["dev"]
    assert d.applied_revision("dev") == first
    (stack,) = client("cloudformation").describe_stacks(StackName="app")["Stacks"]
    assert {p["ParameterKey"]: p.get("ParameterValue") for p in stack["Parameters"]}["Env"] == "dev"
    assert client("cloudwatch").describe_alarms(AlarmNames=["api-5xx"])["MetricAlarms"][0]["Threshold"] == 6


def test_the_example_estate_validates_clean_under_cfn_lint(aws, lensops):
    aws.clear_requests()
    result = lensops("validate", "--repo", str(ROOT / "desired-state"))
    assert result.code == 0, result.err
    assert result.err == "" and "warning" not in result.out, result.out + result.err
    as_json = json.loads(lensops("validate", "--repo", str(ROOT / "desired-state"), "--output", "json").out)
    assert (as_json["problems"], as_json["warnings"]) == ([], [])
    assert aws.requests() == {}


def test_a_catastrophic_allowed_pattern_does_not_hold_the_loader(aws, tree, lensops):
    slow = TEMPLATE.replace('AllowedPattern: "[a-z][a-z0-9-]*"', 'AllowedPattern: "(a|aa)+"')
    _tree(tree, slow, STACK.replace("Prefix: econlens", "Prefix: " + "a" * 3000 + "!"))
    started = time.monotonic()
    result = lensops("validate", str(tree.root))
    assert time.monotonic() - started < 10, "the pattern was matched without a time limit"
    assert result.code == 0 and "allowed_pattern_too_slow" in result.err, result.err  # left unchecked, and said so
