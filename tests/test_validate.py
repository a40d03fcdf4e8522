"""`lensops validate`: every kind of bad tree gets exit 1 and a `path:line: Kind/name: message`,
in well under two seconds, without a traceback; a good tree gets exit 0."""

from __future__ import annotations

import re
import time

import pytest

from conftest import alarm

LINE = re.compile(r"^(?P<path>[^:\n]+\.ya?ml):(?P<line>\d+): (?P<rest>.+)$")


def _check(tree, lensops, expect_path: str, expect_line: int | None, expect_text: str, ident: str | None = None) -> None:
    started = time.monotonic()
    result = lensops("validate", str(tree.root))
    elapsed = time.monotonic() - started
    assert result.code == 1, result.out + result.err
    assert elapsed < 2.0
    assert "Traceback" not in result.err
    lines = [line for line in result.err.splitlines() if line.strip()]
    matching = [line for line in lines if expect_text in line]
    assert matching, f"no line with {expect_text!r} in:\n{result.err}"
    found = LINE.match(matching[0])
    assert found, f"not path:line: {matching[0]!r}"
    assert found["path"].endswith(expect_path)
    if expect_line is not None:
        assert int(found["line"]) == expect_line, matching[0]
    if ident:
        assert found["rest"].startswith(ident + ": "), matching[0]


def test_good_tree_is_valid(tree, lensops):
    tree.environment("dev")
    tree.write("environments/dev/alarms.yaml", alarm("api-5xx"))
    result = lensops("validate", str(tree.root))
    assert result.code == 0, result.err
    assert "dev (1 resources)" in result.out


def test_yaml_syntax_error(tree, lensops):
    tree.environment("dev")
    tree.write("environments/dev/bad.yaml", "apiVersion: lensops.io/v1\nkind: Topic\nmetadata:\n  name: [unclosed\n")
    _check(tree, lensops, "environments/dev/bad.yaml", None, "YAML syntax error")


def test_unknown_kind(tree, lensops):
    tree.environment("dev")
    tree.write("environments/dev/a.yaml", "apiVersion: lensops.io/v1\nkind: MetricAlarms\nmetadata:\n  name: x\nspec: {}\n")
    _check(tree, lensops, "environments/dev/a.yaml", 2, "unknown kind 'MetricAlarms' (did you mean MetricAlarm?)")


def test_misspelt_spec_field(tree, lensops):
    tree.environment("dev")
    tree.write("environments/dev/a.yaml", alarm("api-5xx").replace("  threshold:", "  threshhold:"))
    _check(tree, lensops, "environments/dev/a.yaml", 11, "unknown field 'spec.threshhold' (did you mean 'threshold'?)", "MetricAlarm/api-5xx")


def test_unknown_nested_field(tree, lensops):
    tree.environment("dev")
    tree.write(
        "environments/dev/a.yaml",
        "apiVersion: lensops.io/v1\nkind: Topic\nmetadata:\n  name: alerts\nspec:\n  subscriptions:\n    - protocol: email\n      endpoint: a@b.c\n      filter: x\n",
    )
    _check(tree, lensops, "environments/dev/a.yaml", 9, "unknown field 'spec.subscriptions.0.filter'", "Topic/alerts")


def test_wrong_type(tree, lensops):
    tree.environment("dev")
    tree.write("environments/dev/a.yaml", alarm("api-5xx").replace("  period: 60", "  period: sixty"))
    _check(tree, lensops, "environments/dev/a.yaml", 9, "spec.period: Input should be a valid integer", "MetricAlarm/api-5xx")


def test_duplicate_kind_name(tree, lensops):
    tree.environment("dev")
    tree.write("environments/dev/a.yaml", alarm("api-5xx"))
    tree.write("environments/dev/b.yaml", alarm("api-5xx"))
    _check(tree, lensops, "environments/dev/b.yaml", 1, "duplicate MetricAlarm/api-5xx, also at", "MetricAlarm/api-5xx")


def test_dependency_cycle(tree, lensops):
    tree.environment("dev")
    tree.write(
        "environments/dev/a.yaml",
        alarm("a").replace("  name: a\n", "  name: a\n  dependsOn: [MetricAlarm/b]\n")
        + "---\n"
        + alarm("b").replace("  name: b\n", "  name: b\n  dependsOn: [MetricAlarm/a]\n"),
    )
    _check(tree, lensops, "environments/dev/a.yaml", 1, "dependency cycle: MetricAlarm/a -> MetricAlarm/b -> MetricAlarm/a", "MetricAlarm/a")


