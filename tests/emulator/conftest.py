"""Fixtures for the emulator's own tests: the session's emulator (tests/conftest.py), reset before each test."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.config import Config

from lensops_emulator import Emulator

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"  # moto's default account


@pytest.fixture(autouse=True)
def _fresh_emulator(emulator: Emulator) -> None:
    emulator.reset()


@pytest.fixture
def client(emulator: Emulator) -> Callable[..., Any]:
    """Make a boto3 client of the emulator that sends each call exactly once.

    botocore's ``retries={"max_attempts": 1}`` means one *retry* in its
    default (legacy) mode; ``total_max_attempts`` counts the first attempt.
    """

    def make(service: str, attempts: int = 1) -> Any:
        return boto3.client(
            service,
            endpoint_url=emulator.url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(retries={"total_max_attempts": attempts, "mode": "standard"}),
        )

    return make
