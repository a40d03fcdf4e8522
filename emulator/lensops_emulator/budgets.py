"""AWS Budgets additions: updating budgets and notifications, and subscribers.

Part of the embedded AWS emulator used by tests and ``lensops demo`` (moto in
server mode plus what moto lacks). moto 5.2.5 creates, describes and deletes
budgets and notifications, but has no UpdateBudget, UpdateNotification or
subscriber operations, and accepts a duplicate notification. Written from the
AWS Budgets API reference, on moto's own budget objects, so moto's
DescribeBudget(s) and DescribeNotificationsForBudget see every change:

- ``UpdateBudget`` replaces the budget named in NewBudget (keeping its
  TimePeriod when NewBudget has none) and its notifications stay.
- ``CreateNotification`` refuses a notification the budget already has
  (DuplicateRecordException); ``UpdateNotification`` replaces one, keeping
  its subscribers.
- ``CreateSubscriber``, ``UpdateSubscriber``, ``DeleteSubscriber`` (deleting
  the last subscriber deletes the notification, as in AWS) and
  ``DescribeSubscribersForNotification`` (paged by MaxResults/NextToken).

- Resource tags, which moto ignores: ``CreateBudget``'s ``ResourceTags``,
  ``TagResource``, ``UntagResource`` and ``ListTagsForResource`` on the
  budget's ARN (``arn:aws:budgets::<account>:budget/<name>``); an ARN of no
  budget is NotFoundException, one that is not a budget's
  InvalidParameterException. Tags live on moto's budget object, so a deleted
  budget's tags go with it.

A notification is identified by NotificationType, ComparisonOperator,
Threshold and ThresholdType (PERCENTAGE when absent); a subscriber by
SubscriptionType and Address.
"""

from __future__ import annotations

import json
import re
from typing import Any

from moto.budgets.exceptions import DuplicateRecordException, NotFoundException
from moto.budgets.models import Budget, Notification
from moto.budgets.responses import BudgetsResponse
from moto.core.exceptions import JsonRESTError

from .dispatch import Addition

DEFAULT_MAX_RESULTS = 100
_BUDGET_ARN = re.compile(r"^arn:aws[a-z-]*:budgets::(?P<account>\d{12}):budget/(?P<name>.+)$")


class InvalidNextTokenException(JsonRESTError):
    code = 400

    def __init__(self, token: str) -> None:
        super().__init__("InvalidNextTokenException", f"Invalid NextToken: {token}")


class InvalidParameterException(JsonRESTError):
    code = 400

    def __init__(self, message: str) -> None:
        super().__init__("InvalidParameterException", message)


