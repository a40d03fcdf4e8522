"""Budgets additions: UpdateBudget, notification updates and duplicates, subscribers."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from lensops_emulator import Emulator

from .conftest import ACCOUNT_ID

BUDGET = "monthly-cost"
NOTIFICATION = {"NotificationType": "ACTUAL", "ComparisonOperator": "GREATER_THAN", "Threshold": 80.0}
OPS = {"SubscriptionType": "EMAIL", "Address": "ops@example.com"}
FINANCE = {"SubscriptionType": "EMAIL", "Address": "finance@example.com"}


@pytest.fixture
def budgets(client: Any) -> Any:
    budgets = client("budgets")
    budgets.create_budget(
        AccountId=ACCOUNT_ID,
        Budget={
            "BudgetName": BUDGET,
            "BudgetLimit": {"Amount": "100", "Unit": "USD"},
            "TimeUnit": "MONTHLY",
            "BudgetType": "COST",
        },
        NotificationsWithSubscribers=[{"Notification": NOTIFICATION, "Subscribers": [OPS]}],
    )
    return budgets


def code_of(raised: pytest.ExceptionInfo[ClientError]) -> str:
    return str(raised.value.response["Error"]["Code"])


def subscribers(budgets: Any, notification: dict[str, Any] = NOTIFICATION) -> list[dict[str, str]]:
    result = budgets.describe_subscribers_for_notification(
        AccountId=ACCOUNT_ID, BudgetName=BUDGET, Notification=notification
    )
    return list(result["Subscribers"])


def notifications(budgets: Any) -> list[dict[str, Any]]:
    return list(budgets.describe_notifications_for_budget(AccountId=ACCOUNT_ID, BudgetName=BUDGET)["Notifications"])


def test_update_budget_replaces_the_budget_and_keeps_its_notifications(budgets: Any) -> None:
    budgets.update_budget(
        AccountId=ACCOUNT_ID,
        NewBudget={
            "BudgetName": BUDGET,
            "BudgetLimit": {"Amount": "250", "Unit": "USD"},
            "TimeUnit": "QUARTERLY",
            "BudgetType": "COST",
        },
    )

    budget = budgets.describe_budget(AccountId=ACCOUNT_ID, BudgetName=BUDGET)["Budget"]
    assert budget["BudgetLimit"] == {"Amount": "250", "Unit": "USD"}
    assert budget["TimeUnit"] == "QUARTERLY"
    assert [b["BudgetLimit"]["Amount"] for b in budgets.describe_budgets(AccountId=ACCOUNT_ID)["Budgets"]] == ["250"]
    assert notifications(budgets) == [NOTIFICATION]


def test_update_budget_of_a_missing_budget_is_not_found(budgets: Any) -> None:
    with pytest.raises(ClientError) as raised:
        budgets.update_budget(
            AccountId=ACCOUNT_ID,
            NewBudget={"BudgetName": "missing", "BudgetLimit": {"Amount": "1", "Unit": "USD"}, "TimeUnit": "MONTHLY", "BudgetType": "COST"},
        )

    assert code_of(raised) == "NotFoundException"


@pytest.mark.parametrize("duplicate", [NOTIFICATION, {**NOTIFICATION, "Threshold": 80, "ThresholdType": "PERCENTAGE"}])
def test_create_notification_refuses_a_duplicate(budgets: Any, duplicate: dict[str, Any]) -> None:
    with pytest.raises(ClientError) as raised:
        budgets.create_notification(AccountId=ACCOUNT_ID, BudgetName=BUDGET, Notification=duplicate, Subscribers=[FINANCE])

    assert code_of(raised) == "DuplicateRecordException"
    assert notifications(budgets) == [NOTIFICATION]


def test_update_notification_changes_it_and_keeps_its_subscribers(budgets: Any) -> None:
    forecast = {"NotificationType": "FORECASTED", "ComparisonOperator": "GREATER_THAN", "Threshold": 100.0}

    budgets.update_notification(
        AccountId=ACCOUNT_ID, BudgetName=BUDGET, OldNotification=NOTIFICATION, NewNotification=forecast
    )

    assert notifications(budgets) == [forecast]
    assert subscribers(budgets, forecast) == [OPS]


def test_update_notification_of_a_missing_notification_is_not_found(budgets: Any) -> None:
    missing = {**NOTIFICATION, "Threshold": 10.0}

    with pytest.raises(ClientError) as raised:
        budgets.update_notification(AccountId=ACCOUNT_ID, BudgetName=BUDGET, OldNotification=missing, NewNotification=missing)

    assert code_of(raised) == "NotFoundException"


def test_subscribers_are_created_updated_and_deleted(budgets: Any) -> None:
    budgets.create_subscriber(AccountId=ACCOUNT_ID, BudgetName=BUDGET, Notification=NOTIFICATION, Subscriber=FINANCE)
    assert subscribers(budgets) == [OPS, FINANCE]

    sns = {"SubscriptionType": "SNS", "Address": "arn:aws:sns:us-east-1:123456789012:budget"}
    budgets.update_subscriber(
        AccountId=ACCOUNT_ID, BudgetName=BUDGET, Notification=NOTIFICATION, OldSubscriber=FINANCE, NewSubscriber=sns
    )
    assert subscribers(budgets) == [OPS, sns]

    budgets.delete_subscriber(AccountId=ACCOUNT_ID, BudgetName=BUDGET, Notification=NOTIFICATION, Subscriber=OPS)
    assert subscribers(budgets) == [sns]


def test_create_subscriber_refuses_a_duplicate(budgets: Any) -> None:
    with pytest.raises(ClientError) as raised:
        budgets.create_subscriber(AccountId=ACCOUNT_ID, BudgetName=BUDGET, Notification=NOTIFICATION, Subscriber=OPS)

    assert code_of(raised) == "DuplicateRecordException"


def test_deleting_the_last_subscriber_deletes_the_notification(budgets: Any) -> None:
    budgets.delete_subscriber(AccountId=ACCOUNT_ID, BudgetName=BUDGET, Notification=NOTIFICATION, Subscriber=OPS)

    assert notifications(budgets) == []
    with pytest.raises(ClientError) as raised:
        subscribers(budgets)
    assert code_of(raised) == "NotFoundException"


def test_describe_subscribers_for_notification_pages(budgets: Any) -> None:
    budgets.create_subscriber(AccountId=ACCOUNT_ID, BudgetName=BUDGET, Notification=NOTIFICATION, Subscriber=FINANCE)

    first = budgets.describe_subscribers_for_notification(
        AccountId=ACCOUNT_ID, BudgetName=BUDGET, Notification=NOTIFICATION, MaxResults=1
    )
    second = budgets.describe_subscribers_for_notification(
        AccountId=ACCOUNT_ID, BudgetName=BUDGET, Notification=NOTIFICATION, MaxResults=1, NextToken=first["NextToken"]
    )

    assert first["Subscribers"] == [OPS]
    assert second["Subscribers"] == [FINANCE]
    assert "NextToken" not in second


def test_reset_wipes_budgets_and_their_subscribers(emulator: Emulator, budgets: Any) -> None:
    budgets.create_subscriber(AccountId=ACCOUNT_ID, BudgetName=BUDGET, Notification=NOTIFICATION, Subscriber=FINANCE)

    emulator.reset()

    assert budgets.describe_budgets(AccountId=ACCOUNT_ID).get("Budgets", []) == []
    with pytest.raises(ClientError) as raised:
        subscribers(budgets)
    assert code_of(raised) == "NotFoundException"


ARN = f"arn:aws:budgets::{ACCOUNT_ID}:budget/{BUDGET}"


def tags(budgets: Any, arn: str = ARN) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in budgets.list_tags_for_resource(ResourceARN=arn)["ResourceTags"]}


def test_resource_tags_given_at_creation_are_listed(client: Any) -> None:
    budgets = client("budgets")
    budgets.create_budget(
        AccountId=ACCOUNT_ID,
        Budget={"BudgetName": "tagged", "BudgetLimit": {"Amount": "5", "Unit": "USD"}, "TimeUnit": "MONTHLY", "BudgetType": "COST"},
        ResourceTags=[{"Key": "team", "Value": "finops"}],
    )
    assert tags(budgets, f"arn:aws:budgets::{ACCOUNT_ID}:budget/tagged") == {"team": "finops"}


def test_tag_and_untag_resource(budgets: Any) -> None:
    assert tags(budgets) == {}
    budgets.tag_resource(ResourceARN=ARN, ResourceTags=[{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}])
    budgets.tag_resource(ResourceARN=ARN, ResourceTags=[{"Key": "a", "Value": "3"}])
    budgets.untag_resource(ResourceARN=ARN, ResourceTagKeys=["b", "absent"])
    assert tags(budgets) == {"a": "3"}


def test_tags_go_with_a_deleted_budget(budgets: Any) -> None:
    budgets.tag_resource(ResourceARN=ARN, ResourceTags=[{"Key": "a", "Value": "1"}])
    budgets.delete_budget(AccountId=ACCOUNT_ID, BudgetName=BUDGET)
    with pytest.raises(ClientError) as raised:
        tags(budgets)
    assert code_of(raised) == "NotFoundException"
    budgets.create_budget(
        AccountId=ACCOUNT_ID,
        Budget={"BudgetName": BUDGET, "BudgetLimit": {"Amount": "5", "Unit": "USD"}, "TimeUnit": "MONTHLY", "BudgetType": "COST"},
    )
    assert tags(budgets) == {}


def test_an_arn_that_is_not_a_budgets_is_refused(budgets: Any) -> None:
    with pytest.raises(ClientError) as raised:
        budgets.list_tags_for_resource(ResourceARN=f"arn:aws:sns:us-east-1:{ACCOUNT_ID}:alerts")
    assert code_of(raised) == "InvalidParameterException"
