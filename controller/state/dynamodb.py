"""The DynamoDB state store: one table shared by every replica, with leases and fencing.

``dynamodb://TABLE`` names the table. It is created when missing (on-demand
billing, key ``pk`` (S, hash) + ``sk`` (S, range)); a table with another key
schema is refused. Every record is one item whose ``data`` attribute is the
record as JSON (no float/Decimal conversions), next to the few attributes that
conditions need:

====================  ===================  ===========================================
pk                    sk                   attributes
====================  ===================  ===========================================
``res#<env>``         ``<Kind>/<name>``    data (ResourceRecord)
``env``               ``<env>``            data (EnvironmentRecord)
``rev#<env>``         id, 20 digits        data (RevisionRecord), id (N)
``revid``             id, 20 digits        env (S): which environment an id belongs to
``counter``           ``revision``         n (N): the last revision id handed out
``item#<namespace>``  ``<key>``            data (the value), version (N), updated_at (N)
``lease``             ``<env>``            owner (S), epoch (N), expires (N)
``replica``           ``<owner>``          expires (N)
``meta``              ``ping``             never written; read by ``ping()``
====================  ===================  ===========================================

Reads are strongly consistent. Revision ids come from one counter (atomic
ADD), so they increase across environments as SQLite's do; ``revid`` maps an
id to its environment so that any process can finish a revision, and lists
the newest revisions of every environment in one query.

**Leases.** ``acquire_lease`` renews a lease its owner holds (the epoch stays)
or takes over one that is absent, released or expired (the epoch goes up by
one); both are single conditional updates, so exactly one contender wins.
``expires`` is Unix seconds from the *writer's* clock and is compared with the
reader's: replica clocks are assumed NTP-synchronised within about a second,
and the TTL must be much larger than that skew (tens of seconds). Safety does
not rest on clocks: ``fence(env, owner, epoch)`` makes every later write of
this store object that concerns ``env`` a transaction with a ``ConditionCheck``
that the lease item still has that owner and epoch, so a replica that lost
the lease (whatever the clocks say) cannot write once another took it over;
such a write raises ``LeaseLost`` and changes nothing. Releasing a lease
keeps its item (owner removed) so that epochs never repeat.
"""

from __future__ import annotations

import copy
import json
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import asdict, fields
from typing import Any

import botocore.exceptions

from controller.errors import RetryableError, UsageError, classify
from controller.state.base import (
    EnvironmentRecord,
    ItemTooLarge,
    LeaseLost,
    ResourceRecord,
    RevisionRecord,
    StoreMissing,
)

MAX_ITEM_BYTES = 400 * 1024
"""DynamoDB's item size limit (attribute names and values)."""

_KEY_SCHEMA = {("pk", "HASH"), ("sk", "RANGE")}
_CONDITION_FAILED = "ConditionalCheckFailedException"


class _ConditionFailed(Exception):
    """The condition of one of our own writes (not the lease check) failed."""


def _dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _s(text: str) -> dict[str, str]:
    return {"S": text}


def _n(number: float | int) -> dict[str, str]:
    return {"N": repr(number) if isinstance(number, float) else str(number)}


def _num(value: dict[str, str]) -> float:
    return float(value["N"])


def _rev_sk(id: int) -> str:
    return f"{id:020d}"


def _item_size(item: dict[str, dict[str, Any]]) -> int:
    """DynamoDB's size of an item: names plus values (numbers counted generously)."""
    size = 0
    for name, value in item.items():
        size += len(name.encode())
        ((kind, raw),) = value.items()
        size += len(raw.encode()) if kind == "S" else len(str(raw)) // 2 + 2
    return size


def _record(cls: type, data: dict[str, Any]) -> Any:
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in known})


