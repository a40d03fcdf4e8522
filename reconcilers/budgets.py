"""AWS Budgets: Budget (limit, time unit, cost filters, notifications and subscribers)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from controller.manifests.types import Spec
from reconcilers.base import register_spec


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
    subscribers: list[Subscriber] = Field(default_factory=list, max_length=11)


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


register_spec("Budget", BudgetSpec, "budgetName", "An AWS Budgets budget with threshold notifications.")
