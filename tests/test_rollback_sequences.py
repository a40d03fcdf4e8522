"""Rollback across sequences of revisions, interruptions and stale work, driven in-process.

The engine, the health gate and the pass policy are driven as the daemon drives them (a pass,
then ``after_pass``, then bake checks), against the emulator and a real SQLite store, so that
each sequence is exact: a rename during a bake, a restore cut short, a rollout superseded, a bake
check that comes after a newer revision replaced its bake, content that failed once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conftest import ACCOUNT, alarm
from controller import health, policy
from controller.aws import ClientFactory
from controller.engine import Engine, Outcome
from controller.manifests.loader import load_tree
from controller.manifests.model import EnvironmentDesired
from controller.state import open_store
from test_rollback import HEALTH, _health_alarm, _set, _threshold
from test_rollout import GATE, _routing, _setup
from test_lambda_alias import alias
from controller.catalog import registry


@pytest.fixture
def engine(tmp_path: Path) -> Any:
    store = open_store(f"sqlite:///{tmp_path}/sequences.db")
    yield Engine(ClientFactory(4), store, registry(), 4)
    store.close()


def _load(tree: Any, revision: str) -> EnvironmentDesired:
    result = load_tree(tree.root, registry(), ["dev"])
    assert "dev" in result.environments, result.all_problems
    env = result.environments["dev"]
    env.revision = revision
    return env


def _apply(engine: Engine, tree: Any, revision: str) -> tuple[EnvironmentDesired, Outcome, health.Gate | None]:
    """One daemon pass of the tree as ``revision``: policy, pass, then the bake opened or moved."""
    env = _load(tree, revision)
    decided = policy.decide(env, engine.store.environment("dev"), "sync")
    assert decided.execute, decided.why
    outcome = engine.reconcile(env, ACCOUNT, execute=True, trigger=decided.trigger, retry_failed=False)
    return env, outcome, health.after_pass(engine, env, outcome, new=decided.new)


def _check(engine: Engine, env: EnvironmentDesired, gate: health.Gate, **kwargs: Any) -> str:
    return health.check(engine, env, ACCOUNT, gate, **kwargs)


def _environment(tree: Any, bake: str = "1h") -> None:
    tree.environment("dev", f"health: {{alarms: [{HEALTH}], bakeTime: {bake}}}\nsync: {{prune: true, allowMassPrune: true}}")


def _healthy(engine: Engine, client: Any, tree: Any, manifests: str) -> None:
    """The health alarm, the environment, and revision r1 of ``manifests`` applied and past its bake."""
    _health_alarm(client)
    _environment(tree)
    tree.write("environments/dev/a.yaml", manifests)
    env, _, _ = _apply(engine, tree, "r1")
    health.mark_healthy(engine.store, "dev", "r1", env.digest)


def _alarms(client: Any) -> dict[str, float]:
    return {a["AlarmName"]: a["Threshold"] for a in client("cloudwatch").describe_alarms()["MetricAlarms"] if a["AlarmName"] != HEALTH}


def test_a_resource_renamed_during_a_bake_is_deleted_under_its_new_name(aws, client, tree, engine):
    _health_alarm(client)
    _environment(tree)
    tree.write("environments/dev/a.yaml", alarm("keep", 5))
    _apply(engine, tree, "r1")  # the baseline
    tree.write("environments/dev/a.yaml", alarm("keep", 5) + "---\n" + alarm("x", 5, physical="x-one"))
    _apply(engine, tree, "r2")
    tree.write("environments/dev/a.yaml", alarm("keep", 5) + "---\n" + alarm("x", 5, physical="x-two"))
    env, _, gate = _apply(engine, tree, "r3")
    assert set(_alarms(client)) == {"keep", "x-two"}
    _set(client, "ALARM")
    assert gate is not None and _check(engine, env, gate) == "rolled_back"
    assert set(_alarms(client)) == {"keep"}, "lensops created x under both names since the healthy point: neither stays"


def test_a_name_not_restored_keeps_the_new_name_it_replaced(aws, client, tree, engine):
    _health_alarm(client)
    _environment(tree)
    tree.write("environments/dev/a.yaml", alarm("x", 5, physical="x-one"))
    env, _, gate = _apply(engine, tree, "r1")
    assert gate is not None and _check(engine, env, gate) == "baking"
    health.mark_healthy(engine.store, "dev", "r1", env.digest)  # r1 passed its bake
    tree.write("environments/dev/a.yaml", alarm("x", 5, physical="x-two"))
    env, _, gate = _apply(engine, tree, "r2")
    assert set(_alarms(client)) == {"x-two"}
    # Someone else takes the old name meanwhile: lensops may not put x back as x-one ...
    client("cloudwatch").put_metric_alarm(
        AlarmName="x-one", Namespace="Other", MetricName="M", Statistic="Sum", Period=60,
        EvaluationPeriods=1, Threshold=99, ComparisonOperator="GreaterThanThreshold",
    )
    _set(client, "ALARM")
    assert gate is not None and _check(engine, env, gate) == "failed"
    # ... so it keeps x-two rather than leave neither, and says so.
    assert _alarms(client) == {"x-one": 99, "x-two": 5}
    record = engine.store.environment("dev")
    assert "x-one exists in AWS and is not managed by lensops" in record.message and "kept" in record.message


def test_a_restore_cut_short_is_taken_up_again_even_once_the_alarm_is_ok(aws, client, tree, engine):
    _healthy(engine, client, tree, alarm("a", 5) + "---\n" + alarm("b", 5))
    tree.write("environments/dev/a.yaml", alarm("a", 6) + "---\n" + alarm("b", 6))
    env, _, gate = _apply(engine, tree, "r2")
    assert gate is not None
    _set(client, "ALARM")
    writes: list[int] = []

    def lease_ends_after_one_write() -> bool:
        writes.append(1)
        return len(writes) <= 1

    assert _check(engine, env, gate, may_write=lease_ends_after_one_write) == "baking"
    assert sorted(_alarms(client).values()) == [5, 6], "the restore stopped after one resource"
    assert policy.decide(env, engine.store.environment("dev"), "sync").why, "r2 is held from the moment its bake failed"
    _set(client, "OK")
    assert _check(engine, env, gate) == "rolled_back", "the restore resumes; the alarm is not read again"
    assert _alarms(client) == {"a": 5, "b": 5}
    assert engine.store.environment("dev").healthy_revision == "r1"


def test_a_bake_check_made_stale_by_a_newer_revision_changes_nothing(aws, client, tree, engine):
    _health_alarm(client)
    _environment(tree, bake="0s")
    tree.write("environments/dev/a.yaml", alarm("a", 5))
    env, _, gate = _apply(engine, tree, "r1")
    assert gate is not None and _check(engine, env, gate) == "healthy"
    tree.write("environments/dev/a.yaml", alarm("a", 6))
    env2, _, old = _apply(engine, tree, "r2")  # r2's bake: 0 s, so it is over when checked
    _environment(tree, bake="1h")
    tree.write("environments/dev/a.yaml", alarm("a", 7))
    env3, _, newer = _apply(engine, tree, "r3")  # while a check of r2's bake waited for the lock
    assert old is not None and newer is not None and newer.revision == "r3"
    assert _check(engine, env2, old) == "superseded"
    record = engine.store.environment("dev")
    assert record.healthy_revision == "r1" and health.pending(engine.store, "dev").revision == "r3"
    _set(client, "ALARM")
    assert _check(engine, env3, newer) == "rolled_back" and _alarms(client) == {"a": 5}


def test_content_that_failed_once_goes_out_after_other_content_was_applied(aws, client, tree, engine):
    _healthy(engine, client, tree, alarm("a", 5))
    tree.write("environments/dev/a.yaml", alarm("a", 6))
    bad, _, gate = _apply(engine, tree, "r2")
    _set(client, "ALARM")
    assert gate is not None and _check(engine, bad, gate) == "rolled_back"
    assert "held" in policy.decide(_load(tree, "r2-again"), engine.store.environment("dev"), "sync").why
    _set(client, "OK")
    tree.write("environments/dev/a.yaml", alarm("a", 7))
    _apply(engine, tree, "r3")
    assert engine.store.environment("dev").failed_revision == ""
    tree.write("environments/dev/a.yaml", alarm("a", 6))
    _apply(engine, tree, "r4")  # r2's content again, after other content: a new revision, not held
    assert _threshold(client, "a") == 6


def test_a_failed_pass_that_wrote_during_a_bake_is_the_revision_held(aws, client, tree, engine):
    _healthy(engine, client, tree, alarm("a", 5))
    tree.write("environments/dev/a.yaml", alarm("a", 6))
    _apply(engine, tree, "r2")
    # r3 writes a, and fails on an alias of a function that does not exist
    tree.write("environments/dev/a.yaml", alarm("a", 7) + "---\n" + alias("live", function="missing"))
    env3, outcome, gate = _apply(engine, tree, "r3")
    assert not outcome.ok and _threshold(client, "a") == 7
    assert gate is not None and gate.revision == "r3", "what r3 wrote is under the bake, and r3 is the revision a failure holds"
    _set(client, "ALARM")
    assert _check(engine, env3, gate) == "rolled_back" and _threshold(client, "a") == 5
    assert engine.store.environment("dev").failed_revision == "r3"


def test_a_newer_write_of_an_alias_ends_the_rollout_an_older_revision_had_it_on(aws, client, tree, engine):
    _setup(client)
    client("cloudwatch").set_alarm_state(AlarmName=GATE, StateValue="OK", StateReason="test")
    tree.environment("dev", f"health: {{alarms: [{GATE}], bakeTime: 1h}}")
    tree.write("environments/dev/alias.yaml", alias("live", version="1"))
    env, _, _ = _apply(engine, tree, "r1")
    health.mark_healthy(engine.store, "dev", "r1", env.digest)
    canary = f"deployment: {{type: canary, stepPercent: 50, interval: 1s, alarms: [{GATE}]}}"
    tree.write("environments/dev/alias.yaml", alias("live", version="2", extra=canary))
    _apply(engine, tree, "r2")
    assert _routing(client) == ("1", {"2": 0.5})
    tree.write("environments/dev/alias.yaml", alias("live", version="1"))  # r3: back to 1, all at once
    env3, _, gate = _apply(engine, tree, "r3")
    assert _routing(client) == ("1", {})
    assert gate is not None and gate.rollouts == [], "r2's rollout is over: r3 wrote the alias since"
    import time

    # Part of the scenario: time passes beyond the rollout's 1 s interval, so a stale rollout would
    # be due to step the alias to 2 at the check below. The check is synchronous; a slow machine
    # only makes the step more due: this cannot flake.
    time.sleep(1.1)
    assert _check(engine, env3, gate) == "baking" and _routing(client) == ("1", {})


def test_a_resource_created_but_never_recorded_is_deleted_only_when_its_tags_say_lensops_made_it(aws, client, tree, engine):
    from controller.engine.journal import Journal

    _healthy(engine, client, tree, alarm("a", 5))
    tree.write("environments/dev/a.yaml", alarm("a", 6) + "---\n" + alarm("made", 5) + "---\n" + alarm("theirs", 5))
    env2, _, gate = _apply(engine, tree, "r2")
    # As if the process had died after creating "made" and "theirs" but before recording them, and
    # "theirs" had been made by someone else at that moment (so it carries no lensops tags).
    for name in ("made", "theirs"):
        engine.store.delete_resource("dev", "MetricAlarm", name)
    cw = client("cloudwatch")
    arn = cw.describe_alarms(AlarmNames=["theirs"])["MetricAlarms"][0]["AlarmArn"]
    cw.untag_resource(ResourceARN=arn, TagKeys=["lensops:id", "lensops:environment"])
    assert set(Journal(engine.store, "dev", 1, True).changes) >= {"MetricAlarm/made", "MetricAlarm/theirs"}
    _set(client, "ALARM")
    assert gate is not None and _check(engine, env2, gate) == "failed"
    assert _alarms(client) == {"a": 5, "theirs": 5}
    assert "theirs" in engine.store.environment("dev").message


def _allow(writes: int) -> Any:
    """A lease check that holds for the first ``writes`` writes of a pass, then says the lease has ended."""
    calls: list[int] = []

    def may_write() -> bool:
        calls.append(1)
        return len(calls) <= writes

    return may_write


def test_every_name_created_since_the_healthy_point_goes_even_when_a_rename_was_cut_short(aws, client, tree, engine):
    _healthy(engine, client, tree, alarm("keep", 5))
    tree.write("environments/dev/a.yaml", alarm("keep", 5) + "---\n" + alarm("x", 5, physical="x-one"))
    _apply(engine, tree, "r2")
    tree.write("environments/dev/a.yaml", alarm("keep", 5) + "---\n" + alarm("x", 5, physical="x-two"))
    env = _load(tree, "r3")
    outcome = engine.reconcile(env, ACCOUNT, execute=True, trigger="revision", may_write=_allow(2))  # x-two made; x-one's prune cut off
    gate = health.after_pass(engine, env, outcome, new=True)
    assert set(_alarms(client)) == {"keep", "x-one", "x-two"}
    _set(client, "ALARM")
    assert gate is not None and _check(engine, env, gate) == "rolled_back"
    assert set(_alarms(client)) == {"keep"}


def test_a_restore_cut_short_between_a_rename_and_its_delete_deletes_the_new_name_when_resumed(aws, client, tree, engine):
    _healthy(engine, client, tree, alarm("x", 5, physical="x-zero"))
    tree.write("environments/dev/a.yaml", alarm("x", 5, physical="x-one"))
    env, _, gate = _apply(engine, tree, "r2")
    assert set(_alarms(client)) == {"x-one"}
    _set(client, "ALARM")
    assert gate is not None and _check(engine, env, gate, may_write=_allow(1)) == "baking"
    assert set(_alarms(client)) == {"x-zero", "x-one"}, "x is back under its healthy name; the delete of x-one was cut off"
    tree.write("environments/dev/a.yaml", alarm("x", 7, physical="x-one"))
    newer = _load(tree, "r3")  # other content than the failed one: only the unfinished rollback holds it
    assert not policy.decide(newer, engine.store.environment("dev"), "sync").execute, "nothing moves until the rollback has finished"
    assert _check(engine, env, gate) == "rolled_back"
    assert set(_alarms(client)) == {"x-zero"}


def test_a_rollout_on_its_way_back_to_the_healthy_state_is_rolled_back_too(aws, client, tree, engine):
    _setup(client)
    client("cloudwatch").set_alarm_state(AlarmName=GATE, StateValue="OK", StateReason="test")
    tree.environment("dev", f"health: {{alarms: [{GATE}], bakeTime: 1h}}")
    canary = f"deployment: {{type: canary, stepPercent: 50, interval: 1h, alarms: [{GATE}]}}"
    tree.write("environments/dev/alias.yaml", alias("live", version="1", extra=canary))
    env, _, _ = _apply(engine, tree, "r1")
    health.mark_healthy(engine.store, "dev", "r1", env.digest)
    tree.write("environments/dev/alias.yaml", alias("live", version="2"))
    _apply(engine, tree, "r2")
    tree.write("environments/dev/alias.yaml", alias("live", version="1", extra=canary))
    env3, _, gate = _apply(engine, tree, "r3")
    assert _routing(client) == ("2", {"1": 0.5})
    client("cloudwatch").set_alarm_state(AlarmName=GATE, StateValue="ALARM", StateReason="test")
    assert gate is not None and _check(engine, env3, gate) == "rolled_back"
    assert _routing(client) == ("1", {})


def test_the_rollback_runbooks_older_revision_ends_no_hold(aws, client, tree, engine):
    _healthy(engine, client, tree, alarm("a", 5))
    healthy = _load(tree, "r1")
    tree.write("environments/dev/a.yaml", alarm("a", 6))
    env, _, gate = _apply(engine, tree, "r2")
    _set(client, "ALARM")
    assert gate is not None and _check(engine, env, gate) == "rolled_back"
    engine.reconcile(healthy, ACCOUNT, execute=True, trigger="rollback")  # the rollback runbook's pass
    assert engine.store.environment("dev").failed_revision == "r2"
    assert policy.decide(_load(tree, "r2-again"), engine.store.environment("dev"), "sync").why
