"""Loading: overlays from base/, interpolation, references and the dependency order."""

from __future__ import annotations

from controller.manifests.loader import load_tree

from conftest import alarm
from controller.catalog import registry


def test_base_overlay_deep_merges_maps_and_replaces_lists(tree):
    tree.environment("dev", "vars: {limit: 7}")
    tree.environment("prod", "vars: {limit: 3}")
    tree.write(
        "base/topic.yaml",
        """
        apiVersion: lensops.io/v1
        kind: Topic
        metadata: {name: alerts}
        spec:
          attributes: {DisplayName: Alerts, KmsMasterKeyId: alias/aws/sns}
          subscriptions: [{protocol: email, endpoint: ops@example.com}]
        """,
    )
    tree.write(
        "environments/prod/topic.yaml",
        """
        apiVersion: lensops.io/v1
        kind: Topic
        metadata: {name: alerts}
        spec:
          attributes: {DisplayName: Prod alerts}
          subscriptions: [{protocol: email, endpoint: oncall@example.com}]
        """,
    )
    result = load_tree(tree.root, registry())
    assert result.ok, result.all_problems
    dev = result.environments["dev"].by_ident()["Topic/alerts"].spec
    prod = result.environments["prod"].by_ident()["Topic/alerts"].spec
    assert dev["attributes"] == {"DisplayName": "Alerts", "KmsMasterKeyId": "alias/aws/sns"}
    assert prod["attributes"] == {"DisplayName": "Prod alerts", "KmsMasterKeyId": "alias/aws/sns"}
    assert prod["subscriptions"] == [{"protocol": "email", "endpoint": "oncall@example.com"}]


def test_interpolation_keeps_types_and_fills_strings(tree):
    tree.environment("dev", "vars: {limit: 7}")
    tree.write("environments/dev/a.yaml", alarm("api", extra='alarmDescription: "{{ env.name }} in {{ env.region }} above {{ vars.limit }}"').replace("threshold: 5", 'threshold: "{{ vars.limit }}"'))
    spec = load_tree(tree.root, registry()).environments["dev"].by_ident()["MetricAlarm/api"].spec
    assert spec["threshold"] == 7.0
    assert spec["alarmDescription"] == "dev in us-east-1 above 7"


def test_references_order_resources(tree):
    tree.environment("dev")
    tree.write("environments/dev/a.yaml", alarm("api", extra="alarmActions: [ref:Topic/alerts]"))
    tree.write("environments/dev/b.yaml", "apiVersion: lensops.io/v1\nkind: Topic\nmetadata: {name: alerts}\nspec: {}\n")
    order = [r.ident for r in load_tree(tree.root, registry()).environments["dev"].resources]
    assert order == ["Topic/alerts", "MetricAlarm/api"]


def test_invalid_environment_does_not_stop_the_others(tree):
    tree.environment("dev")
    tree.environment("prod")
    tree.write("environments/dev/a.yaml", alarm("api"))
    tree.write("environments/prod/a.yaml", alarm("api").replace("period: 60", "period: -1"))
    result = load_tree(tree.root, registry())
    assert set(result.environments) == {"dev"}
    assert [p.ident for p in result.problems["prod"]] == ["MetricAlarm/api"]


# --- the YAML reader (controller/manifests/yamlsafe.py): one pass over libyaml's events ---


def test_lines_of_keys_items_and_aliases_in_a_multi_document_file():
    from controller.manifests.yamlsafe import load_documents

    text = "a: 1\n---\n# note\nbase: &b\n  x: 1\n  y: [p, q]\nlist:\n  - *b\n  - z: 2\n"
    first, second = load_documents(text)
    assert (first.data, first.line, first.lines) == ({"a": 1}, 1, {("a",): 1})
    assert second.data == {"base": {"x": 1, "y": ["p", "q"]}, "list": [{"x": 1, "y": ["p", "q"]}, {"z": 2}]}
    assert second.line == 4
    # an alias takes the lines of what it repeats, as PyYAML's nodes did
    assert second.lines == {
        ("base",): 4, ("base", "x"): 5, ("base", "y"): 6, ("base", "y", 0): 6, ("base", "y", 1): 6,
        ("list",): 7, ("list", 0): 4, ("list", 0, "x"): 5, ("list", 0, "y"): 6, ("list", 0, "y", 0): 6, ("list", 0, "y", 1): 6,
        ("list", 1): 9, ("list", 1, "z"): 9,
    }
    assert second.data["list"][0] is not second.data["base"]  # a copy, not the same dict
    assert second.line_of(("list", 1, "z", "deeper")) == 9


