"""Hostile manifests, through the loader's public entry: each is answered within its bounds."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import MiB, bounded
from controller.catalog import registry
from controller.manifests.loader import load_tree


def _problems(result: Any) -> list[str]:
    """The problems as the CLI prints them, their paths from the tree's root."""
    root = str(result.all_problems[0].path).split("environments/")[0] if result.all_problems else ""
    return [str(p).replace(root, "") for p in result.all_problems]


@pytest.mark.parametrize("blanks", [3_000, 30_000])
def test_an_unclosed_placeholder_of_many_blanks_is_read_at_once(tree, blanks):
    """`{{` then thousands of blanks and no `}}`: the placeholder pattern once backtracked
    cubically on it (3,000 blanks held the daemon for half a minute)."""
    tree.environment("dev")
    tree.write(
        "environments/dev/topic.yaml",
        "apiVersion: lensops.io/v1\nkind: Topic\nmetadata: {name: alerts}\nspec:\n"
        f"  attributes: {{DisplayName: '{{{{{' ' * blanks}x'}}\n",
    )
    started = time.thread_time()
    result = load_tree(tree.root, registry())
    assert time.thread_time() - started < 2.0
    assert result.ok, result.all_problems
    attributes = result.environments["dev"].by_ident()["Topic/alerts"].spec["attributes"]
    assert attributes["DisplayName"] == "{{" + " " * blanks + "x"


def test_placeholders_with_blanks_still_substitute(tree):
    tree.environment("dev", "vars: {label: EconLens}")
    tree.write(
        "environments/dev/topic.yaml",
        "apiVersion: lensops.io/v1\nkind: Topic\nmetadata: {name: alerts}\nspec:\n"
        "  attributes: {DisplayName: '{{   vars.label   }} {{env.name}}'}\n",
    )
    result = load_tree(tree.root, registry())
    assert result.ok, result.all_problems
    assert result.environments["dev"].by_ident()["Topic/alerts"].spec["attributes"]["DisplayName"] == "EconLens dev"


# --- CloudFormation templates: the manifests' YAML reader and its caps --------------------------------------------

STACK = "apiVersion: lensops.io/v1\nkind: Stack\nmetadata: {name: bomb}\nspec:\n  template: bomb.yaml\n  parameters: {Env: dev}\n"
LAUGHS = (  # 458 bytes, 10 million nodes once its aliases are expanded
    'AWSTemplateFormatVersion: "2010-09-09"\nResources:\n  R:\n    Type: AWS::SNS::Topic\n    Properties:\n'
    "      a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    + "".join(f"      {chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(6))
)
def test_a_template_of_billion_laughs_is_refused_at_plan(aws, tree, lensops):
    """458 bytes whose aliases expand to 10 million nodes: `plan` took 7 s of CPU and 1.5 GB
    (58 s and 482 MB of output with --output json); now one line for the Stack, at once."""
    tree.environment("dev")
    tree.write("environments/dev/stack.yaml", STACK)
    tree.write("templates/bomb.yaml", "Resources: {}\n")
    assert lensops("plan", "--repo", str(tree.root)).code == 2  # the clients and models loaded before the clock starts
    tree.write("templates/bomb.yaml", LAUGHS)
    plan, seconds, peak = bounded(lambda: lensops("plan", "--repo", str(tree.root)), time.process_time)
    assert seconds < 2.0 and peak < 30, (seconds, peak)  # the whole plan, not just the template
    assert plan.code == 1, plan.out + plan.err
    failed = [line for line in plan.out.splitlines() if "Stack/bomb" in line]
    assert failed == [
        "  ! Stack/bomb (bomb): failed: template templates/bomb.yaml:10: document expands to more than 100000 nodes (YAML aliases?)"
    ], plan.out
    as_json = lensops("plan", "--repo", str(tree.root), "--output", "json")
    assert as_json.code == 1 and len(as_json.out) < 10_000


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (LAUGHS, "template:10: document expands to more than 100000 nodes (YAML aliases?)"),
        ("Resources:\n  a: &a [" + ", ".join(["!Ref x"] * 1000) + "]\n" + "".join(f"  b{i}: *a\n" for i in range(100)), "template:35: document expands to more than 100000 nodes"),
        ("Resources:\n  a: &a !Ref x\n  l: [" + ", ".join(["*a"] * 40_000) + "]\n", "template:3: document expands to more than 100000 nodes"),
        ("Resources: " + "!Sub [" * 5000 + "]" * 5000 + "\n", "template:1: nesting deeper than 64 levels"),
        ("Resources: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n", "template:1: nesting deeper than 64 levels"),
        ('{"Resources": ' + "[" * 100_000 + "]" * 100_000 + "}", "template: nesting deeper than 64 levels"),
        ('{"Resources": ' + "[" * 65 + "]" * 65 + "}", "template: nesting deeper than 64 levels"),
        ('{"Resources": [' + ", ".join(["[]"] * 100_000) + "]}", "template: document has more than 100000 nodes"),
        ("Resources: {}\n# " + "x" * MiB + "\n", "template: 1048593 bytes, more than the 1048576 allowed"),
        ("Resources: {}\n---\nResources: {}\n", "template:3: a template is one YAML document, and another starts here"),
        ("Resources: {a: *nowhere}\n", "template:1: unknown alias *nowhere"),
        ("Resources: {a: 1\n", "template:2: YAML syntax error"),
        ("- Resources\n", "template: not a map of sections"),
    ],
    ids=["laughs", "wide-alias", "aliased-short-form", "deep-short-forms", "deep-maps", "deep-json", "json-65-levels", "wide-json", "over-1-MiB", "two-documents", "unknown-alias", "syntax", "a-list"],
)
def test_a_hostile_template_is_one_line_of_refusal_within_bounds(body, message):
    from controller.errors import PermanentError
    from reconcilers.cloudformation import parse_template

    refused, seconds, peak = bounded(lambda: parse_template(body))
    assert isinstance(refused, PermanentError), refused
    assert message in str(refused) and "\n" not in str(refused), str(refused)
    assert seconds < 2.0 and peak < 30, (seconds, peak)


