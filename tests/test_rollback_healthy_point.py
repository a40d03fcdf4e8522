"""Rollback to the environment's healthy point, seen from outside a running daemon.

The healthy point is the last passed bake (before any, the first applied
revision). A health-gate failure puts every resource changed since that point
back as it was then: its spec then; deleted only if lensops created it since;
recreated if it was pruned since; never deleted when lensops did not create
it. A bake cut short by a newer revision is not a pass, and a commit that
changes nothing in an environment does not start, end or pass its bake.

Everything here is observed from outside: live AWS in the emulator, the
emulator's request counts, ``/api/v1/status``, ``/metrics`` and
``lensops history``. Revisions are compared by commit id: an environment's
revision may carry a digest of its manifests beside the commit (CONTRACT §7),
so a reported revision "is" a commit when it contains that commit's id.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable

from prometheus_client.parser import text_string_to_metric_families

from conftest import alarm, run_cli
from test_lambda_alias import _zipped_handler, alias
from test_rollback import HEALTH, _health_alarm, _set, _topic
from test_rollout import GATE, _routing, _setup

ACCOUNT_REGION = "us-east-1:123456789012"


# --- observing -------------------------------------------------------------


def _is(revision: Any, commit: str) -> bool:
    """A reported revision is ``commit`` (possibly with a manifest digest beside it)."""
    return bool(revision) and commit in str(revision)


def _dev(d, env: str = "dev") -> dict[str, Any]:
    return d.status()["environments"][env]


def _baking(d, env: str = "dev") -> str:
    """The revision an environment is baking, or ''."""
    bake = _dev(d, env).get("bake")
    return str(bake["revision"]) if bake else ""


def _eventually(read: Callable[[], Any], want: Any, timeout: float = 5.0, every: float = 0.1) -> Any:
    """Poll ``read`` until it returns ``want`` or ``timeout`` passes; the last value read
    (so a failing ``assert _eventually(...) == want`` shows what was observed)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = read()
        except Exception as exc:  # an unreadable value is reported, not raised
            value = f"<{type(exc).__name__}: {exc}>"
        if value == want or time.monotonic() >= deadline:
            return value
        time.sleep(every)


def _threshold(client, name: str = "api-5xx") -> float | None:
    found = client("cloudwatch").describe_alarms(AlarmNames=[name])["MetricAlarms"]
    return found[0]["Threshold"] if found else None


def _topics(client) -> dict[str, str]:
    """Topic name -> DisplayName of every SNS topic."""
    sns = client("sns")
    out = {}
    for topic in sns.list_topics()["Topics"]:
        arn = topic["TopicArn"]
        out[arn.rsplit(":", 1)[1]] = sns.get_topic_attributes(TopicArn=arn)["Attributes"].get("DisplayName", "")
    return out


def _ops(aws, *operations: str) -> dict[str, int]:
    """Counts of the named operations among the emulator's requests since the last clear."""
    return {op: n for (_service, op), n in aws.requests().items() if op in operations and n}


def _counter(d, family: str, **labels: str) -> float:
    for metric in text_string_to_metric_families(d.get("/metrics")[1].decode()):
        if metric.name == family:
            return sum(
                s.value for s in metric.samples if s.name.endswith("_total") and all(s.labels.get(k) == v for k, v in labels.items())
            )
    return 0.0


def _rolled_back(d, failed: str, status: str = "rolled_back", timeout: float = 20.0) -> dict[str, Any]:
    """Wait until dev reports ``status`` with ``failed`` as its failed revision; dev's status then."""
    seen = _eventually(lambda: (_dev(d)["status"], _is(_dev(d)["failedRevision"], failed)), (status, True), timeout=timeout)
    assert seen == (status, True), f"dev never reported ({status!r}, failedRevision={failed[:12]}): last (status, failed matches)={seen}"
    return _dev(d)


# --- the estates -------------------------------------------------------------