class BudgetsAdditions(BudgetsResponse):
    """Budgets operations moto lacks; the rest stay moto's."""

    def update_budget(self) -> str:
        new_budget: dict[str, Any] = self._get_param("NewBudget")
        budget = self._budget("update budget", new_budget["BudgetName"])
        new_budget.setdefault("TimePeriod", budget.budget["TimePeriod"])
        # moto's Budget checks the limit and fills in what AWS defaults.
        budget.budget = Budget(new_budget, notifications=[]).budget
        return "{}"

    def create_notification(self) -> str:
        budget_name = self._get_param("BudgetName")
        budget = self._budget("create notification", budget_name)
        details = self._get_param("Notification")
        if _find_notification(budget, details) is not None:
            raise DuplicateRecordException(record_type="notification", record_name=budget_name)
        budget.add_notification(details, self._get_param("Subscribers"))
        return "{}"

    def update_notification(self) -> str:
        budget = self._budget("update notification", self._get_param("BudgetName"))
        notification = self._notification(budget, "update notification", "OldNotification")
        new_details = self._get_param("NewNotification")
        if _key(new_details) != _key(notification.details) and _find_notification(budget, new_details):
            raise DuplicateRecordException(record_type="notification", record_name=budget.budget["BudgetName"])
        notification.details = new_details
        return "{}"

    def create_subscriber(self) -> str:
        budget = self._budget("create subscriber", self._get_param("BudgetName"))
        notification = self._notification(budget, "create subscriber", "Notification")
        subscriber = self._get_param("Subscriber")
        if _find_subscriber(notification, subscriber) is not None:
            raise DuplicateRecordException(record_type="subscriber", record_name=subscriber["Address"])
        notification.subscribers.append(subscriber)
        return "{}"

    def update_subscriber(self) -> str:
        budget = self._budget("update subscriber", self._get_param("BudgetName"))
        notification = self._notification(budget, "update subscriber", "Notification")
        old, new = self._get_param("OldSubscriber"), self._get_param("NewSubscriber")
        index = _find_subscriber(notification, old)
        if index is None:
            raise NotFoundException("Unable to update subscriber - the subscriber doesn't exist.")
        if _subscriber_key(new) != _subscriber_key(old) and _find_subscriber(notification, new) is not None:
            raise DuplicateRecordException(record_type="subscriber", record_name=new["Address"])
        notification.subscribers[index] = new
        return "{}"

    def delete_subscriber(self) -> str:
        budget = self._budget("delete subscriber", self._get_param("BudgetName"))
        notification = self._notification(budget, "delete subscriber", "Notification")
        index = _find_subscriber(notification, self._get_param("Subscriber"))
        if index is None:
            raise NotFoundException("Unable to delete subscriber - the subscriber doesn't exist.")
        del notification.subscribers[index]
        if not notification.subscribers:
            budget.notifications.remove(notification)
        return "{}"

    def describe_subscribers_for_notification(self) -> str:
        budget = self._budget("describe subscribers", self._get_param("BudgetName"))
        notification = self._notification(budget, "describe subscribers", "Notification")
        token = self._get_param("NextToken")
        if token and not token.isdigit():
            raise InvalidNextTokenException(token)
        start = int(token or 0)
        end = start + (self._get_param("MaxResults") or DEFAULT_MAX_RESULTS)
        result: dict[str, Any] = {"Subscribers": notification.subscribers[start:end]}
        if end < len(notification.subscribers):
            result["NextToken"] = str(end)
        return json.dumps(result)

    def create_budget(self) -> str:
        answer = super().create_budget()
        budget = self._budget("create budget", self._get_param("Budget")["BudgetName"])
        _set_tags(budget, self._get_param("ResourceTags") or [])
        return answer

    def tag_resource(self) -> str:
        _set_tags(self._tagged("tag resource"), self._get_param("ResourceTags"))
        return "{}"

    def untag_resource(self) -> str:
        tags = _tags(self._tagged("untag resource"))
        for key in self._get_param("ResourceTagKeys"):
            tags.pop(key, None)
        return "{}"

    def list_tags_for_resource(self) -> str:
        tags = _tags(self._tagged("list tags for resource"))
        return json.dumps({"ResourceTags": [{"Key": k, "Value": v} for k, v in tags.items()]})

    def _tagged(self, action: str) -> Budget:
        """The budget the request's ResourceARN names."""
        arn = self._get_param("ResourceARN")
        match = _BUDGET_ARN.match(arn or "")
        if match is None:
            raise InvalidParameterException(f"Unable to {action}: {arn} is not the ARN of a budget.")
        budget = self.backend.budgets[match["account"]].get(match["name"])
        if budget is None:
            raise NotFoundException(f"Unable to {action}: {arn} - the budget doesn't exist.")
        return budget

    def _budget(self, action: str, budget_name: str) -> Budget:
        budget = self.backend.budgets[self._get_param("AccountId")].get(budget_name)
        if budget is None:
            raise NotFoundException(f"Unable to {action}: {budget_name} - the budget doesn't exist.")
        return budget

    def _notification(self, budget: Budget, action: str, param: str) -> Notification:
        notification = _find_notification(budget, self._get_param(param))
        if notification is None:
            raise NotFoundException(f"Unable to {action} - the notification doesn't exist.")
        return notification


ADDITION = Addition(
    service="budgets",
    operations=frozenset(
        {
            "UpdateBudget",
            "CreateNotification",
            "UpdateNotification",
            "CreateSubscriber",
            "UpdateSubscriber",
            "DeleteSubscriber",
            "DescribeSubscribersForNotification",
            "CreateBudget",
            "TagResource",
            "UntagResource",
            "ListTagsForResource",
        }
    ),
    handler=BudgetsAdditions,
)


def _tags(budget: Budget) -> dict[str, str]:
    """The budget's resource tags (kept on moto's budget object, which has none of its own)."""
    if not hasattr(budget, "resource_tags"):
        budget.resource_tags = {}
    tags: dict[str, str] = budget.resource_tags
    return tags


def _set_tags(budget: Budget, pairs: list[dict[str, str]]) -> None:
    _tags(budget).update({pair["Key"]: pair["Value"] for pair in pairs})


def _key(details: dict[str, Any]) -> tuple[object, ...]:
    return (
        details["NotificationType"],
        details["ComparisonOperator"],
        float(details["Threshold"]),
        details.get("ThresholdType", "PERCENTAGE"),
    )


def _find_notification(budget: Budget, details: dict[str, Any]) -> Notification | None:
    return next((n for n in budget.notifications if _key(n.details) == _key(details)), None)


def _subscriber_key(subscriber: dict[str, str]) -> tuple[str, str]:
    return subscriber["SubscriptionType"], subscriber["Address"]


def _find_subscriber(notification: Notification, subscriber: dict[str, str]) -> int | None:
    keys = [_subscriber_key(s) for s in notification.subscribers]
    key = _subscriber_key(subscriber)
    return keys.index(key) if key in keys else None
