"""Lambda additions: provisioned concurrency configurations."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import pytest
from botocore.exceptions import ClientError

from lensops_emulator import Emulator

FUNCTION = "api"
FUNCTION_ARN = f"arn:aws:lambda:us-east-1:123456789012:function:{FUNCTION}"


def _zipped_handler(version: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("handler.py", f"def handle(event, context):\n    return {{'version': {version}}}\n")
    return buffer.getvalue()


@pytest.fixture
def lambda_(client: Any) -> Any:
    role = client("iam").create_role(
        RoleName="api",
        AssumeRolePolicyDocument=json.dumps(
            {"Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
        ),
    )["Role"]["Arn"]
    lambda_ = client("lambda")
    lambda_.create_function(
        FunctionName=FUNCTION, Runtime="python3.12", Role=role, Handler="handler.handle", Code={"ZipFile": _zipped_handler(1)}
    )
    lambda_.publish_version(FunctionName=FUNCTION)
    lambda_.update_function_code(FunctionName=FUNCTION, ZipFile=_zipped_handler(2))
    lambda_.publish_version(FunctionName=FUNCTION)
    lambda_.create_alias(FunctionName=FUNCTION, Name="live", FunctionVersion="1")
    return lambda_


def code_of(raised: pytest.ExceptionInfo[ClientError]) -> str:
    return str(raised.value.response["Error"]["Code"])


def test_provisioned_concurrency_on_an_alias_is_ready_at_once(lambda_: Any) -> None:
    put = lambda_.put_provisioned_concurrency_config(FunctionName=FUNCTION, Qualifier="live", ProvisionedConcurrentExecutions=5)
    got = lambda_.get_provisioned_concurrency_config(FunctionName=FUNCTION, Qualifier="live")

    assert put["ResponseMetadata"]["HTTPStatusCode"] == 202
    for config in (put, got):
        assert config["RequestedProvisionedConcurrentExecutions"] == 5
        assert config["AllocatedProvisionedConcurrentExecutions"] == 5
        assert config["AvailableProvisionedConcurrentExecutions"] == 5
        assert config["Status"] == "READY"
    assert got["LastModified"] == put["LastModified"]


def test_provisioned_concurrency_configs_are_listed_and_paged(lambda_: Any) -> None:
    lambda_.put_provisioned_concurrency_config(FunctionName=FUNCTION, Qualifier="live", ProvisionedConcurrentExecutions=5)
    lambda_.put_provisioned_concurrency_config(FunctionName=FUNCTION, Qualifier="2", ProvisionedConcurrentExecutions=3)

    listed = lambda_.list_provisioned_concurrency_configs(FunctionName=FUNCTION)["ProvisionedConcurrencyConfigs"]
    paged = [
        config["FunctionArn"]
        for page in lambda_.get_paginator("list_provisioned_concurrency_configs").paginate(
            FunctionName=FUNCTION, PaginationConfig={"PageSize": 1}
        )
        for config in page["ProvisionedConcurrencyConfigs"]
    ]

    assert {c["FunctionArn"]: c["RequestedProvisionedConcurrentExecutions"] for c in listed} == {
        f"{FUNCTION_ARN}:2": 3,
        f"{FUNCTION_ARN}:live": 5,
    }
    assert sorted(paged) == sorted(c["FunctionArn"] for c in listed)


def test_deleted_or_absent_configs_are_not_found(lambda_: Any) -> None:
    lambda_.put_provisioned_concurrency_config(FunctionName=FUNCTION, Qualifier="live", ProvisionedConcurrentExecutions=5)

    lambda_.delete_provisioned_concurrency_config(FunctionName=FUNCTION, Qualifier="live")

    for call in (lambda_.get_provisioned_concurrency_config, lambda_.delete_provisioned_concurrency_config):
        with pytest.raises(ClientError) as raised:
            call(FunctionName=FUNCTION, Qualifier="live")
        assert code_of(raised) == "ProvisionedConcurrencyConfigNotFoundException"
        assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert lambda_.list_provisioned_concurrency_configs(FunctionName=FUNCTION)["ProvisionedConcurrencyConfigs"] == []


@pytest.mark.parametrize(
    ("function", "qualifier", "code"),
    [
        (FUNCTION, "$LATEST", "InvalidParameterValueException"),
        (FUNCTION, "missing", "ResourceNotFoundException"),
        (FUNCTION, "9", "ResourceNotFoundException"),
        ("missing", "live", "ResourceNotFoundException"),
    ],
)
def test_put_needs_an_existing_published_version_or_alias(lambda_: Any, function: str, qualifier: str, code: str) -> None:
    with pytest.raises(ClientError) as raised:
        lambda_.put_provisioned_concurrency_config(FunctionName=function, Qualifier=qualifier, ProvisionedConcurrentExecutions=1)

    assert code_of(raised) == code


def test_an_alias_with_routing_weights_cannot_have_provisioned_concurrency(lambda_: Any) -> None:
    lambda_.update_alias(FunctionName=FUNCTION, Name="live", RoutingConfig={"AdditionalVersionWeights": {"2": 0.1}})

    with pytest.raises(ClientError) as raised:
        lambda_.put_provisioned_concurrency_config(FunctionName=FUNCTION, Qualifier="live", ProvisionedConcurrentExecutions=1)

    assert code_of(raised) == "InvalidParameterValueException"


def test_provisioned_concurrency_stays_within_reserved_concurrency(lambda_: Any) -> None:
    lambda_.put_function_concurrency(FunctionName=FUNCTION, ReservedConcurrentExecutions=10)
    lambda_.put_provisioned_concurrency_config(FunctionName=FUNCTION, Qualifier="2", ProvisionedConcurrentExecutions=6)
    lambda_.put_provisioned_concurrency_config(FunctionName=FUNCTION, Qualifier="2", ProvisionedConcurrentExecutions=7)

    with pytest.raises(ClientError) as raised:
        lambda_.put_provisioned_concurrency_config(FunctionName=FUNCTION, Qualifier="live", ProvisionedConcurrentExecutions=4)

    assert code_of(raised) == "InvalidParameterValueException"


def test_deleting_the_alias_deletes_its_config(lambda_: Any) -> None:
    lambda_.put_provisioned_concurrency_config(FunctionName=FUNCTION, Qualifier="live", ProvisionedConcurrentExecutions=5)

    lambda_.delete_alias(FunctionName=FUNCTION, Name="live")
    lambda_.create_alias(FunctionName=FUNCTION, Name="live", FunctionVersion="1")

    with pytest.raises(ClientError) as raised:
        lambda_.get_provisioned_concurrency_config(FunctionName=FUNCTION, Qualifier="live")
    assert code_of(raised) == "ProvisionedConcurrencyConfigNotFoundException"


def test_functions_run_without_docker_after_a_reset(lambda_: Any) -> None:
    result = lambda_.invoke(FunctionName=FUNCTION, Qualifier="live")

    assert result["StatusCode"] == 200
    assert "FunctionError" not in result


def test_reset_wipes_provisioned_concurrency(emulator: Emulator, client: Any, lambda_: Any) -> None:
    lambda_.put_provisioned_concurrency_config(FunctionName=FUNCTION, Qualifier="live", ProvisionedConcurrentExecutions=5)

    emulator.reset()

    with pytest.raises(ClientError) as raised:
        lambda_.list_provisioned_concurrency_configs(FunctionName=FUNCTION)
    assert code_of(raised) == "ResourceNotFoundException"