def _alias_estate(client) -> None:
    """Before lensops: function ``api`` with versions 1, 2 and 3, alias ``live`` on 1, gate alarm OK."""
    _setup(client)  # role, function api (versions 1 and 2), gate alarm GATE
    lam = client("lambda")
    lam.update_function_code(FunctionName="api", ZipFile=_zipped_handler(3))
    assert lam.publish_version(FunctionName="api")["Version"] == "3"
    lam.create_alias(FunctionName="api", Name="live", FunctionVersion="1")
    client("cloudwatch").set_alarm_state(AlarmName=GATE, StateValue="OK", StateReason="test")


def _adopted_alias(version: str, extra: str = "") -> str:
    return alias("live", version=version, extra=extra).replace("  name: live\n", '  name: live\n  annotations: {lensops.io/adopt: "true"}\n', 1)


def _write_alias_rev(tree, version: str, threshold: float, extra: str = "") -> None:
    tree.write("environments/dev/alias.yaml", _adopted_alias(version, extra))
    tree.write("environments/dev/alarms.yaml", alarm("api-5xx", threshold))


def _gate(client, state: str) -> None:
    client("cloudwatch").set_alarm_state(AlarmName=GATE, StateValue=state, StateReason="test")


def _health_env(tree, bake: str, prune: bool = False, name: str = "dev") -> None:
    extra = f"health: {{alarms: [{HEALTH}], bakeTime: {bake}}}"
    if prune:
        extra += "\nsync: {prune: true, allowMassPrune: true}"
    tree.environment(name, extra)


# --- 1, 2: an adopted alias -----------------------------------------------------


def _adopted_alias_scenario(aws, client, daemon, git_remote, rev2_extra: str, rev2_routing: tuple[str, dict]):
    """rev1 adopts ``live`` (-> 2) and creates ``api-5xx`` (5); rev2 lands during rev1's bake; ALARM."""
    _alias_estate(client)
    tree = git_remote.tree
    tree.environment("dev", f"health: {{alarms: [{GATE}], bakeTime: 10s}}")
    _write_alias_rev(tree, "2", 5)
    rev1 = git_remote.commit("rev1: adopt live on 2, api-5xx 5")
    aws.clear_requests()
    d = daemon()
    d.wait_until(lambda: _is(_baking(d), rev1), timeout=20, every=0.1)
    assert (_routing(client), _threshold(client)) == (("2", {}), 5)

    _write_alias_rev(tree, "3", 6, rev2_extra)
    rev2 = git_remote.commit("rev2: live on 3, api-5xx 6")
    d.wait_until(lambda: _routing(client) == rev2_routing and _threshold(client) == 6, timeout=20, every=0.05)
    _gate(client, "ALARM")
    _rolled_back(d, rev2)
    return d, rev2


def _assert_alias_back_on_2_and_held(aws, client, d, rev2: str) -> None:
    routing = _eventually(lambda: _routing(client), ("2", {}))
    deletes = _ops(aws, "DeleteAlias", "DeleteAlarms")
    assert routing == ("2", {}), f"alias live after the rollback: {routing} (None: deleted); deletes made: {deletes}"
    assert _eventually(lambda: _threshold(client), 5) == 5, f"deletes made: {deletes}"
    assert deletes == {}, "a rollback must not delete an adopted alias, nor an alarm that the healthy point has"

    aws.clear_requests()
    d.wait_passes("dev", 3)  # several resyncs: the held revision must not come back
    assert (_routing(client), _threshold(client)) == (("2", {}), 5)
    assert _ops(aws, "CreateAlias", "UpdateAlias", "DeleteAlias", "PutMetricAlarm", "DeleteAlarms") == {}
    assert _is(_dev(d)["failedRevision"], rev2)


