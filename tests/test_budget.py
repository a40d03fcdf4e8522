"""Budget: limit, cost filters, notifications and subscribers changed in place, never recreated."""

from __future__ import annotations

import textwrap
from typing import Any

from conftest import ACCOUNT, writes

from reconcilers.budgets import plan_notifications

OPS = "ops@econlens.example"
FINANCE = "finance@econlens.example"


def budget(amount: Any = 400, thresholds: tuple[float, ...] = (80,), subscribers: tuple[str, ...] = (OPS,), extra: str = "") -> str:
    """A Budget manifest named ``monthly`` with one ACTUAL notification per threshold."""
    subs = ", ".join(f"{{subscriptionType: EMAIL, address: {a}}}" for a in subscribers)
    notifications = "".join(
        f"    - {{notificationType: ACTUAL, threshold: {t}, subscribers: [{subs}]}}\n" for t in thresholds
    )
    text = (
        "apiVersion: lensops.io/v1\nkind: Budget\nmetadata:\n  name: monthly\nspec:\n"
        f"  limit: {{amount: {amount}, unit: USD}}\n"
        "  timeUnit: MONTHLY\n"
        "  costFilters: {Service: [AWS Lambda]}\n"
        + ("  notifications:\n" + notifications if thresholds else "")
    )
    if extra:
        text += textwrap.indent(textwrap.dedent(extra).strip("\n"), "  ") + "\n"
    return text


def _apply(lensops: Any, tree: Any) -> None:
    result = lensops("apply", "--repo", str(tree.root))
    assert result.code == 0, result.out + result.err


def _notifications(budgets: Any) -> dict[float, list[str]]:
    """Threshold -> subscriber addresses of budget ``monthly``."""
    found = {}
    for n in budgets.describe_notifications_for_budget(AccountId=ACCOUNT, BudgetName="monthly")["Notifications"]:
        details = {k: n[k] for k in ("NotificationType", "ComparisonOperator", "Threshold", "ThresholdType")}
        subs = budgets.describe_subscribers_for_notification(AccountId=ACCOUNT, BudgetName="monthly", Notification=details)
        found[float(n["Threshold"])] = sorted(s["Address"] for s in subs["Subscribers"])
    return found


def _update_limit(budgets: Any, amount: str) -> None:
    live = budgets.describe_budget(AccountId=ACCOUNT, BudgetName="monthly")["Budget"]
    new = {k: live[k] for k in ("BudgetName", "TimeUnit", "BudgetType", "CostFilters", "CostTypes")}
    budgets.update_budget(AccountId=ACCOUNT, NewBudget={**new, "BudgetLimit": {"Amount": amount, "Unit": "USD"}})


def test_create_with_notifications_and_subscribers(aws, client, tree, lensops):
    tree.environment("dev")
    tree.write("environments/dev/budget.yaml", budget(thresholds=(80, 100), subscribers=(OPS, FINANCE)))
    _apply(lensops, tree)

    budgets = client("budgets")
    live = budgets.describe_budget(AccountId=ACCOUNT, BudgetName="monthly")["Budget"]
    assert live["BudgetLimit"] == {"Amount": "400", "Unit": "USD"}
    assert live["CostFilters"] == {"Service": ["AWS Lambda"]}
    assert live["TimeUnit"] == "MONTHLY"
    assert _notifications(budgets) == {80.0: [FINANCE, OPS], 100.0: [FINANCE, OPS]}
    assert lensops("plan", "--repo", str(tree.root)).code == 0


def test_second_apply_makes_no_write_call(aws, tree, lensops):
    tree.environment("dev")
    tree.write("environments/dev/budget.yaml", budget(amount='"400.00"', thresholds=(50, 80.5)))
    _apply(lensops, tree)
    aws.clear_requests()
    _apply(lensops, tree)
    assert aws.requests(), "the second apply must still read AWS"
    assert writes(aws.requests()) == {}


def test_amounts_compare_as_numbers(aws, client, tree, lensops):
    tree.environment("dev")
    tree.write("environments/dev/budget.yaml", budget(amount=400))
    _apply(lensops, tree)
    _update_limit(client("budgets"), "400.0")
    plan = lensops("plan", "--repo", str(tree.root))
    assert plan.code == 0, plan.out


def test_new_limit_is_one_update_budget(aws, client, tree, lensops):
    tree.environment("dev")
    tree.write("environments/dev/budget.yaml", budget(amount=400))
    _apply(lensops, tree)
    tree.write("environments/dev/budget.yaml", budget(amount=500))
    plan = lensops("plan", "--repo", str(tree.root))
    assert plan.code == 2 and 'limit.amount: "400" -> "500"' in plan.out
    aws.clear_requests()
    _apply(lensops, tree)
    assert writes(aws.requests()) == {("budgets", "UpdateBudget"): 1}
    live = client("budgets").describe_budget(AccountId=ACCOUNT, BudgetName="monthly")["Budget"]
    assert live["BudgetLimit"]["Amount"] == "500"
    assert _notifications(client("budgets")) == {80.0: [OPS]}


