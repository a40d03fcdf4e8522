"""The reconciler protocol, the types it speaks, and the registry of kinds.

A reconciler is small and synchronous: ``observe`` (batched), a normalised
``desired_state`` that the engine's one generic differ compares with
``compare_view`` of the observed state, then ``create``, ``update`` or
``delete``. No sleeps, no retry loops: the engine owns time, retries and
ordering. A kind is one module under ``reconcilers/`` (its spec model and its
reconciler class, which also carries the kind's documentation, example and
IAM actions) and one test file; ``reconcilers.registry()`` finds it.

The engine, the loader and the docs are given a ``Registry``; nothing under
``controller/`` imports a reconciler module.
"""

from __future__ import annotations

import contextvars
import copy
import functools
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

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


@dataclass(frozen=True)
class HealthGate:
    """The environment's health gate, for services that can enforce it themselves
    (CloudFormation's rollback triggers): the alarms watched after a change, and for how long."""

    alarm_arns: tuple[str, ...] = ()
    bake_seconds: int = 0


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
    gate: HealthGate = field(default_factory=HealthGate)
    """The health gate when ``rollback: auto``; empty otherwise, and while rolling back."""
    reads: ReadCache = field(default_factory=ReadCache)
    """Reads kept across passes under their change markers (the engine's, for the daemon's life)."""
    settings: dict[str, Any] = field(default_factory=dict)
    """The Environment's spec as data (its JSON shape): settings a kind reads beyond the region and
    account (a bucket the environment names for the kind's use)."""
    _once: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _key_locks: dict[str, threading.Lock] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        """The boto3 client for ``service`` in this environment's account and region."""
        return self.factory.client(service, self.region, self.role_arn, self.account)

    def once(self, key: str, compute: Callable[[], T]) -> T:
        """Compute a value once per pass (a listing shared by every resource of a kind).

        Callers of one key wait for the first to compute it; other keys go on meanwhile.
        """
        with self._lock:
            lock = self._key_locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._once:
                self._once[key] = compute()
            return self._once[key]  # type: ignore[no-any-return]  # what compute gave for this key

    def gather(self, calls: Iterable[Callable[[], T]]) -> list[T]:
        """Run independent reads concurrently; their results in the order given.

        The pool is at most ``LENSOPS_CONCURRENCY`` threads, and the client
        factory's semaphore bounds the requests in flight across every pool of
        the process, so nesting (kinds in parallel, reads within a kind) never
        sends more than that at once. Each read runs in a copy of the caller's context (the
        pass's urgency for the API rates). The first error is raised once all have ended.
        """
        jobs = list(calls)
        if len(jobs) <= 1:
            return [job() for job in jobs]
        with ThreadPoolExecutor(max_workers=min(len(jobs), self.factory.concurrency), thread_name_prefix="lensops-read") as pool:
            futures = [pool.submit(contextvars.copy_context().run, job) for job in jobs]
        return [future.result() for future in futures]

    def map(self, read: Callable[[A], T], items: Iterable[A]) -> list[T]:
        """``read`` of every item, concurrently as ``gather``; results in the items' order."""
        return self.gather([functools.partial(read, item) for item in items])