def test_adopted_alias_all_at_once_goes_back_to_the_baseline_not_deleted(aws, client, daemon, git_remote):
    d, rev2 = _adopted_alias_scenario(aws, client, daemon, git_remote, "", ("3", {}))
    _assert_alias_back_on_2_and_held(aws, client, d, rev2)
    assert _counter(d, "lensops_reconcile", environment="dev", result="rolled_back") == 1


def test_adopted_alias_canary_goes_back_to_the_baseline_not_deleted(aws, client, daemon, git_remote):
    canary = f"deployment: {{type: canary, stepPercent: 50, interval: 30s, alarms: [{GATE}]}}"
    d, rev2 = _adopted_alias_scenario(aws, client, daemon, git_remote, canary, ("2", {"3": 0.5}))
    _assert_alias_back_on_2_and_held(aws, client, d, rev2)


# --- 3: a Stack -------------------------------------------------------------------

LEVEL_TEMPLATE = """
AWSTemplateFormatVersion: "2010-09-09"
Parameters:
  Level:
    Type: String
Resources:
  Setting:
    Type: AWS::SSM::Parameter
    Properties:
      Name: /levels/level
      Type: String
      Value: !Ref Level
"""


def _level_stack(level: str) -> str:
    return (
        "apiVersion: lensops.io/v1\nkind: Stack\nmetadata:\n  name: levels\nspec:\n"
        f"  template: levels.yaml\n  parameters: {{Level: {level}}}\n"
    )


def _level(client) -> str:
    stack = client("cloudformation").describe_stacks(StackName="levels")["Stacks"][0]
    return {p["ParameterKey"]: p["ParameterValue"] for p in stack.get("Parameters", [])}.get("Level", "")


def test_stack_rolled_back_through_an_executed_change_set(aws, client, daemon, git_remote):
    _health_alarm(client)
    tree = git_remote.tree
    _health_env(tree, "2s")
    tree.write("templates/levels.yaml", LEVEL_TEMPLATE)
    tree.write("environments/dev/stacks.yaml", _level_stack("one"))
    rev1 = git_remote.commit("rev1: Level one")
    d = daemon()
    d.wait_until(lambda: _is(_dev(d)["healthyRevision"], rev1), timeout=30)
    assert _level(client) == "one"

    _health_env(tree, "10s")
    tree.write("environments/dev/stacks.yaml", _level_stack("two"))
    rev2 = git_remote.commit("rev2: Level two")
    d.wait_until(lambda: _level(client) == "two", timeout=20, every=0.05)
    _set(client, "ALARM")
    _rolled_back(d, rev2)

    cfn = client("cloudformation")
    level = _eventually(lambda: _level(client), "one", timeout=10)
    left = [(s["ChangeSetName"], s["ExecutionStatus"]) for s in cfn.list_change_sets(StackName="levels")["Summaries"]]
    assert level == "one", f"DescribeStacks Level after the rollback: {level!r}; change sets listed: {left}"
    assert client("ssm").get_parameter(Name="/levels/level")["Parameter"]["Value"] == "one"
    assert [name for name, status in left if status == "AVAILABLE"] == [], "the rollback's change set is executed, none left waiting"
    assert _is(_dev(d)["healthyRevision"], rev1)

    d.wait_passes("dev", 2)  # resyncs of the held revision change nothing
    assert _level(client) == "one"


# --- 4: commits that change nothing in dev ---------------------------------------------


