"""`--repo` takes a Git URL: cloned to a cache, fetched on the next run, revision = commit."""

from __future__ import annotations

import json

from conftest import alarm, run_cli


def test_apply_from_git_url_then_new_commit(aws, client, git_remote, lensops):
    git_remote.tree.environment("dev")
    git_remote.tree.write("environments/dev/alarms.yaml", alarm("api-5xx", 5))
    first = git_remote.commit("first")
    result = lensops("apply", "--repo", git_remote.url, "--output", "json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["revision"] == first
    git_remote.tree.write("environments/dev/alarms.yaml", alarm("api-5xx", 8))
    second = git_remote.commit("raise threshold")
    plan = lensops("plan", "--repo", git_remote.url, "--output", "json")
    assert plan.code == 2 and json.loads(plan.out)["revision"] == second
    assert lensops("apply", "--repo", git_remote.url).code == 0
    assert client("cloudwatch").describe_alarms(AlarmNames=["api-5xx"])["MetricAlarms"][0]["Threshold"] == 8
    history = json.loads(lensops("history", "--output", "json").out)["revisions"]
    assert [h["revision"] for h in history] == [second, first]
    assert all(h["result"] == "success" for h in history)


def test_lensops_path_selects_a_folder_inside_the_repo(aws, git_remote, lensops, monkeypatch):
    git_remote.tree.write("infra/environments/dev/environment.yaml", "apiVersion: lensops.io/v1\nkind: Environment\nmetadata: {name: dev}\nspec: {region: us-east-1}\n")
    git_remote.tree.write("infra/environments/dev/alarms.yaml", alarm("api-5xx"))
    git_remote.commit()
    monkeypatch.setenv("LENSOPS_PATH", "infra")
    assert lensops("apply", "--repo", git_remote.url).code == 0


def test_unreachable_remote_is_one_clear_error(aws, tmp_path):
    result = run_cli("plan", "--repo", f"file://{tmp_path}/nowhere.git")
    assert result.code == 1
    assert "Traceback" not in result.err
    assert result.err.startswith("lensops: git: cannot fetch")
