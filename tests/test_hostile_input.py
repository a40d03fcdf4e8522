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


NAMED_STACK = "apiVersion: lensops.io/v1\nkind: Stack\nmetadata:\n  name: network\nspec:\n  template: {template}\n"


@pytest.mark.parametrize(
    "template, shown",
    [
        ('"net\\0work.yaml"', "'net\\x00work.yaml'"),  # a NUL byte: once "ValueError: embedded null byte"
        ("n" * 5000, "'" + "n" * 80 + "...'"),  # once "OSError: File name too long"
        ("/".join(["n" * 200] * 30), "'" + ("n" * 200)[:80] + "...'"),  # a path longer than the system takes
        ('"net\\nwork.yaml"', "'net\\nwork.yaml'"),
    ],
)
def test_a_template_that_cannot_be_a_file_name_is_that_environments_problem(tree, template, shown):
    tree.environment("dev")
    tree.environment("prod")
    tree.write("templates/network.yaml", "Resources: {}\n")
    tree.write("environments/dev/stack.yaml", NAMED_STACK.format(template=template))
    tree.write("environments/prod/stack.yaml", NAMED_STACK.format(template="network.yaml"))
    result = load_tree(tree.root, registry())
    problems = [str(p) for p in result.problems["dev"]]
    assert len(problems) == 1 and "\n" not in problems[0], problems
    assert problems[0].startswith(f"environments/dev/stack.yaml:6: Stack/network: template {shown} ")
    assert len(problems[0]) < 200
    assert set(result.environments) == {"prod"}


@pytest.mark.parametrize("name", ["Dev", "prod\nstaging", "it's", "x" * 250, "-x", "a_b", "ünï", "dev\n"])
def test_a_folder_whose_name_cannot_be_an_environment_is_refused_outside_every_environment(tree, name):
    tree.environment("dev")
    tree.write(f"environments/{name}/environment.yaml", "apiVersion: lensops.io/v1\nkind: Environment\nmetadata: {name: x}\nspec: {region: us-east-1}\n")
    result = load_tree(tree.root, registry())
    assert set(result.environments) == {"dev"} and set(result.problems) == {""}
    (problem,) = result.problems[""]
    shown = repr(name if len(name) <= 80 else name[:80] + "...")
    assert str(problem) == (
        f"environments/: folder {shown} cannot be an environment: its name must be "
        "lowercase letters, digits and '-', starting and ending alphanumeric, at most 63"
    )
    assert "\n" not in str(problem) and len(str(problem)) < 250


def test_a_name_with_a_final_newline_is_invalid(tree):
    """`$` in the name pattern matched before a final newline: "alerts\\n" passed as a name."""
    tree.environment("dev")
    tree.write("environments/dev/topic.yaml", 'apiVersion: lensops.io/v1\nkind: Topic\nmetadata: {name: "alerts\\n"}\nspec: {}\n')
    result = load_tree(tree.root, registry())
    assert [p.message for p in result.problems["dev"]] == [
        "invalid name 'alerts\\n': lowercase letters, digits and '-', starting and ending alphanumeric, at most 63"
    ]


def test_folders_nested_too_deep_are_a_problem_not_a_crash(tree):
    """1,100 nested folders (a path Git stores and checks out) once overflowed the walk's stack (RecursionError)."""
    tree.environment("dev")
    tree.environment("prod")
    folders = [tree.root / "environments" / "dev" / "a"]
    try:
        folders[0].mkdir()
        for _ in range(1_099):
            folders.append(folders[-1] / "a")
            folders[-1].mkdir()
        (folders[-1] / "deep.yaml").write_text("a: 1\n")
        result = load_tree(tree.root, registry())
    finally:  # bottom up: a recursive removal (pytest's of its temporary folders) overflows as the walk did
        (folders[-1] / "deep.yaml").unlink(missing_ok=True)
        for folder in reversed(folders):
            if folder.exists():
                folder.rmdir()
    assert [str(p) for p in result.problems["dev"]] == ["environments/dev" + "/a" * 33 + ": folders nested deeper than 32 levels"]
    assert set(result.environments) == {"prod"}
