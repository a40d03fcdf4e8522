"""CloudWatch Logs LogGroup: create, retention and KMS updates, tags, drift and self-heal, prune,
conflict and adopt, idempotency, the listing the call budget promises, validation."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import ACCOUNT, REGION, second_apply, writes
from controller.aws import ClientFactory
from controller.kinds import Context, Live
from reconcilers.logs import LogGroupReconciler

GROUP = "/aws/lambda/econlens-dev-scenario-processor"
KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/" + "{}"

LOG_GROUP = """\
apiVersion: lensops.io/v1
kind: LogGroup
metadata:
  name: {name}
"""


def log_group(
    name: str = "processor-logs",
    group: str = GROUP,
    retention: int | None = 30,
    tags: str = "{team: platform}",
    kms: str | None = None,
    annotations: str = "",
) -> str:
    """A LogGroup manifest."""
    lines = [LOG_GROUP.format(name=name).rstrip("\n")]
    if annotations:
        lines.append(f"  annotations: {annotations}")
    lines += ["spec:", f"  logGroupName: {group}"]
    if retention is not None:
        lines.append(f"  retentionInDays: {retention}")
    if kms:
        lines.append(f"  kmsKeyId: {kms}")
    lines.append(f"  tags: {tags}")
    return "\n".join(lines) + "\n"


def _estate(tree: Any, manifest: str | None = None, sync: str = "sync: {prune: true, allowMassPrune: true}") -> None:
    tree.environment("dev", sync)
    tree.write("environments/dev/logs.yaml", log_group() if manifest is None else manifest)


def _live(client: Any, name: str = GROUP) -> dict[str, Any] | None:
    found = client("logs").describe_log_groups(logGroupNamePrefix=name)["logGroups"]
    return next((g for g in found if g["logGroupName"] == name), None)


def _tags(client: Any, name: str = GROUP) -> dict[str, str]:
    arn = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{name}"
    return client("logs").list_tags_for_resource(resourceArn=arn)["tags"]  # type: ignore[no-any-return]


def test_plan_then_apply_creates_the_group_then_plan_is_clean(aws, client, tree, lensops):
    _estate(tree)
    planned = lensops("plan", "--repo", str(tree.root))
    assert planned.code == 2, planned.out + planned.err
    assert "LogGroup/processor-logs" in planned.out and "retentionInDays" in planned.out
    assert writes(aws.requests()) == {}
    assert _live(client) is None

    aws.clear_requests()
    applied = lensops("apply", "--repo", str(tree.root))
    assert applied.code == 0, applied.out + applied.err
    assert writes(aws.requests()) == {("logs", "CreateLogGroup"): 1, ("logs", "PutRetentionPolicy"): 1}
    live = _live(client)
    assert live is not None and live["retentionInDays"] == 30 and "kmsKeyId" not in live
    assert _tags(client) == {"team": "platform", "lensops:environment": "dev", "lensops:id": "LogGroup/processor-logs"}

    again = lensops("plan", "--repo", str(tree.root))
    assert again.code == 0, again.out + again.err


def test_second_apply_makes_no_write_call(aws, tree, lensops):
    _estate(tree)
    seen = second_apply(aws, tree, lensops)
    # The call floor of reconcilers/logs.py: one listing, and the tags of the group by ARN.
    assert {k: v for k, v in seen.items() if k[0] in ("logs", "resourcegroupstaggingapi")} == {
        ("logs", "DescribeLogGroups"): 1,
        ("resourcegroupstaggingapi", "GetResources"): 1,
    }


def test_group_without_retention_never_expires(aws, client, tree, lensops):
    _estate(tree, log_group(retention=None))
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    assert writes(aws.requests()) == {("logs", "CreateLogGroup"): 1}
    live = _live(client)
    assert live is not None and "retentionInDays" not in live
    assert lensops("plan", "--repo", str(tree.root)).code == 0


def test_retention_is_changed_then_removed(aws, client, tree, lensops):
    _estate(tree)
    assert lensops("apply", "--repo", str(tree.root)).code == 0

    _estate(tree, log_group(retention=365))
    plan = lensops("plan", "--repo", str(tree.root))
    assert plan.code == 2 and "retentionInDays: 30 -> 365" in plan.out, plan.out
    aws.clear_requests()
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    assert writes(aws.requests()) == {("logs", "PutRetentionPolicy"): 1}
    assert _live(client)["retentionInDays"] == 365  # type: ignore[index]

    _estate(tree, log_group(retention=None))
    aws.clear_requests()
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    assert writes(aws.requests()) == {("logs", "DeleteRetentionPolicy"): 1}
    assert "retentionInDays" not in _live(client)  # type: ignore[operator]
    assert lensops("plan", "--repo", str(tree.root)).code == 0


def test_tags_are_added_changed_and_removed(aws, client, tree, lensops):
    _estate(tree, log_group(tags="{team: platform, tier: gold}"))
    assert lensops("apply", "--repo", str(tree.root)).code == 0

    _estate(tree, log_group(tags="{team: data, owner: econlens}"))
    aws.clear_requests()
    applied = lensops("apply", "--repo", str(tree.root))
    assert applied.code == 0, applied.out + applied.err
    assert writes(aws.requests()) == {("logs", "TagResource"): 1, ("logs", "UntagResource"): 1}
    assert _tags(client) == {"team": "data", "owner": "econlens", "lensops:environment": "dev", "lensops:id": "LogGroup/processor-logs"}
    assert lensops("plan", "--repo", str(tree.root)).code == 0


def test_kms_key_is_set_at_creation_and_a_new_key_is_planned(aws, client, tree, lensops):
    _estate(tree, log_group(kms=KEY.format("one")))
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    assert _live(client)["kmsKeyId"] == KEY.format("one")  # type: ignore[index]
    assert lensops("plan", "--repo", str(tree.root)).code == 0

    _estate(tree, log_group(kms=KEY.format("two")))
    plan = lensops("plan", "--repo", str(tree.root))
    assert plan.code == 2 and f'kmsKeyId: "{KEY.format("one")}" -> "{KEY.format("two")}"' in plan.out, plan.out

    _estate(tree, log_group())
    plan = lensops("plan", "--repo", str(tree.root))
    assert plan.code == 2 and f'kmsKeyId: "{KEY.format("one")}" -> null' in plan.out, plan.out


def test_kms_key_is_associated_then_disassociated(aws, client, tree, lensops):
    _estate(tree)
    assert lensops("apply", "--repo", str(tree.root)).code == 0

    _estate(tree, log_group(kms=KEY.format("one")))
    aws.clear_requests()
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    assert writes(aws.requests()) == {("logs", "AssociateKmsKey"): 1}
    assert _live(client)["kmsKeyId"] == KEY.format("one")  # type: ignore[index]

    _estate(tree, log_group())
    aws.clear_requests()
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    assert writes(aws.requests()) == {("logs", "DisassociateKmsKey"): 1}
    assert "kmsKeyId" not in _live(client)  # type: ignore[operator]


def test_out_of_band_retention_is_planned_as_drift_and_put_back(aws, client, tree, lensops):
    _estate(tree)
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    client("logs").put_retention_policy(logGroupName=GROUP, retentionInDays=7)
    client("logs").untag_resource(resourceArn=f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{GROUP}", tagKeys=["team"])

    drift = lensops("plan", "--repo", str(tree.root))
    assert drift.code == 2
    assert "retentionInDays: 7 -> 30" in drift.out and "tags.team" in drift.out and "drifted" in drift.out, drift.out

    aws.clear_requests()
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    assert writes(aws.requests()) == {("logs", "PutRetentionPolicy"): 1, ("logs", "TagResource"): 1}
    assert _live(client)["retentionInDays"] == 30  # type: ignore[index]
    assert _tags(client)["team"] == "platform"

    client("logs").delete_retention_policy(logGroupName=GROUP)
    drift = lensops("plan", "--repo", str(tree.root))
    assert drift.code == 2 and "retentionInDays: null -> 30" in drift.out, drift.out


def test_daemon_self_heals_a_retention_changed_in_aws(daemon, git_remote, client):
    git_remote.tree.environment("dev", "sync: {selfHeal: true}")
    git_remote.tree.write("environments/dev/logs.yaml", log_group())
    first = git_remote.commit("log group")
    d = daemon()
    d.wait_until(lambda: d.applied_revision("dev") == first)
    assert _live(client)["retentionInDays"] == 30  # type: ignore[index]

    client("logs").put_retention_policy(logGroupName=GROUP, retentionInDays=1)
    d.wait_until(lambda: _live(client)["retentionInDays"] == 30, timeout=20)  # type: ignore[index]
    assert d.terminate() == 0


def _apply_then_remove_api_logs(aws, tree, lensops):
    """Apply a second group, /econlens/dev/api, then take its manifest out of the tree; the
    requests are counted from here."""
    tree.write("environments/dev/other.yaml", log_group(name="api-logs", group="/econlens/dev/api"))
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    tree.remove("environments/dev/other.yaml")
    aws.clear_requests()


def test_removed_manifest_is_pruned(aws, client, tree, lensops):
    _estate(tree)
    _apply_then_remove_api_logs(aws, tree, lensops)
    pruned = lensops("apply", "--repo", str(tree.root))
    assert pruned.code == 0, pruned.out + pruned.err
    assert writes(aws.requests()) == {("logs", "DeleteLogGroup"): 1}
    assert _live(client, "/econlens/dev/api") is None and _live(client) is not None
    assert lensops("plan", "--repo", str(tree.root)).code == 0


def test_removed_manifest_without_prune_is_an_orphan(aws, client, tree, lensops):
    _estate(tree, sync="sync: {prune: false}")
    _apply_then_remove_api_logs(aws, tree, lensops)
    kept = lensops("apply", "--repo", str(tree.root))
    assert kept.code == 0, kept.out + kept.err
    assert "orphan" in kept.out
    assert writes(aws.requests()) == {}
    assert _live(client, "/econlens/dev/api") is not None


def _lambda_made_it(client: Any) -> None:
    """The group as Lambda makes it on a function's first run: no retention, no tags."""
    client("logs").create_log_group(logGroupName=GROUP)


