"""LambdaAlias: version, weights, description, provisioned concurrency; one ListAliases per function."""

from __future__ import annotations

import io
import json
import textwrap
import zipfile
from typing import Any

import pytest

from conftest import writes

from controller.errors import PermanentError
from controller.kinds import Context, Desired, Live
from reconcilers.lambda_alias import LambdaAliasReconciler

ALIAS_ARN = "arn:aws:lambda:us-east-1:123456789012:function:{}:{}"


def _zipped_handler(version: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("handler.py", f"def handle(event, context):\n    return {{'version': {version}}}\n")
    return buffer.getvalue()


def _function(lambda_: Any, role: str, name: str) -> None:
    """A function with published versions 1 and 2."""
    lambda_.create_function(
        FunctionName=name, Runtime="python3.12", Role=role, Handler="handler.handle", Code={"ZipFile": _zipped_handler(1)}
    )
    lambda_.publish_version(FunctionName=name)
    lambda_.update_function_code(FunctionName=name, ZipFile=_zipped_handler(2))
    lambda_.publish_version(FunctionName=name)


@pytest.fixture
def lambda_(aws: Any, client: Any) -> Any:
    """Functions ``api`` and ``worker``, each with versions 1 and 2, created outside lensops."""
    role = client("iam").create_role(
        RoleName="lambda",
        AssumeRolePolicyDocument=json.dumps(
            {"Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
        ),
    )["Role"]["Arn"]
    made = client("lambda")
    _function(made, role, "api")
    _function(made, role, "worker")
    aws.clear_requests()
    return made


def alias(name: str, function: str = "api", version: str = "1", extra: str = "", alias_name: str | None = None) -> str:
    """A LambdaAlias manifest."""
    lines = ["apiVersion: lensops.io/v1", "kind: LambdaAlias", "metadata:", f"  name: {name}", "spec:", f"  functionName: {function}"]
    if alias_name:
        lines.append(f"  name: {alias_name}")
    lines.append(f'  functionVersion: "{version}"')
    text = "\n".join(lines) + "\n"
    if extra:
        text += textwrap.indent(textwrap.dedent(extra).strip("\n"), "  ") + "\n"
    return text


def _apply(lensops: Any, tree: Any) -> Any:
    result = lensops("apply", "--repo", str(tree.root))
    assert result.code == 0, result.out + result.err
    return result


def _provisioned(lambda_: Any, function: str, alias_name: str) -> int | None:
    try:
        config = lambda_.get_provisioned_concurrency_config(FunctionName=function, Qualifier=alias_name)
    except lambda_.exceptions.ProvisionedConcurrencyConfigNotFoundException:
        return None
    return int(config["RequestedProvisionedConcurrentExecutions"])


def test_create_sets_version_description_and_provisioned_concurrency(lambda_, tree, lensops):
    tree.environment("dev")
    tree.write("environments/dev/aliases.yaml", alias("live", extra="description: production traffic\nprovisionedConcurrency: 3"))
    _apply(lensops, tree)

    live = lambda_.get_alias(FunctionName="api", Name="live")
    assert (live["FunctionVersion"], live["Description"]) == ("1", "production traffic")
    assert live["AliasArn"] == ALIAS_ARN.format("api", "live")
    assert _provisioned(lambda_, "api", "live") == 3
    assert lensops("plan", "--repo", str(tree.root)).code == 0


def test_second_apply_makes_no_write_call(aws, lambda_, tree, lensops):
    tree.environment("dev")
    tree.write(
        "environments/dev/aliases.yaml",
        alias("live", extra="provisionedConcurrency: 2")
        + "---\n"
        + alias("beta", version="2", extra="routingConfig: {additionalVersionWeights: {'1': 0.25}}\ndescription: canary"),
    )
    _apply(lensops, tree)
    aws.clear_requests()
    _apply(lensops, tree)
    assert aws.requests(), "the second apply must still read AWS"
    assert writes(aws.requests()) == {}


def test_new_version_is_one_update_alias(aws, lambda_, tree, lensops):
    tree.environment("dev")
    tree.write("environments/dev/aliases.yaml", alias("live"))
    _apply(lensops, tree)
    tree.write("environments/dev/aliases.yaml", alias("live", version="2"))
    plan = lensops("plan", "--repo", str(tree.root))
    assert plan.code == 2 and 'functionVersion: "1" -> "2"' in plan.out
    aws.clear_requests()
    _apply(lensops, tree)
    assert writes(aws.requests()) == {("lambda", "UpdateAlias"): 1}
    assert lambda_.get_alias(FunctionName="api", Name="live")["FunctionVersion"] == "2"


def test_routing_weights_are_set_and_cleared(lambda_, tree, lensops):
    tree.environment("dev")
    tree.write("environments/dev/aliases.yaml", alias("live", version="2", extra="routingConfig: {additionalVersionWeights: {'1': 0.1}}"))
    _apply(lensops, tree)
    assert lambda_.get_alias(FunctionName="api", Name="live")["RoutingConfig"]["AdditionalVersionWeights"] == {"1": 0.1}

    tree.write("environments/dev/aliases.yaml", alias("live", version="2"))
    _apply(lensops, tree)
    weights = (lambda_.get_alias(FunctionName="api", Name="live").get("RoutingConfig") or {}).get("AdditionalVersionWeights")
    assert not weights
    assert lensops("plan", "--repo", str(tree.root)).code == 0


def test_provisioned_concurrency_is_changed_then_removed(aws, lambda_, tree, lensops):
    tree.environment("dev")
    tree.write("environments/dev/aliases.yaml", alias("live", extra="provisionedConcurrency: 2"))
    _apply(lensops, tree)

    tree.write("environments/dev/aliases.yaml", alias("live", extra="provisionedConcurrency: 5"))
    aws.clear_requests()
    _apply(lensops, tree)
    assert writes(aws.requests()) == {("lambda", "PutProvisionedConcurrencyConfig"): 1}
    assert _provisioned(lambda_, "api", "live") == 5

    tree.write("environments/dev/aliases.yaml", alias("live"))
    aws.clear_requests()
    _apply(lensops, tree)
    assert writes(aws.requests()) == {("lambda", "DeleteProvisionedConcurrencyConfig"): 1}
    assert _provisioned(lambda_, "api", "live") is None


def test_out_of_band_change_is_planned_and_reverted(lambda_, tree, lensops):
    tree.environment("dev")
    tree.write("environments/dev/aliases.yaml", alias("live", extra="description: stable"))
    _apply(lensops, tree)
    lambda_.update_alias(FunctionName="api", Name="live", FunctionVersion="2", Description="hotfix by hand")

    plan = lensops("plan", "--repo", str(tree.root))
    assert plan.code == 2
    assert "LambdaAlias/live" in plan.out
    assert 'functionVersion: "2" -> "1"' in plan.out
    assert "drifted" in plan.out

    _apply(lensops, tree)
    live = lambda_.get_alias(FunctionName="api", Name="live")
    assert (live["FunctionVersion"], live["Description"]) == ("1", "stable")
    assert lensops("plan", "--repo", str(tree.root)).code == 0


def test_prune_deletes_the_alias_not_the_function(aws, lambda_, tree, lensops):
    tree.environment("dev", "sync: {prune: true, allowMassPrune: true}")
    tree.write("environments/dev/aliases.yaml", alias("live") + "---\n" + alias("beta"))
    _apply(lensops, tree)
    tree.write("environments/dev/aliases.yaml", alias("beta"))
    aws.clear_requests()
    _apply(lensops, tree)
    assert writes(aws.requests()) == {("lambda", "DeleteAlias"): 1}
    assert [a["Name"] for a in lambda_.list_aliases(FunctionName="api")["Aliases"]] == ["beta"]
    assert lambda_.get_function(FunctionName="api")["Configuration"]["FunctionName"] == "api"


def test_one_list_aliases_per_function_for_five_aliases(aws, lambda_, tree, lensops):
    tree.environment("dev")
    tree.write("environments/dev/aliases.yaml", "---\n".join(alias(f"alias-{i}") for i in range(5)))
    _apply(lensops, tree)
    aws.clear_requests()
    assert lensops("plan", "--repo", str(tree.root)).code == 0
    reads = {op: n for (service, op), n in aws.requests().items() if service == "lambda"}
    assert reads == {"ListAliases": 1, "ListProvisionedConcurrencyConfigs": 1}


def test_same_alias_name_on_two_functions_are_two_resources(lambda_, tree, lensops):
    tree.environment("dev")
    tree.write(
        "environments/dev/aliases.yaml",
        alias("api-live", function="api", alias_name="live")
        + "---\n"
        + alias("worker-live", function="arn:aws:lambda:us-east-1:123456789012:function:worker", version="2", alias_name="live"),
    )
    _apply(lensops, tree)
    assert lambda_.get_alias(FunctionName="api", Name="live")["FunctionVersion"] == "1"
    assert lambda_.get_alias(FunctionName="worker", Name="live")["FunctionVersion"] == "2"
    assert lensops("plan", "--repo", str(tree.root)).code == 0


def test_missing_function_fails_the_alias_naming_it(lambda_, tree, lensops):
    tree.environment("dev")
    tree.write("environments/dev/aliases.yaml", alias("live", function="billing"))
    result = lensops("apply", "--repo", str(tree.root))
    assert result.code == 1
    assert "LambdaAlias/live" in result.out + result.err
    assert "function billing" in result.out + result.err


class _Allocating:
    """A Lambda client whose provisioned concurrency goes through the given statuses, as AWS does for minutes."""

    def __init__(self, *statuses: str):
        self.statuses = list(statuses)

    def client(self, *args: str) -> "_Allocating":
        return self

    def get_provisioned_concurrency_config(self, FunctionName: str, Qualifier: str) -> dict[str, Any]:
        return {"Status": self.statuses.pop(0), "StatusReason": "insufficient capacity"}


def test_settle_waits_for_provisioned_concurrency_and_fails_on_failed():
    """The emulator allocates at once, so AWS's IN_PROGRESS and FAILED are played by a stand-in client."""
    desired = Desired("LambdaAlias", "live", "api:live", {}, {})
    live = Live("api:live", {}, extra={"provisioning": True})

    allocating = LambdaAliasReconciler(Context("dev", "us-east-1", "123456789012", "", _Allocating("IN_PROGRESS", "READY")))
    assert allocating.settle(desired, live) is None
    assert allocating.settle(desired, live) is live

    failing = LambdaAliasReconciler(Context("dev", "us-east-1", "123456789012", "", _Allocating("FAILED")))
    with pytest.raises(PermanentError, match="insufficient capacity"):
        failing.settle(desired, live)
