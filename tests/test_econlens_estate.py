"""The whole EconLens desired-state, every kind, applies from a Git URL to the emulator for dev,
staging and prod; a plan then exits 0; iam-policy lists only the actions its kinds declare."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from controller.catalog import registry
from lensops_emulator.estate import seed

ROOT = Path(__file__).resolve().parent.parent


def test_econlens_applies_whole_from_a_git_url_and_plans_clean(aws, git_remote, lensops):
    seed(aws.url)
    shutil.copytree(ROOT / "desired-state", git_remote.work, dirs_exist_ok=True)
    for env_file in git_remote.work.glob("environments/*/environment.yaml"):
        # The bake is the daemon's business; a foreground apply would wait minutes.
        env_file.write_text(re.sub(r"bakeTime: \S+", "bakeTime: 1s", env_file.read_text()))
    git_remote.commit("EconLens")
    applied = lensops("apply", "--repo", git_remote.url, "--output", "json")
    assert applied.code == 0, applied.err[-3000:]
    doc = json.loads(applied.out)
    kinds = {a["kind"] for env in doc["environments"] for a in env["applied"]}
    assert kinds == set(registry().kinds), set(registry().kinds) - kinds
    assert {env["environment"] for env in doc["environments"]} == {"dev", "staging", "prod"}
    planned = lensops("plan", "--repo", git_remote.url)
    assert planned.code == 0, planned.out[-3000:]


def test_iam_policy_lists_only_the_actions_of_the_kinds_used(tree, lensops):
    tree.environment("dev")
    tree.write(
        "environments/dev/a.yaml",
        "apiVersion: lensops.io/v1\nkind: Topic\nmetadata: {name: alerts}\nspec: {}\n",
    )
    policy = json.loads(lensops("iam-policy", "--repo", str(tree.root)).out)
    actions = set(policy["Statement"][0]["Action"])
    topic = registry()["Topic"]
    assert actions == {"sts:GetCallerIdentity", *topic.iam_read, *topic.iam_write}
