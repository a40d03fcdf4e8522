"""Request quotas (token buckets per operation, or per service) and the latency of a call."""

from __future__ import annotations

import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from lensops_emulator import AWS_RATES, Emulator, FaultPlan, Quotas

from .conftest import ACCOUNT_ID


def answer(call: Any) -> tuple[int, str]:
    """(HTTP status, error code) of a call; (200, "ok") when it succeeds."""
    try:
        call()
    except ClientError as error:
        return error.response["ResponseMetadata"]["HTTPStatusCode"], str(error.response["Error"]["Code"])
    return 200, "ok"


def test_a_rate_is_held_with_one_seconds_burst(emulator: Emulator, client: Any) -> None:
    rate = 20
    cloudwatch = client("cloudwatch")
    emulator.set_quotas(Quotas({("cloudwatch", "DescribeAlarms"): rate}))

    answers = []
    started = time.monotonic()
    while time.monotonic() - started < 1.5:
        answers.append(answer(cloudwatch.describe_alarms))
    elapsed = time.monotonic() - started

    served = answers.count((200, "ok"))
    expected = rate + rate * elapsed  # a full bucket (one second's worth), then the rate
    assert expected - 4 <= served <= expected + 1, (served, expected, len(answers))
    assert set(answers) == {(200, "ok"), (400, "Throttling")}
    assert emulator.throttled() == {("cloudwatch", "DescribeAlarms"): len(answers) - served}
    assert emulator.requests() == {("cloudwatch", "DescribeAlarms"): len(answers)}  # throttled ones counted too


@pytest.mark.parametrize(
    ("service", "operation", "call", "status", "code"),
    [
        ("cloudwatch", "DescribeAlarms", lambda c: c.describe_alarms(), 400, "Throttling"),  # JSON, query-compatible
        ("cloudformation", "DescribeStacks", lambda c: c.describe_stacks(), 400, "Throttling"),  # query
        ("sns", "ListTopics", lambda c: c.list_topics(), 400, "ThrottlingException"),  # query
        ("lambda", "ListFunctions", lambda c: c.list_functions(), 429, "TooManyRequestsException"),  # REST-JSON
        ("wafv2", "ListIPSets", lambda c: c.list_ip_sets(Scope="REGIONAL"), 400, "ThrottlingException"),  # JSON
        ("budgets", "DescribeBudgets", lambda c: c.describe_budgets(AccountId=ACCOUNT_ID), 400, "ThrottlingException"),
        ("logs", "DescribeLogGroups", lambda c: c.describe_log_groups(), 400, "ThrottlingException"),
        ("resourcegroupstaggingapi", "GetResources", lambda c: c.get_resources(), 400, "ThrottledException"),
    ],
)
def test_a_request_over_the_rate_gets_the_services_own_throttling_error(
    emulator: Emulator, client: Any, service: str, operation: str, call: Any, status: int, code: str
) -> None:
    boto = client(service)
    emulator.set_quotas(Quotas({(service, operation): 1}))

    assert answer(lambda: call(boto)) == (200, "ok")
    assert answer(lambda: call(boto)) == (status, code)
    assert emulator.throttled() == {(service, operation): 1}


def test_lambdas_throttling_says_why(emulator: Emulator, client: Any) -> None:
    lambda_ = client("lambda")
    emulator.set_quotas(Quotas({("lambda", "ListFunctions"): 1}))
    lambda_.list_functions()

    with pytest.raises(ClientError) as raised:
        lambda_.list_functions()

    assert raised.value.response["Reason"] == "CallerRateLimitExceeded"
    assert raised.value.response["Type"] == "User"
    assert raised.value.response["Error"]["Message"] == "Rate exceeded"


def test_a_throttled_request_changes_nothing(emulator: Emulator, client: Any) -> None:
    cloudwatch = client("cloudwatch")
    emulator.set_quotas(Quotas({("cloudwatch", "PutMetricAlarm"): 1}))
    alarm = dict(MetricName="Errors", Namespace="AWS/Lambda", Statistic="Sum", Period=60, EvaluationPeriods=1, Threshold=1,
                 ComparisonOperator="GreaterThanThreshold")

    cloudwatch.put_metric_alarm(AlarmName="first", **alarm)
    assert answer(lambda: cloudwatch.put_metric_alarm(AlarmName="second", **alarm)) == (400, "Throttling")

    assert [a["AlarmName"] for a in cloudwatch.describe_alarms()["MetricAlarms"]] == ["first"]


