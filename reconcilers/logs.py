"""CloudWatch Logs: LogGroup (retention, KMS key, tags).

Call budget per pass, for N declared or recorded log groups: one paginated
``DescribeLogGroups`` listing (50 groups a page), shared by every LogGroup of
the pass and narrowed with ``logGroupNamePrefix`` to the longest prefix the N
names share (an account holds a log group per Lambda function, ECS service
and API stage: an unfiltered listing would page through all of them); then
the tags of the groups that exist, one ``GetResources(ResourceARNList=...)``
per hundred, batches concurrently. For M groups matching the prefix and E of
the N existing: max(1, ceil(M/50)) + ceil(E/100) reads, so ceil(N/50) +
ceil(N/100) when the names share a prefix no other group has, and no read per
group. (The tagging API lists log groups as type ``logs:log-group`` in AWS;
moto 5.2 lists them as ``logs:loggroup``, so a type-filtered listing finds
none there, while a lookup by ARN answers in both.)

Writes: a new group is one ``CreateLogGroup`` (its KMS key and tags in it),
plus ``PutRetentionPolicy`` when it has a retention. An update is one call per
changed field: ``PutRetentionPolicy`` or ``DeleteRetentionPolicy``,
``AssociateKmsKey`` or ``DisassociateKmsKey``, ``TagResource``,
``UntagResource`` (the ARN-based tagging calls; ``TagLogGroup`` is
deprecated). A delete is one ``DeleteLogGroup``.

ARNs: ``DescribeLogGroups`` gives ``arn``, ending in ``:*`` (for IAM
policies), and ``logGroupArn`` without it, which the tagging calls take and
which is the group's ``ref:LogGroup/<name>`` value.
"""

from __future__ import annotations

import functools
import os
import re
from typing import Any, Literal, get_args

from pydantic import Field, field_validator

from controller.diff import Change
from controller.kinds import Desired, Live, Reconciler
from controller.manifests.types import Spec
from reconcilers.tags import TagApi, chunks, tags_of

RetentionDays = Literal[1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653]
"""The values PutRetentionPolicy accepts (botocore's logs model, shape ``Days``)."""
RETENTION_DAYS: tuple[int, ...] = get_args(RetentionDays)

TAGS = TagApi(arn="resourceArn", keys="tagKeys", tags="tags", pairs=False)
"""CloudWatch Logs spells its tag writes in lowerCamelCase, tags as a map."""

# Checked after interpolation (a validator, not a schema pattern: an editor sees `{{ env.name }}`).
_LOG_GROUP_NAME = re.compile(r"^[.\-_/#A-Za-z0-9]{1,512}$")
_KMS_KEY_ARN = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[^\s]{1,200}$")


