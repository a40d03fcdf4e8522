"""WAFv2 IPSet and WebACL: create, update, drift, prune, idempotency, references and lock tokens."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import ACCOUNT, REGION, second_apply, writes
from controller.aws import ClientFactory
from controller.diff import diff
from controller.errors import RetryableError
from controller.kinds import Context, Desired
from reconcilers.wafv2 import IPSetReconciler, WebACLReconciler

IP_SET = """
apiVersion: lensops.io/v1
kind: IPSet
metadata:
  name: blocked
spec:
  addresses: [{addresses}]
  tags: {{team: security}}
"""

WEB_ACL = """
apiVersion: lensops.io/v1
kind: WebACL
metadata:
  name: edge
spec:
  defaultAction: {{{default}: {{}}}}
  rules:
    - name: block-listed
      priority: 0
      action: {{{action}: {{}}}}
      statement:
        ipSetReferenceStatement: {{arn: "ref:IPSet/blocked"}}
"""

FULL_ACL = """
apiVersion: lensops.io/v1
kind: WebACL
metadata:
  name: edge
spec:
  description: EconLens public API
  rules:
    - name: rate-limit
      priority: 10
      action: {block: {}}
      statement:
        rateBasedStatement:
          limit: 2000
          aggregateKeyType: IP
          scopeDownStatement:
            byteMatchStatement:
              searchString: /api/
              fieldToMatch: {uriPath: {}}
              textTransformations: [{priority: 0, type: LOWERCASE}]
              positionalConstraint: STARTS_WITH
    - name: common
      priority: 20
      overrideAction: {none: {}}
      visibilityConfig: {metricName: common-rules}
      statement:
        managedRuleGroupStatement:
          vendorName: AWS
          name: AWSManagedRulesCommonRuleSet
          excludedRules: [{name: SizeRestrictions_BODY}]
          ruleActionOverrides:
            - name: NoUserAgent_HEADER
              actionToUse: {count: {}}
    - name: bad-inputs
      priority: 30
      overrideAction: {none: {}}
      statement:
        managedRuleGroupStatement: {vendorName: AWS, name: AWSManagedRulesKnownBadInputsRuleSet}
  tags: {team: security}
