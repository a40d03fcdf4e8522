"""The DynamoDB state store on the emulator: the table, leases and epochs, fencing,
heartbeats, limits, and ``lensops status`` reading from it.

The behaviours it shares with the SQLite store are in test_state_store.py (run on both)."""

from __future__ import annotations

import json
import threading
from typing import Any

import boto3
import pytest

from controller.errors import UsageError
from controller.state import EnvironmentRecord, ItemTooLarge, LeaseLost, ResourceRecord, open_store
from controller.state.dynamodb import DynamoStore
from daemon_helpers import wait_for
TABLE = "lensops-state"
URL = f"dynamodb://{TABLE}"


@pytest.fixture
def ddb(aws: Any) -> Any:
    return boto3.client("dynamodb", endpoint_url=aws.url, region_name="us-east-1")


def test_the_table_is_created_when_missing_and_reused_when_present(aws, ddb):
    assert TABLE not in ddb.list_tables()["TableNames"]
    store = open_store(URL)
    assert isinstance(store, DynamoStore)
    table = ddb.describe_table(TableName=TABLE)["Table"]
    assert table["TableStatus"] == "ACTIVE"
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert {(k["AttributeName"], k["KeyType"]) for k in table["KeySchema"]} == {("pk", "HASH"), ("sk", "RANGE")}
    store.put_environment(EnvironmentRecord("dev", applied_revision="r1"))
    aws.clear_requests()
    again = open_store(URL)
    assert again.environment("dev").applied_revision == "r1"
    assert ("dynamodb", "CreateTable") not in aws.requests()


def test_a_table_with_another_key_schema_is_refused(ddb):
    ddb.create_table(
        TableName="other",
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
    )
    with pytest.raises(UsageError, match=r"'other'.*pk \(S, HASH\) \+ sk \(S, RANGE\)"):
        open_store("dynamodb://other")


def test_bad_urls_are_usage_errors():
    for url in ("dynamodb://", "dynamodb://a/b"):
        with pytest.raises(UsageError):
            open_store(url)


def test_exactly_one_of_eight_contenders_gets_the_lease(aws):
    stores = [open_store(URL) for _ in range(8)]
    barrier = threading.Barrier(8)
    got: dict[str, int | None] = {}

    def contend(i: int) -> None:
        barrier.wait()
        got[f"r{i}"] = stores[i].acquire_lease("dev", f"r{i}", 30)

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [owner for owner, epoch in got.items() if epoch is not None]
    assert len(winners) == 1 and got[winners[0]] == 1
    assert stores[0].lease_holder("dev")[:2] == (winners[0], 1)


def test_renewal_keeps_the_epoch_and_a_takeover_increments_it(aws):
    a, b = open_store(URL), open_store(URL)
    assert a.lease_holder("dev") is None
    assert a.acquire_lease("dev", "a", 30) == 1
    first_expiry = a.lease_holder("dev")[2]
    assert b.acquire_lease("dev", "b", 30) is None  # live lease of a
    assert a.acquire_lease("dev", "a", 60) == 1  # renewal
    owner, epoch, expires = b.lease_holder("dev")
    assert (owner, epoch) == ("a", 1) and expires > first_expiry
    assert b.acquire_lease("prod", "b", 30) == 1  # leases are per environment

    assert a.acquire_lease("dev", "a", -1) == 1  # renewed into the past: expired
    assert b.acquire_lease("dev", "b", 30) == 2  # taken over
    assert a.acquire_lease("dev", "a", 30) is None
    assert a.lease_holder("dev")[:2] == ("b", 2)

    a.release_lease("dev", "a")  # not a's: nothing happens
    assert a.lease_holder("dev")[:2] == ("b", 2)
    b.release_lease("dev", "b")
    assert a.lease_holder("dev") is None
    assert b.acquire_lease("dev", "b", 30) == 3  # epochs never repeat, even for the same owner


def _seed(store: Any) -> None:
    store.put_environment(EnvironmentRecord("dev", applied_revision="r1"))
    for i in range(3):
        store.put_resource(ResourceRecord("dev", "MetricAlarm", f"a{i}", f"a{i}", spec={"t": i}))
    store.put_item("runbook", "dev/drill", {"step": 0}, None)


def _snapshot(store: Any) -> Any:
    return (
        {k: (r.spec, r.desired, r.updated_at) for k, r in store.resources("dev").items()},
        store.environment("dev"),
        store.history("dev"),
        store.list_items("runbook"),
    )


def test_fenced_writes_of_a_replica_that_lost_its_lease_raise_and_change_nothing(aws):
    a, b = open_store(URL), open_store(URL)
    epoch = a.acquire_lease("dev", "a", 30)
    a.fence("dev", "a", epoch)
    _seed(a)  # fenced writes go through while a holds the lease
    running = a.start_revision("dev", "r2", "poll")
    assert a.history("dev")[0].id == running

    a.acquire_lease("dev", "a", -1)  # a's lease expires ...
    assert b.acquire_lease("dev", "b", 30) == epoch + 1  # ... and b takes over
    before = _snapshot(b)

    attempts = [
        lambda: a.put_resource(ResourceRecord("dev", "MetricAlarm", "a0", "a0", spec={"t": "stale"})),
        lambda: a.put_resource(ResourceRecord("dev", "MetricAlarm", "new", "new")),
        lambda: a.delete_resource("dev", "MetricAlarm", "a1"),
        lambda: a.put_environment(EnvironmentRecord("dev", applied_revision="stale")),
        lambda: a.start_revision("dev", "stale", "poll"),
        lambda: a.finish_revision(running, "success", "stale", []),
        lambda: a.put_item("runbook", "dev/drill", {"step": 9}, 1),
        lambda: a.put_item("runbook", "dev/other", {"step": 9}, None),
        lambda: a.delete_item("runbook", "dev/drill"),
    ]
    for attempt in attempts:
        with pytest.raises(LeaseLost) as caught:
            attempt()
        assert caught.value.environment == "dev"
    assert _snapshot(b) == before

    # writes about other environments are not fenced; nor are a's once unfenced
    a.put_resource(ResourceRecord("prod", "MetricAlarm", "x", "x"))
    assert a.put_item("runbook", "prod/drill", {}, None)
    a.unfence("dev")
    a.put_environment(EnvironmentRecord("dev", applied_revision="unfenced"))
    assert b.environment("dev").applied_revision == "unfenced"
    # b, fenced with its own epoch, writes
    b.fence("dev", "b", epoch + 1)
    b.put_resource(ResourceRecord("dev", "MetricAlarm", "a0", "a0", spec={"t": "b"}))
    assert a.resources("dev")["MetricAlarm/a0"].spec == {"t": "b"}