def test_a_commit_that_changes_nothing_in_dev_does_not_end_its_bake(aws, client, daemon, git_remote):
    _health_alarm(client)
    tree = git_remote.tree
    _health_env(tree, "2s")
    tree.write("environments/dev/alarms.yaml", alarm("api-5xx", 5))
    tree.environment("prod")
    tree.write("environments/prod/alarms.yaml", alarm("api-5xx", 5, physical="prod-api-5xx"))
    tree.write("README.md", "# estate\n")
    rev1 = git_remote.commit("rev1")
    d = daemon()
    d.wait_until(lambda: _is(_dev(d)["healthyRevision"], rev1) and _is(_dev(d, "prod")["appliedRevision"], rev1), timeout=30)

    # A bake long enough that the commits below land during it even on a slow machine (the
    # ALARM at the end cuts it short, so the length costs no time). Not longer: its checks
    # (every bake/10 s) must come more often than the daemon's 2 s resyncs, which push the
    # next check back each time.
    _health_env(tree, "15s")
    tree.write("environments/dev/alarms.yaml", alarm("api-5xx", 6))
    rev2 = git_remote.commit("rev2: dev threshold 6")
    d.wait_until(lambda: _is(_baking(d), rev2) and _threshold(client) == 6, timeout=20, every=0.05)
    baking_since = time.monotonic()

    tree.write("README.md", "# estate\n\nnow with words\n")
    rev3 = git_remote.commit("rev3: README only")
    d.wait_until(lambda: d.status()["source"]["revision"] == rev3, timeout=10, every=0.05)
    d.wait_passes("dev", 2)  # a pass over dev on the fetched commit has run: dev must not have moved
    seen = (_baking(d)[:40], _dev(d)["healthyRevision"][:40])
    assert _is(seen[0], rev2) and _is(seen[1], rev1), (
        f"after a README-only commit dev must still bake rev2 {rev2[:12]} with rev1 {rev1[:12]} healthy; "
        f"observed (bake.revision, healthyRevision)=({seen[0][:12] or None}, {seen[1][:12] or None}); rev3={rev3[:12]}"
    )

    tree.write("environments/prod/alarms.yaml", alarm("api-5xx", 9, physical="prod-api-5xx"))
    rev4 = git_remote.commit("rev4: prod only")
    d.wait_until(lambda: _is(_dev(d, "prod")["appliedRevision"], rev4) and _threshold(client, "prod-api-5xx") == 9, timeout=10, every=0.05)
    seen = (_baking(d)[:40], _dev(d)["healthyRevision"][:40])
    assert _is(seen[0], rev2) and _is(seen[1], rev1), f"after a prod-only commit: (bake.revision, healthyRevision)={seen}"
    assert time.monotonic() - baking_since < 14, "the test took longer than rev2's bake: it proves nothing"

    _set(client, "ALARM")
    assert _eventually(lambda: _dev(d)["status"], "rolled_back", timeout=20) == "rolled_back"
    assert _eventually(lambda: _threshold(client), 5) == 5
    assert _threshold(client, "prod-api-5xx") == 9, "prod is not dev's rollback"

    history = json.loads(run_cli("history", "--output", "json").out)["revisions"]
    dev_rows = [(r["revision"], r["result"]) for r in history if r["environment"] == "dev"]
    assert [r for r in dev_rows if _is(r[0], rev3) or _is(r[0], rev4)] == [], f"dev history: {dev_rows}"


# --- 5, 6: pruned resources come back ----------------------------------------------


def _pruned_estate(git_remote, client, daemon):
    """rev1: topics alerts and extra, alarm 5, healthy; rev2 prunes extra and sets 6 (bake 10 s)."""
    _health_alarm(client)
    tree = git_remote.tree
    _health_env(tree, "2s", prune=True)
    tree.write("environments/dev/alarms.yaml", alarm("api-5xx", 5))
    tree.write("environments/dev/topics.yaml", _topic("alerts", "keep") + "---\n" + _topic("extra", "keep"))
    rev1 = git_remote.commit("rev1")
    d = daemon()
    d.wait_until(lambda: _is(_dev(d)["healthyRevision"], rev1), timeout=30)
    assert _topics(client) == {"alerts": "keep", "extra": "keep"}

    _health_env(tree, "10s", prune=True)
    tree.write("environments/dev/alarms.yaml", alarm("api-5xx", 6))
    tree.write("environments/dev/topics.yaml", _topic("alerts", "keep"))
    rev2 = git_remote.commit("rev2: extra pruned, threshold 6")
    d.wait_until(lambda: _is(_baking(d), rev2) and "extra" not in _topics(client) and _threshold(client) == 6, timeout=20, every=0.05)
    return d, rev1, rev2


