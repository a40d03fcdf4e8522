"""Stack: templates over CloudFormation's 51,200 inline bytes go through the Environment's templateBucket.

Apply uploads such a template once, under a key named by its content, and
passes its URL; a plan never writes to S3 (it previews a change set from an
object already there, and says so when there is none yet); without the
bucket, the stack fails in plan as in apply, naming the setting.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from conftest import REGION, writes

BUCKET = "econlens-templates"
STACK = """
apiVersion: lensops.io/v1
kind: Stack
metadata:
  name: big
spec:
  stackName: dev-big
  template: big.yaml
  parameters: {Prefix: PREFIX}
"""
SMALL = """
---
apiVersion: lensops.io/v1
kind: Stack
metadata:
  name: small
spec:
  stackName: dev-small
  template: small.yaml
"""
SMALL_TEMPLATE = """
Resources:
  Jobs:
    Type: AWS::SQS::Queue
"""


def big_template(value: str = "one") -> str:
    """About 62 KB of YAML: one SSM parameter, and metadata padding it past the inline limit."""
    lines = ['AWSTemplateFormatVersion: "2010-09-09"', "Parameters:", "  Prefix:", "    Type: String", "Metadata:", "  Padding:"]
    lines += [f"    - line-{i:05d}-" + "x" * 96 for i in range(560)]
    lines += ["Resources:", "  Setting:", "    Type: AWS::SSM::Parameter", "    Properties:"]
    lines += ['      Name: !Sub "/${Prefix}/big"', "      Type: String", f"      Value: {value}"]
    text = "\n".join(lines) + "\n"
    assert 60_000 < len(text.encode()) < 70_000
    return text


def _tree(tree: Any, bucket: bool = True, value: str = "one", prefix: str = "dev", extra: str = "") -> str:
    tree.environment("dev", f"templateBucket: {BUCKET}" if bucket else "")
    text = big_template(value)
    tree.write("templates/big.yaml", text)
    tree.write("templates/small.yaml", SMALL_TEMPLATE)
    tree.write("environments/dev/stacks.yaml", STACK.replace("PREFIX", prefix) + extra)
    return text


def _key(text: str) -> str:
    return f"lensops/templates/{hashlib.sha256(text.encode()).hexdigest()}.yaml"


def _keys(client: Any) -> list[str]:
    return [o["Key"] for o in client("s3").list_objects_v2(Bucket=BUCKET).get("Contents", [])]


def test_a_60_kb_template_applies_through_the_bucket_then_a_second_apply_writes_nothing(aws, client, tree, lensops):
    client("s3").create_bucket(Bucket=BUCKET)
    text = _tree(tree)
    aws.clear_requests()

    applied = lensops("apply", "--repo", str(tree.root))
    assert applied.code == 0, applied.out + applied.err
    assert _keys(client) == [_key(text)]
    body = client("s3").get_object(Bucket=BUCKET, Key=_key(text))["Body"].read().decode()
    assert body == text
    assert aws.requests()[("s3", "PutObject")] == 1
    cfn = client("cloudformation")
    assert cfn.describe_stacks(StackName="dev-big")["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"
    assert "line-00559-" in json.dumps(cfn.get_template(StackName="dev-big")["TemplateBody"])
    assert client("ssm").get_parameter(Name="/dev/big")["Parameter"]["Value"] == "one"

    aws.clear_requests()
    again = lensops("apply", "--repo", str(tree.root))
    assert again.code == 0, again.out + again.err
    assert writes(aws.requests()) == {}
    plan = lensops("plan", "--repo", str(tree.root))
    assert plan.code == 0, plan.out + plan.err


def test_plans_of_a_large_template_write_nothing_to_s3_and_say_when_no_change_set_was_previewed(aws, client, tree, lensops):
    client("s3").create_bucket(Bucket=BUCKET)
    first = _tree(tree)
    assert lensops("apply", "--repo", str(tree.root)).code == 0

    # A parameter changes: the template's object is there, so the change set is previewed from it.
    _tree(tree, prefix="qa")
    aws.clear_requests()
    plan = lensops("plan", "--repo", str(tree.root))
    assert plan.code == 2, plan.out + plan.err
    assert "Modify Setting (AWS::SSM::Parameter)" in plan.out
    assert ("s3", "PutObject") not in aws.requests() and aws.requests()[("s3", "HeadObject")] == 1

    # The template changes: its object is not there yet, and a plan does not upload it.
    second = _tree(tree, value="two")
    aws.clear_requests()
    plan = lensops("plan", "--repo", str(tree.root))
    assert plan.code == 2, plan.out + plan.err
    assert f"no change set previewed: the template is not in s3://{BUCKET}/{_key(second)} yet; apply uploads it" in plan.out
    assert 'template.Resources.Setting.Properties.Value: "one" -> "two"' in plan.out
    assert ("s3", "PutObject") not in aws.requests() and ("cloudformation", "CreateChangeSet") not in aws.requests()
    assert _keys(client) == [_key(first)]

    applied = lensops("apply", "--repo", str(tree.root))
    assert applied.code == 0, applied.out + applied.err
    assert sorted(_keys(client)) == sorted([_key(first), _key(second)])
    assert client("ssm").get_parameter(Name="/dev/big")["Parameter"]["Value"] == "two"
    assert lensops("plan", "--repo", str(tree.root)).code == 0


def test_without_a_template_bucket_the_large_stack_fails_alone_in_plan_and_apply(aws, client, tree, lensops):
    _tree(tree, bucket=False, extra=SMALL)
    setting = "set the Environment's spec.templateBucket"

    plan = lensops("plan", "--repo", str(tree.root))
    assert plan.code == 1
    assert "Stack/big" in plan.out and setting in plan.out and "over the 51200 CloudFormation takes inline" in plan.out
    assert "+ Stack/small (dev-small)" in plan.out

    applied = lensops("apply", "--repo", str(tree.root))
    assert applied.code == 1
    assert setting in applied.out + applied.err
    names = {s["StackName"] for s in client("cloudformation").describe_stacks()["Stacks"]}
    assert names == {"dev-small"}


def test_iam_policy_grants_the_template_objects_of_the_bucket_only(tree, lensops):
    _tree(tree)
    printed = lensops("iam-policy", "--repo", str(tree.root))
    assert printed.code == 0, printed.err
    statements = json.loads(printed.out)["Statement"]
    everywhere = [s for s in statements if s["Resource"] == "*"]  # the kinds' actions, the runbooks'
    assert not [a for s in everywhere for a in s["Action"] if a.startswith("s3:")]
    scoped = {(tuple(s["Action"]), tuple(s["Resource"])) for s in statements if s["Resource"] != "*"}
    assert scoped == {
        (("s3:ListBucket",), (f"arn:aws:s3:::{BUCKET}",)),
        (("s3:GetObject", "s3:PutObject"), (f"arn:aws:s3:::{BUCKET}/lensops/templates/*",)),
    }

    _tree(tree, bucket=False)
    statements = json.loads(lensops("iam-policy", "--repo", str(tree.root)).out)["Statement"]
    assert {s["Resource"] == "*" for s in statements} == {True}, "no bucket: nothing scoped to one"


def test_template_url_is_the_buckets_regional_address():
    from reconcilers.cloudformation import template_url

    assert template_url(BUCKET, REGION, "lensops/templates/x.json") == f"https://{BUCKET}.s3.{REGION}.amazonaws.com/lensops/templates/x.json"
    assert template_url(BUCKET, "cn-north-1", "k").endswith(".s3.cn-north-1.amazonaws.com.cn/k")
