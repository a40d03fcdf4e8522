"""The journal: what the engine keeps beside the resource records, per environment.

Three kinds of conditional items in the state store (``StateStore.put_item``),
keyed ``<environment>/<Kind>/<name>``:

- **intents** (``intent``): written before a write to AWS and removed once its
  result is recorded; after a crash in between, the resource is still known
  as ours and its new state is not taken for drift.
- **failures** (``failure``): a permanent error against the spec that caused
  it, so that the daemon does not retry it until the spec or the revision changes.
- **changes since the healthy point** (``changed``): written before the first
  write to a resource since the environment last passed a bake, holding what
  the resource was at that point: ``absent`` (lensops creates it), ``recorded``
  (the desired state lensops had applied), or ``adopted`` (the state it was
  found in when lensops adopted it). A rollback puts back exactly these.
  Each entry carries the environment's healthy point number; passing a bake
  moves the number on (one write), so older entries are void at once even if
  their removal is interrupted.
"""

from __future__ import annotations

import threading
from typing import Any

from controller.errors import RetryableError
from controller.state import StateStore

INTENTS = "intent"
FAILURES = "failure"
CHANGES = "changed"
POINT_KEY = "healthy_point"
"""Where an environment's record keeps its healthy point number."""


def _items(store: StateStore, namespace: str, environment: str) -> dict[str, tuple[dict[str, Any], int]]:
    return {key.split("/", 1)[1]: (value, version) for key, value, version in store.list_items(namespace, f"{environment}/")}


class Journal:
    """One environment's journal, read once per pass and written through as the pass goes."""

    def __init__(self, store: StateStore, environment: str, point: int, record_changes: bool, load_changes: bool = True):
        self.store = store
        self.environment = environment
        self.point = point
        self.record_changes = record_changes
        """False for the writes that do not move the environment away from its healthy point
        (the baseline revision, a rollback putting it back)."""
        self._lock = threading.Lock()
        self._intents = _items(store, INTENTS, environment)
        self._failures = _items(store, FAILURES, environment)
        self._changes = _items(store, CHANGES, environment) if load_changes else {}
        """Every change entry found (entries of an earlier healthy point too: void, but their versions count)."""
        self._put_back: dict[str, set[str]] = {}
        """In a rollback: the physical names of each resource already as they were at the healthy point."""

    @property
    def changes(self) -> dict[str, dict[str, Any]]:
        """Kind/name -> what it was at the healthy point, for this healthy point only."""
        with self._lock:
            return {ident: value for ident, (value, _) in self._changes.items() if value.get("point") == self.point}

    def _change_entry(self, ident: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._changes.get(ident)
        return found[0] if found is not None and found[0].get("point") == self.point else None

    def _key(self, ident: str) -> str:
        return f"{self.environment}/{ident}"

    def _put(self, namespace: str, ident: str, value: dict[str, Any], version: int | None) -> int:
        """Write an item (create or replace); its new version."""
        key = self._key(ident)
        if not self.store.put_item(namespace, key, value, version):
            found = self.store.get_item(namespace, key)  # written meanwhile by another process
            version = found[1] if found else None
            if not self.store.put_item(namespace, key, value, version):
                raise RetryableError(f"state store: journal item {namespace}/{key} keeps changing under this pass")
        return (version or 0) + 1

    # --- intents ---------------------------------------------------------

    def intent(self, ident: str) -> dict[str, Any] | None:
        found = self._intents.get(ident)
        return found[0] if found else None

    def intents(self) -> dict[str, dict[str, Any]]:
        """Kind/name -> its intent: every write begun and not yet recorded."""
        with self._lock:
            return {ident: value for ident, (value, _) in self._intents.items()}

    def intend(self, ident: str, physical: str, digest: str) -> None:
        """Before a write: the resource is ours, and its next state is not drift."""
        self._keep(self._intents, INTENTS, ident, {"physical": physical, "hash": digest})

    def done(self, ident: str) -> None:
        """After the write's result is recorded."""
        self._drop(self._intents, INTENTS, ident)

    # --- permanent failures ------------------------------------------------

    def failure(self, ident: str) -> dict[str, Any] | None:
        found = self._failures.get(ident)
        return found[0] if found else None

    def fail(self, ident: str, value: dict[str, Any]) -> None:
        self._keep(self._failures, FAILURES, ident, value)

    def forget_failure(self, ident: str) -> None:
        self._drop(self._failures, FAILURES, ident)

    def _keep(self, kept: dict[str, tuple[dict[str, Any], int]], namespace: str, ident: str, value: dict[str, Any]) -> None:
        with self._lock:
            version = kept[ident][1] if ident in kept else None
        written = self._put(namespace, ident, value, version)
        with self._lock:
            kept[ident] = (value, written)

    def _drop(self, kept: dict[str, tuple[dict[str, Any], int]], namespace: str, ident: str) -> None:
        with self._lock:
            known = kept.pop(ident, None)
        if known is not None:
            self.store.delete_item(namespace, self._key(ident))

    # --- changes since the healthy point ---------------------------------

    def changing(self, ident: str, was: dict[str, Any], created: str | None = None) -> None:
        """Before a write to ``ident``: keep what it was at the healthy point (the first time only),
        and the physical name lensops is about to create, if it creates one."""
        if not self.record_changes:
            return
        entry = self._change_entry(ident)
        if entry is None:
            entry = {**was, "point": self.point, "created": []}
        elif created is None or created in entry["created"]:
            return
        if created is not None:
            entry = {**entry, "created": [*entry["created"], created]}
        self._change(ident, entry)

    def pruned(self, ident: str, physical: str, was: dict[str, Any] | None) -> None:
        """Before deleting ``physical``: keep what ``ident`` was at the healthy point (``was``,
        unless it did not exist then). A name lensops created since is simply not there any more."""
        if not self.record_changes:
            return
        entry = self._change_entry(ident)
        if entry is None:
            if was is not None:
                self.changing(ident, was)
            return
        if physical not in entry["created"]:
            return
        created = [p for p in entry["created"] if p != physical]
        if entry["was"] == "absent" and not created:
            self.resolved(ident)  # created since the healthy point and gone again: as it was
        else:
            self._change(ident, {**entry, "created": created})

    def _change(self, ident: str, entry: dict[str, Any]) -> None:
        self._keep(self._changes, CHANGES, ident, entry)

    def put_back(self, ident: str, physical: str) -> None:
        """In a rollback: ``physical`` of ``ident`` is as it was at the healthy point, restored
        (the name it had then) or deleted (a name lensops created since). The entry goes once
        nothing of it is left to put back, so a restore cut short resumes with what is left."""
        entry = self._change_entry(ident)
        if entry is None:
            return
        with self._lock:
            done = self._put_back.setdefault(ident, set())
            done.add(physical)
        own = None if entry["was"] == "absent" else entry["desired"]["physical"]
        left = [p for p in entry["created"] if p not in done and p != own]
        if (own is None or own in done) and not left:
            self.resolved(ident)
        elif left != entry["created"]:
            self._change(ident, {**entry, "created": left})

    def resolved(self, ident: str) -> None:
        """``ident`` is back as it was at the healthy point (a rollback put it back)."""
        self._drop(self._changes, CHANGES, ident)


def clear_changes(store: StateStore, environment: str) -> None:
    """Remove every change entry of an environment (once its healthy point has moved on)."""
    for key, _, _ in store.list_items(CHANGES, f"{environment}/"):
        store.delete_item(CHANGES, key)
