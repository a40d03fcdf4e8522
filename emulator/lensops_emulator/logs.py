"""CloudWatch Logs additions: a log group's KMS key, and its tags deleted with it.

Part of the embedded AWS emulator used by tests and ``lensops demo`` (moto in
server mode plus what moto lacks). moto 5.2.6 has no AssociateKmsKey or
DisassociateKmsKey, and its DeleteLogGroup keeps the group's tags, so a new
group of that name, made by someone else, carries the old one's. Written from
the CloudWatch Logs API reference:

- ``AssociateKmsKey`` sets the group's ``kmsKeyId`` (DescribeLogGroups shows
  it); ``DisassociateKmsKey`` clears it. An unknown group is
  ResourceNotFoundException. (``resourceIdentifier``, the newer form that
  names a query's results, is not modelled.)
- ``DeleteLogGroup`` deletes the group's tags with it.
"""

from __future__ import annotations

from moto.logs.exceptions import ResourceNotFoundException
from moto.logs.models import LogGroup
from moto.logs.responses import LogsResponse

from .dispatch import Addition


class LogsAdditions(LogsResponse):
    """CloudWatch Logs operations moto lacks or gets wrong; the rest stay moto's."""

    def _group(self) -> LogGroup:
        group = self.logs_backend.groups.get(self._get_param("logGroupName"))
        if group is None:
            raise ResourceNotFoundException()
        return group

    def associate_kms_key(self) -> str:
        self._group().kms_key_id = self._get_param("kmsKeyId")
        return ""

    def disassociate_kms_key(self) -> str:
        self._group().kms_key_id = None
        return ""

    def delete_log_group(self) -> str:
        group = self._group()
        self.logs_backend.delete_log_group(group.name)
        self.logs_backend.tagger.delete_all_tags_for_resource(group.arn)
        return ""


ADDITION = Addition(
    service="logs",
    operations=frozenset({"AssociateKmsKey", "DisassociateKmsKey", "DeleteLogGroup"}),
    handler=LogsAdditions,
)
