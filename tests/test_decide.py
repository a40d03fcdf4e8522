"""The engine's decisions as pure functions: a fake reconciler's views in, a plan out; no AWS, no store.

Also what a rollback restores, read from the journal's changes since the healthy point
(``healthy_point``), and the journal itself on a real SQLite store.
"""

from __future__ import annotations

from typing import Any

import pytest

from controller.engine.decide import decide, mass_prune_guard, prune_decisions, resolve_refs, spec_hash
from controller.engine.journal import Journal
from controller.engine.targets import Target, healthy_point
from controller.plan import KNOWN_AFTER_APPLY
from controller.state import ResourceRecord, open_store
from controller.kinds import Live

ENV = "dev"


def target(annotations: dict[str, str] | None = None, physical: str = "api-5xx") -> Target:
    return Target("MetricAlarm", "api-5xx", physical, {"threshold": 5}, annotations or {})


def live(state: dict[str, Any], owner: str | None = None, owner_env: str | None = None, physical: str = "api-5xx") -> Live:
    return Live(physical, state, arn=f"arn:{physical}", owner=owner, owner_env=owner_env)


def record(spec: dict[str, Any], physical: str = "api-5xx", desired: dict[str, Any] | None = None) -> ResourceRecord:
    return ResourceRecord(ENV, "MetricAlarm", "api-5xx", physical, spec=spec, spec_hash=spec_hash(spec), desired=desired)


def decided(state: dict[str, Any], seen: Live | None, **facts: Any) -> Any:
    """``decide`` with the fake reconciler's view: the live state as it is."""
    facts = {"record": None, "intent": None, "rollout": None, **facts}
    return decide(facts.pop("target", target()), state, seen, lambda _wanted: seen.state if seen else {}, environment=ENV, **facts)


def test_absent_is_created_with_the_fields_it_sets():
    d = decided({"threshold": 5, "description": "", "tags": {}}, None)
    assert (d.plan.action, d.plan.status) == ("create", "ok")
    assert [c.path for c in d.plan.changes] == ["threshold"]


def test_owned_by_its_record_updates_and_the_change_from_the_record_is_drift():
    applied = {"threshold": 5}
    d = decided({"threshold": 5}, live({"threshold": 7}), record=record(applied))
    assert (d.plan.action, d.plan.status) == ("update", "ok")
    assert [(c.path, c.old, c.new) for c in d.plan.changes] == [("threshold", 7, 5)]
    assert [c.path for c in d.plan.drift] == ["threshold"]


def test_a_new_spec_is_a_change_not_drift_while_live_is_what_was_applied():
    d = decided({"threshold": 9}, live({"threshold": 5}), record=record({"threshold": 5}))
    assert d.plan.action == "update" and d.plan.drift == []


def test_in_sync_is_a_noop():
    d = decided({"threshold": 5}, live({"threshold": 5}), record=record({"threshold": 5}))
    assert (d.plan.action, d.plan.changes, d.plan.drift) == ("noop", [], [])


def test_an_unowned_resource_is_a_conflict_unless_adopted():
    d = decided({"threshold": 5}, live({"threshold": 50}))
    assert d.plan.status == "conflict" and "not managed by lensops" in d.plan.message
    adopted = decided({"threshold": 5}, live({"threshold": 50}), target=target({"lensops.io/adopt": "true"}))
    assert (adopted.plan.action, adopted.plan.status, adopted.plan.adopt) == ("update", "ok", True)


def test_another_environments_resource_is_a_conflict_even_when_adopted():
    theirs = live({"threshold": 5}, owner="MetricAlarm/api-5xx", owner_env="prod")
    for given in ({}, {"lensops.io/adopt": "true"}):
        d = decided({"threshold": 5}, theirs, target=target(given))
        assert d.plan.status == "conflict" and "lensops environment 'prod'" in d.plan.message


def test_ownership_tags_of_this_environment_own_it_without_a_record():
    d = decided({"threshold": 5}, live({"threshold": 5}, owner="MetricAlarm/api-5xx", owner_env=ENV))
    assert (d.plan.action, d.plan.status, d.plan.adopt) == ("noop", "ok", False)


def test_an_interrupted_write_owns_it_and_its_result_is_not_drift():
    d = decided({"threshold": 5}, live({"threshold": 9}), intent={"physical": "api-5xx", "hash": "x"}, record=record({"threshold": 1}))
    assert d.plan.status == "ok" and d.plan.action == "update" and d.plan.drift == []


def test_ignored_fields_are_not_diffed_and_keep_their_live_value():
    d = decided({"threshold": 5, "description": "ours"}, live({"threshold": 5, "description": "theirs"}),
                target=target({"lensops.io/ignore-fields": "description"}), record=record({"threshold": 5}))
    assert d.plan.action == "noop" and d.state["description"] == "theirs"


def test_suspended_observes_only():
    d = decided({"threshold": 9}, live({"threshold": 5}), target=target({"lensops.io/suspend": "true"}), record=record({"threshold": 5}))
    assert (d.plan.action, d.plan.status) == ("update", "suspended")


def test_a_rollout_in_progress_towards_this_state_is_progressing():
    final = {"threshold": 9}
    rollout = {"final": final, "index": 0, "steps": [{"threshold": 7}]}
    d = decided(final, live({"threshold": 7}), record=record({"threshold": 7}), rollout=rollout)
    assert (d.plan.action, d.plan.status, d.plan.message) == ("update", "progressing", "rollout step 1 of 2")


def test_references_resolve_or_wait():
    outputs = {"Topic/alerts": {"arn": "arn:aws:sns:us-east-1:1:alerts"}}
    spec = {"alarmActions": ["ref:Topic/alerts", "ref:Topic/other"]}
    assert resolve_refs(spec, outputs, strict=False) == {"alarmActions": ["arn:aws:sns:us-east-1:1:alerts", KNOWN_AFTER_APPLY]}
    with pytest.raises(Exception, match="Topic/other has no arn yet"):
        resolve_refs(spec, outputs, strict=True)


