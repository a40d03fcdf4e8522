"""`lensops decommission --env NAME`: an environment removed from Git keeps its resources until this
deletes what lensops owns there (from the state store's records, checked against ownership tags
where the kind has them, dependents first); never what it does not own, never what is annotated
`lensops.io/prune: "false"`; the mass-prune guard applies; refused while the environment is still
in Git or a daemon holds its lease. Exit 0 done, 1 refused or failed."""

from __future__ import annotations

import json
import os
import shutil

from conftest import alarm, writes
from controller.engine import TARGET_KEY
from controller.state import open_store

TOPIC = "apiVersion: lensops.io/v1\nkind: Topic\nmetadata: {name: alerts}\nspec:\n  name: '{{ env.name }}-alerts'\n"
DASHBOARD = "apiVersion: lensops.io/v1\nkind: Dashboard\nmetadata: {name: ops}\nspec:\n  dashboardName: '{{ env.name }}-ops'\n  body: {widgets: []}\n"


def _alarm(name: str, extra: str = "") -> str:
    """An alarm named ``<env>-<name>`` that notifies the environment's topic."""
    return alarm(name, physical=f"'{{{{ env.name }}}}-{name}'", extra=f"alarmActions: [ref:Topic/alerts]\n{extra}")


def _estate(tree, lensops, *, staging_extra: str = "") -> None:
    """staging and prod, each with two alarms, a topic and a dashboard; applied."""
    for env in ("staging", "prod"):
        tree.environment(env)
        tree.write(f"environments/{env}/alerts.yaml", "---\n".join([TOPIC, _alarm("api-5xx"), _alarm("api-latency"), DASHBOARD]))
    if staging_extra:
        tree.write("environments/staging/kept.yaml", staging_extra)
    applied = lensops("apply", "--repo", str(tree.root), "--yes")
    assert applied.code == 0, applied.out + applied.err


def _remove(tree, env: str = "staging") -> None:
    shutil.rmtree(tree.root / "environments" / env)


def _alarms(client) -> set[str]:
    return {a["AlarmName"] for a in client("cloudwatch").describe_alarms()["MetricAlarms"]}


def _topics(client) -> set[str]:
    return {t["TopicArn"].rsplit(":", 1)[1] for t in client("sns").list_topics()["Topics"]}


def _dashboards(client) -> set[str]:
    return {d["DashboardName"] for d in client("cloudwatch").list_dashboards()["DashboardEntries"]}


def _foreign_alarm(client, name: str) -> None:
    client("cloudwatch").put_metric_alarm(
        AlarmName=name, Namespace="AWS/EC2", MetricName="CPUUtilization", Statistic="Average",
        Period=300, EvaluationPeriods=1, Threshold=90, ComparisonOperator="GreaterThanThreshold",
    )


def test_decommission_deletes_what_lensops_made_there_and_nothing_else(aws, client, tree, lensops):
    _estate(tree, lensops)
    _foreign_alarm(client, "staging-by-hand")
    _remove(tree)
    aws.clear_requests()
    done = lensops("decommission", "--repo", str(tree.root), "--env", "staging", "--yes", "--allow-mass-prune")
    assert done.code == 0, done.out + done.err
    assert "- MetricAlarm/api-5xx (staging-api-5xx)" in done.out
    assert "Decommission: staging: success, 4 deleted, 0 left in AWS" in done.out
    assert _alarms(client) == {"prod-api-5xx", "prod-api-latency", "staging-by-hand"}
    assert _topics(client) == {"prod-alerts"}
    assert _dashboards(client) == {"prod-ops"}
    deleted = {op: n for op, n in writes(aws.requests()).items()}
    assert deleted == {("cloudwatch", "DeleteAlarms"): 2, ("cloudwatch", "DeleteDashboards"): 1, ("sns", "DeleteTopic"): 1}

    status = json.loads(lensops("status", "--output", "json").out)["environments"]
    assert status["staging"]["status"] == "decommissioned" and status["staging"]["counts"]["total"] == 0
    assert status["staging"]["message"] == "decommissioned: 4 resources deleted"
    assert status["prod"]["counts"]["total"] == 4
    last = json.loads(lensops("history", "--env", "staging", "--output", "json").out)["revisions"][0]
    assert (last["trigger"], last["result"], len(last["changes"])) == ("decommission", "success", 4)
    assert {c["action"] for c in last["changes"]} == {"delete"}
    # as people read them: what happened, not an error; the trigger whole
    shown = lensops("status").out
    assert "decommissioned: 4 resources deleted" in shown and "last error" not in shown, shown
    assert " decommission " in lensops("history", "--env", "staging").out

    again = lensops("decommission", "--repo", str(tree.root), "--env", "staging", "--yes", "--allow-mass-prune")
    assert again.code == 0 and "decommissioned already" in again.out
    # prod is untouched and still in sync.
    assert lensops("plan", "--repo", str(tree.root), "--env", "prod").code == 0


def _refused_once_removed(aws, tree, lensops, *flags: str):
    """staging applied, then removed from Git: a decommission with ``flags`` refused, having written nothing."""
    _estate(tree, lensops)
    _remove(tree)
    aws.clear_requests()
    refused = lensops("decommission", "--repo", str(tree.root), "--env", "staging", *flags)
    assert refused.code == 1, refused.out + refused.err
    assert writes(aws.requests()) == {}
    return refused


