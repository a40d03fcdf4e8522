"""AWS Budgets: Budget (limit, time unit, cost filters and types, notifications and subscribers).

Budgets belong to the account (``ctx.account``), not to a region. Call budget
per pass: one ``DescribeBudgets`` listing (100 budgets a page) serves every
budget; each existing budget in scope then needs one
``DescribeNotificationsForBudget``, one ``ListTagsForResource`` and one
``DescribeSubscribersForNotification`` per notification (N budgets with K
notifications each: 1 + 2N + N*K reads). Every change is made in place,
field by field (``UpdateBudget``, Create/Update/Delete ``Notification``,
Create/Delete ``Subscriber``, ``TagResource``/``UntagResource``): a budget is
never deleted and recreated, which would lose its spend history.
Budgets carry resource tags (``CreateBudget``'s ``ResourceTags``), so a
budget's owner is read from its ``lensops:`` tags, as for the other taggable kinds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from pydantic import Field

from controller.apishape import from_api, map_to_tags, shape, tags_to_map, to_api
from controller.diff import Change
from controller.manifests.types import Spec
from controller.kinds import Desired, Draft, Live, Reconciler, with_own_tags
from reconcilers.listing import Listing
from reconcilers.tags import TagApi

BUDGETS = Listing("budgets", "describe_budgets", "Budgets", "BudgetName", by_account=True, empty_when="NotFoundException")

TAGS = TagApi(arn="ResourceARN", keys="ResourceTagKeys", tags="ResourceTags")
"""How Budgets spells its tag writes."""


class Spend(Spec):
    amount: str | float | int
    unit: str = "USD"


class Subscriber(Spec):
    subscriptionType: Literal["SNS", "EMAIL"]
    address: str


class BudgetNotification(Spec):
    notificationType: Literal["ACTUAL", "FORECASTED"]
    comparisonOperator: Literal["GREATER_THAN", "LESS_THAN", "EQUAL_TO"] = "GREATER_THAN"
    threshold: float
    thresholdType: Literal["PERCENTAGE", "ABSOLUTE_VALUE"] = "PERCENTAGE"
    # AWS keeps no notification without a subscriber.
    subscribers: list[Subscriber] = Field(min_length=1, max_length=11)


class CostTypes(Spec):
    includeTax: bool | None = None
    includeSubscription: bool | None = None
    useBlended: bool | None = None
    includeRefund: bool | None = None
    includeCredit: bool | None = None
    includeUpfront: bool | None = None
    includeRecurring: bool | None = None
    includeOtherSubscription: bool | None = None
    includeSupport: bool | None = None
    includeDiscount: bool | None = None
    useAmortized: bool | None = None


class BudgetSpec(Spec):
    """A budget with its notifications."""

    budgetName: str | None = None
    limit: Spend
    timeUnit: Literal["DAILY", "MONTHLY", "QUARTERLY", "ANNUALLY"] = "MONTHLY"
    budgetType: Literal["COST", "USAGE", "RI_UTILIZATION", "RI_COVERAGE", "SAVINGS_PLANS_UTILIZATION", "SAVINGS_PLANS_COVERAGE"] = "COST"
    costFilters: dict[str, list[str]] = Field(default_factory=dict)
    costTypes: CostTypes | None = None
    notifications: list[BudgetNotification] = Field(default_factory=list, max_length=10)
    tags: dict[str, str] = Field(default_factory=dict)


# What AWS gives a cost budget for each cost type the request leaves out.
COST_TYPE_DEFAULTS = {
    "includeTax": True,
    "includeSubscription": True,
    "useBlended": False,
    "includeRefund": True,
    "includeCredit": True,
    "includeUpfront": True,
    "includeRecurring": True,
    "includeOtherSubscription": True,
    "includeSupport": True,
    "includeDiscount": True,
    "useAmortized": False,
}

_BUDGET_FIELDS = ("limit", "timeUnit", "budgetType", "costFilters", "costTypes")


def decimal_text(value: Any) -> str:
    """A number as its shortest exact decimal text: ``400``, ``"400.0"`` and ``400.00`` are all ``"400"``."""
    return format(Decimal(str(value)).normalize(), "f")


def notification_key(n: dict[str, Any]) -> str:
    """A notification's identity, readable in a plan: ``ACTUAL GREATER_THAN 80 PERCENTAGE``."""
    return f"{n['notificationType']} {n['comparisonOperator']} {decimal_text(n['threshold'])} {n.get('thresholdType') or 'PERCENTAGE'}"