def test_threshold_change_is_update_notification_never_delete_budget(aws, client, tree, lensops):
    tree.environment("dev")
    tree.write("environments/dev/budget.yaml", budget(thresholds=(80,)))
    _apply(lensops, tree)
    tree.write("environments/dev/budget.yaml", budget(thresholds=(90,)))
    aws.clear_requests()
    _apply(lensops, tree)
    assert writes(aws.requests()) == {("budgets", "UpdateNotification"): 1}
    assert _notifications(client("budgets")) == {90.0: [OPS]}


def test_subscribers_are_added_and_removed_one_by_one(aws, client, tree, lensops):
    tree.environment("dev")
    tree.write("environments/dev/budget.yaml", budget(subscribers=(OPS,)))
    _apply(lensops, tree)
    tree.write("environments/dev/budget.yaml", budget(subscribers=(FINANCE,)))
    aws.clear_requests()
    _apply(lensops, tree)
    assert writes(aws.requests()) == {("budgets", "CreateSubscriber"): 1, ("budgets", "DeleteSubscriber"): 1}
    assert _notifications(client("budgets")) == {80.0: [FINANCE]}


def test_notifications_added_and_removed(aws, client, tree, lensops):
    tree.environment("dev")
    tree.write("environments/dev/budget.yaml", budget(thresholds=(50, 80)))
    _apply(lensops, tree)
    tree.write("environments/dev/budget.yaml", budget(thresholds=(80, 100, 120)))
    aws.clear_requests()
    _apply(lensops, tree)
    # 50 -> 100 or 120 is not clear: one deleted, two created.
    assert writes(aws.requests()) == {("budgets", "DeleteNotification"): 1, ("budgets", "CreateNotification"): 2}
    assert _notifications(client("budgets")) == {80.0: [OPS], 100.0: [OPS], 120.0: [OPS]}

    tree.write("environments/dev/budget.yaml", budget(thresholds=()))
    _apply(lensops, tree)
    assert _notifications(client("budgets")) == {}
    assert lensops("plan", "--repo", str(tree.root)).code == 0


def test_out_of_band_change_is_planned_and_reverted(aws, client, tree, lensops):
    tree.environment("dev")
    tree.write("environments/dev/budget.yaml", budget())
    _apply(lensops, tree)
    budgets = client("budgets")
    _update_limit(budgets, "9000")
    details = {"NotificationType": "ACTUAL", "ComparisonOperator": "GREATER_THAN", "Threshold": 80.0, "ThresholdType": "PERCENTAGE"}
    finance = {"SubscriptionType": "EMAIL", "Address": FINANCE}
    budgets.create_subscriber(AccountId=ACCOUNT, BudgetName="monthly", Notification=details, Subscriber=finance)

    plan = lensops("plan", "--repo", str(tree.root))
    assert plan.code == 2
    assert "Budget/monthly" in plan.out
    assert 'limit.amount: "9000" -> "400"' in plan.out
    assert "drifted" in plan.out

    aws.clear_requests()
    _apply(lensops, tree)
    assert writes(aws.requests()) == {("budgets", "UpdateBudget"): 1, ("budgets", "DeleteSubscriber"): 1}
    assert budgets.describe_budget(AccountId=ACCOUNT, BudgetName="monthly")["Budget"]["BudgetLimit"]["Amount"] == "400"
    assert _notifications(budgets) == {80.0: [OPS]}
    assert lensops("plan", "--repo", str(tree.root)).code == 0


def test_prune_deletes_the_budget(aws, client, tree, lensops):
    tree.environment("dev", "sync: {prune: true, allowMassPrune: true}")
    tree.write("environments/dev/budget.yaml", budget())
    _apply(lensops, tree)
    tree.remove("environments/dev/budget.yaml")
    tree.write("environments/dev/other.yaml", budget().replace("name: monthly", "name: weekly"))
    aws.clear_requests()
    _apply(lensops, tree)
    assert writes(aws.requests()) == {("budgets", "DeleteBudget"): 1, ("budgets", "CreateBudget"): 1}
    names = [b["BudgetName"] for b in client("budgets").describe_budgets(AccountId=ACCOUNT)["Budgets"]]
    assert names == ["weekly"]


def test_notification_pairing():
    ops = [{"subscriptionType": "EMAIL", "address": OPS}]
    live = {"ACTUAL GREATER_THAN 80 PERCENTAGE": ops, "FORECASTED GREATER_THAN 100 PERCENTAGE": ops}
    wanted = {"ACTUAL GREATER_THAN 90 PERCENTAGE": ops, "FORECASTED GREATER_THAN 110 PERCENTAGE": ops}
    plan = plan_notifications(live, wanted)
    assert plan.update == [
        ("ACTUAL GREATER_THAN 80 PERCENTAGE", "ACTUAL GREATER_THAN 90 PERCENTAGE"),
        ("FORECASTED GREATER_THAN 100 PERCENTAGE", "FORECASTED GREATER_THAN 110 PERCENTAGE"),
    ]
    assert (plan.delete, plan.create, plan.subscribe, plan.unsubscribe) == ([], [], [], [])

    one_edit = plan_notifications({"ACTUAL GREATER_THAN 80 PERCENTAGE": ops}, {"ACTUAL GREATER_THAN 100 ABSOLUTE_VALUE": ops})
    assert one_edit.update == [("ACTUAL GREATER_THAN 80 PERCENTAGE", "ACTUAL GREATER_THAN 100 ABSOLUTE_VALUE")]
