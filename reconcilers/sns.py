"""SNS: Topic (attributes, subscriptions, tags).

Per pass one ``ListTopics`` listing and one ``ListSubscriptions`` listing
serve every topic; attributes need one ``GetTopicAttributes`` per existing
topic (SNS has no batch read), tags from one ``GetResources`` per hundred
topics: every tag a topic has, lensops's or its own (an adopted topic's ``Team``).
"""

from __future__ import annotations

import functools
import json
from typing import Any

from pydantic import Field

from controller.apishape import map_to_tags
from controller.diff import Change
from controller.kinds import Desired, Draft, Live, Reconciler, with_own_tags
from controller.manifests.types import Spec
from reconcilers.tags import TagApi, chunks, tags_of
from reconcilers.listing import Listing

_READ_ONLY_ATTRIBUTES = {
    "TopicArn",
    "Owner",
    "SubscriptionsPending",
    "SubscriptionsConfirmed",
    "SubscriptionsDeleted",
    "EffectiveDeliveryPolicy",
}

# What a new topic's attributes are when CreateTopic sets none: an imported topic leaves them out.
_DEFAULT_ATTRIBUTES: dict[str, Any] = {
    "SignatureVersion": "1",
    "TracingConfig": "PassThrough",
    "FifoTopic": "false",
    "ContentBasedDeduplication": "false",
}


def _default_policy(value: Any) -> bool:
    """The access policy SNS gives a new topic (its one statement is ``__default_statement_ID``)."""
    statements = value.get("Statement") if isinstance(value, dict) else None
    return isinstance(statements, list) and len(statements) == 1 and statements[0].get("Sid") == "__default_statement_ID"


TAGS = TagApi()
"""How sns spells its tag writes."""

TOPICS = Listing("sns", "list_topics", "Topics", "TopicArn")


class Subscription(Spec):
    protocol: str
    endpoint: str


class TopicSpec(Spec):
    """CreateTopic parameters plus the topic's subscriptions.

    JSON attributes (``Policy``, ``DeliveryPolicy``, ...) may be written as maps;
    they are compared as data, never as text.
    """

    name: str | None = None
    attributes: dict[str, str | dict[str, Any]] = Field(default_factory=dict)
    subscriptions: list[Subscription] = Field(default_factory=list)
    tags: dict[str, str] = Field(default_factory=dict)


def _attribute_value(value: Any) -> Any:
    """An attribute as data: JSON documents parsed, anything else as a string."""
    if isinstance(value, (dict, list)):
        return value
    text = str(value)
    if text.startswith(("{", "[")):
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def _attribute_text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":")) if isinstance(value, (dict, list)) else str(value)


def _subscription_key(item: dict[str, str]) -> tuple[str, str]:
    return (item["protocol"], item["endpoint"])