def test_reference_to_missing_resource(tree, lensops):
    tree.environment("dev")
    tree.write("environments/dev/a.yaml", alarm("api-5xx", extra="alarmActions: [ref:Topic/nope]"))
    _check(tree, lensops, "environments/dev/a.yaml", 14, "reference to missing resource Topic/nope", "MetricAlarm/api-5xx")


def test_one_typo_in_a_referenced_name_is_one_problem_naming_who_refers_to_it(tree, lensops):
    tree.environment("dev", "health: {alarms: ['ref:MetricAlarm/a00']}\nnotifications: {topic: ref:Topic/alert}")
    tree.write("environments/dev/topic.yaml", "apiVersion: lensops.io/v1\nkind: Topic\nmetadata:\n  name: alerts\nspec: {}\n")
    names = [f"a{i:02d}" for i in range(18)]
    tree.write("environments/dev/alarms.yaml", "---\n".join(alarm(n, extra="alarmActions: [ref:Topic/alert]\nokActions: [ref:Topic/alert]") for n in names))
    tree.write("environments/dev/later.yaml", alarm("z", extra="alarmActions: [ref:Topic/nothing-like-it]").replace("  name: z\n", "  name: z\n  dependsOn: [Topic/alert]\n"))
    result = lensops("validate", str(tree.root))
    assert result.code == 1
    lines = [line for line in result.err.splitlines() if "Topic/alert" in line]
    assert lines == [
        "environments/dev/alarms.yaml:14: MetricAlarm/a00: reference to missing resource Topic/alert (did you mean Topic/alerts?); "
        "19 more resources refer to it: MetricAlarm/a01, MetricAlarm/a02, MetricAlarm/a03, MetricAlarm/a04, MetricAlarm/a05, ..."
    ], result.err
    others = [line for line in result.err.splitlines() if "Topic/alert" not in line]
    assert others == ["environments/dev/later.yaml:15: MetricAlarm/z: reference to missing resource Topic/nothing-like-it"], result.err


def test_a_missing_dependency_named_once_says_so_with_a_suggestion(tree, lensops):
    tree.environment("dev")
    tree.write("environments/dev/a.yaml", alarm("a").replace("  name: a\n", "  name: a\n  dependsOn: [MetricAlarm/bb]\n") + "---\n" + alarm("b"))
    _check(tree, lensops, "environments/dev/a.yaml", 5, "dependsOn MetricAlarm/bb: no such resource in environment dev (did you mean MetricAlarm/b?)", "MetricAlarm/a")


def test_unknown_variable(tree, lensops):
    tree.environment("dev", "vars: {limit: 3}")
    tree.write("environments/dev/a.yaml", alarm("api-5xx").replace("  threshold: 5", '  threshold: "{{ vars.limt }}"'))
    _check(tree, lensops, "environments/dev/a.yaml", 11, "unknown variable {{ vars.limt }} (vars: limit)", "MetricAlarm/api-5xx")


def test_invalid_name(tree, lensops):
    tree.environment("dev")
    tree.write("environments/dev/a.yaml", alarm("Api_5xx"))
    _check(tree, lensops, "environments/dev/a.yaml", 4, "invalid name 'Api_5xx'")


def test_missing_environment_yaml(tree, lensops):
    tree.write("environments/dev/a.yaml", alarm("api-5xx"))
    result = lensops("validate", str(tree.root))
    assert result.code == 1
    assert re.search(r"environments/dev/environment\.yaml: Environment/dev: missing environment\.yaml", result.err), result.err


def test_unknown_api_version(tree, lensops):
    tree.environment("dev")
    tree.write("environments/dev/a.yaml", alarm("api-5xx").replace("lensops.io/v1", "lensops.io/v2"))
    _check(tree, lensops, "environments/dev/a.yaml", 1, "unknown apiVersion 'lensops.io/v2'")


def test_billion_laughs(tree, lensops):
    tree.environment("dev")
    levels = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        prev, cur = chr(96 + i), chr(97 + i)
        levels.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    tree.write("environments/dev/laughs.yaml", "\n".join(levels) + "\n")
    _check(tree, lensops, "environments/dev/laughs.yaml", None, "expands to more than")


