"""Plans without the state store (a pull request's check): a resource whose ownership only the store
could show is unchanged where live equals desired, and an update marked "ownership not verified"
where not; never a conflict for that alone. A resource tagged for another environment stays a
conflict, and an apply (which has the store) still refuses what it cannot prove it owns."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from conftest import ACCOUNT, writes
from lensops_emulator.estate import seed

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = "apiVersion: lensops.io/v1\nkind: Dashboard\nmetadata: {name: ops}\nspec:\n  body: {widgets: []}\n"


def _empty_store(monkeypatch, tmp_path, name: str = "pr") -> None:
    """A plan as the pull-request workflow makes it: a state store that knows nothing."""
    monkeypatch.setenv("LENSOPS_STATE_URL", f"sqlite:///{tmp_path}/{name}/state.db")


def _resources(plan_json: str) -> dict[tuple[str, str, str], dict]:
    return {(env["environment"], r["kind"], r["name"]): r for env in json.loads(plan_json)["environments"] for r in env["resources"]}


def test_the_example_estate_plans_clean_without_its_state_store(aws, client, tree, lensops, monkeypatch, tmp_path):
    seed(aws.url)
    shutil.copytree(ROOT / "desired-state", tree.root, dirs_exist_ok=True)
    for env_file in tree.root.glob("environments/*/environment.yaml"):
        env_file.write_text(re.sub(r"bakeTime: \S+", "bakeTime: 1s", env_file.read_text()))
    applied = lensops("apply", "--repo", str(tree.root), "--yes")
    assert applied.code == 0, applied.err[-3000:]

    _empty_store(monkeypatch, tmp_path)
    plan = lensops("plan", "--repo", str(tree.root), "--output", "json")
    assert plan.code == 0, plan.out[-3000:] + plan.err
    kinds = {kind for _, kind, _ in _resources(plan.out)}
    assert {"Budget", "Dashboard", "LambdaAlias"} <= kinds

    cw = client("cloudwatch")
    cw.put_dashboard(DashboardName="econlens-dev-operations", DashboardBody=json.dumps({"widgets": []}))
    text = lensops("plan", "--repo", str(tree.root), "--env", "dev")
    assert text.code == 2, text.out + text.err
    assert "~ Dashboard/operations (econlens-dev-operations)  [ownership not verified: " in text.out
    doc = lensops("plan", "--repo", str(tree.root), "--env", "dev", "--output", "json")
    assert doc.code == 2
    dashboard = _resources(doc.out)[("dev", "Dashboard", "operations")]
    assert (dashboard["action"], dashboard["status"]) == ("update", "ok")
    assert dashboard["message"].startswith("ownership not verified: the state store has no record of environment 'dev'")
    assert dashboard["changes"] and all(c["path"].startswith("body") for c in dashboard["changes"])


def test_budgets_carry_their_owner_in_resource_tags(aws, client, tree, lensops, monkeypatch, tmp_path):
    from test_budget import budget

    tree.environment("dev", "tags: {team: finops}")
    tree.write("environments/dev/budget.yaml", budget())
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    budgets = client("budgets")
    arn = f"arn:aws:budgets::{ACCOUNT}:budget/monthly"
    tags = {t["Key"]: t["Value"] for t in budgets.list_tags_for_resource(ResourceARN=arn)["ResourceTags"]}
    assert tags == {"team": "finops", "lensops:environment": "dev", "lensops:id": "Budget/monthly"}

    # Seen from its tags: another environment's budget of that name is a conflict, even without a store.
    _empty_store(monkeypatch, tmp_path)
    tree.environment("prod")
    tree.write("environments/prod/budget.yaml", budget(amount=999))
    plan = lensops("plan", "--repo", str(tree.root), "--output", "json")
    assert plan.code == 1, plan.out
    found = _resources(plan.out)
    assert found[("dev", "Budget", "monthly")]["action"] == "noop"
    assert found[("prod", "Budget", "monthly")]["status"] == "conflict"
    assert "managed by lensops environment 'dev'" in found[("prod", "Budget", "monthly")]["message"]

    # A tag removed behind lensops's back is an update that puts it back.
    budgets.untag_resource(ResourceARN=arn, ResourceTagKeys=["team"])
    monkeypatch.setenv("LENSOPS_STATE_URL", f"sqlite:///{tmp_path}/state/state.db")
    assert lensops("apply", "--repo", str(tree.root), "--env", "dev").code == 0
    tags = {t["Key"]: t["Value"] for t in budgets.list_tags_for_resource(ResourceARN=arn)["ResourceTags"]}
    assert tags["team"] == "finops"


def test_an_untaggable_resource_nobody_recorded(aws, client, tree, lensops, monkeypatch, tmp_path):
    """A dashboard made outside lensops: without a store, a plan cannot tell it from lensops's own;
    an apply, which has the store, refuses it and writes nothing."""
    client("cloudwatch").put_dashboard(DashboardName="ops", DashboardBody=json.dumps({"widgets": [{"type": "text", "x": 0, "y": 0, "width": 1, "height": 1, "properties": {"markdown": "x"}}]}))
    tree.environment("dev")
    tree.write("environments/dev/dashboard.yaml", DASHBOARD)
    _empty_store(monkeypatch, tmp_path)
    plan = lensops("plan", "--repo", str(tree.root))
    assert plan.code == 2, plan.out + plan.err
    assert "~ Dashboard/ops (ops)  [ownership not verified: " in plan.out

    aws.clear_requests()
    applied = lensops("apply", "--repo", str(tree.root), "--yes")
    assert applied.code == 1
    assert "Dashboard/ops" in applied.out and "conflict" in applied.out and "not managed by lensops" in applied.out
    assert writes(aws.requests()) == {}

    # Once the store knows the environment (that apply recorded it), the store is trusted: a conflict.
    again = lensops("plan", "--repo", str(tree.root))
    assert again.code == 1 and "conflict" in again.out


def test_unchanged_without_a_store_is_a_noop(aws, client, tree, lensops, monkeypatch, tmp_path):
    tree.environment("dev")
    tree.write("environments/dev/dashboard.yaml", DASHBOARD)
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    _empty_store(monkeypatch, tmp_path)
    plan = lensops("plan", "--repo", str(tree.root), "--output", "json")
    assert plan.code == 0, plan.out
    dashboard = _resources(plan.out)[("dev", "Dashboard", "ops")]
    assert (dashboard["action"], dashboard["status"], dashboard["message"]) == ("noop", "ok", "")
