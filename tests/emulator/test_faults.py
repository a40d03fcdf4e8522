"""Fault injection and request counting."""

from __future__ import annotations

import time
from typing import Any

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError
from botocore.parsers import ResponseParserError

from lensops_emulator import Emulator, FaultPlan, FaultRule

from .conftest import ACCOUNT_ID


def error_of(raised: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    response = raised.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


def outcome(call: Any) -> str:
    try:
        call()
    except ClientError as error:
        return str(error.response["Error"]["Code"])
    except ConnectionClosedError:
        return "reset"
    return "ok"


def test_requests_are_counted_per_service_and_operation(emulator: Emulator, client: Any) -> None:
    sts, cloudwatch = client("sts"), client("cloudwatch")
    sts.get_caller_identity()
    sts.get_caller_identity()
    cloudwatch.describe_alarms()
    client("lambda").list_functions()

    assert emulator.requests() == {
        ("sts", "GetCallerIdentity"): 2,
        ("cloudwatch", "DescribeAlarms"): 1,
        ("lambda", "ListFunctions"): 1,
    }
    emulator.clear_requests()
    cloudwatch.describe_alarms()
    assert emulator.requests() == {("cloudwatch", "DescribeAlarms"): 1}
    emulator.reset()
    assert emulator.requests() == {}


@pytest.mark.parametrize(
    ("service", "call", "status", "code"),
    [
        ("cloudwatch", lambda c: c.describe_alarms(), 400, "Throttling"),  # JSON, query-compatible
        ("sts", lambda c: c.get_caller_identity(), 400, "Throttling"),  # query
        ("budgets", lambda c: c.describe_budgets(AccountId=ACCOUNT_ID), 400, "ThrottlingException"),  # JSON
        ("lambda", lambda c: c.list_functions(), 429, "TooManyRequestsException"),  # REST-JSON, Lambda's own
    ],
)
def test_throttling_is_answered_in_each_protocol(emulator: Emulator, client: Any, service: str, call: Any, status: int, code: str) -> None:
    emulator.set_faults(FaultPlan(error_rate=1.0, kinds={"throttle"}))

    with pytest.raises(ClientError) as raised:
        call(client(service))

    assert error_of(raised) == (status, code)


def test_5xx_faults_are_internal_failures_or_unavailability(emulator: Emulator, client: Any) -> None:
    emulator.set_faults(FaultPlan(error_rate=1.0, kinds={"5xx"}))
    sts = client("sts")
    seen = set()

    for _ in range(12):
        with pytest.raises(ClientError) as raised:
            sts.get_caller_identity()
        seen.add(error_of(raised))

    assert seen == {(500, "InternalFailure"), (503, "ServiceUnavailable")}


def test_reset_faults_close_the_connection_without_an_answer(emulator: Emulator, client: Any) -> None:
    emulator.set_faults(FaultPlan(error_rate=1.0, kinds={"reset"}))

    with pytest.raises(ConnectionClosedError):
        client("sts").get_caller_identity()

    emulator.set_faults(None)
    assert client("sts").get_caller_identity()["Account"] == ACCOUNT_ID


@pytest.mark.parametrize(
    ("service", "call", "code", "operation"),
    [
        ("cloudwatch", lambda c: c.describe_alarms(), "AccessDenied", "DescribeAlarms"),  # JSON, query-compatible
        ("sns", lambda c: c.list_topics(), "AccessDenied", "ListTopics"),  # query
        ("budgets", lambda c: c.describe_budgets(AccountId=ACCOUNT_ID), "AccessDeniedException", "DescribeBudgets"),  # JSON
        ("lambda", lambda c: c.list_functions(), "AccessDeniedException", "ListFunctions"),  # REST-JSON
    ],
)
def test_denied_is_a_403_in_each_protocol_and_botocore_does_not_retry_it(
    emulator: Emulator, client: Any, service: str, call: Any, code: str, operation: str
) -> None:
    emulator.set_faults(FaultPlan(error_rate=1.0, kinds={"denied"}, services={service}))

    with pytest.raises(ClientError) as raised:
        call(client(service, attempts=5))

    assert error_of(raised) == (403, code)
    assert "is not authorized to perform" in raised.value.response["Error"]["Message"]
    assert emulator.requests() == {(service, operation): 1}  # throttling would have been sent 5 times


def test_denied_is_only_drawn_when_named() -> None:
    assert "denied" not in FaultPlan(error_rate=0.5).kinds
    assert FaultPlan(error_rate=0.5, kinds={"denied", "throttle"}).kinds == {"denied", "throttle"}


def test_faults_are_limited_to_the_plans_services(emulator: Emulator, client: Any) -> None:
    emulator.set_faults(FaultPlan(error_rate=1.0, kinds={"throttle"}, services={"budgets"}))

    assert outcome(lambda: client("budgets").describe_budgets(AccountId=ACCOUNT_ID)) == "ThrottlingException"
    assert outcome(lambda: client("cloudwatch").describe_alarms()) == "ok"


def test_services_that_are_down_always_answer_503(emulator: Emulator, client: Any) -> None:
    emulator.set_faults(FaultPlan(down={"cloudwatch"}, services={"sts"}))

    with pytest.raises(ClientError) as raised:
        client("cloudwatch").describe_alarms()

    assert error_of(raised) == (503, "ServiceUnavailable")
    assert outcome(lambda: client("sts").get_caller_identity()) == "ok"


def test_latency_delays_requests(emulator: Emulator, client: Any) -> None:
    sts = client("sts")
    sts.get_caller_identity()
    emulator.set_faults(FaultPlan(latency_ms=300))

    started = time.monotonic()
    sts.get_caller_identity()

    assert time.monotonic() - started >= 0.3


def test_the_same_seed_replays_the_same_faults(emulator: Emulator, client: Any) -> None:
    sts = client("sts")
    runs = []
    for _ in range(2):
        emulator.set_faults(FaultPlan(error_rate=0.5, seed=7))
        runs.append([outcome(sts.get_caller_identity) for _ in range(20)])

    assert runs[0] == runs[1]
    assert {"ok", "Throttling", "reset"} <= set(runs[0])


def test_retries_are_counted_as_requests(emulator: Emulator, client: Any) -> None:
    emulator.set_faults(FaultPlan(error_rate=1.0, kinds={"throttle"}))

    with pytest.raises(ClientError):
        client("cloudwatch", attempts=3).describe_alarms()

    assert emulator.requests() == {("cloudwatch", "DescribeAlarms"): 3}


def test_moto_api_is_never_faulted_and_reset_stops_faults(emulator: Emulator, client: Any) -> None:
    emulator.set_faults(FaultPlan(error_rate=1.0, down={"sts"}))

    emulator.reset()

    assert client("sts").get_caller_identity()["Account"] == ACCOUNT_ID


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"error_rate": 1.5}, ValueError),
        ({"error_rate": 0.1, "kinds": {"meteor"}}, ValueError),
        ({"error_rate": 0.1, "kinds": set()}, ValueError),
        ({"latency_ms": -1}, ValueError),
        ({"services": "sts"}, TypeError),
    ],
)
def test_fault_plans_are_checked(arguments: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        FaultPlan(**arguments)


def test_a_rule_fails_only_the_requests_whose_parameters_it_names(emulator: Emulator, client: Any) -> None:
    cfn = client("cloudformation")
    emulator.set_faults(FaultPlan(rules=[FaultRule("cloudformation", "DescribeStacks", kind="throttle", params={"StackName": "x"}, times=1)]))
    assert cfn.describe_stacks()["Stacks"] == []  # query protocol: the form body's parameters
    with pytest.raises(ClientError) as raised:
        cfn.describe_stacks(StackName="x")
    assert error_of(raised) == (400, "Throttling")
    with pytest.raises(ClientError, match="does not exist"):
        cfn.describe_stacks(StackName="x")  # the first time only
    assert emulator.requests() == {("cloudformation", "DescribeStacks"): 3}


def test_a_rule_matches_an_absent_parameter_and_json_bodies(emulator: Emulator, client: Any) -> None:
    cloudwatch = client("cloudwatch")
    listing = FaultRule("cloudformation", "DescribeStacks", params={"StackName": None})
    one = FaultRule("cloudwatch", "DescribeAlarms", kind="denied", params={"AlarmNamePrefix": "api"})
    emulator.set_faults(FaultPlan(rules=[listing, one]))
    with pytest.raises(ClientError, match="AccessDenied"):
        client("cloudformation").describe_stacks()
    with pytest.raises(ClientError, match="does not exist"):
        client("cloudformation").describe_stacks(StackName="x")
    with pytest.raises(ClientError) as raised:
        cloudwatch.describe_alarms(AlarmNamePrefix="api")
    assert error_of(raised) == (403, "AccessDenied")
    assert cloudwatch.describe_alarms(AlarmNamePrefix="web")["MetricAlarms"] == []


def test_a_garbled_answer_does_not_parse(emulator: Emulator, client: Any) -> None:
    emulator.set_faults(FaultPlan(rules=[FaultRule("sts", "GetCallerIdentity", kind="garbled")]))
    with pytest.raises(ResponseParserError):
        client("sts").get_caller_identity()


def test_fault_rules_are_checked() -> None:
    with pytest.raises(ValueError):
        FaultRule("sts", "GetCallerIdentity", kind="meteor")
    with pytest.raises(ValueError):
        FaultRule("sts", "GetCallerIdentity", times=0)
