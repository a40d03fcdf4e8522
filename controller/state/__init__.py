"""The state store: what lensops applied, owns and decided, per environment.

``open_store(url)`` takes ``LENSOPS_STATE_URL``: ``sqlite:///path`` (one
process) or ``dynamodb://table`` (several replicas with leases).
"""

from __future__ import annotations

import os
from typing import Any

from controller.errors import UsageError
from controller.state.base import (
    EnvironmentRecord,
    ItemTooLarge,
    LeaseLost,
    ResourceRecord,
    RevisionRecord,
    StateStore,
)

__all__ = [
    "EnvironmentRecord",
    "ItemTooLarge",
    "LeaseLost",
    "ResourceRecord",
    "RevisionRecord",
    "StateStore",
    "open_store",
]


def open_store(url: str, factory: Any = None) -> StateStore:
    """The store named by a URL.

    ``dynamodb://TABLE`` uses the region of ``AWS_REGION`` / ``AWS_DEFAULT_REGION``
    (or the AWS config) and a client of ``factory`` (a ``controller.aws.ClientFactory``;
    a new one when None), so its calls are retried by botocore and counted in
    ``lensops_aws_api_calls_total``.
    """
    if url.startswith("sqlite://"):
        from controller.state.sqlite import SqliteStore

        path = url[len("sqlite://") :]
        if path.startswith("/"):
            path = path[1:] if not path.startswith("//") else path[1:]
        return SqliteStore(path or ".lensops/state.db")
    if url.startswith("dynamodb://"):
        import boto3

        from controller.aws import ClientFactory
        from controller.state.dynamodb import DynamoStore

        table = url[len("dynamodb://") :].strip("/")
        if not table or "/" in table:
            raise UsageError(f"LENSOPS_STATE_URL {url!r}: expected dynamodb://TABLE")
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or boto3.Session().region_name
        if not region:
            raise UsageError(f"LENSOPS_STATE_URL {url!r}: set AWS_REGION to the DynamoDB table's region")
        client = (factory or ClientFactory()).client("dynamodb", region)
        return DynamoStore(table, client)
    raise UsageError(f"LENSOPS_STATE_URL {url!r}: expected sqlite:///path or dynamodb://table")