def test_the_mass_prune_guard_refuses_without_allow_mass_prune(aws, client, tree, lensops):
    refused = _refused_once_removed(aws, tree, lensops, "--yes")
    guard = "mass-prune guard: decommissioning environment 'staging' deletes 4 of its 4 managed resources; pass --allow-mass-prune"
    assert guard in refused.out and guard in refused.err
    assert {"staging-api-5xx", "staging-api-latency"} <= _alarms(client)


def test_refused_while_the_environment_is_still_in_git(aws, client, tree, lensops):
    _estate(tree, lensops)
    aws.clear_requests()
    refused = lensops("decommission", "--repo", str(tree.root), "--env", "staging", "--yes", "--allow-mass-prune")
    assert refused.code == 1
    assert "environment staging is still in" in refused.err and "removed from Git" in refused.err
    assert aws.requests() == {}
    assert {"staging-api-5xx", "staging-api-latency"} <= _alarms(client)
    # A folder that is not the repository at all is no proof of removal either.
    elsewhere = tree.root.parent / "elsewhere"
    elsewhere.mkdir()
    wrong = lensops("decommission", "--repo", str(elsewhere), "--env", "staging", "--yes", "--allow-mass-prune")
    assert wrong.code == 1 and "has no environments/ folder" in wrong.err


def test_without_yes_and_no_terminal_it_shows_and_refuses(aws, client, tree, lensops):
    refused = _refused_once_removed(aws, tree, lensops, "--allow-mass-prune")
    assert "- MetricAlarm/api-latency (staging-api-latency)" in refused.out and "Plan: 0 to create, 0 to update, 4 to delete" in refused.out
    assert "pass --yes" in refused.err


def test_what_lensops_cannot_prove_it_owns_or_must_keep_is_left(aws, client, tree, lensops):
    """prune: "false" is kept; an alarm whose ownership tags now name another environment is kept."""
    keep = alarm("keep", physical="staging-keep", extra="").replace("  name: keep\n", '  name: keep\n  annotations: {lensops.io/prune: "false"}\n')
    _estate(tree, lensops, staging_extra=keep)
    cw = client("cloudwatch")
    arn = cw.describe_alarms(AlarmNames=["staging-api-latency"])["MetricAlarms"][0]["AlarmArn"]
    cw.tag_resource(ResourceARN=arn, Tags=[{"Key": "lensops:environment", "Value": "other"}])
    _remove(tree)
    done = lensops("decommission", "--repo", str(tree.root), "--env", "staging", "--yes", "--allow-mass-prune", "--output", "json")
    assert done.code == 0, done.out + done.err
    resources = {r["name"]: r for r in json.loads(done.out)["environments"][0]["resources"]}
    assert resources["keep"]["status"] == "retained" and resources["keep"]["message"] == 'lensops.io/prune: "false"'
    assert resources["api-latency"]["status"] == "retained"
    assert "its tags say lensops environment 'other'" in resources["api-latency"]["message"]
    assert _alarms(client) == {"prod-api-5xx", "prod-api-latency", "staging-keep", "staging-api-latency"}
    status = json.loads(lensops("status", "--output", "json").out)["environments"]["staging"]
    assert status["status"] == "decommissioned" and status["counts"]["total"] == 0
    assert "left in AWS, no longer managed: " in status["message"] and "MetricAlarm/keep" in status["message"]


def test_refused_while_a_daemon_holds_the_lease(aws, client, tree, lensops, monkeypatch):
    url = "dynamodb://lensops-decommission"
    monkeypatch.setenv("LENSOPS_STATE_URL", url)
    _estate(tree, lensops)
    _remove(tree)
    store = open_store(url)
    store.acquire_lease("staging", "daemon-a", 30)
    aws.clear_requests()
    refused = lensops("decommission", "--repo", str(tree.root), "--env", "staging", "--yes", "--allow-mass-prune")
    assert refused.code == 1 and "the daemon daemon-a holds environment staging's lease" in refused.err
    assert writes(aws.requests()) == {}
    store.release_lease("staging", "daemon-a")
    assert lensops("decommission", "--repo", str(tree.root), "--env", "staging", "--yes", "--allow-mass-prune").code == 0
    assert _alarms(client) == {"prod-api-5xx", "prod-api-latency"}


def test_an_environment_the_store_does_not_know_is_refused(aws, tree, lensops):
    tree.environment("prod")
    refused = lensops("decommission", "--repo", str(tree.root), "--env", "staging", "--yes", "--allow-mass-prune")
    assert refused.code == 1 and "the state store has no record of environment staging" in refused.err
    needs_one = lensops("decommission", "--repo", str(tree.root), "--yes")
    assert needs_one.code == 1 and "--env NAME" in needs_one.err


def test_an_older_record_finds_its_region_in_the_last_applied_revision(aws, client, git_remote, lensops):
    """A store written before environments recorded where they are: the Environment manifest of the
    last applied revision, read from Git's history, says it."""
    tree = git_remote.tree
    tree.environment("staging")
    tree.environment("prod")
    tree.write("environments/staging/alerts.yaml", "---\n".join([TOPIC, _alarm("api-5xx")]))
    git_remote.commit("two environments")
    assert lensops("apply", "--repo", git_remote.url, "--yes").code == 0
    store = open_store(os.environ["LENSOPS_STATE_URL"])
    record = store.environment("staging")
    record.data.pop(TARGET_KEY)
    store.put_environment(record)
    store.close()
    shutil.rmtree(tree.root / "environments" / "staging")
    git_remote.commit("staging is gone")
    done = lensops("decommission", "--repo", git_remote.url, "--env", "staging", "--yes", "--allow-mass-prune")
    assert done.code == 0, done.out + done.err
    assert _alarms(client) == set() and _topics(client) == set()