def test_a_pruned_topic_comes_back_on_rollback(aws, client, daemon, git_remote):
    d, rev1, rev2 = _pruned_estate(git_remote, client, daemon)
    _set(client, "ALARM")
    status = _rolled_back(d, rev2)
    assert _is(status["healthyRevision"], rev1)
    topics = _eventually(lambda: _topics(client), {"alerts": "keep", "extra": "keep"})
    assert topics == {"alerts": "keep", "extra": "keep"}, f"rev2 pruned extra after the healthy point: it must be recreated; topics={topics}"
    tags = client("sns").list_tags_for_resource(ResourceArn=f"arn:aws:sns:{ACCOUNT_REGION}:extra")["Tags"]
    assert {t["Key"]: t["Value"] for t in tags}.get("lensops:id") == "Topic/extra", "the recreated topic is lensops's again"
    assert _eventually(lambda: _threshold(client), 5) == 5


def test_a_bake_cut_short_is_no_pass_the_rollback_reaches_the_healthy_point(aws, client, daemon, git_remote):
    d, rev1, rev2 = _pruned_estate(git_remote, client, daemon)
    git_remote.tree.write("environments/dev/alarms.yaml", alarm("api-5xx", 7))
    rev3 = git_remote.commit("rev3: threshold 7, during rev2's bake")
    d.wait_until(lambda: _threshold(client) == 7 and _is(_baking(d), rev3), timeout=20, every=0.05)
    assert not _is(_dev(d)["healthyRevision"], rev2), "rev2's bake was cut short: it did not pass"
    _set(client, "ALARM")
    status = _rolled_back(d, rev3)
    assert _is(status["healthyRevision"], rev1)
    topics = _eventually(lambda: _topics(client), {"alerts": "keep", "extra": "keep"})
    assert topics == {"alerts": "keep", "extra": "keep"}, f"rev2 pruned extra before the healthy point was left: it must come back; topics={topics}"
    assert _eventually(lambda: _threshold(client), 5) == 5, "the healthy point is rev1's threshold, not rev2's"


# --- 7: the first revision's own bake fails ---------------------------------------------


def test_the_first_revisions_failed_bake_deletes_nothing(aws, client, daemon, git_remote):
    _health_alarm(client)
    tree = git_remote.tree
    _health_env(tree, "10s")
    tree.write("environments/dev/a.yaml", alarm("api-5xx", 5) + "---\n" + _topic("alerts", "first"))
    rev1 = git_remote.commit("rev1: first revision")
    aws.clear_requests()
    d = daemon()
    d.wait_until(lambda: _is(_baking(d), rev1) and _threshold(client) == 5 and "alerts" in _topics(client), timeout=20, every=0.05)
    _set(client, "ALARM")
    seen = _eventually(lambda: _is(_dev(d)["failedRevision"], rev1), True, timeout=20)
    assert seen is True, f"rev1's failed bake was never reported (failedRevision matches: {seen})"

    deletes = _ops(aws, "DeleteAlarms", "DeleteTopic")
    topics, threshold = _topics(client), _threshold(client)
    assert (threshold, topics) == (5, {"alerts": "first"}), f"the baseline is kept: observed threshold={threshold}, topics={topics}, deletes={deletes}"
    assert deletes == {}
    assert _eventually(lambda: _dev(d)["status"], "failed") == "failed"

    aws.clear_requests()
    d.wait_passes("dev", 3)  # several resyncs: the held revision writes nothing
    written = {k: v for k, v in aws.requests().items() if k[1].startswith(("Put", "Create", "Delete", "Update", "Set", "Tag"))}
    assert written == {}
    assert (_threshold(client), _topics(client)) == (5, {"alerts": "first"})