def notification_details(key: str) -> dict[str, Any]:
    """The API's Notification for a key made by ``notification_key``."""
    kind, operator, threshold, threshold_type = key.split(" ")
    return {
        "NotificationType": kind,
        "ComparisonOperator": operator,
        "Threshold": float(threshold),
        "ThresholdType": threshold_type,
    }


def _limit(spend: dict[str, Any] | None) -> dict[str, str] | None:
    # AWS may leave the limit out of RI and Savings Plans budgets.
    if not spend:
        return None
    return {"amount": decimal_text(spend["amount"]), "unit": spend.get("unit") or "USD"}


def _subscribers(items: list[dict[str, Any]]) -> list[dict[str, str]]:
    unique = {(s["subscriptionType"], s["address"]) for s in items}
    return [{"subscriptionType": t, "address": a} for t, a in sorted(unique)]


def _api_subscriber(s: dict[str, str]) -> dict[str, str]:
    return {"SubscriptionType": s["subscriptionType"], "Address": s["address"]}


def _canonical(d: dict[str, Any], notifications: dict[str, list[dict[str, str]]]) -> dict[str, Any]:
    """The comparable form of a budget, from a spec or from DescribeBudgets (manifest field names)."""
    budget_type = d.get("budgetType") or "COST"
    declared = {k: v for k, v in (d.get("costTypes") or {}).items() if v is not None}
    return {
        "limit": _limit(d.get("limit")),
        "timeUnit": d.get("timeUnit") or "MONTHLY",
        "budgetType": budget_type,
        "costFilters": {k: sorted(v) for k, v in sorted((d.get("costFilters") or {}).items())},
        # A cost budget always has every cost type; other kinds compare only those declared.
        "costTypes": {**COST_TYPE_DEFAULTS, **declared} if budget_type == "COST" else declared,
        "notifications": notifications,
    }


@dataclass
class NotificationPlan:
    """The calls that turn one budget's notifications into the desired ones, in order."""

    delete: list[str] = field(default_factory=list)
    update: list[tuple[str, str]] = field(default_factory=list)
    create: list[str] = field(default_factory=list)
    subscribe: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    unsubscribe: list[tuple[str, dict[str, str]]] = field(default_factory=list)


def plan_notifications(live: dict[str, list[dict[str, str]]], wanted: dict[str, list[dict[str, str]]]) -> NotificationPlan:
    """Pair live and wanted notifications; one that maps clearly to one is updated in place.

    Notifications of the same type, operator and threshold type that are one
    on each side are the same notification with a new threshold; when a single
    notification is left on each side after that, it is one edited.
    Everything else is deleted or created. Subscribers are diffed one by one.
    """
    plan = NotificationPlan()
    gone = sorted(set(live) - set(wanted))
    new = sorted(set(wanted) - set(live))
    families: dict[str, tuple[list[str], list[str]]] = {}
    for key in gone:
        families.setdefault(_family(key), ([], []))[0].append(key)
    for key in new:
        families.setdefault(_family(key), ([], []))[1].append(key)
    pairs = [(olds[0], news[0]) for olds, news in families.values() if len(olds) == len(news) == 1]
    gone = [k for k in gone if k not in {old for old, _ in pairs}]
    new = [k for k in new if k not in {n for _, n in pairs}]
    if len(gone) == len(new) == 1:
        pairs.append((gone.pop(), new.pop()))
    plan.delete, plan.create, plan.update = gone, new, sorted(pairs)
    matched = [(k, k) for k in sorted(set(live) & set(wanted))] + plan.update
    for old, key in matched:
        have = {(s["subscriptionType"], s["address"]) for s in live[old]}
        want = {(s["subscriptionType"], s["address"]) for s in wanted[key]}
        plan.subscribe += [(key, {"subscriptionType": t, "address": a}) for t, a in sorted(want - have)]
        plan.unsubscribe += [(key, {"subscriptionType": t, "address": a}) for t, a in sorted(have - want)]
    return plan


def _family(key: str) -> str:
    kind, operator, _, threshold_type = key.split(" ")
    return f"{kind} {operator} {threshold_type}"


