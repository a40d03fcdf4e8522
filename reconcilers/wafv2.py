"""WAFv2: IPSet and WebACL (full rule structure in lowerCamelCase).

Call budget per pass, for N declared or recorded resources of a kind: one
``ListIPSets`` / ``ListWebACLs`` per scope (REGIONAL in the environment's
region, CLOUDFRONT in us-east-1; paged on NextMarker, boto3 has no paginator
for them), then per existing resource one ``GetIPSet`` / ``GetWebACL`` (which
gives the LockToken, kept in ``Live.extra``) and one ``ListTagsForResource``
(the tagging API does not list WAFv2 resources in moto, nor CLOUDFRONT-scope
ones in AWS): 2 + 2N reads. Within one engine's life (the daemon's resyncs),
a resource whose listed LockToken is the one it was read under comes from the
read cache (``controller.kinds.ReadCache``): 2 + N.

Writes carry the LockToken read by observe. When someone changed the resource
since (``WAFOptimisticLockException``), ``update`` reads it once more,
re-diffs, and writes once more only if the change still stands: the one
bounded re-read lensops allows inside a reconciler.

Rules are converted between the manifest's lowerCamelCase and the API with
botocore's wafv2 shapes, on both sides, so that the desired and the observed
web ACL have the same canonical form: rules sorted by priority, unset fields
dropped, ``visibilityConfig`` defaulted (metrics on, ``metricName`` the ACL's
or the rule's name) and the defaults AWS documents filled in. Rules are keyed
by name in that form, so that a plan names the rule and field that differ.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import botocore.exceptions
from pydantic import Field, field_validator, model_validator

from controller.apishape import from_api, map_to_tags, shape, tags_to_map, to_api, unknown_fields
from controller.diff import Change, diff
from controller.errors import PermanentError, RetryableError, error_code
from controller.kinds import Desired, Draft, Live, Reconciler
from controller.manifests.types import Spec
from reconcilers.tags import TagApi, only_tags_changed

Scope = Literal["REGIONAL", "CLOUDFRONT"]
SCOPES: tuple[str, ...] = ("REGIONAL", "CLOUDFRONT")

ANNOTATION_IGNORE = "lensops.io/ignore-fields"

# AWS answers a duplicate name with WAFDuplicateItemException, moto with WafV2DuplicateItem.
_DUPLICATE = frozenset({"WAFDuplicateItemException", "WafV2DuplicateItem"})

# Documented defaults AWS reports back when a rule leaves them out, keyed by
# the structure that holds them; filled in on both sides of the diff.
_STATEMENT_DEFAULTS: dict[str, dict[str, Any]] = {
    "rateBasedStatement": {"evaluationWindowSec": 300},
    "body": {"oversizeHandling": "CONTINUE"},
    "jsonBody": {"oversizeHandling": "CONTINUE"},
}

TAGS = TagApi(arn="ResourceARN")
"""How wafv2 spells its tag writes."""


class IPSetSpec(Spec):
    """A WAFv2 IP set."""

    name: str | None = None
    scope: Scope = "REGIONAL"
    ipAddressVersion: Literal["IPV4", "IPV6"] = "IPV4"
    addresses: list[str] = Field(default_factory=list)
    description: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)


class VisibilityConfig(Spec):
    sampledRequestsEnabled: bool = True
    cloudWatchMetricsEnabled: bool = True
    metricName: str | None = None


def _check_shape(value: Any, shape_name: str) -> Any:
    unknown = unknown_fields(value, shape("wafv2", shape_name))
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)} in {shape_name}")
    return value


class WebACLRule(Spec):
    name: str
    priority: int = Field(ge=0)
    statement: dict[str, Any]
    action: dict[str, Any] | None = None
    overrideAction: dict[str, Any] | None = None
    visibilityConfig: VisibilityConfig | None = None
    ruleLabels: list[dict[str, str]] = Field(default_factory=list)
    captchaConfig: dict[str, Any] | None = None
    challengeConfig: dict[str, Any] | None = None

    @field_validator("statement")
    @classmethod
    def _statement(cls, value: dict[str, Any]) -> dict[str, Any]:
        return dict(_check_shape(value, "Statement"))

    @field_validator("action")
    @classmethod
    def _action(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else _check_shape(value, "RuleAction")

    @field_validator("overrideAction")
    @classmethod
    def _override(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else _check_shape(value, "OverrideAction")


class WebACLSpec(Spec):
    """A WAFv2 web ACL; ``visibilityConfig`` defaults to metrics named after the ACL."""

    name: str | None = None
    scope: Scope = "REGIONAL"
    defaultAction: dict[str, Any] = Field(default_factory=lambda: {"allow": {}})
    description: str | None = None
    rules: list[WebACLRule] = Field(default_factory=list)
    visibilityConfig: VisibilityConfig | None = None
    customResponseBodies: dict[str, dict[str, str]] = Field(default_factory=dict)
    tokenDomains: list[str] = Field(default_factory=list)
    tags: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _unique_rule_names(self) -> WebACLSpec:
        names = [r.name for r in self.rules]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"rule names must be unique in a web ACL: {', '.join(repeated)}")
        return self

    @field_validator("defaultAction")
    @classmethod
    def _default_action(cls, value: dict[str, Any]) -> dict[str, Any]:
        return dict(_check_shape(value, "DefaultAction"))


def _clean(value: Any) -> Any:
    """``value`` without unset fields (None, empty lists), blobs as text; empty maps stay (``{"block": {}}``)."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if v is not None and v != []}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def _fill_defaults(value: Any) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, dict):
                for field, default in _STATEMENT_DEFAULTS.get(key, {}).items():
                    item.setdefault(field, default)
            _fill_defaults(item)
    elif isinstance(value, list):
        for item in value:
            _fill_defaults(item)


