"""CloudWatch alarms as the health gate and the alarm kinds read them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

BATCH = 100
"""Alarm names per ``DescribeAlarms`` request (the API's maximum)."""


def describe_alarms(client: Any, names: Sequence[str], types: Sequence[str] = ("MetricAlarm", "CompositeAlarm")) -> list[dict[str, Any]]:
    """The alarms of ``types`` among ``names`` (at most ``BATCH``), every page of them."""
    pages = client.get_paginator("describe_alarms").paginate(AlarmNames=list(names), AlarmTypes=list(types), PaginationConfig={"PageSize": BATCH})
    return [alarm for page in pages for alarm in page.get("MetricAlarms", []) + page.get("CompositeAlarms", [])]