def test_prune_decisions_honour_prune_retain_and_what_is_already_gone():
    kept = ResourceRecord(ENV, "Topic", "kept", "kept", annotations={"lensops.io/prune": "false"})
    gone = ResourceRecord(ENV, "Topic", "gone", "gone")
    old = ResourceRecord(ENV, "Topic", "old", "old")
    observed = {"Topic": {"kept": live({}, physical="kept"), "old": live({}, physical="old")}}
    on = {rp.name: (rp.action, rp.status) for rp, _, _ in prune_decisions([kept, gone, old], observed, {}, prune=True)}
    assert on == {"kept": ("delete", "retained"), "gone": ("noop", "ok"), "old": ("delete", "ok")}
    off = {rp.name: rp.status for rp, _, _ in prune_decisions([old], observed, {}, prune=False)}
    assert off == {"old": "orphan"}
    failing = {rp.name: rp.status for rp, _, _ in prune_decisions([old], {}, {"Topic": "AccessDenied"}, prune=True)}
    assert failing == {"old": "failed"}


def test_the_mass_prune_guard():
    assert mass_prune_guard(1, 10, has_targets=True) == ""
    assert "2 of 10" in mass_prune_guard(2, 10, has_targets=True)
    assert "no manifests" in mass_prune_guard(1, 1, has_targets=False)
    assert mass_prune_guard(0, 10, has_targets=False) == ""


# --- what a rollback restores ----------------------------------------------------


def _desired(physical: str, threshold: int) -> dict[str, Any]:
    return {"spec": {"threshold": threshold}, "tags": {}, "annotations": {}, "physical": physical, "dependsOn": []}


def test_the_healthy_point_restores_recorded_specs_and_adoptions_and_deletes_only_what_lensops_created():
    changes = {
        "MetricAlarm/updated": {"was": "recorded", "desired": _desired("updated", 5), "created": []},
        "MetricAlarm/adopted": {"was": "adopted", "desired": _desired("adopted", 6), "state": {"threshold": 50}, "created": []},
        "MetricAlarm/created": {"was": "absent", "physical": "created", "created": ["created"]},
        "MetricAlarm/renamed": {"was": "recorded", "desired": _desired("old-name", 5), "created": ["new-name"]},
        "MetricAlarm/readopted": {"was": "recorded", "desired": _desired("first", 5), "created": []},
        "MetricAlarm/ghost": {"was": "absent", "physical": "ghost", "created": ["ghost"]},
    }
    inventory = {
        f"MetricAlarm/{name}": ResourceRecord(ENV, "MetricAlarm", name, physical)
        for name, physical in [("updated", "updated"), ("adopted", "adopted"), ("created", "created"), ("renamed", "new-name"), ("readopted", "second")]
    }
    targets, deletes, unproven = healthy_point(ENV, changes, inventory)
    by_ident = {t.ident: t for t in targets}
    assert sorted(by_ident) == ["MetricAlarm/adopted", "MetricAlarm/readopted", "MetricAlarm/renamed", "MetricAlarm/updated"]
    assert by_ident["MetricAlarm/updated"].spec == {"threshold": 5} and by_ident["MetricAlarm/updated"].state is None
    assert by_ident["MetricAlarm/adopted"].state == {"threshold": 50} and by_ident["MetricAlarm/adopted"].forget
    assert by_ident["MetricAlarm/renamed"].physical == "old-name"
    # "second" was adopted under a new name, never created by lensops: never deleted.
    assert sorted((r.name, r.physical) for r in deletes) == [("created", "created"), ("ghost", "ghost"), ("renamed", "new-name")]
    # "ghost" was being created when the process died, before its record: only its tags can prove it is lensops's.
    assert unproven == frozenset({("MetricAlarm/ghost", "ghost")})
    only, _, _ = healthy_point(ENV, changes, inventory, only={"MetricAlarm/updated"})
    assert [t.ident for t in only] == ["MetricAlarm/updated"]


def test_the_journal_keeps_the_first_state_since_the_healthy_point_and_a_new_point_voids_it(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/state.db")
    journal = Journal(store, ENV, point=0, record_changes=True)
    journal.changing("MetricAlarm/a", {"was": "recorded", "desired": _desired("a", 5)})
    journal.changing("MetricAlarm/a", {"was": "recorded", "desired": _desired("a", 6)})  # a second change: the first state stays
    journal.changing("MetricAlarm/b", {"was": "absent", "physical": "b"}, created="b")
    journal.pruned("MetricAlarm/b", "b", None)  # created and gone again: as it was
    journal.changing("MetricAlarm/c", {"was": "absent", "physical": "c-one"}, created="c-one")
    journal.changing("MetricAlarm/c", {"was": "absent", "physical": "c-two"}, created="c-two")  # renamed since
    journal.pruned("MetricAlarm/c", "c-one", None)  # the first name goes: the second is still lensops's to delete
    again = Journal(store, ENV, point=0, record_changes=True)
    assert again.changes == {
        "MetricAlarm/a": {"was": "recorded", "desired": _desired("a", 5), "point": 0, "created": []},
        "MetricAlarm/c": {"was": "absent", "physical": "c-one", "point": 0, "created": ["c-two"]},
    }
    assert Journal(store, ENV, point=1, record_changes=True).changes == {}  # a bake passed: the entries are void
    baseline = Journal(store, "prod", point=0, record_changes=False)
    baseline.changing("MetricAlarm/a", {"was": "absent", "physical": "a"}, created="a")
    assert store.list_items("changed", "prod/") == []