def test_existing_unowned_group_is_a_conflict(aws, client, tree, lensops):
    _lambda_made_it(client)
    _estate(tree)
    aws.clear_requests()
    result = lensops("apply", "--repo", str(tree.root))
    assert result.code == 1
    assert "not managed by lensops" in result.out and "lensops.io/adopt" in result.out
    assert writes(aws.requests()) == {}
    assert "retentionInDays" not in _live(client)  # type: ignore[operator]


def test_adopt_takes_the_group_over(aws, client, tree, lensops):
    _lambda_made_it(client)
    _estate(tree, log_group(annotations='{lensops.io/adopt: "true"}'))
    plan = lensops("plan", "--repo", str(tree.root))
    assert plan.code == 2 and "(adopt)" in plan.out, plan.out
    aws.clear_requests()
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    assert writes(aws.requests()) == {("logs", "PutRetentionPolicy"): 1, ("logs", "TagResource"): 1}
    assert _live(client)["retentionInDays"] == 30  # type: ignore[index]
    assert _tags(client) == {"team": "platform", "lensops:environment": "dev", "lensops:id": "LogGroup/processor-logs"}
    assert lensops("plan", "--repo", str(tree.root)).code == 0


def test_a_group_made_again_by_someone_else_after_a_prune_is_a_conflict(aws, client, tree, lensops):
    _estate(tree)
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    tree.remove("environments/dev/logs.yaml")
    tree.write("environments/dev/keep.yaml", log_group(name="api-logs", group="/econlens/dev/api"))
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    assert _live(client) is None
    _lambda_made_it(client)
    _estate(tree)  # the manifest back, without adopt: the new group is not lensops's
    plan = lensops("plan", "--repo", str(tree.root))
    assert "not managed by lensops" in plan.out, plan.out


