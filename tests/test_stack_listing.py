"""Stack: when the pass's one DescribeStacks listing fails, each stack is read on its own.

The listing is shared by every stack of a pass; a listing that is denied,
throttled past the retries or answered with something that does not parse
must not fail them all. lensops falls back to one DescribeStacks per stack,
so that only a stack that cannot be read fails, and alone.
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import writes
from lensops_emulator import FaultPlan, FaultRule

TEMPLATE = """
Parameters:
  Value:
    Type: String
Resources:
  Setting:
    Type: AWS::SSM::Parameter
    Properties:
      Name: !Sub "/${AWS::StackName}/setting"
      Type: String
      Value: !Ref Value
"""


def stack(name: str, value: str = "one") -> str:
    return f"""
apiVersion: lensops.io/v1
kind: Stack
metadata:
  name: {name}
spec:
  stackName: dev-{name}
  template: setting.yaml
  parameters: {{Value: {value}}}
"""


def _tree(tree: Any, **values: str) -> None:
    tree.environment("dev")
    tree.write("templates/setting.yaml", TEMPLATE)
    tree.write("environments/dev/stacks.yaml", "---".join(stack(name, value) for name, value in values.items()))


LISTING = FaultRule("cloudformation", "DescribeStacks", params={"StackName": None})
"""Every DescribeStacks without a StackName: the listing of every stack."""


def _setting(client: Any, name: str) -> str:
    return str(client("ssm").get_parameter(Name=f"/dev-{name}/setting")["Parameter"]["Value"])


@pytest.mark.parametrize("kind", ["denied", "garbled"])
def test_a_failed_listing_falls_back_to_one_read_per_stack(aws, client, tree, lensops, kind):
    _tree(tree, a="one", b="one")
    assert lensops("apply", "--repo", str(tree.root)).code == 0

    aws.set_faults(FaultPlan(rules=[FaultRule(LISTING.service, LISTING.operation, kind=kind, params=LISTING.params)]))
    aws.clear_requests()
    plan = lensops("plan", "--repo", str(tree.root))
    assert plan.code == 0, plan.out + plan.err
    assert aws.requests()[("cloudformation", "DescribeStacks")] == 3  # the failed listing, then one per stack

    _tree(tree, a="two", b="one")
    plan = lensops("plan", "--repo", str(tree.root))
    assert plan.code == 2, plan.out + plan.err
    assert "~ Stack/a (dev-a)" in plan.out and "Stack/b" not in plan.out
    applied = lensops("apply", "--repo", str(tree.root))
    assert applied.code == 0, applied.out + applied.err
    assert (_setting(client, "a"), _setting(client, "b")) == ("two", "one")


def test_one_stack_that_cannot_be_read_fails_alone(aws, client, tree, lensops):
    _tree(tree, a="one", b="one")
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    _tree(tree, a="two", b="two")
    aws.set_faults(FaultPlan(rules=[LISTING, FaultRule("cloudformation", "DescribeStacks", params={"StackName": "dev-b"})]))

    plan = lensops("plan", "--repo", str(tree.root))
    assert plan.code == 1
    assert "~ Stack/a (dev-a)" in plan.out
    assert "! Stack/b (dev-b): failed: observe: AccessDenied" in plan.out

    applied = lensops("apply", "--repo", str(tree.root))
    assert applied.code == 1
    assert (_setting(client, "a"), _setting(client, "b")) == ("two", "one")


def test_a_stack_that_does_not_exist_is_created_when_the_listing_fails(aws, client, tree, lensops):
    _tree(tree, a="one")
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    _tree(tree, a="one", c="new")
    aws.set_faults(FaultPlan(rules=[LISTING]))

    plan = lensops("plan", "--repo", str(tree.root))
    assert plan.code == 2, plan.out + plan.err
    assert "+ Stack/c (dev-c)" in plan.out and "Stack/a" not in plan.out
    applied = lensops("apply", "--repo", str(tree.root))
    assert applied.code == 0, applied.out + applied.err
    assert _setting(client, "c") == "new"

    aws.clear_requests()
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    assert writes(aws.requests()) == {}

