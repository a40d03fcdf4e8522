"""CloudWatch additions: composite alarms, DescribeAlarms paging and filters, DeleteAlarms guards."""

from __future__ import annotations

import urllib.request
from typing import Any
from urllib.parse import urlencode

import pytest
from botocore.exceptions import ClientError

from lensops_emulator import Emulator

TOPIC = "arn:aws:sns:us-east-1:123456789012:alerts"


@pytest.fixture
def cloudwatch(client: Any) -> Any:
    return client("cloudwatch")


def put_metric_alarm(cloudwatch: Any, name: str, **extra: Any) -> None:
    cloudwatch.put_metric_alarm(
        **extra,
        AlarmName=name,
        Namespace="EconLens",
        MetricName="Errors",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1,
        ComparisonOperator="GreaterThanThreshold",
        AlarmActions=[TOPIC],
    )


def all_alarms(cloudwatch: Any) -> dict[str, dict[str, Any]]:
    result = cloudwatch.describe_alarms(AlarmTypes=["MetricAlarm", "CompositeAlarm"], MaxRecords=100)
    return {a["AlarmName"]: a for a in result["MetricAlarms"] + result["CompositeAlarms"]}


def error_of(raised: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    return raised.value.response["Error"]["Code"], raised.value.response["Error"]["Message"]


def test_composite_alarm_is_created_with_every_field(cloudwatch: Any) -> None:
    put_metric_alarm(cloudwatch, "api-5xx")
    cloudwatch.put_composite_alarm(
        AlarmName="api-health",
        AlarmRule='ALARM("api-5xx")',
        AlarmDescription="API is unhealthy",
        ActionsEnabled=False,
        AlarmActions=[TOPIC],
        OKActions=[TOPIC],
        InsufficientDataActions=[TOPIC],
        Tags=[{"Key": "lensops:id", "Value": "CompositeAlarm/api-health"}],
    )

    [alarm] = cloudwatch.describe_alarms(AlarmTypes=["CompositeAlarm"])["CompositeAlarms"]
    assert alarm["AlarmName"] == "api-health"
    assert alarm["AlarmArn"] == "arn:aws:cloudwatch:us-east-1:123456789012:alarm:api-health"
    assert alarm["AlarmRule"] == 'ALARM("api-5xx")'
    assert alarm["AlarmDescription"] == "API is unhealthy"
    assert alarm["ActionsEnabled"] is False
    assert alarm["AlarmActions"] == alarm["OKActions"] == alarm["InsufficientDataActions"] == [TOPIC]
    assert alarm["StateValue"] == "OK"  # evaluated at once: its only child is OK
    tags = cloudwatch.list_tags_for_resource(ResourceARN=alarm["AlarmArn"])["Tags"]
    assert tags == [{"Key": "lensops:id", "Value": "CompositeAlarm/api-health"}]


def test_describe_alarms_returns_metric_alarms_unless_alarm_types_say_otherwise(cloudwatch: Any) -> None:
    put_metric_alarm(cloudwatch, "api-5xx")
    cloudwatch.put_composite_alarm(AlarmName="api-health", AlarmRule="ALARM(api-5xx)")

    default = cloudwatch.describe_alarms()
    composite_only = cloudwatch.describe_alarms(AlarmTypes=["CompositeAlarm"])

    assert [a["AlarmName"] for a in default["MetricAlarms"]] == ["api-5xx"]
    assert default["CompositeAlarms"] == []
    assert composite_only["MetricAlarms"] == []
    assert [a["AlarmName"] for a in composite_only["CompositeAlarms"]] == ["api-health"]
    assert set(all_alarms(cloudwatch)) == {"api-5xx", "api-health"}


def test_updating_a_composite_alarm_replaces_its_configuration_and_keeps_state_and_tags(cloudwatch: Any) -> None:
    put_metric_alarm(cloudwatch, "api-5xx")
    put_metric_alarm(cloudwatch, "api-latency")
    cloudwatch.put_composite_alarm(
        AlarmName="api-health", AlarmRule="ALARM(api-5xx)", AlarmActions=[TOPIC], Tags=[{"Key": "team", "Value": "a"}]
    )
    cloudwatch.set_alarm_state(AlarmName="api-health", StateValue="ALARM", StateReason="test")

    cloudwatch.put_composite_alarm(
        AlarmName="api-health",
        AlarmRule="ALARM(api-5xx) OR ALARM(api-latency)",
        AlarmDescription="updated",
        Tags=[{"Key": "team", "Value": "b"}],
    )

    alarm = all_alarms(cloudwatch)["api-health"]
    assert alarm["AlarmRule"] == "ALARM(api-5xx) OR ALARM(api-latency)"
    assert alarm["AlarmDescription"] == "updated"
    assert alarm["AlarmActions"] == []
    # Re-evaluated on update: both children are OK.
    assert alarm["StateValue"] == "OK"
    assert cloudwatch.list_tags_for_resource(ResourceARN=alarm["AlarmArn"])["Tags"] == [{"Key": "team", "Value": "a"}]


def test_composite_alarm_state_follows_its_children(cloudwatch: Any) -> None:
    put_metric_alarm(cloudwatch, "api-5xx")
    put_metric_alarm(cloudwatch, "api-latency")
    cloudwatch.put_composite_alarm(AlarmName="api-health", AlarmRule="ALARM(api-5xx) AND NOT ALARM(api-latency)")
    cloudwatch.put_composite_alarm(AlarmName="service-health", AlarmRule="ALARM(api-health) OR FALSE")

    cloudwatch.set_alarm_state(AlarmName="api-5xx", StateValue="ALARM", StateReason="test")
    assert all_alarms(cloudwatch)["api-health"]["StateValue"] == "ALARM"
    assert all_alarms(cloudwatch)["service-health"]["StateValue"] == "ALARM"

    cloudwatch.set_alarm_state(AlarmName="api-latency", StateValue="ALARM", StateReason="test")
    assert all_alarms(cloudwatch)["api-health"]["StateValue"] == "OK"
    assert all_alarms(cloudwatch)["service-health"]["StateValue"] == "OK"


def test_set_alarm_state_on_a_composite_alarm_holds_until_a_child_changes(cloudwatch: Any) -> None:
    put_metric_alarm(cloudwatch, "api-5xx")
    cloudwatch.put_composite_alarm(AlarmName="api-health", AlarmRule="ALARM(api-5xx)")

    cloudwatch.set_alarm_state(AlarmName="api-health", StateValue="ALARM", StateReason="drill")
    assert all_alarms(cloudwatch)["api-health"]["StateValue"] == "ALARM"
    assert all_alarms(cloudwatch)["api-health"]["StateReason"] == "drill"

    cloudwatch.set_alarm_state(AlarmName="api-5xx", StateValue="INSUFFICIENT_DATA", StateReason="test")
    assert all_alarms(cloudwatch)["api-health"]["StateValue"] == "OK"


def test_composite_alarm_tags_can_be_changed(cloudwatch: Any) -> None:
    put_metric_alarm(cloudwatch, "api-5xx")
    cloudwatch.put_composite_alarm(AlarmName="api-health", AlarmRule="ALARM(api-5xx)")
    arn = all_alarms(cloudwatch)["api-health"]["AlarmArn"]

    cloudwatch.tag_resource(ResourceARN=arn, Tags=[{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}])
    cloudwatch.untag_resource(ResourceARN=arn, TagKeys=["a"])

    assert cloudwatch.list_tags_for_resource(ResourceARN=arn)["Tags"] == [{"Key": "b", "Value": "2"}]


def test_composite_alarm_rule_may_name_alarms_by_arn(cloudwatch: Any) -> None:
    put_metric_alarm(cloudwatch, "api-5xx")
    cloudwatch.put_composite_alarm(
        AlarmName="api-health", AlarmRule="ALARM(arn:aws:cloudwatch:us-east-1:123456789012:alarm:api-5xx)"
    )

    cloudwatch.set_alarm_state(AlarmName="api-5xx", StateValue="ALARM", StateReason="test")

    assert all_alarms(cloudwatch)["api-health"]["StateValue"] == "ALARM"


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("ALARM(api-5xx) OR ALARM(gone)", "Could not save the composite alarm as alarms [gone] in the alarm rule do not exist"),
        ("ALARM(api-5xx) AND", "Error in AlarmRule [Unexpected end of rule at char 18]"),
        ("()", "Error in AlarmRule [Unsupported token ')' at char 1]"),
    ],
)
def test_put_composite_alarm_rejects_bad_rules(cloudwatch: Any, rule: str, message: str) -> None:
    put_metric_alarm(cloudwatch, "api-5xx")

    with pytest.raises(ClientError) as raised:
        cloudwatch.put_composite_alarm(AlarmName="api-health", AlarmRule=rule)

    assert error_of(raised) == ("ValidationError", message)
    assert "api-health" not in all_alarms(cloudwatch)


