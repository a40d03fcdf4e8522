"""The SQLite state store: one file, one process (WAL, so the CLI can read beside the daemon).

One daemon writes a SQLite store: its leases are always granted. They are
recorded in the file all the same, so that ``lensops apply`` in another
process sees which daemon holds an environment and refuses to apply beside
it; heartbeats stay in the process's memory and fencing does nothing.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import threading
import time
from typing import Any

from controller.errors import UsageError
from controller.state.base import EnvironmentRecord, ResourceRecord, RevisionRecord

SCHEMA_VERSION = 2
"""Raised when a change needs a migration; an older lensops refuses a newer store.
2: resources lose healthy_spec and healthy_desired (what a rollback restores is in the journal's items)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS resources (
  environment TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL,
  physical TEXT NOT NULL, arn TEXT NOT NULL DEFAULT '',
  spec TEXT, revision TEXT NOT NULL DEFAULT '',
  sync TEXT NOT NULL DEFAULT 'unknown', health TEXT NOT NULL DEFAULT 'unknown',
  message TEXT NOT NULL DEFAULT '', spec_hash TEXT NOT NULL DEFAULT '',
  annotations TEXT NOT NULL DEFAULT '{}', updated_at REAL NOT NULL DEFAULT 0,
  desired TEXT,
  PRIMARY KEY (environment, kind, name)
);
CREATE TABLE IF NOT EXISTS environments (
  environment TEXT PRIMARY KEY, applied_revision TEXT NOT NULL DEFAULT '',
  healthy_revision TEXT NOT NULL DEFAULT '', failed_revision TEXT NOT NULL DEFAULT '',
  status TEXT NOT NULL DEFAULT 'unknown', message TEXT NOT NULL DEFAULT '',
  last_sync REAL NOT NULL DEFAULT 0, updated_at REAL NOT NULL DEFAULT 0,
  data TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS revisions (
  id INTEGER PRIMARY KEY AUTOINCREMENT, environment TEXT NOT NULL, revision TEXT NOT NULL,
  started_at REAL NOT NULL, finished_at REAL NOT NULL DEFAULT 0,
  result TEXT NOT NULL DEFAULT 'running', message TEXT NOT NULL DEFAULT '',
  changes TEXT NOT NULL DEFAULT '[]', trigger TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS revisions_env ON revisions (environment, id);
CREATE TABLE IF NOT EXISTS leases (
  environment TEXT PRIMARY KEY, owner TEXT NOT NULL DEFAULT '',
  epoch INTEGER NOT NULL DEFAULT 0, expires REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS items (
  namespace TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
  version INTEGER NOT NULL, updated_at REAL NOT NULL,
  PRIMARY KEY (namespace, key)
);
"""


def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, separators=(",", ":"))


def _load(text: str | None) -> Any:
    return None if text is None else json.loads(text)


_LAZY_COLUMNS = ("spec", "desired")


def _lazy_column(name: str) -> property:
    """A record field kept as its JSON text until first read (then decoded once)."""
    value_key, text_key = f"_value_{name}", f"_json_{name}"

    def get(self: ResourceRecord) -> Any:
        fields = self.__dict__
        if value_key not in fields:
            # The text stays: two threads reading a field for the first time both decode it.
            fields[value_key] = _load(fields.get(text_key))
        return fields[value_key]

    def put(self: ResourceRecord, value: Any) -> None:
        self.__dict__.pop(text_key, None)
        self.__dict__[value_key] = value

    return property(get, put)


class _StoredRecord(ResourceRecord):
    """A resource row whose JSON states are decoded on first read.

    Every pass and every status page reads all of an environment's records,
    and most of them never need their states (drift is settled by the spec
    hash; baselines are read only by rollbacks and prunes).
    """

    spec = _lazy_column("spec")
    desired = _lazy_column("desired")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ResourceRecord):
            return NotImplemented
        return all(getattr(self, f.name) == getattr(other, f.name) for f in dataclasses.fields(ResourceRecord))

    __hash__ = None  # type: ignore[assignment]  # mutable, as ResourceRecord

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> "_StoredRecord":
        record = cls(
            environment=row["environment"],
            kind=row["kind"],
            name=row["name"],
            physical=row["physical"],
            arn=row["arn"],
            revision=row["revision"],
            sync=row["sync"],
            health=row["health"],
            message=row["message"],
            spec_hash=row["spec_hash"],
            annotations=_load(row["annotations"]) or {},
            updated_at=row["updated_at"],
        )
        for column in _LAZY_COLUMNS:
            record.__dict__.pop(f"_value_{column}", None)
            record.__dict__[f"_json_{column}"] = row[column]
        return record


class SqliteStore:
    """A ``StateStore`` in one SQLite file."""

    def __init__(self, path: str):
        self.path = path
        if path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._lock = threading.RLock()
        self._replicas: dict[str, float] = {}
        self._db = sqlite3.connect(path, check_same_thread=False, timeout=30, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        with self._lock:
            self._wal()
            self._db.execute("PRAGMA synchronous=NORMAL")
            version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise UsageError(f"state store {path} is from a newer lensops (schema {version}, this one reads {SCHEMA_VERSION})")
            if version == 1:
                self._migrate_from_1()
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _migrate_from_1(self) -> None:
        """Schema 1 to 2, in one transaction: another process may be opening the same file."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            if int(self._db.execute("PRAGMA user_version").fetchone()[0]) == 1:
                for column in ("healthy_spec", "healthy_desired"):
                    self._db.execute(f"ALTER TABLE resources DROP COLUMN {column}")
                self._db.execute("PRAGMA user_version = 2")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _wal(self) -> None:
        """Switch to WAL; another process creating the same new file at that moment may hold it briefly."""
        for attempt in range(50):
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 49:
                    raise
                time.sleep(0.02 * (attempt + 1))

    def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _exec(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, args)

    def resources(self, environment: str) -> dict[str, ResourceRecord]:
        rows = self._rows("SELECT * FROM resources WHERE environment = ?", (environment,))
        out: dict[str, ResourceRecord] = {}
        for row in rows:
            record = _StoredRecord.from_row(row)
            out[record.ident] = record
        return out

    def put_resource(self, record: ResourceRecord) -> None:
        record.updated_at = time.time()
        self._exec(
            "INSERT OR REPLACE INTO resources VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                record.environment,
                record.kind,
                record.name,
                record.physical,
                record.arn,
                _dump(record.spec),
                record.revision,
                record.sync,
                record.health,
                record.message,
                record.spec_hash,
                _dump(record.annotations) or "{}",
                record.updated_at,
                _dump(record.desired),
            ),
        )

    def delete_resource(self, environment: str, kind: str, name: str) -> None:
        self._exec("DELETE FROM resources WHERE environment = ? AND kind = ? AND name = ?", (environment, kind, name))

    def environment(self, environment: str) -> EnvironmentRecord | None:
        rows = self._rows("SELECT * FROM environments WHERE environment = ?", (environment,))
        return self._env(rows[0]) if rows else None

    def environments(self) -> list[EnvironmentRecord]:
        return [self._env(r) for r in self._rows("SELECT * FROM environments ORDER BY environment")]

    @staticmethod
    def _env(row: sqlite3.Row) -> EnvironmentRecord:
        return EnvironmentRecord(
            environment=row["environment"],
            applied_revision=row["applied_revision"],
            healthy_revision=row["healthy_revision"],
            failed_revision=row["failed_revision"],
            status=row["status"],
            message=row["message"],
            last_sync=row["last_sync"],
            updated_at=row["updated_at"],
            data=_load(row["data"]) or {},
        )

    def put_environment(self, record: EnvironmentRecord) -> None:
        record.updated_at = time.time()
        self._exec(
            "INSERT OR REPLACE INTO environments VALUES (?,?,?,?,?,?,?,?,?)",
            (
                record.environment,
                record.applied_revision,
                record.healthy_revision,
                record.failed_revision,
                record.status,
                record.message,
                record.last_sync,
                record.updated_at,
                _dump(record.data) or "{}",
            ),
        )

    def start_revision(self, environment: str, revision: str, trigger: str) -> int:
        # One pass at a time per environment: a row still running is from a killed process.
        self._exec(
            "UPDATE revisions SET result = 'interrupted', finished_at = ? WHERE environment = ? AND result = 'running'",
            (time.time(), environment),
        )
        cursor = self._exec(
            "INSERT INTO revisions (environment, revision, started_at, trigger) VALUES (?,?,?,?)",
            (environment, revision, time.time(), trigger),
        )
        return int(cursor.lastrowid or 0)

    def finish_revision(self, id: int, result: str, message: str, changes: list[dict[str, Any]]) -> None:
        self._exec(
            "UPDATE revisions SET finished_at = ?, result = ?, message = ?, changes = ? WHERE id = ?",
            (time.time(), result, message, _dump(changes) or "[]", id),
        )

    def history(self, environment: str | None = None, limit: int = 50) -> list[RevisionRecord]:
        if environment:
            rows = self._rows("SELECT * FROM revisions WHERE environment = ? ORDER BY id DESC LIMIT ?", (environment, limit))
        else:
            rows = self._rows("SELECT * FROM revisions ORDER BY id DESC LIMIT ?", (limit,))
        return [
            RevisionRecord(
                id=r["id"],
                environment=r["environment"],
                revision=r["revision"],
                started_at=r["started_at"],
                finished_at=r["finished_at"],
                result=r["result"],
                message=r["message"],
                changes=_load(r["changes"]) or [],
                trigger=r["trigger"],
            )
            for r in rows
        ]

    def get_item(self, namespace: str, key: str) -> tuple[dict[str, Any], int] | None:
        rows = self._rows("SELECT value, version FROM items WHERE namespace = ? AND key = ?", (namespace, key))
        return (json.loads(rows[0]["value"]), int(rows[0]["version"])) if rows else None

    def put_item(self, namespace: str, key: str, value: dict[str, Any], expected_version: int | None) -> bool:
        text = _dump(value)
        with self._lock:
            if expected_version is None:
                cursor = self._db.execute(
                    "INSERT OR IGNORE INTO items VALUES (?,?,?,1,?)", (namespace, key, text, time.time())
                )
            else:
                cursor = self._db.execute(
                    "UPDATE items SET value = ?, version = version + 1, updated_at = ? WHERE namespace = ? AND key = ? AND version = ?",
                    (text, time.time(), namespace, key, expected_version),
                )
            return cursor.rowcount == 1

    def list_items(self, namespace: str, prefix: str = "") -> list[tuple[str, dict[str, Any], int]]:
        rows = self._rows(
            "SELECT key, value, version FROM items WHERE namespace = ? AND substr(key, 1, ?) = ? ORDER BY key",
            (namespace, len(prefix), prefix),
        )
        return [(r["key"], json.loads(r["value"]), int(r["version"])) for r in rows]

    def delete_item(self, namespace: str, key: str) -> None:
        self._exec("DELETE FROM items WHERE namespace = ? AND key = ?", (namespace, key))

    def ping(self) -> None:
        self._rows("SELECT 1")

    # Leases: one process owns every environment, so a lease is always granted. It is kept in
    # the file (owner, epoch, expiry, as DynamoDB keeps it) for other processes to read: the CLI
    # refuses to apply beside the daemon that holds it. Fencing has nothing to guard against.

    def acquire_lease(self, environment: str, owner: str, ttl_seconds: float) -> int | None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                rows = self._db.execute("SELECT owner, epoch FROM leases WHERE environment = ?", (environment,)).fetchall()
                held, epoch = (rows[0]["owner"], int(rows[0]["epoch"])) if rows else ("", 0)
                if held != owner:
                    epoch += 1  # a new holder: a new epoch, as the DynamoDB store counts them
                self._db.execute(
                    "INSERT OR REPLACE INTO leases VALUES (?,?,?,?)", (environment, owner, epoch, time.time() + ttl_seconds)
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return epoch

    def release_lease(self, environment: str, owner: str) -> None:
        """Remove the owner and expire the lease, keeping its epoch."""
        self._exec("UPDATE leases SET owner = '', expires = 0 WHERE environment = ? AND owner = ?", (environment, owner))

    def lease_holder(self, environment: str) -> tuple[str, int, float] | None:
        rows = self._rows("SELECT owner, epoch, expires FROM leases WHERE environment = ?", (environment,))
        if not rows or not rows[0]["owner"]:
            return None
        return rows[0]["owner"], int(rows[0]["epoch"]), float(rows[0]["expires"])

    def heartbeat(self, owner: str, ttl_seconds: float) -> None:
        with self._lock:
            self._replicas[owner] = time.time() + ttl_seconds

    def live_replicas(self) -> list[str]:
        now = time.time()
        with self._lock:
            return sorted(o for o, expires in self._replicas.items() if expires > now)

    def fence(self, environment: str, owner: str, epoch: int) -> None:
        pass

    def fenced(self, environment: str, owner: str, epoch: int) -> "SqliteStore":
        return self

    def unfence(self, environment: str) -> None:
        pass

    def close(self) -> None:
        with self._lock:
            self._db.close()
