"""The one mapping of AWS errors onto the taxonomy."""

from __future__ import annotations

import botocore.exceptions
import botocore.parsers
import pytest

from controller.errors import PermanentError, RetryableError, classify


def _client_error(code: str, status: int) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": f"{code} happened"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutMetricAlarm"
    )


@pytest.mark.parametrize(
    "exc, kind",
    [
        (_client_error("Throttling", 400), RetryableError),
        (_client_error("ThrottlingException", 400), RetryableError),
        (_client_error("InternalFailure", 500), RetryableError),
        (_client_error("Anything", 503), RetryableError),
        (_client_error("WAFOptimisticLockException", 400), RetryableError),
        (_client_error("AccessDenied", 403), PermanentError),
        (_client_error("AccessDeniedException", 400), PermanentError),
        (_client_error("ValidationError", 400), PermanentError),
        (_client_error("ExpiredToken", 400), PermanentError),
        (botocore.exceptions.EndpointConnectionError(endpoint_url="http://x"), RetryableError),
        (botocore.exceptions.ReadTimeoutError(endpoint_url="http://x"), RetryableError),
        (botocore.parsers.ResponseParserError("html page"), RetryableError),
        (botocore.exceptions.NoCredentialsError(), PermanentError),
        (ValueError("bug"), PermanentError),
    ],
)
def test_classify(exc, kind):
    mapped = classify(exc)
    assert type(mapped) is kind
    if isinstance(exc, botocore.exceptions.ClientError):
        assert str(mapped).startswith(exc.response["Error"]["Code"] + ": ")
