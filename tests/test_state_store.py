"""The state stores (SQLite, and DynamoDB on the emulator): records round-trip, conditional
item writes are exactly-once, history is newest first, a schema-1 SQLite store is migrated."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from controller.state import EnvironmentRecord, ResourceRecord, open_store


@pytest.fixture(params=["sqlite", "dynamodb"])
def url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """A state URL: each test runs once per store."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/s.db"
    request.getfixturevalue("aws")  # the emulator, wiped
    return "dynamodb://lensops-state"


def test_conditional_items_allow_exactly_one_claim(url):
    store = open_store(url)
    wins: list[bool] = []
    others = [open_store(url) for _ in range(8)]
    barrier = threading.Barrier(8)

    def claim(other: Any) -> None:
        barrier.wait()
        wins.append(other.put_item("runbook", "dev/drill", {"owner": threading.get_ident()}, None))
        other.close()

    threads = [threading.Thread(target=claim, args=(o,)) for o in others]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wins.count(True) == 1
    value, version = store.get_item("runbook", "dev/drill")
    assert version == 1
    assert store.put_item("runbook", "dev/drill", {"step": 1}, 1) is True
    assert store.put_item("runbook", "dev/drill", {"step": 2}, 1) is False
    assert store.put_item("runbook", "dev/absent", {"step": 2}, 1) is False
    assert store.get_item("runbook", "dev/drill") == ({"step": 1}, 2)
    assert store.get_item("runbook", "dev/absent") is None
    assert [k for k, _, _ in store.list_items("runbook", "dev/")] == ["dev/drill"]


def test_items_list_by_prefix_in_key_order_and_delete(url):
    store = open_store(url)
    for key in ("prod/b", "dev/b", "dev/a", "devx/c"):
        assert store.put_item("failures", key, {"k": key}, None)
    store.put_item("other", "dev/z", {}, None)
    assert [k for k, _, _ in store.list_items("failures", "dev/")] == ["dev/a", "dev/b"]
    assert [k for k, _, _ in store.list_items("failures")] == ["dev/a", "dev/b", "devx/c", "prod/b"]
    store.delete_item("failures", "dev/a")
    store.delete_item("failures", "dev/never")
    assert [(k, v, n) for k, v, n in store.list_items("failures", "dev/")] == [("dev/b", {"k": "dev/b"}, 1)]


def test_resource_records_round_trip(url):
    store = open_store(url)
    store.put_resource(ResourceRecord("dev", "MetricAlarm", "a", "a", spec={"threshold": 5.0}, annotations={"x": "y"}))
    again = open_store(url).resources("dev")["MetricAlarm/a"]
    assert again.spec == {"threshold": 5.0} and again.annotations == {"x": "y"}


def test_every_resource_field_round_trips_and_delete_removes_one(url):
    store = open_store(url)
    full = ResourceRecord(
        "dev", "Topic", "alerts", "alerts-dev", arn="arn:aws:sns:us-east-1:123456789012:alerts-dev",
        spec={"name": "alerts-dev", "n": 0.1, "nested": [1, {"a": None}]},
        desired={"spec": {"name": "alerts-dev"}, "tags": {"t": "v"}},
        revision="abc123", sync="synced", health="healthy", message="ok ✓", spec_hash="h",
        annotations={"lensops.io/prune": "false"},
    )
    store.put_resource(full)
    store.put_resource(ResourceRecord("dev", "MetricAlarm", "b", "b"))
    store.put_resource(ResourceRecord("prod", "MetricAlarm", "b", "b"))
    got = open_store(url).resources("dev")
    assert sorted(got) == ["MetricAlarm/b", "Topic/alerts"]
    assert got["Topic/alerts"] == full
    store.delete_resource("dev", "MetricAlarm", "b")
    store.delete_resource("dev", "MetricAlarm", "never")
    assert sorted(store.resources("dev")) == ["Topic/alerts"]
    assert sorted(store.resources("prod")) == ["MetricAlarm/b"]
    assert store.resources("staging") == {}