def test_a_fenced_conditional_item_write_still_reports_a_version_conflict(aws):
    store = open_store(URL)
    store.fence("dev", "a", store.acquire_lease("dev", "a", 30))
    assert store.put_item("runbook", "dev/drill", {"step": 0}, None) is True
    assert store.put_item("runbook", "dev/drill", {"step": 1}, None) is False
    assert store.put_item("runbook", "dev/drill", {"step": 1}, 7) is False
    assert store.put_item("runbook", "dev/drill", {"step": 1}, 1) is True
    assert store.get_item("runbook", "dev/drill") == ({"step": 1}, 2)


def test_a_fenced_view_refuses_writes_once_its_epoch_is_over_even_for_the_same_owner(aws):
    """A pass fenced on the epoch it started under writes nothing once the lease moved on,
    even when the same replica has taken the lease back since (a new epoch): the epoch decides, not the owner."""
    store = open_store(URL)
    epoch = store.acquire_lease("dev", "a", 30)
    view = store.fenced("dev", "a", epoch)
    view.put_environment(EnvironmentRecord("dev", applied_revision="r1"))
    store.acquire_lease("dev", "a", -1)  # a's lease lapses (a paused replica) ...
    assert store.acquire_lease("dev", "b", 30) == epoch + 1  # ... b takes over, then hands it back ...
    store.release_lease("dev", "b")
    assert store.acquire_lease("dev", "a", 30) == epoch + 2  # ... and a holds it again, under a new epoch
    with pytest.raises(LeaseLost):
        view.put_environment(EnvironmentRecord("dev", applied_revision="stale"))
    with pytest.raises(LeaseLost):
        view.put_item("intent", "dev/MetricAlarm/x", {"physical": "x"}, None)
    assert store.environment("dev").applied_revision == "r1"
    assert store.get_item("intent", "dev/MetricAlarm/x") is None
    store.fenced("dev", "a", epoch + 2).put_environment(EnvironmentRecord("dev", applied_revision="r2"))
    assert store.environment("dev").applied_revision == "r2"
    view.put_environment(EnvironmentRecord("prod", applied_revision="p1"))  # other environments are not fenced by it


def test_live_replicas_ignore_expired_heartbeats(aws):
    store = open_store(URL)
    store.heartbeat("replica-b", 30)
    store.heartbeat("replica-a", 30)
    store.heartbeat("replica-gone", -1)
    store.heartbeat("replica-c", 2)
    assert store.live_replicas() == ["replica-a", "replica-b", "replica-c"]
    # replica-c's heartbeat expires: another store sees it go (waited for, not slept on)
    wait_for(lambda: open_store(URL).live_replicas() == ["replica-a", "replica-b"], timeout=10, what="replica-c's heartbeat to expire")
    store.heartbeat("replica-gone", 30)  # came back
    assert store.live_replicas() == ["replica-a", "replica-b", "replica-gone"]


def test_records_beyond_the_item_limit_are_refused_clearly(aws):
    store = open_store(URL)
    huge = {"body": "x" * 500_000}
    with pytest.raises(ItemTooLarge, match="400 KB"):
        store.put_resource(ResourceRecord("dev", "Dashboard", "big", "big", spec=huge))
    with pytest.raises(ItemTooLarge):
        store.put_item("runbook", "dev/big", huge, None)
    assert store.resources("dev") == {} and store.get_item("runbook", "dev/big") is None


def test_lensops_status_reads_the_dynamodb_store(aws, lensops, monkeypatch):
    monkeypatch.setenv("LENSOPS_STATE_URL", URL)
    store = open_store(URL)
    store.put_environment(EnvironmentRecord("dev", applied_revision="0123456789abcdef", status="synced"))
    store.put_resource(ResourceRecord("dev", "MetricAlarm", "api-5xx", "api-5xx", sync="synced", health="healthy"))
    history = store.start_revision("dev", "0123456789abcdef", "poll")
    store.finish_revision(history, "success", "", [])

    result = lensops("status", "--output", "json")
    assert result.code == 0, result.err
    doc = json.loads(result.out)["environments"]["dev"]
    assert (doc["appliedRevision"], doc["status"]) == ("0123456789abcdef", "synced")
    assert [(r["name"], r["sync"], r["health"]) for r in doc["resources"]] == [("api-5xx", "synced", "healthy")]
    text = lensops("status")
    assert text.code == 0 and "dev" in text.out and "0123456789ab" in text.out
    hist = lensops("history", "--output", "json")
    assert hist.code == 0, hist.err
    assert "0123456789abcdef" in hist.out
