"""The SQLite state store: records round-trip, conditional item writes are exactly-once."""

from __future__ import annotations

import threading

from controller.state import ResourceRecord, open_store


def test_conditional_items_allow_exactly_one_claim(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    wins: list[bool] = []

    def claim() -> None:
        other = open_store(f"sqlite:///{tmp_path}/s.db")
        wins.append(other.put_item("runbook", "dev/drill", {"owner": threading.get_ident()}, None))
        other.close()

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wins.count(True) == 1
    value, version = store.get_item("runbook", "dev/drill")
    assert version == 1
    assert store.put_item("runbook", "dev/drill", {"step": 1}, 1) is True
    assert store.put_item("runbook", "dev/drill", {"step": 2}, 1) is False
    assert store.get_item("runbook", "dev/drill") == ({"step": 1}, 2)
    assert [k for k, _, _ in store.list_items("runbook", "dev/")] == ["dev/drill"]


def test_resource_records_round_trip(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    store.put_resource(ResourceRecord("dev", "MetricAlarm", "a", "a", spec={"threshold": 5.0}, annotations={"x": "y"}))
    again = open_store(f"sqlite:///{tmp_path}/s.db").resources("dev")["MetricAlarm/a"]
    assert again.spec == {"threshold": 5.0} and again.annotations == {"x": "y"}