# --- CloudFormation templates: the manifests' YAML reader and its caps --------------------------------------------

STACK = "apiVersion: lensops.io/v1\nkind: Stack\nmetadata: {name: bomb}\nspec:\n  template: bomb.yaml\n  parameters: {Env: dev}\n"
LAUGHS = (  # 458 bytes, 10 million nodes once its aliases are expanded
    'AWSTemplateFormatVersion: "2010-09-09"\nResources:\n  R:\n    Type: AWS::SNS::Topic\n    Properties:\n'
    "      a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    + "".join(f"      {chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(6))
)
def test_a_template_of_billion_laughs_is_refused_at_plan(aws, tree, lensops):
    """458 bytes whose aliases expand to 10 million nodes: `plan` took 7 s of CPU and 1.5 GB
    (58 s and 482 MB of output with --output json); now one line for the Stack, at once, as the tree loads
    (the template is checked before AWS: the environment's revision is refused)."""
    tree.environment("dev")
    tree.write("environments/dev/stack.yaml", STACK)
    tree.write("templates/bomb.yaml", "Parameters: {Env: {Type: String}}\nResources: {T: {Type: AWS::SNS::Topic, Properties: {TopicName: !Ref Env}}}\n")
    assert lensops("plan", "--repo", str(tree.root)).code == 2  # the clients and models loaded before the clock starts
    tree.write("templates/bomb.yaml", LAUGHS)
    plan, seconds, peak = bounded(lambda: lensops("plan", "--repo", str(tree.root)), time.process_time)
    assert seconds < 2.0 and peak < 30, (seconds, peak)  # the whole plan, not just the template
    assert plan.code == 1, plan.out + plan.err
    failed = [line for line in plan.err.splitlines() if "Stack/bomb" in line]
    assert failed == [
        "templates/bomb.yaml:10: Stack/bomb: cannot be read: document expands to more than 100000 nodes (YAML aliases?)"
    ], plan.err
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


# --- placeholders: what they add is capped while they are substituted --------------------------------------------