class DynamoStore:
    """A ``StateStore`` in one DynamoDB table, safe to share between replicas."""

    def __init__(self, table: str, client: Any, create: bool = True):
        if not table:
            raise UsageError("LENSOPS_STATE_URL dynamodb://TABLE: the table name is missing")
        self.table = table
        self._client = client
        self._lock = threading.Lock()
        self._fences: dict[str, tuple[str, int]] = {}
        self._revision_envs: OrderedDict[int, str] = OrderedDict()
        self._ensure_table(create)

    # -- plumbing --------------------------------------------------------------------------

    def _call(self, operation: str, expected: tuple[str, ...] = (), **kwargs: Any) -> Any:
        """One DynamoDB call; AWS errors become lensops errors except the ``expected`` codes."""
        try:
            return getattr(self._client, operation)(**kwargs)
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in expected:
                raise
            raise classify(exc) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise classify(exc) from exc

    def _ensure_table(self, create: bool) -> None:
        """Check the table's key schema; a missing table is created, or with ``create`` off, ``StoreMissing``."""
        try:
            table = self._call("describe_table", ("ResourceNotFoundException",), TableName=self.table)["Table"]
        except botocore.exceptions.ClientError:
            if not create:
                region = getattr(getattr(self._client, "meta", None), "region_name", None)
                raise StoreMissing(f"dynamodb://{self.table}", f"region {region}" if region else "") from None
            try:
                self._call(
                    "create_table",
                    ("ResourceInUseException",),
                    TableName=self.table,
                    BillingMode="PAY_PER_REQUEST",
                    AttributeDefinitions=[
                        {"AttributeName": "pk", "AttributeType": "S"},
                        {"AttributeName": "sk", "AttributeType": "S"},
                    ],
                    KeySchema=[
                        {"AttributeName": "pk", "KeyType": "HASH"},
                        {"AttributeName": "sk", "KeyType": "RANGE"},
                    ],
                )
            except botocore.exceptions.ClientError:
                pass  # another replica is creating it at the same time
            self._wait_active()
            table = self._call("describe_table", TableName=self.table)["Table"]
        if table.get("TableStatus") == "CREATING":
            self._wait_active()
        schema = {(k["AttributeName"], k["KeyType"]) for k in table.get("KeySchema", [])}
        types = {a["AttributeName"]: a["AttributeType"] for a in table.get("AttributeDefinitions", [])}
        if schema != _KEY_SCHEMA or types.get("pk") != "S" or types.get("sk") != "S":
            found = ", ".join(f"{n} ({types.get(n, '?')}, {t})" for n, t in sorted(schema, key=lambda k: k[1]))
            raise UsageError(
                f"DynamoDB table {self.table!r} has key schema {found or 'none'}; "
                "lensops needs pk (S, HASH) + sk (S, RANGE): name another table in LENSOPS_STATE_URL"
            )

    def _wait_active(self) -> None:
        try:
            self._client.get_waiter("table_exists").wait(
                TableName=self.table, WaiterConfig={"Delay": 2, "MaxAttempts": 150}
            )
        except botocore.exceptions.WaiterError as exc:
            raise RetryableError(f"DynamoDB table {self.table!r} did not become ACTIVE: {exc}") from exc

    def _get(self, pk: str, sk: str) -> dict[str, Any] | None:
        got = self._call(
            "get_item", TableName=self.table, Key={"pk": _s(pk), "sk": _s(sk)}, ConsistentRead=True
        )
        item: dict[str, Any] | None = got.get("Item")
        return item

    def _query(self, pk: str, prefix: str = "", forward: bool = True, limit: int = 0) -> Iterator[dict[str, Any]]:
        """Every item of a partition (whose sk starts with ``prefix``), page after page."""
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "ConsistentRead": True,
            "ScanIndexForward": forward,
            "ExpressionAttributeNames": {"#pk": "pk"},
            "ExpressionAttributeValues": {":pk": _s(pk)},
            "KeyConditionExpression": "#pk = :pk",
        }
        if prefix:
            kwargs["KeyConditionExpression"] += " AND begins_with(#sk, :prefix)"
            kwargs["ExpressionAttributeNames"]["#sk"] = "sk"
            kwargs["ExpressionAttributeValues"][":prefix"] = _s(prefix)
        returned = 0
        while True:
            if limit > 0:
                kwargs["Limit"] = limit - returned
            page = self._call("query", **kwargs)
            for item in page.get("Items", []):
                yield item
                returned += 1
            if not page.get("LastEvaluatedKey") or (limit > 0 and returned >= limit):
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _put(self, item: dict[str, Any], what: str, condition: str = "", names: Any = None, values: Any = None) -> dict[str, Any]:
        """A Put operation (for ``_write``), refused when the item exceeds DynamoDB's limit."""
        size = _item_size(item)
        if size > MAX_ITEM_BYTES:
            raise ItemTooLarge(
                f"state store: {what} is {size} bytes, more than DynamoDB's 400 KB item limit; not written"
            )
        op: dict[str, Any] = {"Item": item}
        if condition:
            op["ConditionExpression"] = condition
        if names:
            op["ExpressionAttributeNames"] = names
        if values:
            op["ExpressionAttributeValues"] = values
        return {"Put": op}

    def _fence_of(self, environment: str | None) -> tuple[str, int] | None:
        if environment is None:
            return None
        with self._lock:
            return self._fences.get(environment)

    def _fence_of_key(self, key: str) -> str | None:
        """The fenced environment an item key belongs to (``<env>/...``), if any."""
        if "/" not in key:
            return None
        environment = key.split("/", 1)[0]
        return environment if self._fence_of(environment) else None

    def _write(self, environment: str | None, ops: list[dict[str, Any]]) -> None:
        """Apply ``ops`` ({"Put"|"Delete"|"Update": {...}}, without TableName) atomically, behind
        the lease check when ``environment`` is fenced. Raises LeaseLost when the lease moved,
        _ConditionFailed when one of the ops' own conditions failed."""
        fence = self._fence_of(environment)
        if fence is None and len(ops) == 1:
            ((kind, op),) = ops[0].items()
            operation = {"Put": "put_item", "Delete": "delete_item", "Update": "update_item"}[kind]
            try:
                self._call(operation, (_CONDITION_FAILED,), TableName=self.table, **op)
            except botocore.exceptions.ClientError as exc:
                raise _ConditionFailed() from exc
            return
        items: list[dict[str, Any]] = []
        if fence is not None:
            assert environment is not None
            items.append(
                {
                    "ConditionCheck": {
                        "TableName": self.table,
                        "Key": {"pk": _s("lease"), "sk": _s(environment)},
                        "ConditionExpression": "#owner = :owner AND #epoch = :epoch",
                        "ExpressionAttributeNames": {"#owner": "owner", "#epoch": "epoch"},
                        "ExpressionAttributeValues": {":owner": _s(fence[0]), ":epoch": _n(fence[1])},
                    }
                }
            )
        for entry in ops:
            ((kind, op),) = entry.items()
            items.append({kind: {"TableName": self.table, **op}})
        for attempt in range(8):
            try:
                self._call("transact_write_items", ("TransactionCanceledException",), TransactItems=items)
                return
            except botocore.exceptions.ClientError as exc:
                reasons = [str(r.get("Code", "None")) for r in exc.response.get("CancellationReasons", [])]
            if fence is not None and reasons[:1] == ["ConditionalCheckFailed"]:
                raise LeaseLost(str(environment))
            if fence is not None and not reasons and not self._fence_holds(environment, fence):
                raise LeaseLost(str(environment))  # no reasons given: the lease item decides
            if "ConditionalCheckFailed" in reasons:
                raise _ConditionFailed()
            # TransactionConflict (another transaction on one of these items) or throttling: retry.
            time.sleep(min(2.0, 0.05 * 2**attempt) * random.uniform(0.5, 1.0))
        raise RetryableError(f"state store: transaction on {environment or 'the table'} kept conflicting: {reasons}")

    def _fence_holds(self, environment: str | None, fence: tuple[str, int]) -> bool:
        holder = self.lease_holder(str(environment))
        return holder is not None and holder[:2] == fence

    # -- resources ---------------------------------------------------------------------------

    def resources(self, environment: str) -> dict[str, ResourceRecord]:
        out = {}
        for item in self._query(f"res#{environment}"):
            record = _record(ResourceRecord, json.loads(item["data"]["S"]))
            out[record.ident] = record
        return out

    def _resource_item(self, record: ResourceRecord) -> dict[str, Any]:
        return {
            "pk": _s(f"res#{record.environment}"),
            "sk": _s(record.ident),
            "data": _s(_dump(asdict(record))),
        }

    def put_resource(self, record: ResourceRecord) -> None:
        record.updated_at = time.time()
        op = self._put(self._resource_item(record), f"{record.environment} {record.ident}")
        self._write(record.environment, [op])

    def delete_resource(self, environment: str, kind: str, name: str) -> None:
        key = {"pk": _s(f"res#{environment}"), "sk": _s(f"{kind}/{name}")}
        self._write(environment, [{"Delete": {"Key": key}}])

    # -- environments --------------------------------------------------------------------------

    def environment(self, environment: str) -> EnvironmentRecord | None:
        item = self._get("env", environment)
        return _record(EnvironmentRecord, json.loads(item["data"]["S"])) if item else None

    def environments(self) -> list[EnvironmentRecord]:
        return [_record(EnvironmentRecord, json.loads(i["data"]["S"])) for i in self._query("env")]

    def put_environment(self, record: EnvironmentRecord) -> None:
        record.updated_at = time.time()
        item = {"pk": _s("env"), "sk": _s(record.environment), "data": _s(_dump(asdict(record)))}
        self._write(record.environment, [self._put(item, f"environment {record.environment}")])

    # -- revisions (history) -------------------------------------------------------------------

    def start_revision(self, environment: str, revision: str, trigger: str) -> int:
        # One pass at a time per environment: a row still running is from a killed process.
        for old in self.history(environment, 10):
            if old.result == "running":
                self.finish_revision(old.id, "interrupted", "the pass was interrupted", old.changes)
        counted = self._call(
            "update_item",
            TableName=self.table,
            Key={"pk": _s("counter"), "sk": _s("revision")},
            UpdateExpression="ADD #n :one",
            ExpressionAttributeNames={"#n": "n"},
            ExpressionAttributeValues={":one": _n(1)},
            ReturnValues="UPDATED_NEW",
        )
        id = int(counted["Attributes"]["n"]["N"])
        record = RevisionRecord(id=id, environment=environment, revision=revision, started_at=time.time(), trigger=trigger)
        self._write(
            environment,
            [
                self._put(self._revision_item(record), f"revision {id} of {environment}"),
                {"Put": {"Item": {"pk": _s("revid"), "sk": _s(_rev_sk(id)), "env": _s(environment)}}},
            ],
        )
        with self._lock:
            self._revision_envs[id] = environment
            while len(self._revision_envs) > 1000:
                self._revision_envs.popitem(last=False)
        return id

    @staticmethod
    def _revision_item(record: RevisionRecord) -> dict[str, Any]:
        return {
            "pk": _s(f"rev#{record.environment}"),
            "sk": _s(_rev_sk(record.id)),
            "id": _n(record.id),
            "data": _s(_dump(asdict(record))),
        }

    def finish_revision(self, id: int, result: str, message: str, changes: list[dict[str, Any]]) -> None:
        with self._lock:
            environment = self._revision_envs.get(id)
        if environment is None:
            found = self._get("revid", _rev_sk(id))
            if found is None:
                return
            environment = found["env"]["S"]
        item = self._get(f"rev#{environment}", _rev_sk(id))
        if item is None:
            return
        record = _record(RevisionRecord, json.loads(item["data"]["S"]))
        record.finished_at = time.time()
        record.result = result
        record.message = message
        record.changes = changes
        op = self._put(self._revision_item(record), f"revision {id} of {environment}")
        self._write(environment, [op])

    def history(self, environment: str | None = None, limit: int = 50) -> list[RevisionRecord]:
        if limit == 0:
            return []
        limit = max(limit, 0)
        if environment:
            items = list(self._query(f"rev#{environment}", forward=False, limit=limit))
        else:
            keys = [
                {"pk": _s(f"rev#{i['env']['S']}"), "sk": i["sk"]}
                for i in self._query("revid", forward=False, limit=limit)
            ]
            items = self._batch_get(keys)
        records = [_record(RevisionRecord, json.loads(i["data"]["S"])) for i in items]
        return sorted(records, key=lambda r: r.id, reverse=True)

    def _batch_get(self, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for start in range(0, len(keys), 100):
            pending: dict[str, Any] = {self.table: {"Keys": keys[start : start + 100], "ConsistentRead": True}}
            attempt = 0
            while pending:
                got = self._call("batch_get_item", RequestItems=pending)
                out.extend(got.get("Responses", {}).get(self.table, []))
                pending = got.get("UnprocessedKeys") or {}
                if pending:
                    time.sleep(min(2.0, 0.05 * 2**attempt))
                    attempt += 1
        return out

    # -- versioned items -----------------------------------------------------------------------

    def get_item(self, namespace: str, key: str) -> tuple[dict[str, Any], int] | None:
        item = self._get(f"item#{namespace}", key)
        return (json.loads(item["data"]["S"]), int(item["version"]["N"])) if item else None

    def put_item(self, namespace: str, key: str, value: dict[str, Any], expected_version: int | None) -> bool:
        version = 1 if expected_version is None else expected_version + 1
        item = {
            "pk": _s(f"item#{namespace}"),
            "sk": _s(key),
            "data": _s(_dump(value)),
            "version": _n(version),
            "updated_at": _n(time.time()),
        }
        if expected_version is None:
            op = self._put(item, f"{namespace} item {key}", "attribute_not_exists(#pk)", {"#pk": "pk"})
        else:
            op = self._put(item, f"{namespace} item {key}", "#v = :v", {"#v": "version"}, {":v": _n(expected_version)})
        try:
            self._write(self._fence_of_key(key), [op])
        except _ConditionFailed:
            return False
        return True

    def list_items(self, namespace: str, prefix: str = "") -> list[tuple[str, dict[str, Any], int]]:
        return [
            (i["sk"]["S"], json.loads(i["data"]["S"]), int(i["version"]["N"]))
            for i in self._query(f"item#{namespace}", prefix=prefix)
        ]

    def delete_item(self, namespace: str, key: str) -> None:
        op = {"Delete": {"Key": {"pk": _s(f"item#{namespace}"), "sk": _s(key)}}}
        self._write(self._fence_of_key(key), [op])

    # -- leases, heartbeats, fencing -----------------------------------------------------------

    def acquire_lease(self, environment: str, owner: str, ttl_seconds: float) -> int | None:
        key = {"pk": _s("lease"), "sk": _s(environment)}
        now = time.time()
        expires = _n(now + ttl_seconds)
        try:  # renewal: the epoch stays
            done = self._call(
                "update_item",
                (_CONDITION_FAILED,),
                TableName=self.table,
                Key=key,
                UpdateExpression="SET #x = :x",
                ConditionExpression="#o = :o",
                ExpressionAttributeNames={"#o": "owner", "#x": "expires"},
                ExpressionAttributeValues={":o": _s(owner), ":x": expires},
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
            return int(done["Attributes"]["epoch"]["N"])
        except botocore.exceptions.ClientError as exc:
            old = exc.response.get("Item")
            if old and "owner" in old and _num(old.get("expires", _n(0))) >= now:
                return None  # someone else holds a live lease
        try:  # takeover of an absent, released or expired lease: a new epoch
            done = self._call(
                "update_item",
                (_CONDITION_FAILED,),
                TableName=self.table,
                Key=key,
                UpdateExpression="SET #o = :o, #x = :x ADD #e :one",
                ConditionExpression="attribute_not_exists(#o) OR #x < :now",
                ExpressionAttributeNames={"#o": "owner", "#x": "expires", "#e": "epoch"},
                ExpressionAttributeValues={":o": _s(owner), ":x": expires, ":one": _n(1), ":now": _n(now)},
                ReturnValues="ALL_NEW",
            )
        except botocore.exceptions.ClientError:
            return None
        return int(done["Attributes"]["epoch"]["N"])

    def release_lease(self, environment: str, owner: str) -> None:
        """Remove the owner and expire the lease, keeping its epoch so epochs never repeat."""
        try:
            self._call(
                "update_item",
                (_CONDITION_FAILED,),
                TableName=self.table,
                Key={"pk": _s("lease"), "sk": _s(environment)},
                UpdateExpression="REMOVE #o SET #x = :zero",
                ConditionExpression="#o = :o",
                ExpressionAttributeNames={"#o": "owner", "#x": "expires"},
                ExpressionAttributeValues={":o": _s(owner), ":zero": _n(0)},
            )
        except botocore.exceptions.ClientError:
            pass  # not ours (any more)

    def lease_holder(self, environment: str) -> tuple[str, int, float] | None:
        item = self._get("lease", environment)
        if not item or "owner" not in item:
            return None
        return item["owner"]["S"], int(item["epoch"]["N"]), _num(item["expires"])

    def heartbeat(self, owner: str, ttl_seconds: float) -> None:
        self._call(
            "put_item",
            TableName=self.table,
            Item={"pk": _s("replica"), "sk": _s(owner), "expires": _n(time.time() + ttl_seconds)},
        )

    def live_replicas(self) -> list[str]:
        now = time.time()
        return sorted(i["sk"]["S"] for i in self._query("replica") if _num(i["expires"]) > now)

    def fenced(self, environment: str, owner: str, epoch: int) -> "DynamoStore":
        """A view sharing this store's client whose writes concerning ``environment`` check the
        lease for ``owner`` and ``epoch``: a pass started under one lease cannot write under the next."""
        view = copy.copy(self)
        with self._lock:
            view._fences = {**self._fences, environment: (owner, int(epoch))}
        return view

    def fence(self, environment: str, owner: str, epoch: int) -> None:
        with self._lock:
            self._fences[environment] = (owner, int(epoch))

    def unfence(self, environment: str) -> None:
        with self._lock:
            self._fences.pop(environment, None)

    # -- lifecycle -----------------------------------------------------------------------------

    def ping(self) -> None:
        self._get("meta", "ping")

    def close(self) -> None:
        pass
