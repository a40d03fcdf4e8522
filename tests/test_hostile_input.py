"""Hostile manifests, through the loader's public entry: each is answered within its bounds."""

from __future__ import annotations

import time

import pytest

from controller.catalog import registry
from controller.manifests.loader import load_tree


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


STACK = "apiVersion: lensops.io/v1\nkind: Stack\nmetadata:\n  name: network\nspec:\n  template: {template}\n"


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
    tree.write("environments/dev/stack.yaml", STACK.format(template=template))
    tree.write("environments/prod/stack.yaml", STACK.format(template="network.yaml"))
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
