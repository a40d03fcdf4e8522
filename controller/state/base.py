"""The records the state store keeps, and the protocol every store implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from controller.errors import LensopsError, PermanentError


class LeaseLost(LensopsError):
    """A fenced write was refused: another replica took over the environment's lease.

    Raised by a store whose writes for ``environment`` were fenced (``fence``) once
    the lease item no longer has the fenced owner and epoch. Nothing was written.
    """

    def __init__(self, environment: str):
        self.environment = environment
        super().__init__(f"lease on environment {environment!r} lost to another replica: write refused")


class ItemTooLarge(PermanentError):
    """A record does not fit in one state-store item (DynamoDB: 400 KB)."""


class StoreMissing(LensopsError):
    """The state store named by ``LENSOPS_STATE_URL`` does not exist (no SQLite file, no DynamoDB
    table), and the caller asked not to create it: ``lensops status`` and ``history`` read what a
    daemon or an apply recorded, and an empty store made up on the spot would say nothing true."""

    def __init__(self, store: str, where: str = ""):
        self.store = store
        where = f" ({where})" if where else ""
        super().__init__(f"state store {store} does not exist{where}: set LENSOPS_STATE_URL to the store the daemon writes")


@dataclass
class ResourceRecord:
    """One managed resource: what was last applied, and how it stands."""

    environment: str
    kind: str
    name: str
    physical: str
    arn: str = ""
    spec: dict[str, Any] | None = None
    """The normalised desired state last applied (the baseline for drift)."""
    desired: dict[str, Any] | None = None
    """What create/update were given last: resolved ``spec``, ``tags``, ``annotations``, ``physical``,
    ``dependsOn`` (what a rollback puts back, once the resource changes again)."""
    revision: str = ""
    sync: str = "unknown"
    health: str = "unknown"
    message: str = ""
    spec_hash: str = ""
    annotations: dict[str, str] = field(default_factory=dict)
    updated_at: float = 0.0

    @property
    def ident(self) -> str:
        return f"{self.kind}/{self.name}"


@dataclass
class EnvironmentRecord:
    """What an environment runs and how its last pass went."""

    environment: str
    applied_revision: str = ""
    healthy_revision: str = ""
    failed_revision: str = ""
    status: str = "unknown"
    message: str = ""
    last_sync: float = 0.0
    updated_at: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class RevisionRecord:
    """One reconcile of one revision of one environment (the history)."""

    id: int
    environment: str
    revision: str
    started_at: float
    finished_at: float = 0.0
    result: str = "running"
    message: str = ""
    changes: list[dict[str, Any]] = field(default_factory=list)
    trigger: str = ""


class StateStore(Protocol):
    """What the engine, the daemon and the CLI need from a state store."""

    def resources(self, environment: str) -> dict[str, ResourceRecord]: ...

    def put_resource(self, record: ResourceRecord) -> None: ...

    def delete_resource(self, environment: str, kind: str, name: str) -> None: ...

    def environment(self, environment: str) -> EnvironmentRecord | None: ...

    def environments(self) -> list[EnvironmentRecord]: ...

    def put_environment(self, record: EnvironmentRecord) -> None: ...

    def start_revision(self, environment: str, revision: str, trigger: str) -> int: ...

    def finish_revision(self, id: int, result: str, message: str, changes: list[dict[str, Any]]) -> None: ...

    def history(self, environment: str | None = None, limit: int = 50) -> list[RevisionRecord]: ...

    def get_item(self, namespace: str, key: str) -> tuple[dict[str, Any], int] | None:
        """A stored item and its version, or None."""
        ...

    def put_item(self, namespace: str, key: str, value: dict[str, Any], expected_version: int | None) -> bool:
        """Write conditionally: create when ``expected_version`` is None and the key is absent,
        else replace only if the stored version is still ``expected_version``. True when written."""
        ...

    def list_items(self, namespace: str, prefix: str = "") -> list[tuple[str, dict[str, Any], int]]:
        """(key, value, version) of every item of a namespace whose key starts with ``prefix``."""
        ...

    def delete_item(self, namespace: str, key: str) -> None: ...

    def ping(self) -> None: ...

    # Leases and fencing (several replicas). A single-process store grants every lease.

    def acquire_lease(self, environment: str, owner: str, ttl_seconds: float) -> int | None:
        """Take or renew the environment's lease for ``ttl_seconds``; its epoch, or None while
        another owner holds a live lease. The epoch changes only when ownership changes hands."""
        ...

    def release_lease(self, environment: str, owner: str) -> None:
        """Give the lease up, if ``owner`` holds it (else nothing)."""
        ...

    def lease_holder(self, environment: str) -> tuple[str, int, float] | None:
        """(owner, epoch, expires) of the lease, expired or not; None when nobody holds it."""
        ...

    def heartbeat(self, owner: str, ttl_seconds: float) -> None:
        """Announce that replica ``owner`` is alive for the next ``ttl_seconds``."""
        ...

    def live_replicas(self) -> list[str]:
        """The replicas whose heartbeat has not expired, sorted."""
        ...

    def fence(self, environment: str, owner: str, epoch: int) -> None:
        """From now on, every write of this store object concerning ``environment`` is applied
        only while the lease still has ``owner`` and ``epoch``; otherwise it raises LeaseLost."""
        ...

    def fenced(self, environment: str, owner: str, epoch: int) -> "StateStore":
        """A view of this store whose writes concerning ``environment`` are applied only while the
        lease still has ``owner`` and ``epoch`` (one pass's writes, fenced on the lease it started under)."""
        ...

    def unfence(self, environment: str) -> None:
        """Stop fencing the writes concerning ``environment``."""
        ...

    def close(self) -> None: ...