def test_one_listing_narrowed_to_the_names_common_prefix(aws, client, tree, lensops):
    logs = client("logs")
    for i in range(60):
        logs.create_log_group(logGroupName=f"/aws/ecs/other-{i:02d}")
    tree.environment("dev")
    tree.write(
        "environments/dev/logs.yaml",
        log_group(name="a", group="/econlens/dev/a") + "---\n" + log_group(name="b", group="/econlens/dev/b"),
    )
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    aws.clear_requests()
    assert lensops("plan", "--repo", str(tree.root)).code == 0
    assert aws.requests()[("logs", "DescribeLogGroups")] == 1  # 62 groups, but only 2 under /econlens/dev/

    for i in range(55):
        logs.create_log_group(logGroupName=f"/econlens/dev/old-{i:02d}")
    aws.clear_requests()
    assert lensops("plan", "--repo", str(tree.root)).code == 0
    seen = aws.requests()
    assert seen[("logs", "DescribeLogGroups")] == 2  # 57 under the prefix: two pages of 50
    assert seen[("resourcegroupstaggingapi", "GetResources")] == 1


def test_account_level_retention_policy_is_not_fought():
    """Where an account-level policy applies, DescribeLogGroups reports its days (and its name):
    the group's own retention cannot be seen, so it is not compared (no write every pass)."""
    ctx = Context(environment="dev", region=REGION, account=ACCOUNT, role_arn="", factory=ClientFactory(max_attempts=1))
    reconciler = LogGroupReconciler(ctx)
    wanted = {"retentionInDays": 30, "kmsKeyId": None, "tags": {}}
    governed = Live(GROUP, {"retentionInDays": 3653, "kmsKeyId": None, "tags": {}}, extra={"retentionPolicyName": "org-keep"})
    assert reconciler.compare_view(governed, wanted)["retentionInDays"] == 30
    plain = Live(GROUP, {"retentionInDays": 3653, "kmsKeyId": None, "tags": {}}, extra={"retentionPolicyName": None})
    assert reconciler.compare_view(plain, wanted)["retentionInDays"] == 3653


