"""The tagging API's GetResources: pages hold ResourcesPerPage resources, as in AWS, unless TagsPerPage is given."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from .test_cloudwatch import put_metric_alarm

OWNED = [{"Key": "lensops:environment", "Values": ["dev"]}]


@pytest.fixture
def alarm_arns(client: Any) -> list[str]:
    """250 metric alarms carrying two tags each, as lensops tags what it owns."""
    cloudwatch = client("cloudwatch")
    arns = []
    for i in range(250):
        name = f"alarm-{i:03d}"
        put_metric_alarm(
            cloudwatch, name, Tags=[{"Key": "lensops:environment", "Value": "dev"}, {"Key": "lensops:id", "Value": f"MetricAlarm/{name}"}]
        )
        arns.append(f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{name}")
    return arns


def pages(tagging: Any, **params: Any) -> list[list[dict[str, Any]]]:
    return [page["ResourceTagMappingList"] for page in tagging.get_paginator("get_resources").paginate(TagFilters=OWNED, **params)]


def test_pages_hold_resources_per_page_resources(client: Any, alarm_arns: list[str]) -> None:
    listed = pages(client("resourcegroupstaggingapi"), ResourcesPerPage=100)

    assert [len(page) for page in listed] == [100, 100, 50]
    assert sorted(r["ResourceARN"] for page in listed for r in page) == sorted(alarm_arns)
    assert all(len(r["Tags"]) == 2 for page in listed for r in page)


def test_pages_default_to_fifty_resources(client: Any, alarm_arns: list[str]) -> None:
    listed = pages(client("resourcegroupstaggingapi"))

    assert [len(page) for page in listed] == [50] * 5
    assert sorted(r["ResourceARN"] for page in listed for r in page) == sorted(alarm_arns)


def test_tags_per_page_still_limits_pages_by_tags(client: Any, alarm_arns: list[str]) -> None:
    listed = pages(client("resourcegroupstaggingapi"), TagsPerPage=100)

    assert all(sum(len(r["Tags"]) for r in page) <= 100 for page in listed)
    assert len(listed) > 3
    assert sorted(r["ResourceARN"] for page in listed for r in page) == sorted(alarm_arns)


@pytest.mark.parametrize("per_page", [0, 101])
def test_resources_per_page_out_of_range_is_refused(client: Any, per_page: int) -> None:
    with pytest.raises(ClientError) as raised:
        client("resourcegroupstaggingapi").get_resources(ResourcesPerPage=per_page)

    assert raised.value.response["Error"]["Code"] == "InvalidParameterException"


def test_arn_list_answers_the_tags_of_the_resources_named(client: Any, alarm_arns: list[str]) -> None:
    tagging = client("resourcegroupstaggingapi")
    topic = client("sns").create_topic(Name="alerts", Tags=[{"Key": "team", "Value": "ops"}])["TopicArn"]
    asked = alarm_arns[10:20] + [topic, "arn:aws:cloudwatch:us-east-1:123456789012:alarm:absent"]
    answer = tagging.get_resources(ResourceARNList=asked)
    got = {item["ResourceARN"]: {t["Key"]: t["Value"] for t in item["Tags"]} for item in answer["ResourceTagMappingList"]}
    assert set(got) == set(alarm_arns[10:20]) | {topic}
    assert got[alarm_arns[12]] == {"lensops:environment": "dev", "lensops:id": "MetricAlarm/alarm-012"}
    assert got[topic] == {"team": "ops"}
    assert not answer.get("PaginationToken")


def test_arn_list_is_refused_with_tag_filters_or_over_a_hundred(client: Any, alarm_arns: list[str]) -> None:
    tagging = client("resourcegroupstaggingapi")
    for params in ({"ResourceARNList": alarm_arns[:2], "TagFilters": OWNED}, {"ResourceARNList": alarm_arns[:101]}):
        with pytest.raises(ClientError) as raised:
            tagging.get_resources(**params)
        assert raised.value.response["Error"]["Code"] == "InvalidParameterException"
