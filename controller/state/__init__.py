"""The state store: what lensops applied, owns and decided, per environment.

``open_store(url)`` takes ``LENSOPS_STATE_URL``: ``sqlite:///path`` (one
process) or ``dynamodb://table`` (several replicas with leases).
"""

from __future__ import annotations

import os
import re
from typing import Any, Literal

from controller.errors import UsageError
from controller.state.base import (
    EnvironmentRecord,
    ItemTooLarge,
    LeaseLost,
    ResourceRecord,
    RevisionRecord,
    StateStore,
    StoreMissing,
)

__all__ = [
    "EnvironmentRecord",
    "ItemTooLarge",
    "LeaseLost",
    "Missing",
    "ResourceRecord",
    "RevisionRecord",
    "StateStore",
    "StoreMissing",
    "open_store",
    "store_name",
]

TABLE_NAME = re.compile(r"[A-Za-z0-9_.-]{3,255}")
"""DynamoDB's rule for table names."""

Missing = Literal["create", "error", "empty"]
"""What ``open_store`` does when the store does not exist: ``create`` it (the daemon, ``apply``),
raise ``StoreMissing`` (``status``, ``history``: they read what was recorded), or answer an
``empty`` store in memory and create nothing (``plan``: a pull request's check)."""


def _sqlite_path(url: str) -> str:
    """The file of a ``sqlite://`` URL: ``sqlite:///rel/path`` is relative to the working
    folder, ``sqlite:////abs/path`` absolute (SQLAlchemy's convention)."""
    path = url[len("sqlite://") :]
    if path.startswith("/"):
        path = path[1:]
    return path or ".lensops/state.db"


def store_name(url: str) -> str:
    """The store a URL names, for people: a SQLite file by its absolute path
    (``sqlite:////abs/state.db``), a DynamoDB table as given."""
    if url.startswith("sqlite://"):
        path = _sqlite_path(url)
        return url if path == ":memory:" else "sqlite:///" + os.path.abspath(path)
    from controller.source import redact

    return redact(url)


def open_store(url: str, factory: Any = None, *, missing: Missing = "create") -> StateStore:
    """The store named by a URL; ``missing`` says what to do when it does not exist yet.

    ``dynamodb://TABLE`` uses the region of ``AWS_REGION`` / ``AWS_DEFAULT_REGION``
    (or the AWS config) and a client of ``factory`` (a ``controller.aws.ClientFactory``;
    a new one when None), so its calls are retried by botocore and counted in
    ``lensops_aws_api_calls_total``.
    """
    from controller.source import redact  # the URL may carry user information: never shown

    if url.startswith("sqlite://"):
        from controller.state.sqlite import SqliteStore

        path = _sqlite_path(url)
        if path != ":memory:" and missing != "create" and not os.path.exists(path):
            if missing == "empty":
                return SqliteStore(":memory:")
            raise StoreMissing(store_name(url))
        return SqliteStore(path)
    if url.startswith("dynamodb://"):
        import boto3

        from controller.aws import ClientFactory
        from controller.state.dynamodb import DynamoStore

        table = url[len("dynamodb://") :].strip("/")
        if not TABLE_NAME.fullmatch(table):
            raise UsageError(f"LENSOPS_STATE_URL {redact(url)!r}: expected dynamodb://TABLE (3 to 255 of A-Z a-z 0-9 _ . -)")
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or boto3.Session().region_name
        if not region:
            raise UsageError(f"LENSOPS_STATE_URL {redact(url)!r}: set AWS_REGION to the DynamoDB table's region")
        client = (factory or ClientFactory()).client("dynamodb", region)
        try:
            return DynamoStore(table, client, create=missing == "create")
        except StoreMissing:
            if missing == "empty":
                from controller.state.sqlite import SqliteStore

                return SqliteStore(":memory:")
            raise
    raise UsageError(f"LENSOPS_STATE_URL {redact(url)!r}: expected sqlite:///path or dynamodb://table")