class _OldTemplateLoader(yaml.SafeLoader):
    """parse_template's YAML reader before it took the manifests' one (PyYAML, no caps): the reference."""


def _old_short_form(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix in ("Ref", "Condition"):
        return {suffix: value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_OldTemplateLoader.add_multi_constructor("!", _old_short_form)
_OldTemplateLoader.add_constructor("tag:yaml.org,2002:timestamp", lambda loader, node: str(loader.construct_scalar(node)))

EVERY_SHORT_FORM = """\
AWSTemplateFormatVersion: 2010-09-09
Transform: AWS::Serverless-2016-10-31
Description: >
  every short form, in every shape
Metadata:
  Built: 2024-01-02T03:04:05Z
  Flags: [yes, no, on, off, ~, null, 0x1F, 0o17, 1e3, .inf, "007", '2010-09-09', 1_000]
  Anchored: &props {Handler: index.handler, Runtime: !Sub "python${Version}"}
  Aliased: *props
Parameters:
  Env: {Type: String, AllowedValues: [dev, prod], Default: dev}
  Size: {Type: Number, Default: 3}
Mappings:
  Regions:
    us-east-1: {Ami: ami-1, Zones: 3}
Conditions:
  IsProd: !Equals [!Ref Env, prod]
  NotProd: !Not [!Condition IsProd]
  Both: !And [!Condition IsProd, !Not [!Equals [!Ref "AWS::Region", us-east-1]]]
  Either: !Or [!Condition IsProd, !Condition NotProd]
Resources:
  Queue:
    Type: AWS::SQS::Queue
    Condition: IsProd
    Properties:
      QueueName: !Sub "${Env}-jobs"
      DelaySeconds: !If [IsProd, 0, !Ref "AWS::NoValue"]
      Tags:
        - {Key: full, Value: !Sub ["${Name}-${AWS::Region}", {Name: !Select [0, !Split ["-", !Ref Env]]}]}
        - {Key: joined, Value: !Join ["", [!GetAtt Topic.TopicName, ":", !GetAtt [Topic, TopicArn]]]}
        - Key: b64
          Value: !Base64 |
            #!/bin/bash
            echo hi
        - {Key: cidr, Value: !Select [1, !Cidr [!GetAtt Vpc.CidrBlock, 4, 8]]}
        - {Key: azs, Value: !Select [0, !GetAZs ""]}
        - {Key: map, Value: !FindInMap [Regions, !Ref "AWS::Region", Ami]}
        - {Key: import, Value: !ImportValue {"Fn::Sub": "${Env}-vpc"}}
        - {Key: tojson, Value: !ToJsonString {a: 1, b: [2, 3]}}
        - {Key: empty, Value: !Ref ""}
        - {Key: deep, Value: !GetAtt Db.Endpoint.Address}
        - {Key: merged, <<: {Value: !Ref Env}}
  Topic: {Type: AWS::SNS::Topic, Properties: {}}
  Vpc: {Type: AWS::EC2::VPC, Properties: {CidrBlock: 10.0.0.0/16}}
Outputs:
  QueueUrl:
    Value: !Ref Queue
    Export: {Name: !Sub "${AWS::StackName}-queue"}
"""


def _real_templates() -> dict[str, str]:
    """Every CloudFormation template of the project: the example tree's, the tests', the docs' example."""
    import test_rollback_healthy_point
    import test_stack

    from reconcilers.cloudformation import StackReconciler

    found = {str(path): path.read_text() for path in sorted(Path("desired-state/templates").glob("*"))}
    assert len(found) >= 3, found
    found.update(
        network=test_stack.NETWORK_TEMPLATE,
        reformatted=test_stack.NETWORK_TEMPLATE_REFORMATTED,
        app=test_stack.APP_TEMPLATE,
        levels=test_rollback_healthy_point.LEVEL_TEMPLATE,
        every_short_form=EVERY_SHORT_FORM,
        **StackReconciler.example_files,
    )
    return found


def test_real_templates_read_as_the_old_reader_read_them():
    from reconcilers.cloudformation import parse_template

    for name, text in _real_templates().items():
        assert parse_template(text) == yaml.load(text, Loader=_OldTemplateLoader), name  # the reference: PyYAML, SafeLoader-based


def test_short_forms_in_manifests_are_still_a_problem(tree):
    """The manifests' reader knows CloudFormation's tags only when parse_template asks it to."""
    tree.environment("dev")
    tree.write("environments/dev/topic.yaml", "apiVersion: lensops.io/v1\nkind: Topic\nmetadata: {name: alerts}\nspec:\n  attributes: {DisplayName: !Ref x}\n")
    result = load_tree(tree.root, registry())
    assert [p.message for p in result.all_problems] == ["unsupported YAML tag !Ref"]


def test_a_control_character_is_a_problem_of_one_line(tree):
    """PyYAML's reader error ends in a second line ("in <unicode string>, position N"): one problem, one line."""
    tree.environment("dev")
    tree.write("environments/dev/topic.yaml", "apiVersion: lensops.io/v1\nkind: Topic\nmetadata: {name: alerts}\nspec:\n  attributes: {DisplayName: \x1f}\n")
    assert _problems(load_tree(tree.root, registry())) == ["environments/dev/topic.yaml:5: unacceptable character #x001f: control characters are not allowed"]