def _big_var_tree(tree: Any, size: int, uses: int, documents: int = 1, partial: bool = True) -> None:
    """A Topic whose display name uses ``vars.big`` (``size`` characters) on line 12, then ``documents``
    Dashboards that use it ``uses`` times in all."""
    tree.environment("dev", f"vars:\n  big: {'x' * size}\n  label: EconLens")
    value = "'{{ vars.big }} alerts'" if partial else "'{{ vars.big }}'"
    topic = (
        "apiVersion: lensops.io/v1\nkind: Topic\nmetadata:\n  name: alerts\n  annotations:\n"
        "    team: platform\n    owner: sre\nspec:\n  subscriptions: []\n  tags: {team: platform}\n  attributes:\n"
        f"    DisplayName: {value}\n"
    )
    dashboards = [
        f"apiVersion: lensops.io/v1\nkind: Dashboard\nmetadata: {{name: d{index}}}\nspec:\n  body:\n    widgets:\n"
        + f"      - {value}\n" * (uses // documents)
        for index in range(documents)
    ]
    tree.write("environments/dev/x.yaml", "---\n".join([topic, *dashboards]))


@pytest.mark.parametrize("partial", [True, False], ids=["in-a-string", "whole-string"])
def test_a_large_variable_used_thousands_of_times_is_refused_while_expanding(tree, partial):
    """A 100 KB variable used 20,000 times in a 500 KB tree took 2 GB and loaded as valid."""
    _big_var_tree(tree, 100_000, 20_000, partial=partial)
    result, seconds, peak = bounded(lambda: load_tree(tree.root, registry()))
    assert seconds < 2.0 and peak < 30, (seconds, peak)
    assert _problems(result) == [
        "environments/dev/x.yaml:12: Topic/alerts: spec.attributes.DisplayName: placeholder {{ vars.big }} expands to more than 65536 characters",
        "environments/dev/x.yaml:20: Dashboard/d0: spec.body.widgets.0: placeholder {{ vars.big }} expands to more than 65536 characters",
    ]


def test_placeholders_that_add_more_than_the_environments_budget_are_refused_once(tree):
    """60,000 characters (under the cap of one string) 20,000 times: 1.2 GB, refused when the
    environment's placeholders have added 16 MiB, and reported once, not for every later use."""
    _big_var_tree(tree, 60_000, 20_000, documents=100)
    result, seconds, peak = bounded(lambda: load_tree(tree.root, registry()))
    assert seconds < 2.0 and peak < 30, (seconds, peak)
    assert _problems(result) == [
        "environments/dev/x.yaml:305: Dashboard/d1: spec.body.widgets.78: placeholder {{ vars.big }}: "
        "placeholders add more than 16777216 characters to this environment's manifests"
    ]


def test_a_list_value_used_many_times_is_counted_by_its_nodes():
    """A list or map is given by reference, not copied, but every later stage copies it: each use
    counts. (An Environment's ``vars`` take scalars only today: this is ``interpolate``'s own guard.)"""
    from controller.manifests.interpolate import Expansion, ExpansionTooLarge, interpolate

    hosts = [f"h{i}" for i in range(1000)]
    spec = {"widgets": ["{{ vars.hosts }}"] * 200}
    refused, seconds, peak = bounded(lambda: interpolate(spec, {}, {"hosts": hosts}, ("spec",)))
    assert seconds < 2.0 and peak < 30, (seconds, peak)
    assert isinstance(refused, ExpansionTooLarge) and refused.path == ("spec", "widgets", 100), refused
    assert str(refused) == "spec.widgets.100: placeholder {{ vars.hosts }}: list and map variables add more than 100000 nodes to this environment's manifests"
    expansion = Expansion()
    with pytest.raises(ExpansionTooLarge):
        interpolate(spec, {}, {"hosts": hosts}, ("spec",), expansion)
    with pytest.raises(ExpansionTooLarge) as again:  # the environment's budget stays spent
        interpolate({"label": "{{ vars.one }}"}, {}, {"one": "x"}, ("spec",), expansion)
    assert again.value.repeated


def test_placeholders_may_add_at_most_64_KiB_to_one_string(tree):
    tree.environment("dev", f"vars: {{k: {'k' * 1000}}}")
    tree.write(
        "environments/dev/topic.yaml",
        "apiVersion: lensops.io/v1\nkind: Topic\nmetadata: {name: alerts}\nspec:\n"
        f"  attributes: {{DisplayName: '{'{{ vars.k }}' * 70}'}}\n",
    )
    assert _problems(load_tree(tree.root, registry())) == [
        "environments/dev/topic.yaml:5: Topic/alerts: spec.attributes.DisplayName: "
        "placeholders add more than 65536 characters to this string (at {{ vars.k }})"
    ]


def test_the_environments_own_spec_is_capped_too(tree):
    """``{{ env.name }}`` in environment.yaml: 12 characters that become up to 63."""
    name = "d" * 63
    tree.environment(name, f"tags: {{a: '{'{{env.name}}' * 6000}'}}")
    assert _problems(load_tree(tree.root, registry())) == [
        f"environments/{name}/environment.yaml:7: Environment/{name}: spec.tags.a: "
        "placeholders add more than 65536 characters to this string (at {{ env.name }})"
    ]


def test_variables_within_the_caps_still_substitute(tree):
    tree.environment("dev", f"vars:\n  big: {'b' * 60_000}\n  cpu: 2\n  flag: true")
    tree.write(
        "environments/dev/board.yaml",
        "apiVersion: lensops.io/v1\nkind: Dashboard\nmetadata: {name: board}\nspec:\n  body:\n"
        "    big: '{{ vars.big }}'\n    label: 'x {{ vars.big }} y'\n"
        "    widgets: ['{{ vars.cpu }}', 'cpu {{ vars.cpu }} {{ vars.flag }} {{ env.name }}']\n",
    )
    result = load_tree(tree.root, registry())
    assert result.ok, result.all_problems
    body = result.environments["dev"].by_ident()["Dashboard/board"].spec["body"]
    assert body == {"big": "b" * 60_000, "label": f"x {'b' * 60_000} y", "widgets": [2, "cpu 2 true dev"]}