def test_delete_alarms_refuses_an_alarm_a_composite_alarm_depends_on(cloudwatch: Any) -> None:
    put_metric_alarm(cloudwatch, "api-5xx")
    put_metric_alarm(cloudwatch, "unrelated")
    cloudwatch.put_composite_alarm(AlarmName="api-health", AlarmRule="ALARM(api-5xx)")

    with pytest.raises(ClientError) as raised:
        cloudwatch.delete_alarms(AlarmNames=["unrelated", "api-5xx"])

    assert error_of(raised) == (
        "ValidationError",
        "Cannot delete api-5xx as there are composite alarm(s) depending on it.",
    )
    assert set(all_alarms(cloudwatch)) == {"api-5xx", "unrelated", "api-health"}
    cloudwatch.delete_alarms(AlarmNames=["api-health"])
    cloudwatch.delete_alarms(AlarmNames=["api-5xx", "unrelated"])
    assert all_alarms(cloudwatch) == {}


def test_a_deleted_alarms_tags_go_with_it(cloudwatch: Any) -> None:
    """As in AWS: a new alarm of a deleted alarm's name starts untagged (moto kept the old tags)."""
    put_metric_alarm(cloudwatch, "api-5xx", Tags=[{"Key": "lensops:id", "Value": "MetricAlarm/api-5xx"}])
    arn = all_alarms(cloudwatch)["api-5xx"]["AlarmArn"]
    cloudwatch.delete_alarms(AlarmNames=["api-5xx"])
    put_metric_alarm(cloudwatch, "api-5xx")
    assert cloudwatch.list_tags_for_resource(ResourceARN=arn)["Tags"] == []


