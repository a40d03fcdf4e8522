"""``lensops import``: manifests that adopt what already exists in AWS; never a write to AWS.

Where it stands: beside the runner, on the floor of one pass. It reads live
AWS as a plan does, through a ``Context`` on the process's client factory (so
every request is counted and paced), with each kind's ``discover`` (its
batched listings) and ``observe``; it asks each kind for the inverse of its
desired state (``Reconciler.manifest_spec``), leaves out every field whose
absence changes nothing (AWS's defaults: checked against the kind's own
``desired_state``, so the manifests read as hand-written ones and plan
exactly), writes the ARNs of the other imported resources as ``ref:``s, and
writes one file per kind under ``environments/<env>/`` (a Stack's template
under ``templates/``), each manifest annotated ``lensops.io/adopt: "true"``.
The registry is handed in (``controller/catalog.py``); no reconciler module
is imported here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from controller import logs
from controller.aws import ClientFactory
from controller.diff import diff
from controller.errors import UsageError, classify
from controller.kinds import Context, Desired, Draft, Live, Reconciler, Registry
from controller.manifests.loader import load_tree
from controller.manifests.types import NAME_RE

log = logs.get("lensops.importer")

ADOPT = "lensops.io/adopt"
HEADER = "# Written by lensops import"
"""The first line of every file the import writes: a later import may add to such a file, never to another."""
MAX_NAME = 63
CLOUDFORMATION_TAG = "aws:cloudformation:stack-name"


@dataclass(frozen=True)
class Request:
    """What to import: from which account region, into which environment of which tree."""

    environment: str
    region: str
    out: Path
    kinds: tuple[str, ...] = ()
    prefix: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    dry_run: bool = False


@dataclass
class Imported:
    """One resource written as a manifest."""

    kind: str
    name: str
    physical: str
    path: str
    document: dict[str, Any]
    note: str = ""
    """Why a plan may still show a change for it (its spec could not say the live state exactly)."""


@dataclass(frozen=True)
class Skipped:
    """A resource (or a whole kind, ``physical`` empty) left out, and why."""

    kind: str
    physical: str
    why: str


@dataclass
class Summary:
    """What an import wrote and what it skipped, for people (``text``) and scripts (``as_dict``)."""

    environment: str
    region: str
    account: str
    dry_run: bool = False
    written: list[Imported] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    """Path under the tree's root -> the text written (or that would be, with ``--dry-run``)."""
    variables: dict[str, str] = field(default_factory=dict)
    """``vars`` key -> what it stands for: to be set before a plan."""
    filtered: int = 0
    """Resources found that the ``--tag`` filters left out."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "region": self.region,
            "account": self.account,
            "dryRun": self.dry_run,
            "written": [{"kind": i.kind, "name": i.name, "physical": i.physical, "path": i.path, "note": i.note} for i in self.written],
            "skipped": [{"kind": s.kind, "physical": s.physical, "why": s.why} for s in self.skipped],
            "files": sorted(self.files),
            "variables": dict(self.variables),
            "filteredByTag": self.filtered,
        }

    def text(self) -> str:
        verb = "would write" if self.dry_run else "wrote"
        lines = [
            f"import {self.environment} ({self.region}, account {self.account}): {len(self.written)} resources "
            f"{'to write' if self.dry_run else 'written'}, {len(self.skipped)} skipped" + (f", {self.filtered} without the --tag filters" if self.filtered else "")
        ]
        for path in sorted(self.files):
            lines.append(f"  {verb} {path}")
        for item in self.written:
            lines.append(f"  + {item.kind}/{item.name} ({item.physical})" + (f": {item.note}" if item.note else ""))
        for skip in self.skipped:
            lines.append(f"  skipped {skip.kind}" + (f" {skip.physical}" if skip.physical else "") + f": {skip.why}")
        if self.variables:
            lines.append(f"  set these vars in environments/{self.environment}/environment.yaml before planning:")
            lines += [f"    vars.{key}: {why}" for key, why in sorted(self.variables.items())]
        return "\n".join(lines)


# --- names ---------------------------------------------------------------


def kebab(kind: str) -> str:
    """``MetricAlarm`` -> ``metric-alarm``, ``IPSet`` -> ``ip-set``, ``WebACL`` -> ``web-acl``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "-", kind).lower()