def test_a_service_wide_bucket_is_shared_by_the_operations_not_named(emulator: Emulator, client: Any) -> None:
    lambda_ = client("lambda")
    emulator.set_quotas(Quotas({("lambda", "*"): 3, ("lambda", "GetFunction"): 100}))

    shared = [lambda_.list_functions, lambda_.list_layers, lambda_.list_event_source_mappings]
    assert [answer(call) for call in shared] == [(200, "ok")] * 3
    assert answer(lambda_.list_functions) == (429, "TooManyRequestsException")
    assert answer(lambda_.list_layers) == (429, "TooManyRequestsException")
    # GetFunction has a bucket of its own: answered (the function does not exist), not throttled.
    assert answer(lambda: lambda_.get_function(FunctionName="missing")) == (404, "ResourceNotFoundException")
    assert emulator.throttled() == {("lambda", "ListFunctions"): 1, ("lambda", "ListLayers"): 1}
    # Another service, without a rate, is never throttled.
    assert all(answer(client("sts").get_caller_identity) == (200, "ok") for _ in range(5))


def test_scale_multiplies_every_rate_and_its_burst(emulator: Emulator, client: Any) -> None:
    quotas = Quotas({("cloudwatch", "DescribeAlarms"): 1, ("lambda", "*"): 1.5}, scale=4)
    cloudwatch = client("cloudwatch")
    emulator.set_quotas(quotas)

    answers = [answer(cloudwatch.describe_alarms) for _ in range(5)]

    assert answers == [(200, "ok")] * 4 + [(400, "Throttling")]
    assert quotas.rate("cloudwatch", "DescribeAlarms") == 4
    assert quotas.rate("lambda", "ListAliases") == 6
    assert quotas.rate("sns", "ListTopics") is None
    assert quotas.setting() == "cloudwatch:DescribeAlarms=4,lambda:*=6"


def test_the_aws_preset_holds_the_documented_rates() -> None:
    aws = Quotas.aws(scale=10, latency_ms=30)

    assert aws.rates == AWS_RATES
    assert (aws.scale, aws.latency_ms) == (10, 30)
    assert Quotas.aws().rate("cloudwatch", "PutMetricAlarm") == 3
    assert Quotas.aws().rate("cloudwatch", "DescribeAlarms") == 9
    assert Quotas.aws().rate("cloudwatch", "PutDashboard") == 10
    assert Quotas.aws().rate("lambda", "UpdateAlias") == 15  # the control plane's shared bucket
    assert Quotas.aws().rate("wafv2", "UpdateIPSet") == 1
    assert "cloudwatch:PutMetricAlarm=30" in aws.setting().split(",")
    assert "lambda:*=150" in aws.setting().split(",")


def test_latency_delays_every_request_throttled_ones_included(emulator: Emulator, client: Any) -> None:
    sts, cloudwatch = client("sts"), client("cloudwatch")
    sts.get_caller_identity()
    cloudwatch.describe_alarms()
    emulator.set_quotas(Quotas({("cloudwatch", "DescribeAlarms"): 1}, latency_ms=200))

    for call in (sts.get_caller_identity, cloudwatch.describe_alarms, cloudwatch.describe_alarms):  # the last is throttled
        started = time.monotonic()
        answer(call)
        assert time.monotonic() - started >= 0.2
    assert emulator.throttled() == {("cloudwatch", "DescribeAlarms"): 1}


def test_the_fault_plans_latency_adds_to_the_quotas(emulator: Emulator, client: Any) -> None:
    sts = client("sts")
    sts.get_caller_identity()
    emulator.set_quotas(Quotas(latency_ms=150))
    emulator.set_faults(FaultPlan(latency_ms=150, services={"sts"}))

    started = time.monotonic()
    sts.get_caller_identity()

    assert time.monotonic() - started >= 0.3


def test_reset_and_none_turn_quotas_off_and_clearing_forgets_the_throttled(emulator: Emulator, client: Any) -> None:
    cloudwatch = client("cloudwatch")
    emulator.set_quotas(Quotas({("cloudwatch", "DescribeAlarms"): 1}, latency_ms=500))
    answer(cloudwatch.describe_alarms)
    assert answer(cloudwatch.describe_alarms) == (400, "Throttling")

    emulator.clear_requests()
    assert emulator.throttled() == {}
    emulator.reset()

    started = time.monotonic()
    assert [answer(cloudwatch.describe_alarms) for _ in range(3)] == [(200, "ok")] * 3
    assert time.monotonic() - started < 0.5
    emulator.set_quotas(Quotas({("cloudwatch", "DescribeAlarms"): 1}))
    emulator.set_quotas(None)
    assert [answer(cloudwatch.describe_alarms) for _ in range(3)] == [(200, "ok")] * 3
    assert emulator.throttled() == {}


@pytest.mark.parametrize(
    "arguments",
    [
        {"rates": {("cloudwatch", "PutMetricAlarm"): 0}},
        {"rates": {("cloudwatch", "PutMetricAlarm"): -3}},
        {"rates": {"cloudwatch:PutMetricAlarm": 3}},
        {"rates": {("cloudwatch", ""): 3}},
        {"scale": 0},
        {"latency_ms": -1},
    ],
)
def test_quotas_are_checked(arguments: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Quotas(**arguments)