def test_delete_alarms_refuses_two_composite_alarms_at_once(cloudwatch: Any) -> None:
    put_metric_alarm(cloudwatch, "api-5xx")
    cloudwatch.put_composite_alarm(AlarmName="one", AlarmRule="ALARM(api-5xx)")
    cloudwatch.put_composite_alarm(AlarmName="two", AlarmRule="ALARM(api-5xx)")

    with pytest.raises(ClientError) as raised:
        cloudwatch.delete_alarms(AlarmNames=["one", "two"])

    assert error_of(raised)[0] == "ValidationError"
    assert set(all_alarms(cloudwatch)) == {"api-5xx", "one", "two"}


def test_describe_alarms_pages_in_name_order(cloudwatch: Any) -> None:
    names = [f"alarm-{i:03d}" for i in range(120)]
    for name in reversed(names):
        put_metric_alarm(cloudwatch, name)

    first = cloudwatch.describe_alarms()
    second = cloudwatch.describe_alarms(NextToken=first["NextToken"], MaxRecords=100)
    paged = [
        alarm["AlarmName"]
        for page in cloudwatch.get_paginator("describe_alarms").paginate(PaginationConfig={"PageSize": 7})
        for alarm in page["MetricAlarms"]
    ]

    assert [a["AlarmName"] for a in first["MetricAlarms"]] == names[:50]
    assert [a["AlarmName"] for a in second["MetricAlarms"]] == names[50:120]
    assert "NextToken" not in second
    assert paged == names


def test_describe_alarms_filters_combine(cloudwatch: Any) -> None:
    for name in ("api-5xx", "api-latency", "db-cpu"):
        put_metric_alarm(cloudwatch, name)
    cloudwatch.set_alarm_state(AlarmName="api-5xx", StateValue="ALARM", StateReason="test")
    cloudwatch.set_alarm_state(AlarmName="db-cpu", StateValue="ALARM", StateReason="test")

    by_prefix_and_state = cloudwatch.describe_alarms(AlarmNamePrefix="api-", StateValue="ALARM")
    by_names = cloudwatch.describe_alarms(AlarmNames=["db-cpu", "api-latency", "missing"])

    assert [a["AlarmName"] for a in by_prefix_and_state["MetricAlarms"]] == ["api-5xx"]
    assert [a["AlarmName"] for a in by_names["MetricAlarms"]] == ["api-latency", "db-cpu"]