def test_retention_that_cloudwatch_logs_refuses_is_a_validate_error(tree, lensops):
    tree.environment("dev")
    tree.write("environments/dev/logs.yaml", log_group(retention=31))
    result = lensops("validate", str(tree.root))
    assert result.code == 1
    assert "Traceback" not in result.err
    lines = [line for line in result.err.splitlines() if "retentionInDays" in line]
    assert len(lines) == 1, result.err
    # path:line: Kind/name: message, the line of the field
    assert lines[0].endswith(
        "environments/dev/logs.yaml:7: LogGroup/processor-logs: spec.retentionInDays: 31 is not a retention CloudWatch "
        "Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, "
        "3288, 3653 days); leave it out to never expire"
    ), lines[0]


@pytest.mark.parametrize("bad", ["true", '"thirty"', "0", "30.5"])
def test_other_bad_retentions_are_refused(tree, lensops, bad):
    tree.environment("dev")
    tree.write("environments/dev/logs.yaml", log_group().replace("retentionInDays: 30", f"retentionInDays: {bad}"))
    result = lensops("validate", str(tree.root))
    assert result.code == 1 and "spec.retentionInDays:" in result.err and "never expire" in result.err, result.err


def test_retention_may_be_a_variable(tree, lensops):
    tree.environment("dev", "vars: {logRetentionDays: 90}")
    tree.write("environments/dev/logs.yaml", log_group().replace("retentionInDays: 30", 'retentionInDays: "{{ vars.logRetentionDays }}"'))
    result = lensops("validate", str(tree.root))
    assert result.code == 0, result.err


@pytest.mark.parametrize(
    ("manifest", "text"),
    [
        (log_group(group='"/aws/lambda/has space"'), "spec.logGroupName: '/aws/lambda/has space' is not a log group name"),
        (log_group(group="aws/mine"), "spec.logGroupName: 'aws/mine': log group names cannot start with 'aws/'"),
        (log_group(kms="alias/logs"), "spec.kmsKeyId: 'alias/logs' is not a KMS key ARN"),
    ],
)
def test_bad_name_or_key_is_a_validate_error(tree, lensops, manifest, text):
    tree.environment("dev")
    tree.write("environments/dev/logs.yaml", manifest)
    result = lensops("validate", str(tree.root))
    assert result.code == 1 and f"LogGroup/processor-logs: {text}" in result.err, result.err