def manifest_name(physical: str, prefix: str, environment: str, kind: str) -> str:
    """The ``metadata.name`` a person would choose: the physical name without the prefix and
    the environment's name, in the characters a name may hold (``NAME_RE``), at most 63."""
    text = physical[len(prefix) :] if prefix and physical.startswith(prefix) else physical
    words = [w for w in re.split(r"[^a-z0-9]+", text.lower()) if w]
    if len(words) > 1:
        words = [w for w in words if w != environment] or words
    name = "-".join(words)[:MAX_NAME].strip("-")
    return name if NAME_RE.match(name) else kebab(kind)


def unique(name: str, taken: set[str]) -> str:
    """``name``, or ``name-2``, ``name-3``... the first not taken (still at most 63)."""
    candidate, count = name, 1
    while candidate in taken:
        count += 1
        suffix = f"-{count}"
        candidate = name[: MAX_NAME - len(suffix)].rstrip("-") + suffix
    taken.add(candidate)
    return candidate


# --- the tree already there ----------------------------------------------


@dataclass
class _Tree:
    """What the output tree holds already for the environment."""

    physicals: set[tuple[str, str]] = field(default_factory=set)
    names: dict[str, set[str]] = field(default_factory=dict)
    has_environment: bool = False


def _existing(out: Path, environment: str, registry: Registry) -> _Tree:
    """The resources the tree has for the environment (kind, physical name) and their names. A
    tree that loads gives exact physical names; one that does not is read document by document."""
    tree = _Tree()
    folder = out / "environments" / environment
    if not folder.is_dir():
        return tree
    result = load_tree(out, registry, [environment])
    loaded = result.environments.get(environment)
    if loaded is not None:
        tree.has_environment = True
        for resource in loaded.resources:
            tree.physicals.add((resource.kind, resource.physical))
            tree.names.setdefault(resource.kind, set()).add(resource.name)
        return tree
    for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml"), *(out / "base").glob("*.y*ml")]):
        try:
            documents = list(yaml.safe_load_all(path.read_text()))
        except (OSError, yaml.YAMLError, UnicodeDecodeError):
            continue
        for doc in documents:
            if not isinstance(doc, dict):
                continue
            kind, metadata, spec = doc.get("kind"), doc.get("metadata") or {}, doc.get("spec") or {}
            name = str(metadata.get("name", "")) if isinstance(metadata, dict) else ""
            if kind == "Environment" and path.parent == folder:
                tree.has_environment = True
                continue
            cls = registry.get(str(kind))
            if cls is None or not name or not isinstance(spec, dict):
                continue
            tree.names.setdefault(cls.kind, set()).add(name)
            text = json.dumps(spec).replace("{{ env.name }}", environment)
            try:
                tree.physicals.add((cls.kind, cls.physical_name(json.loads(text), name)))
            except (KeyError, TypeError, ValueError):
                continue
    return tree


# --- reading AWS ---------------------------------------------------------


@dataclass
class _KindRead:
    cls: type[Reconciler]
    reconciler: Reconciler | None = None
    lives: dict[str, Live] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)


def _read_kind(ctx: Context, prefix: str, cls: type[Reconciler]) -> _KindRead:
    """A kind's resources in AWS: its listing, then one ``observe`` of them all (batched)."""
    read = _KindRead(cls)
    reconciler = cls(ctx)
    try:
        names = reconciler.discover(prefix)
    except NotImplementedError:
        read.skipped.append(Skipped(cls.kind, "", "lensops cannot list this kind"))
        return read
    except Exception as exc:  # any failure of a service: the kind is skipped, the others go on
        read.skipped.append(Skipped(cls.kind, "", f"could not be listed: {classify(exc)}"))
        return read
    try:
        read.lives = reconciler.observe(names) if names else {}
    except Exception as exc:  # as above: the kind is skipped, and why is in the summary
        read.skipped.append(Skipped(cls.kind, "", f"could not be read: {classify(exc)}"))
        return read
    for physical, why in sorted(reconciler.unread().items()):
        read.skipped.append(Skipped(cls.kind, physical, f"could not be read: {classify(why)}"))
    read.reconciler = reconciler
    return read


# --- specs ---------------------------------------------------------------