class LogGroupSpec(Spec):
    logGroupName: str | None = None
    retentionInDays: RetentionDays | None = None
    kmsKeyId: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)

    @field_validator("logGroupName")
    @classmethod
    def _group_name(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not _LOG_GROUP_NAME.match(value):
            raise ValueError(f"{value!r} is not a log group name (1 to 512 of letters, digits and . - _ / #)")
        if value.startswith("aws/"):
            raise ValueError(f"{value!r}: log group names cannot start with 'aws/' (AWS's own start with '/aws/')")
        return value

    @field_validator("kmsKeyId")
    @classmethod
    def _key_arn(cls, value: str | None) -> str | None:
        if value is not None and not _KMS_KEY_ARN.match(value):
            raise ValueError(f"{value!r} is not a KMS key ARN (arn:aws:kms:<region>:<account>:key/<id>; not an alias)")
        return value

    @field_validator("retentionInDays", mode="before")
    @classmethod
    def _retention(cls, value: Any) -> Any:
        if value is None:
            return value
        number = int(value) if isinstance(value, str) and value.strip().isdigit() else value
        if isinstance(number, bool) or not isinstance(number, (int, float)) or number not in RETENTION_DAYS:
            allowed = ", ".join(str(d) for d in RETENTION_DAYS)
            raise ValueError(
                f"{value!r} is not a retention CloudWatch Logs accepts ({allowed} days); leave it out to never expire"
            )
        return int(number)


def _arn_without_star(group: dict[str, Any]) -> str:
    """The ARN the tagging calls take: ``logGroupArn``, else ``arn`` without its ``:*``."""
    arn = str(group.get("logGroupArn") or group.get("arn") or "")
    return arn.removesuffix(":*")


class LogGroupReconciler(Reconciler):
    """A CloudWatch Logs log group: how long its events are kept, the KMS key that encrypts them, and its tags.

    Lambda functions, ECS tasks and API Gateway stages make their log groups on
    first use, keeping events forever; a LogGroup manifest of the same name sets
    their retention, with `lensops.io/adopt: "true"` when the group exists already.
    With `sync.prune` on, removing the manifest deletes the group and every event
    in it: to keep a group that a service writes to, annotate it `lensops.io/prune: "false"`.
    """

    kind = "LogGroup"
    spec_model = LogGroupSpec
    name_field = "logGroupName"
    service = "logs"
    iam_read = ("logs:DescribeLogGroups", "tag:GetResources")
    iam_write = (
        "logs:CreateLogGroup",
        "logs:DeleteLogGroup",
        "logs:PutRetentionPolicy",
        "logs:DeleteRetentionPolicy",
        "logs:AssociateKmsKey",
        "logs:DisassociateKmsKey",
        "logs:TagResource",
        "logs:UntagResource",
    )

    example = """\
apiVersion: lensops.io/v1
kind: LogGroup
metadata:
  name: scenario-processor-logs
spec:
  logGroupName: /aws/lambda/econlens-{{ env.name }}-scenario-processor
  retentionInDays: 30
  tags: {team: platform}
"""

    notes = {
        "logGroupName": (
            "1 to 512 letters, digits and `.-_/#`. `/aws/lambda/<function>` is the group a Lambda function "
            "writes to; it may exist before lensops manages it."
        ),
        "retentionInDays": (
            "Absent: the events never expire (a retention set in AWS is removed with DeleteRetentionPolicy). "
            "Where an account-level retention policy applies, AWS reports that policy's days instead of the "
            "group's own, so the field is not compared."
        ),
        "kmsKeyId": (
            "ARN (not an alias) of a symmetric KMS key whose key policy lets CloudWatch Logs use it; only events ingested "
            "after a change are encrypted with the new key. Absent: CloudWatch Logs' own encryption (a key "
            "associated in AWS is disassociated)."
        ),
    }

    def arn(self, physical: str) -> str:
        return f"arn:aws:logs:{self.ctx.region}:{self.ctx.account}:log-group:{physical}"

    def _groups(self, prefix: str) -> dict[str, dict[str, Any]]:
        """Name -> DescribeLogGroups entry of every group whose name starts with ``prefix``, once a pass."""

        def fetch() -> dict[str, dict[str, Any]]:
            found: dict[str, dict[str, Any]] = {}
            params: dict[str, Any] = {"logGroupNamePrefix": prefix} if prefix else {}
            for page in self.ctx.client("logs").get_paginator("describe_log_groups").paginate(**params):
                found.update({g["logGroupName"]: g for g in page.get("logGroups", [])})
            return found

        return self.ctx.once(f"logs:groups:{prefix}", fetch)

    def observe(self, physicals: list[str]) -> dict[str, Live]:
        if not physicals:
            return {}
        groups = self._groups(os.path.commonprefix(physicals))
        present = [name for name in physicals if name in groups]
        if not present:
            return {}
        arns = {name: _arn_without_star(groups[name]) or self.arn(name) for name in present}
        tags: dict[str, dict[str, str]] = {}
        for batch in self.ctx.map(functools.partial(tags_of, self.ctx), chunks(sorted(set(arns.values())), 100)):
            tags.update({arn.removesuffix(":*"): found for arn, found in batch.items()})
        out: dict[str, Live] = {}
        for name in present:
            raw, arn = groups[name], arns[name]
            owned = tags.get(arn) or {}
            out[name] = Live.tagged(
                name,
                {"retentionInDays": raw.get("retentionInDays"), "kmsKeyId": raw.get("kmsKeyId"), "tags": owned},
                owned,
                arn=arn,
                attrs={"arn": arn, "name": name},
                extra={"retentionPolicyName": raw.get("retentionPolicyName")},
            )
        return out

    def discover(self, prefix: str) -> list[str]:
        """Every log group whose name starts with ``prefix``: one paginated ``DescribeLogGroups``."""
        return sorted(self._groups(prefix))

    def desired_state(self, desired: Desired) -> dict[str, Any]:
        spec = desired.spec
        return {"retentionInDays": spec.get("retentionInDays"), "kmsKeyId": spec.get("kmsKeyId"), "tags": dict(desired.tags)}

    def compare_view(self, live: Live, state: dict[str, Any], applied: dict[str, Any] | None = None) -> dict[str, Any]:
        if not live.extra.get("retentionPolicyName"):
            return live.state
        # An account-level retention policy decides: AWS reports its days, not the
        # group's own, and PutRetentionPolicy would change nothing that shows.
        return {**live.state, "retentionInDays": state.get("retentionInDays")}

    def create(self, desired: Desired, state: dict[str, Any]) -> Live:
        client = self.ctx.client("logs")
        params: dict[str, Any] = {"logGroupName": desired.physical}
        if state["kmsKeyId"]:
            params["kmsKeyId"] = state["kmsKeyId"]
        if state["tags"]:
            params["tags"] = state["tags"]
        client.create_log_group(**params)
        if state["retentionInDays"] is not None:
            client.put_retention_policy(logGroupName=desired.physical, retentionInDays=state["retentionInDays"])
        arn = self.arn(desired.physical)
        return Live(desired.physical, state, arn=arn, attrs={"arn": arn, "name": desired.physical})

    def update(self, desired: Desired, state: dict[str, Any], live: Live, changes: list[Change]) -> Live:
        client = self.ctx.client("logs")
        name = live.physical
        changed = {c.path.split(".", 1)[0] for c in changes}
        if "retentionInDays" in changed:
            if state["retentionInDays"] is None:
                client.delete_retention_policy(logGroupName=name)
            else:
                client.put_retention_policy(logGroupName=name, retentionInDays=state["retentionInDays"])
        if "kmsKeyId" in changed:
            if state["kmsKeyId"]:
                client.associate_kms_key(logGroupName=name, kmsKeyId=state["kmsKeyId"])
            else:
                client.disassociate_kms_key(logGroupName=name)
        TAGS.write(client, live.arn, changes)
        return Live(name, state, arn=live.arn, attrs=live.attrs, extra=live.extra)

    def delete(self, live: Live) -> None:
        self.ctx.client("logs").delete_log_group(logGroupName=live.physical)