def _visibility(value: dict[str, Any] | None, metric_name: str) -> dict[str, Any]:
    vc = value or {}
    return {
        "sampledRequestsEnabled": True if vc.get("sampledRequestsEnabled") is None else vc["sampledRequestsEnabled"],
        "cloudWatchMetricsEnabled": True if vc.get("cloudWatchMetricsEnabled") is None else vc["cloudWatchMetricsEnabled"],
        "metricName": vc.get("metricName") or metric_name,
    }


def _rules(rules: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Rules keyed by name (unique in a web ACL), so that a diff names the rule that differs."""
    out: dict[str, dict[str, Any]] = {}
    for value in sorted(rules, key=lambda r: (r["priority"], r["name"])):
        rule: dict[str, Any] = _clean(value)
        name = rule.pop("name")
        rule["visibilityConfig"] = _visibility(rule.get("visibilityConfig"), name)
        _fill_defaults(rule.get("statement"))
        out[name] = rule
    return out


def _web_acl_state(item: dict[str, Any], scope: str, physical: str) -> dict[str, Any]:
    """The canonical web ACL, from a spec or from GetWebACL, both in the API's lowerCamelCase."""
    return {
        "scope": scope,
        "description": item.get("description") or "",
        "defaultAction": _clean(item.get("defaultAction") or {"allow": {}}),
        "rules": _rules(item.get("rules") or []),
        "visibilityConfig": _visibility(item.get("visibilityConfig"), physical),
        "customResponseBodies": _clean(item.get("customResponseBodies") or {}),
        "tokenDomains": sorted(set(item.get("tokenDomains") or [])),
    }


def _ip_set_state(item: dict[str, Any], scope: str) -> dict[str, Any]:
    return {
        "scope": scope,
        "ipAddressVersion": item["ipAddressVersion"],
        "addresses": sorted(set(item.get("addresses") or [])),
        "description": item.get("description") or "",
    }


def _ignored(desired: Desired) -> frozenset[str]:
    """The fields the manifest's ``lensops.io/ignore-fields`` annotation keeps out of the diff."""
    raw = desired.annotations.get(ANNOTATION_IGNORE, "")
    return frozenset(f.strip() for f in raw.split(",") if f.strip())


class _WafReconciler(Reconciler):
    """What IP sets and web ACLs share: per-scope listings, lock tokens, tags, delete."""

    service = "wafv2"
    name_field = "name"
    entity: ClassVar[str]
    """The API's noun: ``IPSet`` or ``WebACL``."""
    method_noun: ClassVar[str]
    """The same in boto3's method names: ``ip_set`` or ``web_acl``."""
    list_key: ClassVar[str]
    immutable: ClassVar[tuple[str, ...]]

    def _client(self, scope: str) -> Any:
        if scope == "CLOUDFRONT":
            # CloudFront-scope WAF resources are managed through us-east-1 only,
            # whatever the environment's region.
            return self.ctx.factory.client("wafv2", "us-east-1", self.ctx.role_arn, self.ctx.account)
        return self.ctx.client("wafv2")

    def _call(self, client: Any, verb: str, **params: Any) -> Any:
        """``client.<verb>_ip_set(...)`` or ``client.<verb>_web_acl(...)`` (plural for ``list``)."""
        plural = "s" if verb == "list" else ""
        return getattr(client, f"{verb}_{self.method_noun}{plural}")(**params)

    def _listing(self, scope: str) -> dict[str, dict[str, Any]]:
        def fetch() -> dict[str, dict[str, Any]]:
            client = self._client(scope)
            found: dict[str, dict[str, Any]] = {}
            params: dict[str, Any] = {"Scope": scope, "Limit": 100}
            while True:
                page = self._call(client, "list", **params)
                items = page.get(self.list_key, [])
                for item in items:
                    found.setdefault(item["Name"], item)
                if not page.get("NextMarker") or not items:
                    return found
                params["NextMarker"] = page["NextMarker"]

        return self.ctx.once(f"wafv2:{self.entity}:{scope}", fetch)

    def _get(self, scope: str, name: str, ident: str) -> tuple[dict[str, Any], str, str]:
        """(canonical state without tags, ARN, LockToken) of one resource."""
        got = self._call(self._client(scope), "get", Name=name, Scope=scope, Id=ident)
        out_shape = shape("wafv2", self.entity)
        item = from_api(got[self.entity], out_shape)
        return self._canonical(item, scope, name), got[self.entity]["ARN"], got["LockToken"]

    def _canonical(self, item: dict[str, Any], scope: str, physical: str) -> dict[str, Any]:
        raise NotImplementedError

    def _tags(self, scope: str, arn: str) -> dict[str, str]:
        client = self._client(scope)
        tags: dict[str, str] = {}
        params: dict[str, Any] = {"ResourceARN": arn}
        while True:
            page = client.list_tags_for_resource(**params)
            listed = (page.get("TagInfoForResource") or {}).get("TagList") or []
            tags.update(tags_to_map(listed))
            if not page.get("NextMarker") or not listed:
                return tags
            params["NextMarker"] = page["NextMarker"]

    def _read(self, scope: str, name: str, ident: str, marker: str | None) -> Live:
        """One resource with its tags; its body comes from the read cache while the listing's LockToken is the same."""
        key = (self.ctx.account, self.ctx.region, scope, self.entity, ident)
        state, arn, token = self.ctx.reads.read(key, marker, lambda: self._get(scope, name, ident))
        tags = self._tags(scope, arn)
        state["tags"] = tags
        return Live.tagged(
            name,
            state,
            arn=arn,
            attrs={"arn": arn, "id": ident},
            tags=tags,
            extra={"scope": scope, "id": ident, "lockToken": token},
        )

    def observe(self, physicals: list[str]) -> dict[str, Live]:
        if not physicals:
            return {}
        # observe knows names only, not scopes: both scopes are listed, and a
        # name found in both keeps every variant for compare_view and update.
        listings = dict(zip(SCOPES, self.ctx.map(self._listing, SCOPES), strict=True))
        wanted = [(scope, name, listing[name]) for name in physicals for scope, listing in listings.items() if name in listing]
        reads = self.ctx.map(lambda item: self._read(item[0], item[1], item[2]["Id"], item[2].get("LockToken")), wanted)
        by_name: dict[str, dict[str, Live]] = {}
        for (scope, name, _), live in zip(wanted, reads, strict=True):
            by_name.setdefault(name, {})[scope] = live
        found: dict[str, Live] = {}
        for name, variants in by_name.items():
            ours = [v for v in variants.values() if v.owner_env == self.ctx.environment]
            primary = ours[0] if ours else next(iter(variants.values()))
            primary.extra["scopes"] = variants
            found[name] = primary
        return found

    def discover(self, prefix: str) -> list[str]:
        """Every resource of the region's scope (CloudFront's too in us-east-1, where it lives),
        from the listings ``observe`` reads."""
        scopes = [scope for scope in SCOPES if scope == "REGIONAL" or self.ctx.region == "us-east-1"]
        names = {name for listing in self.ctx.map(self._listing, scopes) for name in listing}
        return sorted(name for name in names if name.startswith(prefix))

    def compare_view(self, live: Live, state: dict[str, Any], applied: dict[str, Any] | None = None) -> dict[str, Any]:
        same_scope = live.extra.get("scopes", {}).get(state.get("scope"))
        return (same_scope or live).state

    def _create(self, client: Any, desired: Desired, state: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def _put(self, client: Any, desired: Desired, state: dict[str, Any], ident: str, token: str) -> str:
        """Replace the resource's mutable part; returns the next LockToken."""
        raise NotImplementedError

    def create(self, desired: Desired, state: dict[str, Any]) -> Live:
        scope = state["scope"]
        try:
            summary = self._create(self._client(scope), desired, state)
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) in _DUPLICATE:
                raise RetryableError(
                    f"a {self.entity} named {desired.physical} appeared in scope {scope} after this pass "
                    "observed it; the next pass will see it"
                ) from exc
            raise
        arn, ident = summary["ARN"], summary["Id"]
        return Live(
            desired.physical,
            state,
            arn=arn,
            attrs={"arn": arn, "id": ident},
            extra={"scope": scope, "id": ident, "lockToken": summary.get("LockToken", "")},
        )

    def update(self, desired: Desired, state: dict[str, Any], live: Live, changes: list[Change]) -> Live:
        for change in changes:
            if change.path in self.immutable:
                raise PermanentError(
                    f"{change.path} of {self.entity} {live.physical} cannot change in place "
                    f"({change.old} -> {change.new}): give it a new name, or replace it by hand"
                )
        target = live.extra.get("scopes", {}).get(state["scope"], live)
        scope, ident = target.extra["scope"], target.extra["id"]
        token = target.extra["lockToken"]
        client = self._client(scope)
        if not only_tags_changed(changes):
            token = self._put_locked(client, desired, state, ident, token)
        TAGS.write(client, target.arn, changes)
        return Live(target.physical, state, arn=target.arn, attrs=target.attrs, extra={"scope": scope, "id": ident, "lockToken": token})

    def _put_locked(self, client: Any, desired: Desired, state: dict[str, Any], ident: str, token: str) -> str:
        try:
            return self._put(client, desired, state, ident, token)
        except client.exceptions.WAFOptimisticLockException:
            # Changed since observe: read again, and write once more only if
            # the change still stands. A second stale token is the engine's to retry.
            fresh, _, token = self._get(state["scope"], desired.physical, ident)
            body = {k: v for k, v in state.items() if k != "tags"}
            if not diff(body, fresh, _ignored(desired)):
                return token
            return self._put(client, desired, state, ident, token)

    def delete(self, live: Live) -> None:
        scope = live.extra["scope"]
        self._call(self._client(scope), "delete", Name=live.physical, Scope=scope, Id=live.extra["id"], LockToken=live.extra["lockToken"])


class IPSetReconciler(_WafReconciler):
    """A WAFv2 IP set; addresses are compared as a set."""

    kind = "IPSet"
    spec_model = IPSetSpec
    entity = "IPSet"
    method_noun = "ip_set"
    list_key = "IPSets"
    immutable = ("scope", "ipAddressVersion")
    iam_read = ("wafv2:ListIPSets", "wafv2:GetIPSet", "wafv2:ListTagsForResource")
    iam_write = ("wafv2:CreateIPSet", "wafv2:UpdateIPSet", "wafv2:DeleteIPSet", "wafv2:TagResource", "wafv2:UntagResource")

    example = """\
apiVersion: lensops.io/v1
kind: IPSet
metadata:
  name: blocked
spec:
  addresses: [192.0.2.0/24]
"""

    def _canonical(self, item: dict[str, Any], scope: str, physical: str) -> dict[str, Any]:
        return _ip_set_state(item, scope)

    def desired_state(self, desired: Desired) -> dict[str, Any]:
        state = _ip_set_state(desired.spec, desired.spec["scope"])
        state["tags"] = dict(desired.tags)
        return state

    def _create(self, client: Any, desired: Desired, state: dict[str, Any]) -> dict[str, Any]:
        params: dict[str, Any] = {
            "Name": desired.physical,
            "Scope": state["scope"],
            "IPAddressVersion": state["ipAddressVersion"],
            "Addresses": state["addresses"],
        }
        if state["description"]:
            params["Description"] = state["description"]
        if state["tags"]:
            params["Tags"] = map_to_tags(state["tags"])
        return client.create_ip_set(**params)["Summary"]  # type: ignore[no-any-return]

    def _put(self, client: Any, desired: Desired, state: dict[str, Any], ident: str, token: str) -> str:
        params: dict[str, Any] = {
            "Name": desired.physical,
            "Scope": state["scope"],
            "Id": ident,
            "Addresses": state["addresses"],
            "LockToken": token,
        }
        if state["description"]:
            params["Description"] = state["description"]
        return str(client.update_ip_set(**params)["NextLockToken"])


class WebACLReconciler(_WafReconciler):
    """A WAFv2 web ACL with its rules (rate-based, managed rule groups, IP set references...)."""

    kind = "WebACL"
    spec_model = WebACLSpec
    entity = "WebACL"
    method_noun = "web_acl"
    list_key = "WebACLs"
    immutable = ("scope",)
    iam_read = ("wafv2:ListWebACLs", "wafv2:GetWebACL", "wafv2:ListTagsForResource")
    iam_write = ("wafv2:CreateWebACL", "wafv2:UpdateWebACL", "wafv2:DeleteWebACL", "wafv2:TagResource", "wafv2:UntagResource")

    example = """\
apiVersion: lensops.io/v1
kind: WebACL
metadata:
  name: api
spec:
  rules:
    - name: rate-limit
      priority: 0
      statement:
        rateBasedStatement: {limit: 2000, aggregateKeyType: IP}
      action: {block: {}}
"""
    notes = {
        "defaultAction": "WAFv2 DefaultAction in lowerCamelCase; checked against the API's shape.",
        "rules[].statement": "WAFv2 Statement in lowerCamelCase; checked against the API's shape.",
        "rules[].action": "WAFv2 RuleAction (`block: {}`, `allow: {}`, `count: {}` ...).",
        "visibilityConfig": "Defaults to sampled requests and CloudWatch metrics named after the ACL.",
    }

    def _canonical(self, item: dict[str, Any], scope: str, physical: str) -> dict[str, Any]:
        return _web_acl_state(item, scope, physical)

    def desired_state(self, desired: Desired) -> dict[str, Any]:
        acl_shape = shape("wafv2", "WebACL")
        # Through the API shape and back, so that the manifest's field names
        # come out exactly as GetWebACL's do after from_api.
        item = from_api(to_api(desired.spec, acl_shape), acl_shape)
        state = _web_acl_state(item, desired.spec["scope"], desired.physical)
        state["tags"] = dict(desired.tags)
        return state

    def manifest_spec(self, live: Live) -> Draft:
        """Rules as a list again; visibility configs left out where they are the defaults."""
        draft = super().manifest_spec(live)
        rules = []
        for name, rule in live.state.get("rules", {}).items():
            item = {"name": name, **rule}
            if item.get("visibilityConfig") == _visibility(None, name):
                del item["visibilityConfig"]
            rules.append(item)
        draft.spec["rules"] = rules
        if draft.spec.get("visibilityConfig") == _visibility(None, live.physical):
            del draft.spec["visibilityConfig"]
        return draft

    def _body(self, state: dict[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "defaultAction": state["defaultAction"],
            "rules": [{"name": name, **rule} for name, rule in state["rules"].items()],
            "visibilityConfig": state["visibilityConfig"],
        }
        for key in ("description", "customResponseBodies", "tokenDomains"):
            if state[key]:
                body[key] = state[key]
        return to_api(body, shape("wafv2", "WebACL"))  # type: ignore[no-any-return]

    def _create(self, client: Any, desired: Desired, state: dict[str, Any]) -> dict[str, Any]:
        params: dict[str, Any] = {"Name": desired.physical, "Scope": state["scope"], **self._body(state)}
        if state["tags"]:
            params["Tags"] = map_to_tags(state["tags"])
        return client.create_web_acl(**params)["Summary"]  # type: ignore[no-any-return]

    def _put(self, client: Any, desired: Desired, state: dict[str, Any], ident: str, token: str) -> str:
        answer = client.update_web_acl(Name=desired.physical, Scope=state["scope"], Id=ident, LockToken=token, **self._body(state))
        return str(answer["NextLockToken"])
