"""Loading: overlays from base/, interpolation, references and the dependency order."""

from __future__ import annotations

from controller.manifests.loader import load_tree

from conftest import alarm


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
    result = load_tree(tree.root)
    assert result.ok, result.all_problems
    dev = result.environments["dev"].by_ident()["Topic/alerts"].spec
    prod = result.environments["prod"].by_ident()["Topic/alerts"].spec
    assert dev["attributes"] == {"DisplayName": "Alerts", "KmsMasterKeyId": "alias/aws/sns"}
    assert prod["attributes"] == {"DisplayName": "Prod alerts", "KmsMasterKeyId": "alias/aws/sns"}
    assert prod["subscriptions"] == [{"protocol": "email", "endpoint": "oncall@example.com"}]


def test_interpolation_keeps_types_and_fills_strings(tree):
    tree.environment("dev", "vars: {limit: 7}")
    tree.write("environments/dev/a.yaml", alarm("api", extra='alarmDescription: "{{ env.name }} in {{ env.region }} above {{ vars.limit }}"').replace("threshold: 5", 'threshold: "{{ vars.limit }}"'))
    spec = load_tree(tree.root).environments["dev"].by_ident()["MetricAlarm/api"].spec
    assert spec["threshold"] == 7.0
    assert spec["alarmDescription"] == "dev in us-east-1 above 7"


def test_references_order_resources(tree):
    tree.environment("dev")
    tree.write("environments/dev/a.yaml", alarm("api", extra="alarmActions: [ref:Topic/alerts]"))
    tree.write("environments/dev/b.yaml", "apiVersion: lensops.io/v1\nkind: Topic\nmetadata: {name: alerts}\nspec: {}\n")
    order = [r.ident for r in load_tree(tree.root).environments["dev"].resources]
    assert order == ["Topic/alerts", "MetricAlarm/api"]


def test_invalid_environment_does_not_stop_the_others(tree):
    tree.environment("dev")
    tree.environment("prod")
    tree.write("environments/dev/a.yaml", alarm("api"))
    tree.write("environments/prod/a.yaml", alarm("api").replace("period: 60", "period: -1"))
    result = load_tree(tree.root)
    assert set(result.environments) == {"dev"}
    assert [p.ident for p in result.problems["prod"]] == ["MetricAlarm/api"]
