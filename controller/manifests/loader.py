"""Loading a desired-state tree: files -> documents -> per-environment resources.

Every problem of the tree is collected (never just the first), each as
``path:line: Kind/name: message``. An environment with any problem is left
out of the result and its problems are reported; the others load.
"""

from __future__ import annotations

import copy
import difflib
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

from pydantic import ValidationError

from controller.errors import Problem
from controller.kinds import RUNBOOK_RUN, Registry
from controller.manifests.graph import find_refs, topological_order
from controller.manifests.interpolate import Expansion, ExpansionTooLarge, PlaceholderProblem, interpolate
from controller.manifests.model import (
    API_VERSION,
    Envelope,
    EnvironmentDesired,
    EnvironmentSpec,
    Resource,
)
from controller.manifests.types import NAME_RE
from controller.manifests.yamlsafe import Document, YamlProblem, load_documents, paused_gc

MAX_TREE_DOCUMENTS = 50_000
YAML_SUFFIXES = (".yaml", ".yml")


@dataclass
class _Doc:
    """A document on its way through the loader."""

    path: str
    doc: Document
    data: dict[str, Any]
    from_base: bool = False
    placeholders: bool = True
    """Its file has a ``{{``: without one, interpolation would change nothing."""

    @cached_property
    def kind(self) -> str:
        kind = self.data.get("kind", "")
        return kind if isinstance(kind, str) else ""

    @cached_property
    def name(self) -> str:
        meta = self.data.get("metadata")
        return str(meta.get("name", "")) if isinstance(meta, dict) else ""

    @cached_property
    def ident(self) -> str:
        return f"{self.kind}/{self.name}" if self.kind and self.name else self.kind

    def line(self, *path: Any) -> int:
        return self.doc.line_of(path)


@dataclass
class LoadResult:
    """The environments that loaded, and the problems of those that did not."""

    environments: dict[str, EnvironmentDesired] = field(default_factory=dict)
    problems: dict[str, list[Problem]] = field(default_factory=dict)
    """Problems by environment name ('' for problems outside any environment)."""

    @property
    def all_problems(self) -> list[Problem]:
        return [p for name in sorted(self.problems) for p in self.problems[name]]

    @property
    def ok(self) -> bool:
        return not any(self.problems.values())


AccountLookup = Callable[[str, EnvironmentSpec], str | None]


def load_tree(
    root: str | os.PathLike[str], registry: Registry, only: list[str] | None = None, account: AccountLookup | None = None
) -> LoadResult:
    """Load the tree at ``root`` (the layout of CONTRACT.md section 1) with the kinds of ``registry``.

    ``only`` restricts to some environments; ``account`` gives an environment's
    account id when it is known (from STS) so that ``{{ env.account }}`` resolves.
    """
    with paused_gc():  # hundreds of thousands of small dicts and lists, and no cycle
        return _Loader(Path(root), registry, only, account).load()


