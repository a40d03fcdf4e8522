"""The reconciler protocol and the registry of kinds.

A reconciler is small and synchronous: ``observe`` (batched), a normalised
``desired_state`` that the engine's one generic differ compares with the
observed state, then ``create``, ``update`` or ``delete``. No sleeps, no retry
loops: the engine owns time, retries and ordering. Reconcilers depend only on
the engine's core (``controller.errors``, ``controller.aws``,
``controller.diff``, ``controller.manifests.types``), never on the daemon.

Adding a kind: a module with its spec model and reconciler class, decorated
with ``@register``; kinds whose reconciler is not written yet register their
spec with ``register_spec`` so that validate and schema know them.
"""

from __future__ import annotations

import copy
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable, TypeVar

from controller.aws import ClientFactory
from controller.diff import Change
from controller.manifests.types import Spec

T = TypeVar("T")
A = TypeVar("A")

OWNER_ENV_TAG = "lensops:environment"
OWNER_ID_TAG = "lensops:id"


class ReadCache:
    """Reads kept between passes, each under the change marker the API gave beside it.

    A marker is what a service changes with every write to a resource: a WAFv2
    LockToken, a Backup plan's VersionId; a backup selection cannot be changed,
    so its id is its marker. When a listing shows the marker a read was kept
    under, the read is answered from here, so a long-running daemon's resyncs
    re-read only what changed. Without a marker, every read goes to AWS.
    """

    MAX_ENTRIES = 100_000
    """Past this many, the cache starts again empty (resources deleted meanwhile stay otherwise)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[tuple[str, ...], tuple[str, Any]] = {}

    def read(self, key: tuple[str, ...], marker: str | None, fetch: Callable[[], T]) -> T:
        """``fetch()``, unless ``key`` was read under ``marker`` already (then a copy of that read)."""
        if not marker:
            return fetch()
        with self._lock:
            found = self._items.get(key)
        if found is not None and found[0] == marker:
            return copy.deepcopy(found[1])  # type: ignore[no-any-return]
        value = fetch()
        with self._lock:
            if len(self._items) >= self.MAX_ENTRIES:
                self._items.clear()
            self._items[key] = (marker, copy.deepcopy(value))
        return value


@dataclass
class Context:
    """What a reconciler needs for one pass of one environment."""

    environment: str
    region: str
    account: str
    role_arn: str
    factory: ClientFactory
    execute: bool = False
    """True when this pass applies, False when it only plans (a reconciler may keep work for apply)."""
    rollback_alarm_arns: tuple[str, ...] = ()
    """The health alarms when ``rollback: auto`` (a Stack hands them to CloudFormation's own rollback)."""
    bake_seconds: int = 0
    reads: ReadCache = field(default_factory=ReadCache)
    """Reads kept across passes under their change markers (the engine's, for the daemon's life)."""
    cache: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _key_locks: dict[str, threading.Lock] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        """The boto3 client for ``service`` in this environment's account and region."""
        return self.factory.client(service, self.region, self.role_arn, self.account)

    def once(self, key: str, compute: Callable[[], Any]) -> Any:
        """Compute a value once per pass (a listing shared by every resource of a kind).

        Callers of one key wait for the first to compute it; other keys go on meanwhile.
        """
        with self._lock:
            lock = self._key_locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self.cache:
                self.cache[key] = compute()
            return self.cache[key]

    def gather(self, calls: Iterable[Callable[[], T]]) -> list[T]:
        """Run independent reads concurrently; their results in the order given.

        The pool is at most ``LENSOPS_CONCURRENCY`` threads, and the client
        factory's semaphore bounds the requests in flight across every pool of
        the process, so nesting (kinds in parallel, reads within a kind) never
        sends more than that at once. The first error is raised once all have ended.
        """
        jobs = list(calls)
        if len(jobs) <= 1:
            return [job() for job in jobs]
        with ThreadPoolExecutor(max_workers=min(len(jobs), self.factory.concurrency), thread_name_prefix="lensops-read") as pool:
            futures = [pool.submit(job) for job in jobs]
        return [future.result() for future in futures]

    def map(self, read: Callable[[A], T], items: Iterable[A]) -> list[T]:
        """``read`` of every item, concurrently as ``gather``; results in the items' order."""
        return self.gather([lambda item=item: read(item) for item in items])


@dataclass
class Desired:
    """One resource as the manifests want it, references already resolved."""

    kind: str
    name: str
    physical: str
    spec: dict[str, Any]
    tags: dict[str, str]
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def ident(self) -> str:
        return f"{self.kind}/{self.name}"


@dataclass
class Live:
    """One resource as observed in AWS, in the same normalised shape as the desired state."""

    physical: str
    state: dict[str, Any]
    arn: str = ""
    attrs: dict[str, Any] = field(default_factory=dict)
    owner: str | None = None
    """The ``lensops:id`` tag's value when tags were read, else None."""
    owner_env: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    """Reconciler-private data from observation (lock tokens, versions)."""


class Reconciler:
    """Base of every reconciler; subclasses set the class attributes and methods."""

    kind: ClassVar[str]
    spec_model: ClassVar[type[Spec]]
    name_field: ClassVar[str | None] = None
    service: ClassVar[str]
    taggable: ClassVar[bool] = True
    iam_read: ClassVar[tuple[str, ...]] = ()
    iam_write: ClassVar[tuple[str, ...]] = ()
    settle_interval: ClassVar[float] = 5.0
    """Seconds between the engine's re-checks of a change still in progress."""
    settle_timeout: ClassVar[float] = 1800.0
    """Seconds after which a change still in progress fails the resource."""

    def __init__(self, ctx: Context):
        self.ctx = ctx

    def observe(self, physicals: list[str]) -> dict[str, Live]:
        """Read every named resource in as few calls as the API allows; absent ones are left out."""
        raise NotImplementedError

    def desired_state(self, desired: Desired) -> dict[str, Any]:
        """The normalised desired state, in the shape ``observe`` gives ``Live.state``."""
        raise NotImplementedError

    def create(self, desired: Desired, state: dict[str, Any]) -> Live:
        raise NotImplementedError

    def update(self, desired: Desired, state: dict[str, Any], live: Live, changes: list[Change]) -> Live:
        raise NotImplementedError

    def delete(self, live: Live) -> None:
        raise NotImplementedError

    def settle(self, desired: Desired, live: Live) -> Live | None:
        """After create or update: the settled resource, or None while AWS is still working.

        The engine calls it again every ``settle_interval`` seconds (rescheduling,
        never sleeping in the reconciler) until it answers or ``settle_timeout``
        passes. Raise ``PermanentError`` when the change failed for good.
        """
        return live

    def arn(self, physical: str) -> str | None:
        """The ARN of a resource when it can be known before it exists."""
        return None

    @classmethod
    def physical_name(cls, spec: dict[str, Any], metadata_name: str) -> str:
        """The resource's name in AWS, from its validated spec: ``name_field``, else ``metadata.name``.

        Kinds whose AWS identity is more than one name (a Lambda alias is
        unique per function only) override it.
        """
        if cls.name_field:
            return str(spec.get(cls.name_field) or metadata_name)
        return metadata_name

    def rollout_steps(self, desired: Desired, state: dict[str, Any], live: Live) -> list[dict[str, Any]]:
        """States to pass through, in order, before ``state`` (progressive delivery); none by default.

        The engine applies the first at once and the others one ``rollout_interval``
        apart, each gated by the alarms; an alarm puts the last healthy state back.
        """
        return []

    def rollout_interval(self, desired: Desired) -> float:
        """Seconds between two rollout steps."""
        return 0.0

    @classmethod
    def implied_dependencies(cls, spec: dict[str, Any]) -> list[tuple[str, str]]:
        """(kind, physical name) of resources this spec names without a ``ref:``.

        The loader turns those found in the same environment into ``dependsOn``
        edges (a composite alarm's rule names its alarms, for example).
        """
        return []

    def adoption_state(self, live: Live, state: dict[str, Any]) -> dict[str, Any]:
        """What a resource was when lensops adopted it, in the shape of ``state``: the state a
        rollback puts it back to if the adoption is undone (the live fields ``state`` names)."""
        return {key: live.state[key] for key in state if key in live.state}

    def compare_view(self, live: Live, state: dict[str, Any]) -> dict[str, Any]:
        """The part of the live state to diff against ``state`` (all of it by default).

        Kinds whose specs name only some of a free-form map (SNS attributes)
        narrow the live map to the keys the manifest sets.
        """
        return live.state


@dataclass(frozen=True)
class KindInfo:
    """What the engine knows of a kind."""

    kind: str
    spec_model: type[Spec]
    name_field: str | None
    reconciler: type[Reconciler] | None = None
    doc: str = ""


KINDS: dict[str, KindInfo] = {}

R = TypeVar("R", bound=type[Reconciler])


def register(cls: R) -> R:
    """Class decorator: make a reconciler the one for its kind."""
    KINDS[cls.kind] = KindInfo(cls.kind, cls.spec_model, cls.name_field, cls, (cls.__doc__ or "").strip())
    return cls


def register_spec(kind: str, spec_model: type[Spec], name_field: str | None, doc: str = "") -> None:
    """Make a kind known to validate and schema before its reconciler exists."""
    KINDS.setdefault(kind, KindInfo(kind, spec_model, name_field, None, doc))


def tag_updates(changes: list[Change]) -> tuple[dict[str, str], list[str]]:
    """Split ``tags.<key>`` changes into tags to set and tag keys to remove."""
    to_set: dict[str, str] = {}
    to_remove: list[str] = []
    for change in changes:
        if change.path == "tags":
            new = change.new or {}
            old = change.old or {}
            to_set.update({k: v for k, v in new.items() if old.get(k) != v})
            to_remove.extend(k for k in old if k not in new)
        elif change.path.startswith("tags."):
            key = change.path[len("tags.") :]
            if change.new is None:
                to_remove.append(key)
            else:
                to_set[key] = change.new
    return to_set, to_remove


def only_tags_changed(changes: list[Change]) -> bool:
    """True when every change is to a tag."""
    return all(c.path == "tags" or c.path.startswith("tags.") for c in changes)


def tagged_resources(ctx: Context, resource_type: str) -> dict[str, dict[str, str]]:
    """ARN -> tags of this environment's owned resources of one type, one paginated listing a pass.

    Uses the Resource Groups Tagging API filtered on ``lensops:environment``,
    so that a kind's tags cost one call per hundred resources, not one per resource.
    """

    def fetch() -> dict[str, dict[str, str]]:
        from controller.apishape import tags_to_map

        found: dict[str, dict[str, str]] = {}
        paginator = ctx.client("resourcegroupstaggingapi").get_paginator("get_resources")
        pages = paginator.paginate(
            ResourceTypeFilters=[resource_type],
            TagFilters=[{"Key": OWNER_ENV_TAG, "Values": [ctx.environment]}],
            ResourcesPerPage=100,
        )
        for page in pages:
            for item in page.get("ResourceTagMappingList", []):
                found[item["ResourceARN"]] = tags_to_map(item.get("Tags"))
        return found

    return ctx.once(f"tags:{resource_type}", fetch)


def tags_of(ctx: Context, arns: list[str]) -> dict[str, dict[str, str]]:
    """ARN -> tags of the named resources (at most 100, as the API takes): one ``GetResources`` call.

    For kinds whose reads return ARNs batch by batch: each batch's tags are read
    beside the next batches, where a filtered listing pages serially by token.
    Resources without tags are left out, as the API does.
    """
    from controller.apishape import tags_to_map

    if not arns:
        return {}
    # One answer: the API takes no page token (nor TagFilters) beside a ResourceARNList.
    page = ctx.client("resourcegroupstaggingapi").get_resources(ResourceARNList=arns)
    return {item["ResourceARN"]: tags_to_map(item.get("Tags")) for item in page.get("ResourceTagMappingList", [])}


def chunks(items: list[str], size: int) -> list[list[str]]:
    """``items`` in lists of at most ``size``."""
    return [items[i : i + size] for i in range(0, len(items), size)]