def test_describe_alarms_by_name_returns_exactly_those_in_name_order_among_many(cloudwatch: Any) -> None:
    names = [f"alarm-{i:03d}" for i in range(250)]
    for name in names:
        put_metric_alarm(cloudwatch, name)
    cloudwatch.put_composite_alarm(AlarmName="alarm-zz-composite", AlarmRule='ALARM("alarm-007")')
    asked = names[200:] + names[3:50] + ["missing", "alarm-010", "alarm-zz-composite"]  # 100, unsorted, a duplicate

    one_page = cloudwatch.describe_alarms(AlarmNames=asked, MaxRecords=100)
    pages = list(cloudwatch.get_paginator("describe_alarms").paginate(AlarmNames=asked, PaginationConfig={"PageSize": 30}))
    both_types = cloudwatch.describe_alarms(AlarmNames=["alarm-zz-composite", "alarm-100"], AlarmTypes=["MetricAlarm", "CompositeAlarm"])

    wanted = sorted(names[3:50] + names[200:])
    assert [a["AlarmName"] for a in one_page["MetricAlarms"]] == wanted
    assert one_page["CompositeAlarms"] == [] and "NextToken" not in one_page
    assert [len(page["MetricAlarms"]) for page in pages] == [30, 30, 30, 7]
    assert [a["AlarmName"] for page in pages for a in page["MetricAlarms"]] == wanted
    assert [a["AlarmName"] for a in both_types["MetricAlarms"]] == ["alarm-100"]
    assert [a["AlarmName"] for a in both_types["CompositeAlarms"]] == ["alarm-zz-composite"]
    assert one_page["MetricAlarms"][0]["Threshold"] == 1.0 and one_page["MetricAlarms"][0]["AlarmActions"] == [TOPIC]


@pytest.mark.parametrize(
    ("arguments", "code"),
    [
        ({"MaxRecords": 101}, "ValidationError"),
        ({"AlarmNames": [f"alarm-{i}" for i in range(101)]}, "ValidationError"),
        ({"NextToken": "not-a-token"}, "InvalidNextToken"),
        ({"AlarmNames": ["a"], "AlarmNamePrefix": "a"}, "InvalidParameterCombination"),
    ],
)
def test_describe_alarms_rejects_invalid_requests(cloudwatch: Any, arguments: dict[str, Any], code: str) -> None:
    with pytest.raises(ClientError) as raised:
        cloudwatch.describe_alarms(**arguments)

    assert error_of(raised)[0] == code
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_composite_alarms_are_spoken_over_the_query_protocol_too(emulator: Emulator, cloudwatch: Any) -> None:
    put_metric_alarm(cloudwatch, "api-5xx")

    def post(**params: str) -> str:
        request = urllib.request.Request(
            emulator.url + "/",
            data=urlencode({"Version": "2010-08-01", **params}).encode(),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20250101/us-east-1/monitoring/aws4_request, "
                "SignedHeaders=host, Signature=0",
            },
        )
        with urllib.request.urlopen(request) as response:
            return response.read().decode()

    post(Action="PutCompositeAlarm", AlarmName="api-health", AlarmRule="ALARM(api-5xx)")
    body = post(Action="DescribeAlarms", **{"AlarmTypes.member.1": "CompositeAlarm"})

    assert "<AlarmName>api-health</AlarmName>" in body
    assert "<AlarmRule>ALARM(api-5xx)</AlarmRule>" in body


def test_reset_wipes_composite_alarms(emulator: Emulator, cloudwatch: Any) -> None:
    put_metric_alarm(cloudwatch, "api-5xx")
    cloudwatch.put_composite_alarm(AlarmName="api-health", AlarmRule="ALARM(api-5xx)")

    emulator.reset()

    assert all_alarms(cloudwatch) == {}