def test_environments_round_trip_in_name_order(url):
    store = open_store(url)
    assert store.environments() == [] and store.environment("dev") is None
    for name in ("prod", "dev", "staging"):
        store.put_environment(EnvironmentRecord(name, applied_revision=f"r-{name}", data={"last_pass": {"n": 1.5}}))
    store.put_environment(EnvironmentRecord("dev", applied_revision="r2", status="synced", last_sync=12.25))
    names = [e.environment for e in open_store(url).environments()]
    assert names == ["dev", "prod", "staging"]
    dev = store.environment("dev")
    assert dev is not None and (dev.applied_revision, dev.status, dev.last_sync, dev.data) == ("r2", "synced", 12.25, {})
    assert store.environment("prod").data == {"last_pass": {"n": 1.5}}


def test_history_is_newest_first_per_environment_and_merged(url):
    store = open_store(url)
    ids = []
    for i in range(4):
        for env in ("dev", "prod"):
            ids.append((env, store.start_revision(env, f"{env}-{i}", "poll")))
    assert [i for _, i in ids] == sorted(i for _, i in ids) and len({i for _, i in ids}) == 8
    # finished by another store object (another process, another replica)
    other = open_store(url)
    last_dev = [i for env, i in ids if env == "dev"][-1]
    other.finish_revision(last_dev, "success", "done", [{"action": "create", "id": "Topic/a"}])
    other.finish_revision(999_999, "success", "", [])  # unknown ids are ignored
    dev = store.history("dev", limit=3)
    assert [r.revision for r in dev] == ["dev-3", "dev-2", "dev-1"]
    assert (dev[0].result, dev[0].message, dev[0].changes, dev[0].trigger) == (
        "success", "done", [{"action": "create", "id": "Topic/a"}], "poll")
    assert dev[0].finished_at >= dev[0].started_at > 0
    # a pass starting while an older one is still "running" means that one was killed
    assert dev[1].result == "interrupted" and dev[1].finished_at > 0
    merged = store.history(None, limit=5)
    assert [r.revision for r in merged] == ["prod-3", "dev-3", "prod-2", "dev-2", "prod-1"]
    assert [r.id for r in store.history()] == sorted((i for _, i in ids), reverse=True)
    assert store.history("staging") == []


def test_a_schema_1_sqlite_store_opens_without_its_healthy_columns(tmp_path):
    import sqlite3

    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE resources (environment TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL, physical TEXT NOT NULL,"
        " arn TEXT NOT NULL DEFAULT '', spec TEXT, healthy_spec TEXT, revision TEXT NOT NULL DEFAULT '',"
        " sync TEXT NOT NULL DEFAULT 'unknown', health TEXT NOT NULL DEFAULT 'unknown', message TEXT NOT NULL DEFAULT '',"
        " spec_hash TEXT NOT NULL DEFAULT '', annotations TEXT NOT NULL DEFAULT '{}', updated_at REAL NOT NULL DEFAULT 0,"
        " desired TEXT, healthy_desired TEXT, PRIMARY KEY (environment, kind, name));"
        "INSERT INTO resources VALUES ('dev','MetricAlarm','a','a','','{\"t\":1}','{\"t\":0}','r1','synced','healthy','','h','{}',0,'{\"d\":1}',NULL);"
        "PRAGMA user_version = 1;"
    )
    db.close()
    store = open_store(f"sqlite:///{path}")
    record = store.resources("dev")["MetricAlarm/a"]
    assert (record.spec, record.desired, record.revision) == ({"t": 1}, {"d": 1}, "r1")
    store.put_resource(ResourceRecord("dev", "MetricAlarm", "b", "b", spec={"t": 2}))
    assert sorted(store.resources("dev")) == ["MetricAlarm/a", "MetricAlarm/b"]
    store.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 2


def test_a_single_process_store_or_a_free_lease_is_granted(url):
    store = open_store(url)
    epoch = store.acquire_lease("dev", "replica-a", 30)
    assert epoch == 1
    owner, got_epoch, expires = store.lease_holder("dev")
    assert (owner, got_epoch) == ("replica-a", 1) and expires > 0
    store.fence("dev", "replica-a", epoch)
    store.put_resource(ResourceRecord("dev", "MetricAlarm", "a", "a"))
    assert store.put_item("runbook", "dev/x", {}, None)
    store.unfence("dev")
    store.heartbeat("replica-a", 30)
    assert store.live_replicas() == ["replica-a"]
    store.release_lease("dev", "replica-a")
    assert store.lease_holder("dev") is None
    store.ping()
    store.close()