"""


def _estate(tree: Any, addresses: str = '"203.0.113.0/24", "198.51.100.7/32"', default: str = "allow", action: str = "block") -> None:
    tree.environment("dev", "sync: {prune: true, allowMassPrune: true}")
    tree.write("environments/dev/ipset.yaml", IP_SET.format(addresses=addresses))
    tree.write("environments/dev/acl.yaml", WEB_ACL.format(default=default, action=action))


def _summary(waf: Any, kind: str, name: str, scope: str = "REGIONAL") -> dict[str, Any] | None:
    listed = waf.list_ip_sets(Scope=scope)["IPSets"] if kind == "IPSet" else waf.list_web_acls(Scope=scope)["WebACLs"]
    return next((item for item in listed if item["Name"] == name), None)


def _ip_set(waf: Any, name: str = "blocked") -> dict[str, Any]:
    found = _summary(waf, "IPSet", name)
    assert found is not None
    return waf.get_ip_set(Name=name, Scope="REGIONAL", Id=found["Id"])  # type: ignore[no-any-return]


def _web_acl(waf: Any, name: str = "edge") -> dict[str, Any]:
    found = _summary(waf, "WebACL", name)
    assert found is not None
    return waf.get_web_acl(Name=name, Scope="REGIONAL", Id=found["Id"])  # type: ignore[no-any-return]


def _context(region: str = REGION) -> Context:
    return Context(environment="dev", region=region, account=ACCOUNT, role_arn="", factory=ClientFactory(max_attempts=1))


def test_apply_creates_ip_set_and_web_acl_referencing_it(aws, client, tree, lensops):
    _estate(tree)
    first = lensops("apply", "--repo", str(tree.root))
    assert first.code == 0, first.out + first.err

    waf = client("wafv2")
    ip_set = _ip_set(waf)
    assert sorted(ip_set["IPSet"]["Addresses"]) == ["198.51.100.7/32", "203.0.113.0/24"]
    assert ip_set["IPSet"]["IPAddressVersion"] == "IPV4"
    tags = {t["Key"]: t["Value"] for t in waf.list_tags_for_resource(ResourceARN=ip_set["IPSet"]["ARN"])["TagInfoForResource"]["TagList"]}
    assert tags == {"team": "security", "lensops:environment": "dev", "lensops:id": "IPSet/blocked"}

    acl = _web_acl(waf)["WebACL"]
    rule = acl["Rules"][0]
    assert rule["Statement"] == {"IPSetReferenceStatement": {"ARN": ip_set["IPSet"]["ARN"]}}
    assert rule["VisibilityConfig"] == {"SampledRequestsEnabled": True, "CloudWatchMetricsEnabled": True, "MetricName": "block-listed"}
    assert acl["VisibilityConfig"] == {"SampledRequestsEnabled": True, "CloudWatchMetricsEnabled": True, "MetricName": "edge"}
    assert acl["DefaultAction"] == {"Allow": {}}

    plan = lensops("plan", "--repo", str(tree.root))
    assert plan.code == 0, plan.out + plan.err


def test_second_apply_makes_no_write_call(aws, tree, lensops):
    _estate(tree)
    seen = second_apply(aws, tree, lensops)
    # One listing per scope and kind, one Get and one ListTagsForResource per resource.
    assert seen[("wafv2", "ListIPSets")] == 2 and seen[("wafv2", "ListWebACLs")] == 2
    assert seen[("wafv2", "GetIPSet")] == 1 and seen[("wafv2", "GetWebACL")] == 1
    assert seen[("wafv2", "ListTagsForResource")] == 2


def test_rate_based_rule_and_managed_rule_groups_round_trip(aws, client, tree, lensops):
    tree.environment("dev")
    tree.write("environments/dev/acl.yaml", FULL_ACL)
    first = lensops("apply", "--repo", str(tree.root))
    assert first.code == 0, first.out + first.err

    acl = _web_acl(client("wafv2"))["WebACL"]
    rules = {r["Name"]: r for r in acl["Rules"]}
    assert rules["rate-limit"]["Statement"]["RateBasedStatement"]["Limit"] == 2000
    scope_down = rules["rate-limit"]["Statement"]["RateBasedStatement"]["ScopeDownStatement"]
    assert scope_down["ByteMatchStatement"]["SearchString"] == b"/api/"
    managed = rules["common"]["Statement"]["ManagedRuleGroupStatement"]
    assert managed["ExcludedRules"] == [{"Name": "SizeRestrictions_BODY"}]
    assert managed["RuleActionOverrides"] == [{"Name": "NoUserAgent_HEADER", "ActionToUse": {"Count": {}}}]
    assert rules["common"]["VisibilityConfig"]["MetricName"] == "common-rules"
    assert rules["bad-inputs"]["OverrideAction"] == {"None": {}}

    plan = lensops("plan", "--repo", str(tree.root))
    assert plan.code == 0, plan.out + plan.err
    aws.clear_requests()
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    assert writes(aws.requests()) == {}


def test_changed_manifest_updates_only_that_field(aws, client, tree, lensops):
    _estate(tree)
    assert lensops("apply", "--repo", str(tree.root)).code == 0

    tree.write("environments/dev/ipset.yaml", IP_SET.format(addresses='"203.0.113.0/24", "192.0.2.0/24"'))
    plan = lensops("plan", "--repo", str(tree.root))
    assert plan.code == 2 and "IPSet/blocked" in plan.out and "addresses" in plan.out
    aws.clear_requests()
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    assert writes(aws.requests()) == {("wafv2", "UpdateIPSet"): 1}
    assert sorted(_ip_set(client("wafv2"))["IPSet"]["Addresses"]) == ["192.0.2.0/24", "203.0.113.0/24"]

    tree.write("environments/dev/acl.yaml", WEB_ACL.format(default="allow", action="count"))
    plan = lensops("plan", "--repo", str(tree.root))
    assert plan.code == 2 and "rules.block-listed.action.count: null -> {}" in plan.out
    aws.clear_requests()
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    assert writes(aws.requests()) == {("wafv2", "UpdateWebACL"): 1}
    assert _web_acl(client("wafv2"))["WebACL"]["Rules"][0]["Action"] == {"Count": {}}


def test_out_of_band_change_is_planned_and_reverted(aws, client, tree, lensops):
    _estate(tree)
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    waf = client("wafv2")
    ip_set = _ip_set(waf)
    waf.update_ip_set(
        Name="blocked", Scope="REGIONAL", Id=ip_set["IPSet"]["Id"], Addresses=["10.0.0.0/8"], LockToken=ip_set["LockToken"]
    )
    acl = _web_acl(waf)
    body = acl["WebACL"]
    waf.update_web_acl(
        Name="edge",
        Scope="REGIONAL",
        Id=body["Id"],
        DefaultAction={"Block": {}},
        Rules=body["Rules"],
        VisibilityConfig=body["VisibilityConfig"],
        LockToken=acl["LockToken"],
    )

    plan = lensops("plan", "--repo", str(tree.root))
    assert plan.code == 2
    assert "IPSet/blocked" in plan.out and "WebACL/edge" in plan.out
    assert "defaultAction.block" in plan.out and "drifted" in plan.out

    applied = lensops("apply", "--repo", str(tree.root))
    assert applied.code == 0, applied.out + applied.err
    assert sorted(_ip_set(waf)["IPSet"]["Addresses"]) == ["198.51.100.7/32", "203.0.113.0/24"]
    assert _web_acl(waf)["WebACL"]["DefaultAction"] == {"Allow": {}}
    assert lensops("plan", "--repo", str(tree.root)).code == 0


def test_prune_deletes_web_acl_then_ip_set(aws, client, tree, lensops):
    _estate(tree)
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    waf = client("wafv2")

    # The web ACL first: AWS refuses to delete an IP set a web ACL still uses.
    tree.remove("environments/dev/acl.yaml")
    aws.clear_requests()
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    assert writes(aws.requests()) == {("wafv2", "DeleteWebACL"): 1}
    assert _summary(waf, "WebACL", "edge") is None

    tree.remove("environments/dev/ipset.yaml")
    aws.clear_requests()
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    assert writes(aws.requests()) == {("wafv2", "DeleteIPSet"): 1}
    assert _summary(waf, "IPSet", "blocked") is None


def test_cloudfront_scope_goes_to_us_east_1(aws, client, tree, lensops):
    tree.write(
        "environments/dev/environment.yaml",
        "apiVersion: lensops.io/v1\nkind: Environment\nmetadata:\n  name: dev\nspec:\n  region: eu-west-1\n",
    )
    tree.write("environments/dev/ipset.yaml", IP_SET.format(addresses='"203.0.113.0/24"') + "  scope: CLOUDFRONT\n")
    first = lensops("apply", "--repo", str(tree.root))
    assert first.code == 0, first.out + first.err
    assert _summary(client("wafv2"), "IPSet", "blocked", scope="CLOUDFRONT") is not None
    assert lensops("plan", "--repo", str(tree.root)).code == 0
    assert IPSetReconciler(_context("eu-west-1"))._client("CLOUDFRONT").meta.region_name == "us-east-1"


def _observed_acl(tree: Any, lensops: Any) -> tuple[WebACLReconciler, Desired, Any]:
    _estate(tree)
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    reconciler = WebACLReconciler(_context())
    live = reconciler.observe(["edge"])["edge"]
    arn = live.state["rules"]["block-listed"]["statement"]["ipSetReferenceStatement"]["arn"]
    spec = {
        "name": "edge",
        "scope": "REGIONAL",
        "defaultAction": {"block": {}},
        "rules": [{"name": "block-listed", "priority": 0, "action": {"block": {}}, "statement": {"ipSetReferenceStatement": {"arn": arn}}}],
    }
    desired = Desired("WebACL", "edge", "edge", spec, dict(live.state["tags"]))
    return reconciler, desired, live


def _change_out_of_band(waf: Any, default_action: str, description: str | None = None) -> None:
    acl = _web_acl(waf)
    body = acl["WebACL"]
    waf.update_web_acl(
        Name="edge",
        Scope="REGIONAL",
        Id=body["Id"],
        DefaultAction={default_action: {}},
        Rules=body["Rules"],
        VisibilityConfig=body["VisibilityConfig"],
        LockToken=acl["LockToken"],
        **({"Description": description} if description else {}),
    )


def test_stale_lock_token_is_read_again_once_and_the_update_succeeds(aws, client, tree, lensops):
    reconciler, desired, live = _observed_acl(tree, lensops)
    state = reconciler.desired_state(desired)
    changes = diff(state, reconciler.compare_view(live, state))
    assert [c.path for c in changes] == ["defaultAction.allow", "defaultAction.block"]
    _change_out_of_band(client("wafv2"), "Allow", "changed by hand")  # the observed LockToken is now stale

    aws.clear_requests()
    result = reconciler.update(desired, state, live, changes)
    seen = aws.requests()
    assert seen[("wafv2", "GetWebACL")] == 1
    assert seen[("wafv2", "UpdateWebACL")] == 2
    acl = _web_acl(client("wafv2"))
    assert acl["WebACL"]["DefaultAction"] == {"Block": {}}
    assert result.extra["lockToken"] == acl["LockToken"]


def test_stale_lock_token_with_nothing_left_to_change_writes_nothing_more(aws, client, tree, lensops):
    reconciler, desired, live = _observed_acl(tree, lensops)
    state = reconciler.desired_state(desired)
    changes = diff(state, reconciler.compare_view(live, state))
    _change_out_of_band(client("wafv2"), "Block")  # someone made the very change meanwhile

    aws.clear_requests()
    reconciler.update(desired, state, live, changes)
    assert aws.requests()[("wafv2", "GetWebACL")] == 1
    assert writes(aws.requests()) == {("wafv2", "UpdateWebACL"): 1}


def test_web_acl_made_by_someone_else_meanwhile_is_retryable(aws, client, tree, lensops):
    reconciler, desired, _ = _observed_acl(tree, lensops)
    with pytest.raises(RetryableError, match="appeared"):
        reconciler.create(desired, reconciler.desired_state(desired))


@pytest.mark.xfail(reason="moto accepts a second IP set of the same name and scope (AWS: WAFDuplicateItemException)", strict=True)
def test_ip_set_made_by_someone_else_meanwhile_is_retryable(aws, client):
    client("wafv2").create_ip_set(Name="blocked", Scope="REGIONAL", IPAddressVersion="IPV4", Addresses=[])
    reconciler = IPSetReconciler(_context())
    spec = {"name": "blocked", "scope": "REGIONAL", "ipAddressVersion": "IPV4", "addresses": ["192.0.2.1/32"]}
    desired = Desired("IPSet", "blocked", "blocked", spec, {})
    with pytest.raises(RetryableError, match="appeared"):
        reconciler.create(desired, reconciler.desired_state(desired))


@pytest.mark.xfail(reason="moto's UpdateWebACL keeps the old rules when Rules is empty (AWS removes them)", strict=True)
def test_removing_every_rule_empties_the_web_acl(aws, client, tree, lensops):
    _estate(tree)
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    tree.write("environments/dev/acl.yaml", WEB_ACL.format(default="allow", action="block").split("  rules:")[0])
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    assert _web_acl(client("wafv2"))["WebACL"]["Rules"] == []