class _Loader:
    def __init__(self, root: Path, registry: Registry, only: list[str] | None, account: AccountLookup | None):
        self.root = root
        self.registry = registry
        self.kinds = frozenset(registry.manifest_kinds)
        self.only = set(only) if only else None
        self.account = account
        self.result = LoadResult()
        self.documents_seen = 0

    def problem(self, env: str, path: str, line: int, ident: str, message: str) -> None:
        self.result.problems.setdefault(env, []).append(Problem(path, line, ident, message))

    def display(self, path: Path) -> str:
        return str(path)

    def load(self) -> LoadResult:
        root = self.root
        if not root.is_dir():
            self.problem("", str(root), 0, "", "not a folder")
            return self.result
        env_root = root / "environments"
        if not env_root.is_dir():
            self.problem("", self.display(env_root), 0, "", "no environments/ folder: see the layout in CONTRACT.md section 1")
            return self.result
        env_names = sorted(p.name for p in env_root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if self.only is not None:
            missing = sorted(self.only - set(env_names))
            for name in missing:
                self.problem(name, self.display(env_root / name), 0, "", f"no environment {name!r} in this tree")
            env_names = [n for n in env_names if n in self.only]
        base_docs = self.read_folder(root / "base", "", from_base=True)
        for doc in base_docs:
            if doc.kind == "Environment":
                self.problem("", doc.path, doc.line(), doc.ident, "an Environment cannot be in base/")
        base_docs = [d for d in base_docs if d.kind != "Environment"]
        for name in env_names:
            self.load_environment(name, env_root / name, base_docs)
        return self.result

    def read_folder(self, folder: Path, env: str, from_base: bool = False) -> list[_Doc]:
        if not folder.is_dir():
            return []
        files = sorted(p for p in folder.rglob("*") if p.suffix in YAML_SUFFIXES and p.is_file())
        docs: list[_Doc] = []
        for file in files:
            docs.extend(self.read_file(file, env, from_base))
        return docs

    def read_file(self, file: Path, env: str, from_base: bool) -> list[_Doc]:
        shown = self.display(file)
        try:
            size = file.stat().st_size
            if size > 1024 * 1024:
                raise YamlProblem(f"file is {size} bytes, more than the 1048576 allowed")
            raw = file.read_bytes()
            documents = load_documents(raw)
        except YamlProblem as exc:
            self.problem(env, shown, exc.line, "", str(exc))
            return []
        except OSError as exc:
            self.problem(env, shown, 0, "", f"cannot read: {exc.strerror}")
            return []
        self.documents_seen += len(documents)
        if self.documents_seen > MAX_TREE_DOCUMENTS:
            self.problem(env, shown, 0, "", f"more than {MAX_TREE_DOCUMENTS} documents in the tree")
            return []
        out = []
        placeholders = b"{{" in raw
        for document in documents:
            if not isinstance(document.data, dict):
                self.problem(env, shown, document.line, "", "a manifest must be a mapping with apiVersion, kind, metadata and spec")
                continue
            out.append(_Doc(shown, document, document.data, from_base, placeholders))
        return out

    # --- one environment -------------------------------------------------

    def load_environment(self, name: str, folder: Path, base_docs: list[_Doc]) -> None:
        docs = self.read_folder(folder, name)
        env_file = folder / "environment.yaml"
        if not env_file.is_file() and not (folder / "environment.yml").is_file():
            self.problem(name, self.display(env_file), 0, f"Environment/{name}", "missing environment.yaml")
        docs = [d for d in docs if self.check_envelope(name, d)]
        env_docs = [d for d in docs if d.kind == "Environment"]
        if len(env_docs) > 1:
            for extra in env_docs[1:]:
                self.problem(name, extra.path, extra.line(), extra.ident, "more than one Environment in this folder")
        env_spec: EnvironmentSpec | None = None
        env_path = self.display(env_file)
        expansion = Expansion()  # what placeholders add, capped per environment
        if env_docs:
            env_doc = env_docs[0]
            env_path = env_doc.path
            if env_doc.name != name:
                self.problem(name, env_doc.path, env_doc.line("metadata", "name"), env_doc.ident, f"the Environment in environments/{name}/ must be named {name!r}")
            elif not (env_doc.path.endswith("environment.yaml") or env_doc.path.endswith("environment.yml")):
                self.problem(name, env_doc.path, env_doc.line(), env_doc.ident, "the Environment belongs in environment.yaml")
            env_spec = self.environment_spec(name, env_doc, expansion)
        elif env_file.is_file():
            self.problem(name, self.display(env_file), 0, f"Environment/{name}", "environment.yaml holds no kind: Environment")
        resources_docs = self.overlay(name, [copy.deepcopy(d) for d in base_docs if self.check_envelope(name, d, quiet=True)], [d for d in docs if d.kind != "Environment"])
        resources: list[Resource] = []
        if env_spec is not None:
            account = self.account(name, env_spec) if self.account else env_spec.account
            context = {"name": name, "region": env_spec.region, "account": account}
            for doc in resources_docs:
                resource = self.resource(name, doc, context, env_spec, expansion)
                if resource is not None:
                    resources.append(resource)
            resources = self.order(name, resources, resources_docs, env_spec, env_path)
        if self.result.problems.get(name) or env_spec is None:
            return
        self.result.environments[name] = EnvironmentDesired(
            name,
            env_spec,
            env_path,
            [r for r in resources if r.kind != RUNBOOK_RUN],
            [r for r in resources if r.kind == RUNBOOK_RUN],
            root=str(self.root),
        )

    def check_envelope(self, env: str, doc: _Doc, quiet: bool = False) -> bool:
        """apiVersion, kind and metadata.name are usable; report what is not (once)."""
        data = doc.data

        def report(line: int, message: str) -> None:
            if not quiet:
                self.problem(env, doc.path, line, doc.ident, message)

        ok = True
        if data.get("apiVersion") != API_VERSION:
            report(doc.line("apiVersion"), f"unknown apiVersion {data.get('apiVersion')!r}, expected {API_VERSION}")
            ok = False
        kind = data.get("kind")
        if not isinstance(kind, str):
            report(doc.line("kind"), f"kind must be a string, not {type(kind).__name__}")
            ok = False
        elif kind not in self.kinds:
            close = difflib.get_close_matches(str(kind), self.registry.manifest_kinds, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            report(doc.line("kind"), f"unknown kind {kind!r}{hint}")
            ok = False
        meta = data.get("metadata")
        if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
            report(doc.line("metadata"), "metadata.name is required")
            return False
        if not NAME_RE.match(meta["name"]) or len(meta["name"]) > 63:
            report(doc.line("metadata", "name"), f"invalid name {meta['name']!r}: lowercase letters, digits and '-', starting and ending alphanumeric, at most 63")
            ok = False
        declared = meta.get("environment")
        if declared is not None and not doc.from_base and declared != env:
            report(doc.line("metadata", "environment"), f"metadata.environment {declared!r} but the file is in environments/{env}/")
            ok = False
        return ok

    def environment_spec(self, name: str, doc: _Doc, expansion: Expansion) -> EnvironmentSpec | None:
        try:
            Envelope.model_validate(doc.data)
            spec = interpolate(doc.data.get("spec") or {}, {"name": name}, {}, ("spec",), expansion)
            return EnvironmentSpec.model_validate(spec)
        except PlaceholderProblem as exc:
            self.placeholder_problem(name, doc, exc)
        except ValidationError as exc:
            self.validation_problems(name, doc, exc, EnvironmentSpec, prefix=("spec",))
        return None

    def overlay(self, env: str, base: list[_Doc], own: list[_Doc]) -> list[_Doc]:
        """Base manifests instantiated here, replaced by same Kind/name ones (spec deep-merged)."""
        seen: dict[str, _Doc] = {}
        for doc in own:
            if doc.ident in seen:
                first = seen[doc.ident]
                self.problem(env, doc.path, doc.line(), doc.ident, f"duplicate {doc.ident}, also at {first.path}:{first.line()}")
                continue
            seen[doc.ident] = doc
        merged: list[_Doc] = []
        base_seen: dict[str, _Doc] = {}
        for doc in base:
            if doc.ident in base_seen:
                first = base_seen[doc.ident]
                self.problem(env, doc.path, doc.line(), doc.ident, f"duplicate {doc.ident}, also at {first.path}:{first.line()}")
                continue
            base_seen[doc.ident] = doc
            override = seen.pop(doc.ident, None)
            if override is None:
                merged.append(doc)
                continue
            data = copy.deepcopy(override.data)
            data["spec"] = deep_merge(doc.data.get("spec") or {}, override.data.get("spec") or {})
            base_meta = doc.data.get("metadata") or {}
            meta = data["metadata"]
            meta["annotations"] = {**(base_meta.get("annotations") or {}), **(meta.get("annotations") or {})}
            if "dependsOn" not in meta and "dependsOn" in base_meta:
                meta["dependsOn"] = base_meta["dependsOn"]
            merged.append(_Doc(override.path, override.doc, data, placeholders=doc.placeholders or override.placeholders))
        merged.extend(d for d in own if d.ident in seen and seen[d.ident] is d)
        return merged

    def placeholder_problem(self, env: str, doc: _Doc, exc: PlaceholderProblem) -> None:
        """A placeholder's problem at its field's line; a spent expansion budget is reported once."""
        if not (isinstance(exc, ExpansionTooLarge) and exc.repeated):
            self.problem(env, doc.path, doc.line(*exc.path), doc.ident, str(exc))

    def resource(self, env: str, doc: _Doc, context: dict[str, Any], env_spec: EnvironmentSpec, expansion: Expansion) -> Resource | None:
        try:
            data = dict(doc.data)
            if doc.placeholders:
                data["metadata"] = interpolate(data.get("metadata") or {}, context, env_spec.vars, ("metadata",), expansion)
                data["spec"] = interpolate(data.get("spec") or {}, context, env_spec.vars, ("spec",), expansion)
            else:
                data["metadata"], data["spec"] = data.get("metadata") or {}, data.get("spec") or {}
        except PlaceholderProblem as exc:
            self.placeholder_problem(env, doc, exc)
            return None
        try:
            envelope = Envelope.model_validate(data)
        except ValidationError as exc:
            self.validation_problems(env, doc, exc, None)
            return None
        reconciler = self.registry.get(envelope.kind)
        model = reconciler.spec_model if reconciler is not None else self.registry.runbook_spec
        assert model is not None  # check_envelope let only known kinds through
        try:
            spec = model.model_validate(envelope.spec)
        except ValidationError as exc:
            self.validation_problems(env, doc, exc, model, prefix=("spec",))
            return None
        dumped = spec.model_dump(mode="json", exclude_none=True)
        physical = reconciler.physical_name(dumped, envelope.metadata.name) if reconciler is not None else envelope.metadata.name
        for name, folder in (reconciler.files.items() if reconciler is not None else ()):
            if name not in dumped:
                continue
            body = self.read_named_file(env, doc, name, folder, str(dumped[name]))
            if body is None:
                return None
            # The text travels with the spec, so a rollback or a held revision
            # applies the file of its own revision, not today's.
            dumped[f"{name}Body"] = body
        return Resource(
            kind=envelope.kind,
            name=envelope.metadata.name,
            environment=env,
            spec=dumped,
            physical=physical,
            path=doc.path,
            line=doc.line(),
            depends_on=list(envelope.metadata.dependsOn),
            annotations=dict(envelope.metadata.annotations),
        )

    def read_named_file(self, env: str, doc: _Doc, name: str, folder: str, value: str) -> str | None:
        """The text of the file the spec's ``name`` field names under ``folder/`` (a Stack's
        template), or None after reporting why it cannot be used."""
        base = (self.root / folder).resolve()
        target = (base / value).resolve()
        line = doc.line("spec", name)
        if os.path.isabs(value) or not target.is_relative_to(base):
            self.problem(env, doc.path, line, doc.ident, f"{name} {value!r} leaves {folder}/")
            return None
        if not target.is_file():
            self.problem(env, doc.path, line, doc.ident, f"{name} {value!r} not found under {folder}/")
            return None
        if target.stat().st_size > 1024 * 1024:
            self.problem(env, doc.path, line, doc.ident, f"{name} {value!r} is larger than 1 MiB")
            return None
        try:
            return target.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            self.problem(env, doc.path, line, doc.ident, f"{name} {value!r} cannot be read: {exc}")
            return None

    def validation_problems(self, env: str, doc: _Doc, exc: ValidationError, model: Any, prefix: tuple[Any, ...] = ()) -> None:
        for error in exc.errors():
            loc = prefix + tuple(error["loc"])
            field = ".".join(str(p) for p in loc) or "spec"
            message = error["msg"]
            if error["type"] == "extra_forbidden":
                message = f"unknown field {field!r}"
                hint = _suggest(loc, model, prefix)
                if hint:
                    message += f" (did you mean {hint!r}?)"
            elif error["type"] == "missing":
                message = f"{field}: required field missing"
            else:
                if message.startswith("Value error, "):
                    message = message[len("Value error, ") :]
                message = f"{field}: {message}"
            self.problem(env, doc.path, doc.line(*loc), doc.ident, message)

    def order(self, env: str, resources: list[Resource], docs: list[_Doc], env_spec: EnvironmentSpec, env_path: str) -> list[Resource]:
        """Check references and dependsOn, and put resources in dependency order."""
        by_ident = {r.ident: r for r in resources}
        by_physical = {(r.kind, r.physical): r.ident for r in resources}
        doc_of = {d.ident: d for d in docs}
        edges: dict[str, set[str]] = {}
        for resource in resources:
            doc = doc_of.get(resource.ident)
            deps: set[str] = set()
            for index, target in enumerate(resource.depends_on):
                if target not in by_ident:
                    line = doc.line("metadata", "dependsOn", index) if doc else resource.line
                    self.problem(env, resource.path, line, resource.ident, f"dependsOn {target}: no such resource in environment {env}")
                elif target != resource.ident:
                    deps.add(target)
            for path, target, attr in find_refs(resource.spec, ("spec",)):
                line = doc.line(*path) if doc else resource.line
                if attr == "\0invalid":
                    self.problem(env, resource.path, line, resource.ident, f"invalid reference 'ref:{target}': use ref:Kind/name or ref:Kind/name.attribute")
                elif target not in by_ident:
                    self.problem(env, resource.path, line, resource.ident, f"reference to missing resource {target}")
                elif target == resource.ident:
                    self.problem(env, resource.path, line, resource.ident, "a resource cannot reference itself")
                else:
                    deps.add(target)
            info = self.registry.get(resource.kind)
            if info is not None:
                for kind, physical in info.implied_dependencies(resource.spec):
                    implied = by_physical.get((kind, physical))
                    if implied and implied != resource.ident:
                        deps.add(implied)
                        if implied not in resource.depends_on:
                            resource.depends_on.append(implied)
            edges[resource.ident] = deps
        for _, target, _attr in find_refs(env_spec.model_dump(mode="json"), ("spec",)):
            if target not in by_ident:
                self.problem(env, env_path, 0, f"Environment/{env}", f"reference to missing resource {target}")
        order, cycle = topological_order([r.ident for r in resources], edges)
        if cycle:
            first = by_ident[cycle[0]]
            self.problem(env, first.path, first.line, first.ident, "dependency cycle: " + " -> ".join(cycle))
            return resources
        return [by_ident[i] for i in order]


def deep_merge(base: Any, override: Any) -> Any:
    """Maps merge key by key, anything else (lists included) is replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            out[key] = deep_merge(base[key], value) if key in base else value
        return out
    return copy.deepcopy(override)


def _suggest(loc: tuple[Any, ...], model: Any, prefix: tuple[Any, ...]) -> str | None:
    """The closest known field name to a misspelt one, walking the model along ``loc``."""
    if model is None:
        return None
    current = model
    for part in loc[len(prefix) : -1]:
        if isinstance(part, int):
            continue
        info = getattr(current, "model_fields", {}).get(part)
        if info is None:
            return None
        current = _model_in(info.annotation)
        if current is None:
            return None
    fields = list(getattr(current, "model_fields", {}))
    close = difflib.get_close_matches(str(loc[-1]), fields, n=1, cutoff=0.6)
    return close[0] if close else None


def _model_in(annotation: Any) -> Any:
    from typing import get_args

    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