def _loaded(cls: type[Reconciler], spec: dict[str, Any], draft: Draft) -> dict[str, Any] | None:
    """``spec`` as the loader would hand it on (validated, defaults applied, files read), or None when invalid."""
    try:
        dumped = cls.spec_model.model_validate(spec).model_dump(mode="json", exclude_none=True)
    except ValidationError:
        return None
    for name, text in draft.files.items():
        dumped[f"{name}Body"] = text
    return dumped


def _state(reconciler: Reconciler, cls: type[Reconciler], name: str, spec: dict[str, Any], draft: Draft) -> tuple[str, dict[str, Any]] | None:
    """(physical name, desired state without tags) of a candidate spec, or None when it is no valid spec."""
    dumped = _loaded(cls, spec, draft)
    if dumped is None:
        return None
    try:
        physical = cls.physical_name(dumped, name)
        state = reconciler.desired_state(Desired(cls.kind, name, physical, dumped, {}))
    except Exception:  # a candidate its kind cannot make a state of is no candidate
        return None
    return physical, {k: v for k, v in state.items() if k != "tags"}


def minimal_spec(reconciler: Reconciler, cls: type[Reconciler], name: str, live: Live, draft: Draft) -> tuple[dict[str, Any], str]:
    """The draft's spec without every top-level field whose absence changes neither the physical
    name nor the desired state (AWS's defaults, the spec model's defaults), and a note when the
    spec's desired state still differs from the live resource (a plan would show it)."""
    spec = dict(draft.spec)
    if cls.name_field and cls.name_field not in spec:
        spec[cls.name_field] = live.physical
    full = _state(reconciler, cls, name, spec, draft)
    if full is None:
        return spec, "the spec made from AWS's answer is not valid: check it"
    for key in [k for k in spec if k != "tags"]:
        candidate = {k: v for k, v in spec.items() if k != key}
        if _state(reconciler, cls, name, candidate, draft) == full:
            spec = candidate
    physical, state = full
    view = reconciler.compare_view(live, {**state, "tags": {}})
    differs = sorted({c.path for c in diff(state, view)})
    note = f"a plan will show {', '.join(differs)} (AWS holds what a manifest cannot say)" if differs else ""
    if cls.name_field and cls.name_field in spec:  # the physical name first, as people write it
        spec = {cls.name_field: spec[cls.name_field], **spec}
    return spec, note


def with_refs(value: Any, refs: dict[str, str], own: str) -> Any:
    """``value`` with every string equal to another imported resource's ARN as its ``ref:``."""
    if isinstance(value, dict):
        return {k: with_refs(v, refs, own) for k, v in value.items()}
    if isinstance(value, list):
        return [with_refs(v, refs, own) for v in value]
    if isinstance(value, str) and value in refs and value != own:
        return refs[value]
    return value


# --- writing ---------------------------------------------------------------