class BudgetReconciler(Reconciler):
    """An AWS budget with its notifications and their subscribers."""

    kind = "Budget"
    spec_model = BudgetSpec
    name_field = "budgetName"
    service = "budgets"
    # Budgets' IAM actions cover several API operations each: ViewBudget the
    # Describe* calls, ModifyBudget every create, update and delete; tags
    # have their own (CreateBudget with ResourceTags needs TagResource too).
    iam_read = ("budgets:ViewBudget", "budgets:ListTagsForResource")
    iam_write = ("budgets:ModifyBudget", "budgets:TagResource", "budgets:UntagResource")

    @classmethod
    def write_calls(cls, action: str) -> dict[str, int]:
        """Budgets' IAM action (ModifyBudget) is not an operation's name: CreateBudget, UpdateBudget, DeleteBudget."""
        return {f"budgets:{action.capitalize()}Budget": 1}

    example = """\
apiVersion: lensops.io/v1
kind: Budget
metadata:
  name: monthly
spec:
  limit: {amount: 400, unit: USD}
  timeUnit: MONTHLY
  notifications:
    - notificationType: FORECASTED
      threshold: 100
      subscribers:
        - {subscriptionType: EMAIL, address: finops@example.com}
"""
    notes = {
        "limit.amount": 'Compared as a decimal number: `400`, `"400.0"` and `400.00` are the same.',
        "costFilters": "Dimension name to values, as BudgetLimit's CostFilters.",
    }

    def arn(self, physical: str) -> str:
        return f"arn:aws:budgets::{self.ctx.account}:budget/{physical}"

    # --- observe -------------------------------------------------------

    def _budgets(self) -> dict[str, dict[str, Any]]:
        """Every budget of the account by name, one paginated listing a pass."""

        return BUDGETS.read(self.ctx)

    def _notifications(self, name: str) -> dict[str, list[dict[str, str]]]:
        """A budget's notifications (by key) with their subscribers."""
        client = self.ctx.client("budgets")
        keys: list[str] = []
        try:
            for page in client.get_paginator("describe_notifications_for_budget").paginate(AccountId=self.ctx.account, BudgetName=name):
                keys.extend(notification_key(from_api(n, shape("budgets", "Notification"))) for n in page.get("Notifications", []))
        except client.exceptions.NotFoundException:
            # AWS answers so for a budget without notifications.
            return {}
        subscribers = client.get_paginator("describe_subscribers_for_notification")
        found: dict[str, list[dict[str, str]]] = {}
        for key in keys:
            subs: list[dict[str, Any]] = []
            for page in subscribers.paginate(AccountId=self.ctx.account, BudgetName=name, Notification=notification_details(key)):
                subs.extend(from_api(s, shape("budgets", "Subscriber")) for s in page.get("Subscribers", []))
            found[key] = _subscribers(subs)
        return found

    def _tags(self, name: str) -> dict[str, str] | None:
        """A budget's resource tags; None when it is gone since the listing."""
        client = self.ctx.client("budgets")
        try:
            return tags_to_map(client.list_tags_for_resource(ResourceARN=self.arn(name)).get("ResourceTags"))
        except client.exceptions.NotFoundException:
            return None

    def _read(self, name: str) -> tuple[dict[str, list[dict[str, str]]], dict[str, str] | None]:
        return self._notifications(name), self._tags(name)

    def observe(self, physicals: list[str]) -> dict[str, Live]:
        if not physicals:
            return {}
        budgets = self._budgets()
        budget_shape = shape("budgets", "Budget")
        present = [name for name in physicals if name in budgets]
        found: dict[str, Live] = {}
        for name, (notifications, tags) in zip(present, self.ctx.map(self._read, present), strict=True):
            if tags is None:
                continue
            item = from_api(budgets[name], budget_shape)
            item["limit"] = item.get("budgetLimit")
            state = {**_canonical(item, notifications), "tags": tags}
            arn = self.arn(name)
            found[name] = Live.tagged(name, state, tags, arn=arn, attrs={"arn": arn})
        return found

    def discover(self, prefix: str) -> list[str]:
        """Every budget of the account, from the pass's one ``DescribeBudgets`` listing."""
        return sorted(name for name in self._budgets() if name.startswith(prefix))

    def manifest_spec(self, live: Live) -> Draft:
        """The budget with notifications as a list again; cost types only where they differ from a cost budget's."""
        state = live.state
        spec: dict[str, Any] = {}
        if state.get("limit"):
            spec["limit"] = dict(state["limit"])
        spec.update(timeUnit=state.get("timeUnit"), budgetType=state.get("budgetType"))
        if state.get("costFilters"):
            spec["costFilters"] = state["costFilters"]
        defaults = COST_TYPE_DEFAULTS if state.get("budgetType") == "COST" else {}
        cost_types = {k: v for k, v in (state.get("costTypes") or {}).items() if defaults.get(k) != v}
        if cost_types:
            spec["costTypes"] = cost_types
        notifications = []
        for key, subscribers in (state.get("notifications") or {}).items():
            details = notification_details(key)
            notifications.append(
                {
                    "notificationType": details["NotificationType"],
                    "comparisonOperator": details["ComparisonOperator"],
                    "threshold": details["Threshold"],
                    "thresholdType": details["ThresholdType"],
                    "subscribers": subscribers,
                }
            )
        if notifications:
            spec["notifications"] = notifications
        return Draft(with_own_tags(spec, live))

    def desired_state(self, desired: Desired) -> dict[str, Any]:
        spec = desired.spec
        notifications = {notification_key(n): _subscribers(n.get("subscribers") or []) for n in spec.get("notifications") or []}
        return {**_canonical(spec, notifications), "tags": dict(desired.tags)}

    def compare_view(self, live: Live, state: dict[str, Any], applied: dict[str, Any] | None = None) -> dict[str, Any]:
        view = dict(live.state)
        declared = state.get("costTypes", {})
        view["costTypes"] = {k: v for k, v in live.state.get("costTypes", {}).items() if k in declared}
        return view

    # --- apply -----------------------------------------------------------

    def _api_budget(self, name: str, state: dict[str, Any]) -> dict[str, Any]:
        budget: dict[str, Any] = {
            "BudgetName": name,
            "TimeUnit": state["timeUnit"],
            "BudgetType": state["budgetType"],
            "CostFilters": state["costFilters"],
        }
        if state["limit"]:
            budget["BudgetLimit"] = {"Amount": state["limit"]["amount"], "Unit": state["limit"]["unit"]}
        if state["costTypes"]:
            budget["CostTypes"] = to_api(state["costTypes"], shape("budgets", "CostTypes"))
        return budget

    def create(self, desired: Desired, state: dict[str, Any]) -> Live:
        tags = {"ResourceTags": map_to_tags(state["tags"])} if state.get("tags") else {}
        self.ctx.client("budgets").create_budget(
            AccountId=self.ctx.account,
            Budget=self._api_budget(desired.physical, state),
            NotificationsWithSubscribers=[
                {"Notification": notification_details(key), "Subscribers": [_api_subscriber(s) for s in subs]}
                for key, subs in state["notifications"].items()
            ],
            **tags,
        )
        arn = self.arn(desired.physical)
        return Live(desired.physical, state, arn=arn, attrs={"arn": arn})

    def update(self, desired: Desired, state: dict[str, Any], live: Live, changes: list[Change]) -> Live:
        changed = {c.path.split(".", 1)[0] for c in changes}
        client = self.ctx.client("budgets")
        if changed & set(_BUDGET_FIELDS):
            # UpdateBudget replaces the whole budget: fields not changed (or
            # ignored by annotation) keep their live values.
            merged = {k: state[k] if k in changed else live.state[k] for k in _BUDGET_FIELDS}
            client.update_budget(AccountId=self.ctx.account, NewBudget=self._api_budget(live.physical, merged))
        if "notifications" in changed:
            self._apply_notifications(live.physical, live.state["notifications"], state["notifications"])
        TAGS.write(client, live.arn, changes)
        return Live(live.physical, state, arn=live.arn, attrs={"arn": live.arn})

    def _apply_notifications(self, name: str, live: dict[str, list[dict[str, str]]], wanted: dict[str, list[dict[str, str]]]) -> None:
        client = self.ctx.client("budgets")
        account = self.ctx.account
        plan = plan_notifications(live, wanted)
        for key in plan.delete:
            client.delete_notification(AccountId=account, BudgetName=name, Notification=notification_details(key))
        for old, new in plan.update:
            client.update_notification(
                AccountId=account,
                BudgetName=name,
                OldNotification=notification_details(old),
                NewNotification=notification_details(new),
            )
        # New subscribers first: removing a notification's last subscriber deletes the notification.
        for key, sub in plan.subscribe:
            client.create_subscriber(
                AccountId=account, BudgetName=name, Notification=notification_details(key), Subscriber=_api_subscriber(sub)
            )
        for key, sub in plan.unsubscribe:
            client.delete_subscriber(
                AccountId=account, BudgetName=name, Notification=notification_details(key), Subscriber=_api_subscriber(sub)
            )
        for key in plan.create:
            client.create_notification(
                AccountId=account,
                BudgetName=name,
                Notification=notification_details(key),
                Subscribers=[_api_subscriber(s) for s in wanted[key]],
            )

    def delete(self, live: Live) -> None:
        self.ctx.client("budgets").delete_budget(AccountId=self.ctx.account, BudgetName=live.physical)
