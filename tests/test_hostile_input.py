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