def test_merge_keys():
    from controller.manifests.yamlsafe import YamlProblem, load_documents

    text = "a: &a {x: 1, k: a}\nb: &b {y: 2, k: b}\nm:\n  <<: [*a, *b]\n  z: 3\nn: {<<: {w: 0}, v: 1}\no: {<<: *b}\n"
    (doc,) = load_documents(text)
    assert doc.data["m"] == {"x": 1, "k": "a", "y": 2, "z": 3}  # merged keys first; the first mapping that has one gives it
    assert doc.data["n"] == {"w": 0, "v": 1} and doc.data["o"] == {"y": 2, "k": "b"}
    assert doc.lines[("m", "k")] == 1 and doc.lines[("m", "y")] == 2 and doc.lines[("m", "z")] == 5
    for bad, line, message in [
        ("a: &a {x: 1}\nm:\n  <<: *a\n  x: 2\n", 4, "duplicate key 'x'"),
        ("m: {<<: 5}\n", 1, "expected a mapping or list of mappings for merging, but found scalar"),
        ("m:\n  <<: [{a: 1}, [2]]\n", 2, "expected a mapping for merging, but found sequence"),
        ("m: {<<: !!int x}\n", 1, "expected a mapping or list of mappings for merging"),
    ]:
        try:
            load_documents(bad)
        except YamlProblem as exc:
            assert (exc.line, message in str(exc)) == (line, True), (bad, exc.line, str(exc))
        else:
            raise AssertionError(f"no problem for {bad!r}")


def test_scalars_keep_the_types_pyyaml_gives_them():
    from controller.manifests.yamlsafe import load_documents

    text = "a: 5\nb: '5'\nc: 5\nd: yes\ne: ~\nf: 1.5\ng: 2001-12-14\nh: !!str 5\ni: \"5\"\n5: x\ntrue: y\n---\na: '5'\nb: 5\n"
    first, second = load_documents(text)
    assert first.data == {"a": 5, "b": "5", "c": 5, "d": True, "e": None, "f": 1.5, "g": "2001-12-14", "h": "5", "i": "5", "5": "x", "true": "y"}
    assert second.data == {"a": "5", "b": 5}


def test_a_syntax_error_anywhere_in_the_file_is_the_problem_reported():
    """As when the whole file was scanned before anything was built: a problem in the data comes second."""
    from controller.manifests.yamlsafe import YamlProblem, load_documents

    for text, line, message in [
        ("a: 1\na: 2\n---\nb: [\n", 5, "YAML syntax error"),
        ("a: !!int x\nb: " + "[" * 70 + "]" * 70 + "\n", 2, "nesting deeper than 64 levels"),
        ("a: 1\na: 2\nb: &x 1\nc: &x 2\n", 4, "YAML syntax error: second occurrence"),
        ("a: 1\na: 2\n", 2, "duplicate key 'a'"),
    ]:
        try:
            load_documents(text)
        except YamlProblem as exc:
            assert (exc.line, message in str(exc)) == (line, True), (text, exc.line, str(exc))
        else:
            raise AssertionError(f"no problem for {text!r}")


def test_a_base_with_placeholders_is_interpolated_under_an_override_without_any(tree):
    tree.environment("dev", "vars: {limit: 7}")
    tree.write("base/a.yaml", alarm("api").replace("threshold: 5", 'threshold: "{{ vars.limit }}"'))
    tree.write("environments/dev/a.yaml", alarm("api").replace("  threshold: 5\n", "").replace("period: 60", "period: 120"))
    spec = load_tree(tree.root, registry()).environments["dev"].by_ident()["MetricAlarm/api"].spec
    assert (spec["threshold"], spec["period"]) == (7.0, 120)


def test_a_broken_base_manifest_refuses_every_environment(tree):
    """base/ is part of every environment: a manifest there that cannot be read, or whose kind is
    unknown, refuses them all (CONTRACT section 7), reported once; loading them without it would
    prune what it describes."""
    from controller.catalog import registry
    from controller.manifests.loader import load_tree

    tree.environment("dev")
    tree.environment("prod")
    tree.write("base/topics.yaml", "apiVersion: lensops.io/v1\nkind: Topik\nmetadata: {name: alerts}\nspec: {}\n")
    tree.write("base/broken.yaml", "apiVersion: lensops.io/v1\nkind: Topic\nmetadata: {name: [\n")
    result = load_tree(tree.root, registry())
    assert result.environments == {}
    outside = [str(p) for p in result.problems[""]]
    assert len(outside) == 2 and any("unknown kind 'Topik' (did you mean Topic?)" in p for p in outside), outside
    assert any(p.startswith("base/broken.yaml:") for p in outside), outside
    for env in ("dev", "prod"):
        (refusal,) = [str(p) for p in result.problems[env]]
        assert refusal == f"base: Environment/{env}: refused: base/, which every environment includes, has 2 problem(s) (reported once, outside any environment)"