def _dump(documents: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(documents, sort_keys=False, default_flow_style=False, allow_unicode=True, width=120, explicit_start=True)


def _kind_file(out: Path, environment: str, kind: str, files: dict[str, str]) -> tuple[str, bool]:
    """(path under the root, append?) of the file a kind's new manifests go to: the import's own
    file of the kind (added to on a later import), else a new file beside what a person wrote."""
    stem = f"environments/{environment}/{kebab(kind)}"
    count = 1
    while True:
        relative = f"{stem}.yaml" if count == 1 else f"{stem}-{count}.yaml"
        path = out / relative
        if relative in files:
            return relative, True
        if not path.exists():
            return relative, False
        try:
            ours = path.read_text().startswith(HEADER)
        except (OSError, UnicodeDecodeError):
            ours = False
        if ours:
            return relative, True
        count += 1


def _template_file(out: Path, physical: str, suffix: str, text: str, files: dict[str, str]) -> str:
    """A file name under ``templates/`` for a stack's template, new or holding this very text."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", physical).strip("-.") or "stack"
    count = 1
    while True:
        name = f"{stem}{suffix}" if count == 1 else f"{stem}-{count}{suffix}"
        relative = f"templates/{name}"
        path = out / relative
        if relative not in files and (not path.exists() or path.read_text() == text):
            return name
        count += 1


def _environment_document(request: Request, account: str) -> dict[str, Any]:
    return {
        "apiVersion": "lensops.io/v1",
        "kind": "Environment",
        "metadata": {"name": request.environment},
        "spec": {"region": request.region, "account": account},
    }


def run_import(request: Request, registry: Registry, factory: ClientFactory, account: str) -> Summary:
    """Read the account region and write (or, with ``dry_run``, show) adopting manifests."""
    unknown = [k for k in request.kinds if k not in registry]
    if unknown:
        raise UsageError(f"unknown kind(s) {', '.join(unknown)}; known: {', '.join(registry.kinds)}")
    if not NAME_RE.match(request.environment):
        raise UsageError(f"{request.environment!r} cannot be an environment's name ([a-z0-9-], at most 63)")
    summary = Summary(request.environment, request.region, account, request.dry_run)
    ctx = Context(environment=request.environment, region=request.region, account=account, role_arn="", factory=factory)
    tree = _existing(request.out, request.environment, registry)
    kinds = [registry[k] for k in (sorted(set(request.kinds)) or registry.kinds)]
    reads = ctx.map(lambda cls: _read_kind(ctx, request.prefix, cls), kinds)

    # What is imported, and its name: first every kind, so that references can be written.
    chosen: list[tuple[_KindRead, Live, str]] = []
    refs: dict[str, str] = {}
    for read in reads:
        summary.skipped += read.skipped
        taken = set(tree.names.get(read.cls.kind, set()))
        for physical, live in sorted(read.lives.items()):
            found_tags = live.state.get("tags")
            tags: dict[str, str] = found_tags if isinstance(found_tags, dict) else {}
            if (read.cls.kind, physical) in tree.physicals:
                summary.skipped.append(Skipped(read.cls.kind, physical, f"already in the tree ({request.out})"))
            elif live.owner_env and live.owner_env != request.environment:
                summary.skipped.append(Skipped(read.cls.kind, physical, f"owned by lensops environment {live.owner_env}"))
            elif CLOUDFORMATION_TAG in tags:
                summary.skipped.append(Skipped(read.cls.kind, physical, f"made by CloudFormation stack {tags[CLOUDFORMATION_TAG]}"))
            elif any(tags.get(k) != v for k, v in request.tags.items()):
                summary.filtered += 1
            else:
                name = unique(manifest_name(physical, request.prefix, request.environment, read.cls.kind), taken)
                chosen.append((read, live, name))
                arn = str(live.attrs.get("arn") or live.arn)
                if arn:
                    refs[arn] = f"ref:{read.cls.kind}/{name}"

    by_file: dict[str, list[dict[str, Any]]] = {}
    for read, live, name in chosen:
        assert read.reconciler is not None
        cls = read.cls
        draft = read.reconciler.manifest_spec(live)
        for spec_field, text in draft.files.items():
            file_name = _template_file(request.out, live.physical, draft.suffix, text, summary.files)
            draft.spec[spec_field] = file_name
            summary.files[f"{cls.files.get(spec_field, 'templates')}/{file_name}"] = text
        spec, note = minimal_spec(read.reconciler, cls, name, live, draft)
        for parameter, variable in draft.variables.items():
            summary.variables[variable] = f"{cls.kind}/{name} ({live.physical}) parameter {parameter}: NoEcho, AWS never reads it back"
        spec = with_refs(spec, refs, str(live.attrs.get("arn") or live.arn))
        document = {
            "apiVersion": "lensops.io/v1",
            "kind": cls.kind,
            "metadata": {"name": name, "annotations": {ADOPT: "true"}},
            "spec": spec,
        }
        path, _ = _kind_file(request.out, request.environment, cls.kind, summary.files)
        by_file.setdefault(path, []).append(document)
        summary.written.append(Imported(cls.kind, name, live.physical, path, document, note))

    for path, documents in by_file.items():
        header = f"{HEADER} (environment {request.environment}, region {request.region}); edit freely.\n"
        _, append = _kind_file(request.out, request.environment, documents[0]["kind"], {})
        summary.files[path] = ("" if append else header) + _dump(documents)
    if not tree.has_environment:
        env_path = f"environments/{request.environment}/environment.yaml"
        if not (request.out / env_path).exists():
            summary.files[env_path] = _dump([_environment_document(request, account)])

    if not request.dry_run:
        for relative, text in summary.files.items():
            target = request.out / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("a" if target.exists() and relative.startswith("environments/") else "w") as handle:
                handle.write(text)
    log.info(
        "import_finished",
        environment=request.environment,
        written=len(summary.written),
        skipped=len(summary.skipped),
        dry_run=request.dry_run,
    )
    return summary