@dataclass
class Desired:
    """One resource as the manifests want it, references already resolved."""

    kind: str
    name: str
    physical: str
    spec: dict[str, Any]
    tags: dict[str, str]
    annotations: dict[str, str] = field(default_factory=dict)
    stored: dict[str, Any] | None = None
    """The spec as the state store keeps it, when it differs (``Reconciler.stored_spec``)."""

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
    tags_read: bool = False
    """The resource's tags were read (``Live.tagged``), so ``owner`` and ``owner_env`` say whose it
    is, None being nobody's. False for kinds AWS cannot tag (Dashboard, LambdaAlias): only the
    state store knows whether lensops owns them."""

    @classmethod
    def tagged(
        cls,
        physical: str,
        state: dict[str, Any],
        tags: dict[str, str],
        *,
        arn: str = "",
        attrs: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Live:
        """A resource whose tags were read: lensops's two ownership tags say whose it is."""
        return cls(physical, state, arn, attrs or {}, tags.get(OWNER_ID_TAG), tags.get(OWNER_ENV_TAG), extra or {}, tags_read=True)


@dataclass
class Draft:
    """What ``lensops import`` writes for one live resource: its spec (resolved: ARNs, not
    ``ref:``s, which the importer writes afterwards), and what the spec needs besides."""

    spec: dict[str, Any]
    files: dict[str, str] = field(default_factory=dict)
    """Spec field -> the text of the file it names (a Stack's ``template``), written under
    the field's folder (``Reconciler.files``); the spec names it by the importer's choice."""
    suffix: str = ".yaml"
    """The extension of those files (``.json`` for a JSON template)."""
    variables: dict[str, str] = field(default_factory=dict)
    """Spec parameter -> why it became a ``{{ vars.<name> }}`` placeholder (a Stack's NoEcho
    parameters, which AWS never reads back)."""


def imported_tags(tags: dict[str, str]) -> dict[str, str]:
    """A resource's tags as a manifest writes them: lensops's own and AWS's (``aws:``) left out."""
    return {k: v for k, v in sorted(tags.items()) if not k.startswith(("lensops:", "aws:"))}


def with_own_tags(spec: dict[str, Any], live: Live) -> dict[str, Any]:
    """``spec`` with the resource's own tags (``imported_tags``) as ``tags``, when it has any."""
    tags = imported_tags(live.state.get("tags") or {})
    return {**spec, "tags": tags} if tags else spec


def _unset(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


@dataclass(frozen=True)
class Leftover:
    """A resource ``observe`` came across that carries this environment's ownership tags
    (``live.owner`` is its ``Kind/name``) but that lensops may never have recorded: a creation
    that failed before its result could be recorded. ``why`` says what it is, for the plan."""

    live: Live
    why: str


@dataclass(frozen=True)
class Finding:
    """What a kind's ``check`` found in a manifest: what, and where.

    Where is a field of the manifest (``field``, a path from the document's
    root: the loader knows its line), or a line of a file the spec names
    (``file``, a path from the tree's root, and ``line``, 0 when unknown: a
    Stack's template). A ``warning`` is reported and refuses nothing.
    """

    message: str
    field: tuple[str | int, ...] = ("spec",)
    file: str = ""
    line: int = 0
    warning: bool = False


class Reconciler:
    """Base of every reconciler; subclasses set the class attributes and methods.

    The class's docstring introduces the kind in the generated reference
    (docs/manifests.md); ``example``, ``example_files`` and ``notes`` complete it.
    """

    kind: ClassVar[str]
    spec_model: ClassVar[type[Spec]]
    name_field: ClassVar[str | None] = None
    """The spec field that holds the physical name (``metadata.name`` when absent or unset)."""
    service: ClassVar[str]
    """The AWS service, as boto3 and the docs name it (``cloudwatch``)."""
    taggable: ClassVar[bool] = True
    iam_read: ClassVar[tuple[str, ...]] = ()
    iam_write: ClassVar[tuple[str, ...]] = ()
    example: ClassVar[str] = ""
    """A minimal manifest of the kind, in ``environments/dev/``: the reference shows it and its tests validate it."""
    example_files: ClassVar[dict[str, str]] = {}
    """Files besides the manifest that ``example`` needs (path under the tree's root -> text)."""
    notes: ClassVar[dict[str, str]] = {}
    """Field path (``a.b``, ``a[].b``) -> what its type cannot say; a path that does not exist fails the docs."""
    annotations: ClassVar[dict[str, str]] = {}
    """Annotations with a meaning for this kind only -> what they mean (the reference shows them);
    ``annotation_problems`` checks their values when the manifests load."""
    files: ClassVar[dict[str, str]] = {}
    """Spec field -> folder under the tree's root: the field names a file there, which the loader
    reads (inside that folder only) into the spec as ``<field>Body`` (a Stack's ``template``)."""
    settle_interval: ClassVar[float] = 5.0
    """Seconds between the engine's re-checks of a change still in progress."""
    settle_timeout: ClassVar[float] = 1800.0
    """Seconds after which a change still in progress fails the resource."""

    def __init__(self, ctx: Context):
        self.ctx = ctx

    def observe(self, physicals: list[str]) -> dict[str, Live]:
        """Read every named resource in as few calls as the API allows; absent ones are left out."""
        raise NotImplementedError

    def unread(self) -> dict[str, Exception]:
        """After ``observe``: the resources it could not read (physical name -> why), left out of
        its answer. The engine fails each of them alone (``observe: ...``) where a failure of
        ``observe`` itself fails every resource of the kind. None by default."""
        return {}

    def leftovers(self) -> list[Leftover]:
        """After ``observe``: resources it read (no extra call) whose ownership tags name this
        environment and that lensops may never have recorded (a Stack whose first creation rolled
        back). The engine reports those no manifest wants as orphans and prunes them as it prunes
        what it recorded. None by default."""
        return []

    def desired_state(self, desired: Desired) -> dict[str, Any]:
        """The normalised desired state, in the shape ``observe`` gives ``Live.state``."""
        raise NotImplementedError

    def discover(self, prefix: str) -> list[str]:
        """Physical names of every resource of the kind in the account and region whose name
        starts with ``prefix``, from the kind's batched listings (``lensops import``, which then
        ``observe``s them). Leaves out what belongs to another resource (a nested stack).
        NotImplementedError: the kind cannot be listed."""
        raise NotImplementedError

    def manifest_spec(self, live: Live) -> Draft:
        """The inverse of ``desired_state``: a spec whose desired state is ``live.state``
        (``lensops import``). The default fits kinds whose state has the spec's fields: unset
        values left out, tags without lensops's and AWS's own. The importer then leaves out every
        field whose absence changes nothing (AWS's defaults) and writes ARNs as ``ref:``s."""
        spec = {k: v for k, v in live.state.items() if k != "tags" and not _unset(v)}
        return Draft(with_own_tags(spec, live) if self.taggable else spec)

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

    @classmethod
    def annotation_problems(cls, annotations: dict[str, str]) -> dict[str, str]:
        """Annotation -> why its value cannot be used, for the kind's own ``annotations``: the
        loader reports each as a problem of the manifest. None by default."""
        return {}

    def creation_view(self, state: dict[str, Any]) -> dict[str, Any]:
        """What a plan shows of a resource it will create: ``state`` by default. A kind whose state
        holds a whole document may show what the document makes instead (a Stack's resources)."""
        return state

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
    def iam_scoped(cls, settings: dict[str, Any]) -> dict[str, tuple[str, ...]]:
        """IAM actions on resources that the Environment's settings (its spec as data) name, by
        resource ARN: ``lensops iam-policy`` grants them on those resources only. None by default."""
        return {}

    @classmethod
    def write_calls(cls, action: str) -> dict[str, int]:
        """The API calls one ``create``, ``update`` or ``delete`` of a resource of this kind makes,
        ``{"service:Operation": count}``: what ``lensops apply``'s time estimate counts against each
        API's rate (``controller/forecast.py``); approximate by design. Default: one call, the
        first of ``iam_write`` of the kind's service whose verb fits (Create, then Put, for a
        create; Update, then Put, for an update; Delete for a delete), else one of ``service:*``."""
        verbs = {"create": ("Create", "Put"), "update": ("Update", "Put"), "delete": ("Delete",)}.get(action, ())
        for verb in verbs:
            for iam_action in cls.iam_write:
                prefix, _, operation = iam_action.partition(":")
                if prefix == cls.service and operation.startswith(verb):
                    return {f"{cls.service}:{operation}": 1}
        return {f"{cls.service}:*": 1}

    @classmethod
    def gate_alarms(cls, spec: dict[str, Any]) -> list[str]:
        """Alarms (names or ``ref:``s) that gate a change of this resource besides the environment's
        health alarms (a Lambda alias's deployment alarms); none by default."""
        return []

    @classmethod
    def check(cls, spec: dict[str, Any], region: str, lint: bool = False) -> list[Finding]:
        """Offline checks of a spec its model let through, with the files ``files`` read into it (a
        Stack's template against its parameters); none by default. No AWS call. The loader calls it,
        so the daemon, ``plan`` and ``validate`` agree: any finding but a warning refuses the
        environment's revision. ``region`` is the Environment's. ``lint``: also the slower checks
        that only ``lensops validate`` asks for (cfn-lint's rules)."""
        return []

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

    def compare_view(self, live: Live, state: dict[str, Any], applied: dict[str, Any] | None = None) -> dict[str, Any]:
        """The part of the live state to diff against ``state`` (all of it by default).

        Kinds whose specs name only some of a free-form map (SNS attributes)
        narrow the live map to the keys the manifest sets. ``applied`` is the
        state lensops last applied, when it has one: what AWS never reads back
        (a Stack's NoEcho parameters) is taken to be that.
        """
        return live.state

    def stored_spec(self, desired: Desired) -> dict[str, Any] | None:
        """The spec as the state store may keep it (a rollback applies it again), when it differs
        from ``desired.spec``: values that must not be stored (a Stack's NoEcho parameters) sealed
        (``controller.sensitive``). None: the spec is kept as it is."""
        return None

    def preview(self, desired: Desired, live: Live, state: dict[str, Any], view: dict[str, Any]) -> dict[str, Any]:
        """While deciding, when ``view`` differs from ``state``: the view once AWS has said what
        writing ``state`` would really change (a Stack's change set). Asks nothing by default."""
        return view


@dataclass(frozen=True)
class Registry:
    """The kinds a tree may hold: one reconciler class per kind, and the runbook runs' spec.

    Built once by the program (``reconcilers.registry()``) and handed to the loader,
    the engine and the docs, which import no reconciler module themselves.
    """

    reconcilers: tuple[type[Reconciler], ...]
    runbook_spec: type[Spec] | None = None
    """The spec of ``kind: RunbookRun`` (none: runbook runs are unknown kinds)."""

    _by_kind: dict[str, type[Reconciler]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_kind: dict[str, type[Reconciler]] = {}
        for cls in self.reconcilers:
            if cls.kind in by_kind:
                raise ValueError(f"two reconcilers for {cls.kind}: {by_kind[cls.kind].__qualname__} and {cls.__qualname__}")
            by_kind[cls.kind] = cls
        object.__setattr__(self, "_by_kind", by_kind)

    def __iter__(self) -> Iterator[type[Reconciler]]:
        return iter(sorted(self.reconcilers, key=lambda cls: cls.kind))

    def __contains__(self, kind: object) -> bool:
        return any(cls.kind == kind for cls in self.reconcilers)

    def get(self, kind: str) -> type[Reconciler] | None:
        """The reconciler class of ``kind``, or None."""
        return self._by_kind.get(kind)

    def __getitem__(self, kind: str) -> type[Reconciler]:
        return self._by_kind[kind]

    @property
    def kinds(self) -> list[str]:
        """Every resource kind, sorted (RunbookRun and Environment aside)."""
        return sorted(self._by_kind)

    @property
    def manifest_kinds(self) -> list[str]:
        """Every kind a manifest may have: Environment, RunbookRun and the resource kinds, sorted."""
        return sorted([*self._by_kind, "Environment", *([RUNBOOK_RUN] if self.runbook_spec else [])])


RUNBOOK_RUN = "RunbookRun"
"""The kind of a runbook run: the loader sets such manifests apart (``EnvironmentDesired.runs``)."""