def test_deep_nesting(tree, lensops):
    tree.environment("dev")
    tree.write("environments/dev/deep.yaml", "spec: " + "[" * 5000 + "]" * 5000 + "\n")
    _check(tree, lensops, "environments/dev/deep.yaml", 1, "nesting deeper than 64 levels")


def test_deep_block_nesting(tree, lensops):
    """Block style reaches the parser a level at a time: refused at the 65th level, on its line."""
    tree.environment("dev")
    tree.write("environments/dev/deep.yaml", "".join(" " * i + "k:\n" for i in range(1000)))
    _check(tree, lensops, "environments/dev/deep.yaml", 65, "nesting deeper than 64 levels")


def test_file_over_one_mebibyte(tree, lensops):
    tree.environment("dev")
    tree.write("environments/dev/big.yaml", "# " + "x" * (1024 * 1024) + "\n")
    result = lensops("validate", str(tree.root))
    assert result.code == 1 and "more than the 1048576" in result.err


def test_too_many_documents(tree, lensops):
    tree.environment("dev")
    tree.write("environments/dev/many.yaml", "---\na: 1\n" * 10_001)
    _check(tree, lensops, "environments/dev/many.yaml", None, "more than 10000 documents in one file")


@pytest.mark.parametrize(
    "template, message",
    [
        ("../../etc/passwd", "template '../../etc/passwd' leaves templates/"),
        # once "lensops: internal error: ValueError: embedded null byte", and no environment loaded
        ('"net\\0work.yaml"', "template 'net\\x00work.yaml' is not a usable file name"),
    ],
)
def test_template_that_cannot_be_used(tree, lensops, template, message):
    tree.environment("dev")
    tree.write("templates/ok.yaml", "Resources: {}\n")
    tree.write("environments/dev/stack.yaml", f"apiVersion: lensops.io/v1\nkind: Stack\nmetadata:\n  name: network\nspec:\n  template: {template}\n")
    _check(tree, lensops, "environments/dev/stack.yaml", 6, message, "Stack/network")


@pytest.mark.parametrize("how", ["path", "--repo"])
def test_problem_paths_are_relative_to_the_tree(tree, lensops, how):
    tree.environment("dev")
    tree.write("environments/dev/a.yaml", alarm("api-5xx").replace("  period: 60", "  period: sixty"))
    result = lensops("validate", str(tree.root)) if how == "path" else lensops("validate", "--repo", str(tree.root))
    assert result.code == 1
    assert result.err.splitlines() == ["environments/dev/a.yaml:9: MetricAlarm/api-5xx: spec.period: Input should be a valid integer, unable to parse string as an integer"]


def test_folder_that_cannot_be_an_environment(tree, lensops):
    tree.environment("dev")
    tree.environment("Prod")
    result = lensops("validate", str(tree.root))
    assert result.code == 1
    assert result.err.splitlines() == [
        "environments/: folder 'Prod' cannot be an environment: its name must be lowercase letters, digits and '-', "
        "starting and ending alphanumeric, at most 63"
    ]


def test_every_problem_reported_in_one_run(tree, lensops):
    tree.environment("dev")
    tree.environment("prod")
    tree.write("environments/dev/a.yaml", alarm("api-5xx").replace("  threshold:", "  threshhold:"))
    tree.write("environments/prod/a.yaml", alarm("bad_name"))
    tree.write("environments/prod/b.yaml", "kind: [")
    result = lensops("validate", str(tree.root))
    assert result.code == 1
    assert len([line for line in result.err.splitlines() if LINE.match(line)]) == 3, result.err


def test_json_output_lists_problems(tree, lensops):
    import json

    tree.environment("dev")
    tree.write("environments/dev/a.yaml", alarm("api-5xx").replace("  period: 60", "  period: sixty"))
    result = lensops("validate", str(tree.root), "--output", "json")
    assert result.code == 1
    doc = json.loads(result.out)
    assert doc["valid"] is False
    assert doc["problems"][0]["line"] == 9 and doc["problems"][0]["resource"] == "MetricAlarm/api-5xx"


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_econlens_desired_state_is_valid(lensops, env):
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "desired-state"
    result = lensops("validate", str(root), "--env", env)
    assert result.code == 0, result.err