class TopicReconciler(Reconciler):
    """An SNS topic with its attributes, subscriptions and tags."""

    kind = "Topic"
    spec_model = TopicSpec
    name_field = "name"
    service = "sns"
    iam_read = ("sns:ListTopics", "sns:GetTopicAttributes", "sns:ListSubscriptions", "tag:GetResources")
    iam_write = (
        "sns:CreateTopic",
        "sns:DeleteTopic",
        "sns:SetTopicAttributes",
        "sns:Subscribe",
        "sns:Unsubscribe",
        "sns:TagResource",
        "sns:UntagResource",
    )

    example = """\
apiVersion: lensops.io/v1
kind: Topic
metadata:
  name: alerts
spec:
  subscriptions:
    - {protocol: email, endpoint: oncall@example.com}
"""
    notes = {
        "attributes": "Only the attributes named are compared. JSON attributes (`Policy`, `DeliveryPolicy`) may be written as maps.",
    }

    def arn(self, physical: str) -> str:
        return f"arn:aws:sns:{self.ctx.region}:{self.ctx.account}:{physical}"

    def _existing_topics(self) -> set[str]:
        return set(TOPICS.read(self.ctx))

    def _subscriptions(self) -> dict[str, list[dict[str, str]]]:
        def fetch() -> dict[str, list[dict[str, str]]]:
            client = self.ctx.client("sns")
            by_topic: dict[str, list[dict[str, str]]] = {}
            for page in client.get_paginator("list_subscriptions").paginate():
                for sub in page.get("Subscriptions", []):
                    by_topic.setdefault(sub["TopicArn"], []).append(
                        {"protocol": sub["Protocol"], "endpoint": sub["Endpoint"], "arn": sub["SubscriptionArn"]}
                    )
            return by_topic

        return self.ctx.once("sns:subscriptions", fetch)

    @staticmethod
    def _attributes(client: Any, arn: str) -> dict[str, str]:
        return dict(client.get_topic_attributes(TopicArn=arn).get("Attributes", {}))

    def observe(self, physicals: list[str]) -> dict[str, Live]:
        if not physicals:
            return {}
        existing = self._existing_topics()
        wanted = {self.arn(p): p for p in physicals}
        present = [arn for arn in wanted if arn in existing]
        if not present:
            return {}
        client = self.ctx.client("sns")
        # The two listings and every topic's attributes, all at once (the reads are independent).
        # Every topic's own tags, lensops's or not (an adopted topic has its own): 100 ARNs a call.
        batches = chunks(sorted(present), 100)
        answers: list[Any] = self.ctx.gather(
            [self._subscriptions]
            + [functools.partial(tags_of, self.ctx, batch) for batch in batches]
            + [functools.partial(self._attributes, client, arn) for arn in present]
        )
        subscriptions: dict[str, list[dict[str, str]]] = answers[0]
        tags: dict[str, dict[str, str]] = {}
        for batch_tags in answers[1 : 1 + len(batches)]:
            tags.update(batch_tags)
        found: dict[str, Live] = {}
        for arn, attributes in zip(present, answers[1 + len(batches) :], strict=True):
            subs = subscriptions.get(arn, [])
            owned = tags.get(arn) or {}
            state = {
                "attributes": {k: _attribute_value(v) for k, v in attributes.items() if k not in _READ_ONLY_ATTRIBUTES},
                "subscriptions": sorted(
                    ({"protocol": s["protocol"], "endpoint": s["endpoint"]} for s in subs), key=_subscription_key
                ),
                "tags": owned,
            }
            found[wanted[arn]] = Live.tagged(
                wanted[arn],
                state,
                arn=arn,
                attrs={"arn": arn},
                tags=owned,
                extra={"subscriptions": subs},
            )
        return found

    def discover(self, prefix: str) -> list[str]:
        """Every topic, from the pass's one ``ListTopics`` listing."""
        names = (arn.rsplit(":", 1)[1] for arn in self._existing_topics())
        return sorted(name for name in names if name.startswith(prefix))

    def manifest_spec(self, live: Live) -> Draft:
        """The attributes that differ from a new topic's (only those named are compared), the
        subscriptions confirmed or pending, and the topic's own tags."""
        attributes = {
            k: v
            for k, v in sorted(live.state.get("attributes", {}).items())
            if v not in ("", {}, []) and _DEFAULT_ATTRIBUTES.get(k) != v and not (k == "Policy" and _default_policy(v))
        }
        spec: dict[str, Any] = {}
        if attributes:
            spec["attributes"] = attributes
        if live.state.get("subscriptions"):
            spec["subscriptions"] = live.state["subscriptions"]
        return Draft(with_own_tags(spec, live))

    def desired_state(self, desired: Desired) -> dict[str, Any]:
        spec = desired.spec
        subs = {(s["protocol"], s["endpoint"]) for s in spec.get("subscriptions", [])}
        return {
            "attributes": {k: _attribute_value(v) for k, v in (spec.get("attributes") or {}).items()},
            "subscriptions": [{"protocol": p, "endpoint": e} for p, e in sorted(subs)],
            "tags": dict(desired.tags),
        }

    def compare_view(self, live: Live, state: dict[str, Any], applied: dict[str, Any] | None = None) -> dict[str, Any]:
        view = dict(live.state)
        wanted = state.get("attributes", {})
        view["attributes"] = {k: v for k, v in live.state.get("attributes", {}).items() if k in wanted}
        return view

    def create(self, desired: Desired, state: dict[str, Any]) -> Live:
        params: dict[str, Any] = {"Name": desired.physical}
        if state["attributes"]:
            params["Attributes"] = {k: _attribute_text(v) for k, v in state["attributes"].items()}
        if state["tags"]:
            params["Tags"] = map_to_tags(state["tags"])
        arn = self.ctx.client("sns").create_topic(**params)["TopicArn"]
        self._subscribe(arn, state["subscriptions"], [])
        return Live(desired.physical, state, arn=arn, attrs={"arn": arn})

    def update(self, desired: Desired, state: dict[str, Any], live: Live, changes: list[Change]) -> Live:
        client = self.ctx.client("sns")
        changed = {c.path.split(".")[1] for c in changes if c.path.startswith("attributes.")}
        for name in sorted(changed):
            value = state["attributes"].get(name, "")
            client.set_topic_attributes(TopicArn=live.arn, AttributeName=name, AttributeValue=_attribute_text(value))
        if any(c.path == "subscriptions" for c in changes):
            self._subscribe(live.arn, state["subscriptions"], live.extra.get("subscriptions", []))
        TAGS.write(client, live.arn, changes)
        return Live(live.physical, state, arn=live.arn, attrs={"arn": live.arn})

    def _subscribe(self, arn: str, wanted: list[dict[str, str]], current: list[dict[str, str]]) -> None:
        client = self.ctx.client("sns")
        have = {_subscription_key(s): s for s in current}
        want = {_subscription_key(s) for s in wanted}
        for key in sorted(want - set(have)):
            client.subscribe(TopicArn=arn, Protocol=key[0], Endpoint=key[1], ReturnSubscriptionArn=True)
        for key, sub in have.items():
            if key not in want and sub.get("arn", "").startswith("arn:"):
                client.unsubscribe(SubscriptionArn=sub["arn"])

    def delete(self, live: Live) -> None:
        self.ctx.client("sns").delete_topic(TopicArn=live.arn)
