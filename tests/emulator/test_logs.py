"""CloudWatch Logs additions: a group's KMS key, and its tags deleted with it."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def _group(logs: Any, name: str) -> dict[str, Any]:
    (found,) = [g for g in logs.describe_log_groups(logGroupNamePrefix=name)["logGroups"] if g["logGroupName"] == name]
    return found


def test_a_kms_key_is_associated_and_disassociated(client: Any) -> None:
    logs = client("logs")
    logs.create_log_group(logGroupName="/aws/lambda/f")
    logs.associate_kms_key(logGroupName="/aws/lambda/f", kmsKeyId=KEY)
    assert _group(logs, "/aws/lambda/f")["kmsKeyId"] == KEY
    logs.disassociate_kms_key(logGroupName="/aws/lambda/f")
    assert "kmsKeyId" not in _group(logs, "/aws/lambda/f")


def test_a_kms_key_of_an_unknown_group_is_not_found(client: Any) -> None:
    with pytest.raises(ClientError) as caught:
        client("logs").associate_kms_key(logGroupName="/nope", kmsKeyId=KEY)
    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_a_deleted_group_takes_its_tags_with_it(client: Any) -> None:
    logs = client("logs")
    logs.create_log_group(logGroupName="g", tags={"owner": "lensops"})
    arn = _group(logs, "g")["logGroupArn"]
    logs.delete_log_group(logGroupName="g")
    logs.create_log_group(logGroupName="g")
    assert logs.list_tags_for_resource(resourceArn=arn)["tags"] == {}
