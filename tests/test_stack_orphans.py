"""Stack: a first creation that failed, whose manifest is then removed, is an orphan like any other.

lensops never recorded such a stack (its creation did not finish), but the
stack carries lensops's ownership tags: plan and status report it as an
orphan, and with ``sync.prune`` on it is deleted, within the mass-prune guard.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import alarms
from test_stack import NETWORK, NETWORK_TEMPLATE

OTHER = NETWORK.replace("name: network", "name: other").replace("dev-network", "dev-other").replace("Prefix: dev", "Prefix: other")
ORPHAN = "- Stack/network (dev-network)  [orphan: creation failed, ROLLBACK_COMPLETE, never recorded; not in Git; sync.prune is off]"
ALARMS = [f"api-{i}" for i in range(10)]


def _failed_creation(client: Any, tree: Any, lensops: Any, env: str = "", other: bool = False) -> None:
    """dev-network's creation fails (its SSM parameter exists already), then its manifest is removed."""
    client("ssm").put_parameter(Name="/dev/retention", Value="taken", Type="String")
    tree.environment("dev", env)
    tree.write("templates/network.yaml", NETWORK_TEMPLATE)
    tree.write("environments/dev/alarms.yaml", alarms(ALARMS))
    tree.write("environments/dev/stacks.yaml", NETWORK)
    if other:
        tree.write("environments/dev/other.yaml", OTHER)
    failed = lensops("apply", "--repo", str(tree.root))
    assert failed.code == 1 and "CREATE_FAILED" in failed.out + failed.err
    assert _status(client, "dev-network") == "ROLLBACK_COMPLETE"
    plan = lensops("plan", "--repo", str(tree.root))
    assert "orphan" not in plan.out  # still in Git: created again, not an orphan
    tree.remove("environments/dev/stacks.yaml")


def _status(client: Any, name: str) -> str | None:
    stacks = [s for s in client("cloudformation").describe_stacks()["Stacks"] if s["StackName"] == name]
    return stacks[0]["StackStatus"] if stacks else None


def test_kept_and_reported_as_an_orphan_in_plan_and_status_with_prune_off(aws, client, tree, lensops):
    _failed_creation(client, tree, lensops)

    plan = lensops("plan", "--repo", str(tree.root))
    assert plan.code == 0, plan.out + plan.err
    assert ORPHAN in plan.out
    doc = json.loads(lensops("plan", "--repo", str(tree.root), "--output", "json").out)
    entry = next(r for r in doc["environments"][0]["resources"] if r["kind"] == "Stack")
    assert (entry["name"], entry["physical"], entry["action"], entry["status"]) == ("network", "dev-network", "delete", "orphan")

    applied = lensops("apply", "--repo", str(tree.root))
    assert applied.code == 0, applied.out + applied.err
    assert _status(client, "dev-network") == "ROLLBACK_COMPLETE"
    status = json.loads(lensops("status", "--output", "json").out)["environments"]["dev"]
    assert status["counts"]["orphans"] == 1
    text = lensops("status").out
    assert "orphan: Stack/network (dev-network): creation failed, ROLLBACK_COMPLETE, never recorded" in text
    assert text.splitlines()[0].split()[-1] == "ORPHANS" and text.splitlines()[1].split()[-1] == "1"


def _failed_elsewhere(client: Any) -> None:
    """qa-network: a failed creation that lensops's environment qa made (its tags say so)."""
    client("ssm").put_parameter(Name="/qa/retention", Value="taken", Type="String")
    client("cloudformation").create_stack(
        StackName="qa-network",
        TemplateBody=NETWORK_TEMPLATE,
        Parameters=[{"ParameterKey": "Prefix", "ParameterValue": "qa"}],
        Tags=[{"Key": "lensops:environment", "Value": "qa"}, {"Key": "lensops:id", "Value": "Stack/network"}],
    )
    assert _status(client, "qa-network") == "ROLLBACK_COMPLETE"


def test_pruned_with_prune_on(aws, client, tree, lensops):
    _failed_elsewhere(client)
    _failed_creation(client, tree, lensops, env="sync: {prune: true}")

    plan = lensops("plan", "--repo", str(tree.root))
    assert plan.code == 2, plan.out + plan.err
    assert "- Stack/network (dev-network)\n" in plan.out and "orphan" not in plan.out

    aws.clear_requests()
    applied = lensops("apply", "--repo", str(tree.root))
    assert applied.code == 0, applied.out + applied.err
    assert "Stack/network deleted (creation failed, ROLLBACK_COMPLETE, never recorded)" in applied.out + applied.err
    assert aws.requests()[("cloudformation", "DeleteStack")] == 1
    assert _status(client, "dev-network") is None
    assert _status(client, "qa-network") == "ROLLBACK_COMPLETE"  # another environment's: never this one's orphan
    assert json.loads(lensops("status", "--output", "json").out)["environments"]["dev"]["counts"]["orphans"] == 0
    assert lensops("plan", "--repo", str(tree.root)).code == 0


def test_prune_of_a_failed_creation_is_within_the_mass_prune_guard(aws, client, tree, lensops):
    _failed_creation(client, tree, lensops, env="sync: {prune: true}")
    # lensops owns 11 (10 alarms recorded, the stack by its tags): the stack alone was within 10 %, not with 5 alarms.
    tree.write("environments/dev/alarms.yaml", alarms(ALARMS[:5]))

    refused = lensops("apply", "--repo", str(tree.root))
    assert refused.code == 1
    assert "mass-prune guard: this revision deletes 6 of 11 managed resources" in refused.out + refused.err
    assert _status(client, "dev-network") == "ROLLBACK_COMPLETE"

    allowed = lensops("apply", "--repo", str(tree.root), "--allow-mass-prune")
    assert allowed.code == 0, allowed.out + allowed.err
    assert _status(client, "dev-network") is None


@pytest.mark.parametrize("prune", [False, True])
def test_found_by_its_tags_without_the_state_store(aws, client, tree, lensops, tmp_path, monkeypatch, prune):
    # Without the store no record counts towards the mass-prune guard: it is lifted to see the delete.
    _failed_creation(client, tree, lensops, env="sync: {prune: true, allowMassPrune: true}" if prune else "", other=True)
    # A plan in CI, against an empty state store: the other stack's listing shows the orphan by its tags.
    monkeypatch.setenv("LENSOPS_STATE_URL", f"sqlite:///{tmp_path}/empty/state.db")
    plan = lensops("plan", "--repo", str(tree.root))
    if prune:
        assert "- Stack/network (dev-network)\n" in plan.out, plan.out
    else:
        assert ORPHAN in plan.out, plan.out

