"""Loading a desired-state tree: files -> documents -> per-environment resources.

Every problem of the tree is collected (never just the first), each as
``path:line: Kind/name: message``, its path relative to the tree's root. An
environment with any problem is left out of the result and its problems are
reported; the others load.

The tree comes from whoever can merge to the repository: nothing it holds may
make the loader read a file outside it. A symlink is followed only once its
target, resolved, lies inside the root (and outside a ``.git`` folder);
anything else is a problem of the environment the link belongs to.
"""

from __future__ import annotations

import copy
import difflib
import errno
import os
import stat
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable

from pydantic import ValidationError

from controller.errors import Problem, quoted
from controller.kinds import RUNBOOK_RUN, Reconciler, Registry
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
MAX_FOLDER_DEPTH = 32
"""Folders nested in an environment's (or base/): deeper ones are a problem, not a stack overflow."""
MAX_FILE_NAME = 1024
"""Characters in a file name a spec field gives (a Stack's template), far below the system's limit."""
OUTSIDE = "symlink to a path outside the repository"
NOWHERE = "symlink that leads nowhere (a missing target or a loop)"
NAME_RULE = "lowercase letters, digits and '-', starting and ending alphanumeric, at most 63"
SHOWN_CHARS = 80
"""Characters of a folder name or file name from the tree shown in a problem."""
MENTIONS_NAMED = 5
"""Other resources named in the problem of a missing reference target (the rest are counted)."""


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
    warnings: dict[str, list[Problem]] = field(default_factory=dict)
    """Warnings by environment name: reported, refusing nothing (``Problem.warning``)."""

    @property
    def all_problems(self) -> list[Problem]:
        return [p for name in sorted(self.problems) for p in self.problems[name]]

    @property
    def all_warnings(self) -> list[Problem]:
        """Every warning once: a template several environments share says the same in each."""
        return list(dict.fromkeys(w for name in sorted(self.warnings) for w in self.warnings[name]))

    @property
    def ok(self) -> bool:
        return not any(self.problems.values())


AccountLookup = Callable[[str, EnvironmentSpec], str | None]


def load_tree(
    root: str | os.PathLike[str],
    registry: Registry,
    only: list[str] | None = None,
    account: AccountLookup | None = None,
    lint: bool = False,
) -> LoadResult:
    """Load the tree at ``root`` (the layout of CONTRACT.md section 1) with the kinds of ``registry``.

    ``only`` restricts to some environments; ``account`` gives an environment's
    account id when it is known (from STS) so that ``{{ env.account }}`` resolves.
    Each kind's offline checks run (``Reconciler.check``); ``lint`` adds the slower
    ones that only ``lensops validate`` asks for (a Stack's cfn-lint rules).
    """
    with paused_gc():  # hundreds of thousands of small dicts and lists, and no cycle
        return _Loader(os.fspath(root), registry, only, account, lint).load()


class _Loader:
    def __init__(self, root: str, registry: Registry, only: list[str] | None, account: AccountLookup | None, lint: bool = False):
        self.real = os.path.realpath(root)
        """The root, resolved once: symlinks are followed only to inside it."""
        self.registry = registry
        self.kinds = frozenset(registry.manifest_kinds)
        self.only = set(only) if only else None
        self.account = account
        self.lint = lint
        self.result = LoadResult()
        self.documents_seen = 0
        self.folders: dict[str, tuple[str | None, str]] = {}
        """Top-level folder -> what ``folder`` says of it."""

    def problem(self, env: str, path: str, line: int, ident: str, message: str) -> None:
        self.result.problems.setdefault(env, []).append(Problem(path, line, ident, message))

    def follow(self, link: str) -> tuple[str, int] | str:
        """The resolved target of the symlink ``link`` and its mode, when it may be followed;
        else why not (a target outside the tree or in a ``.git`` folder, or no target at all)."""
        target = os.path.realpath(link)
        parts = os.path.relpath(target, self.real).split(os.sep)
        if parts[0] == os.pardir:
            return OUTSIDE
        if ".git" in parts:
            return "symlink into a .git folder"
        try:
            return target, os.stat(target).st_mode
        except (OSError, ValueError):
            return NOWHERE

    def folder(self, name: str) -> tuple[str | None, str]:
        """The resolved path of the top-level folder ``name`` (``base``, ``templates``), looked up once:
        (path, ''), (None, '') when there is none, or (None, why) when it is a link that may not be followed."""
        if name not in self.folders:
            path = os.path.join(self.real, name)
            found: tuple[str | None, str] = (None, "")
            if os.path.islink(path):
                followed = self.follow(path)
                if isinstance(followed, str):
                    found = (None, followed)
                elif stat.S_ISDIR(followed[1]):
                    found = (followed[0], "")
            elif os.path.isdir(path):
                found = (path, "")
            self.folders[name] = found
        return self.folders[name]

    def load(self) -> LoadResult:
        if not os.path.isdir(self.real):
            self.problem("", ".", 0, "", "the tree's root is not a folder")
            return self.result
        env_root, why = self.folder("environments")
        if env_root is None:
            self.problem("", "environments", 0, "", why or "no environments/ folder: see the layout in docs/reference.md section 1")
            return self.result
        envs = self.environment_folders(env_root)
        if self.only is not None:
            for name in sorted(self.only - set(envs)):
                self.problem(name, f"environments/{name}", 0, "", f"no environment {name!r} in this tree")
            envs = {n: f for n, f in envs.items() if n in self.only}
        base, why = self.folder("base")
        if why:
            self.problem("", "base", 0, "", why)
        base_docs = self.read_folder(base, "base", "", from_base=True) if base else []
        for doc in base_docs:
            if doc.kind == "Environment":
                self.problem("", doc.path, doc.line(), doc.ident, "an Environment cannot be in base/")
        base_docs = [d for d in base_docs if d.kind != "Environment" and self.check_envelope("", d)]
        # Every environment includes base/: one broken or unreadable manifest there refuses them all,
        # rather than load them without it (and, with prune on, delete what it described).
        broken_base = len([p for p in self.result.problems.get("", []) if p.path == "base" or p.path.startswith("base/")])
        for name, folder in sorted(envs.items()):
            if folder is None:
                continue
            if broken_base:
                self.problem(name, "base", 0, f"Environment/{name}", f"refused: base/, which every environment includes, has {broken_base} problem(s) (reported once, outside any environment)")
            self.load_environment(name, folder, base_docs)
        return self.result

    def environment_folders(self, env_root: str) -> dict[str, str | None]:
        """Name -> resolved folder of each environment (None: a link already reported). A folder whose
        name could not be an environment's is a problem outside any environment: its name never becomes one."""
        found: dict[str, str | None] = {}
        try:
            entries = list(os.scandir(env_root))
        except OSError as exc:
            self.problem("", "environments", 0, "", f"cannot read: {exc.strerror}")
            return found
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue
            usable = bool(NAME_RE.match(name)) and len(name) <= 63
            if entry.is_symlink():
                followed = self.follow(entry.path)
                if isinstance(followed, str):
                    if not usable:
                        self.problem("", "environments/", 0, "", f"folder {quoted(name, SHOWN_CHARS)}: {followed}")
                    elif self.only is None or name in self.only:
                        self.problem(name, f"environments/{name}", 0, "", followed)
                        found[name] = None
                    continue
                if not stat.S_ISDIR(followed[1]):
                    continue
                path = followed[0]
            elif entry.is_dir(follow_symlinks=False):
                path = entry.path
            else:
                continue
            if not usable:
                self.problem("", "environments/", 0, "", f"folder {quoted(name, SHOWN_CHARS)} cannot be an environment: its name must be {NAME_RULE}")
                continue
            found[name] = path
        return found

    def read_folder(self, folder: str, shown: str, env: str, from_base: bool = False) -> list[_Doc]:
        """The documents of every YAML file under ``folder`` (resolved), shown as ``shown``."""
        docs: list[_Doc] = []
        for path, file_shown in self.walk(folder, shown, env, {folder}):
            docs.extend(self.read_file(path, file_shown, env, from_base))
        return docs

    def walk(self, folder: str, shown: str, env: str, seen: set[str], depth: int = 0) -> list[tuple[str, str]]:
        """(resolved path, shown path) of the YAML files under ``folder``, sorted as paths are.
        Symlinks are followed only into the tree, and a folder already walked (a loop) is skipped."""
        files: list[tuple[str, str]] = []
        try:
            with os.scandir(folder) as scan:
                entries = sorted(scan, key=lambda e: e.name)
        except OSError as exc:
            self.problem(env, shown, 0, "", f"cannot read: {exc.strerror}")
            return files
        for entry in entries:
            path, name = entry.path, entry.name
            if name == ".git":  # a clone's own: its config may hold the remote's credentials
                continue
            entry_shown = f"{shown}/{name}"
            if entry.is_symlink():
                followed = self.follow(path)
                if isinstance(followed, str):
                    if followed != NOWHERE or os.path.splitext(name)[1] in YAML_SUFFIXES:
                        self.problem(env, entry_shown, 0, "", followed)
                    continue
                path, mode = followed
                is_dir, is_file = stat.S_ISDIR(mode), stat.S_ISREG(mode)
            else:
                is_dir, is_file = entry.is_dir(follow_symlinks=False), entry.is_file(follow_symlinks=False)
            if is_dir:
                if depth >= MAX_FOLDER_DEPTH:
                    self.problem(env, entry_shown, 0, "", f"folders nested deeper than {MAX_FOLDER_DEPTH} levels")
                elif path not in seen:
                    seen.add(path)
                    files.extend(self.walk(path, entry_shown, env, seen, depth + 1))
            elif is_file and os.path.splitext(name)[1] in YAML_SUFFIXES:
                files.append((path, entry_shown))
        return files

    def read_file(self, path: str, shown: str, env: str, from_base: bool) -> list[_Doc]:
        try:
            with open(path, "rb") as file:
                size = os.fstat(file.fileno()).st_size
                if size > 1024 * 1024:
                    raise YamlProblem(f"file is {size} bytes, more than the 1048576 allowed")
                raw = file.read()
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

    def load_environment(self, name: str, folder: str, base_docs: list[_Doc]) -> None:
        shown = f"environments/{name}"
        files = self.walk(folder, shown, name, {folder})
        docs = [doc for path, file_shown in files for doc in self.read_file(path, file_shown, name, False)]
        present = {file_shown for _, file_shown in files}
        env_file = f"{shown}/environment.yaml"
        has_env_file = env_file in present or f"{shown}/environment.yml" in present
        if not has_env_file:
            self.problem(name, env_file, 0, f"Environment/{name}", "missing environment.yaml")
        docs = [d for d in docs if self.check_envelope(name, d)]
        env_docs = [d for d in docs if d.kind == "Environment"]
        if len(env_docs) > 1:
            for extra in env_docs[1:]:
                self.problem(name, extra.path, extra.line(), extra.ident, "more than one Environment in this folder")
        env_spec: EnvironmentSpec | None = None
        env_path = env_file
        expansion = Expansion()  # what placeholders add, capped per environment
        if env_docs:
            env_doc = env_docs[0]
            env_path = env_doc.path
            if env_doc.name != name:
                self.problem(name, env_doc.path, env_doc.line("metadata", "name"), env_doc.ident, f"the Environment in environments/{name}/ must be named {name!r}")
            elif not (env_doc.path.endswith("environment.yaml") or env_doc.path.endswith("environment.yml")):
                self.problem(name, env_doc.path, env_doc.line(), env_doc.ident, "the Environment belongs in environment.yaml")
            env_spec = self.environment_spec(name, env_doc, expansion)
        elif has_env_file:
            self.problem(name, env_file, 0, f"Environment/{name}", "environment.yaml holds no kind: Environment")
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
        if reconciler is not None and not self.annotations_usable(env, doc, reconciler, envelope.metadata.annotations):
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
        if reconciler is not None:
            self.check(env, doc, reconciler, dumped, env_spec.region)
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

    def annotations_usable(self, env: str, doc: _Doc, reconciler: type[Reconciler], annotations: dict[str, str]) -> bool:
        """Whether the kind's own annotations have values it can use; each one it cannot is a problem."""
        refused = reconciler.annotation_problems(annotations)
        for key, why in refused.items():
            self.problem(env, doc.path, doc.line("metadata", "annotations", key), doc.ident, f"metadata.annotations.{key}: {why}")
        return not refused

    def check(self, env: str, doc: _Doc, reconciler: type[Reconciler], spec: dict[str, Any], region: str) -> None:
        """The kind's own offline checks (``Reconciler.check``): a problem refuses the environment, a warning does not."""
        for finding in reconciler.check(spec, region, lint=self.lint):
            path, line = (finding.file, finding.line) if finding.file else (doc.path, doc.line(*finding.field))
            found = Problem(path, line, doc.ident, finding.message, finding.warning)
            (self.result.warnings if finding.warning else self.result.problems).setdefault(env, []).append(found)

    def read_named_file(self, env: str, doc: _Doc, name: str, folder: str, value: str) -> str | None:
        """The text of the file the spec's ``name`` field names under ``folder/`` (a Stack's
        template), or None after reporting why it cannot be used."""
        line = doc.line("spec", name)

        def refuse(message: str) -> None:
            self.problem(env, doc.path, line, doc.ident, f"{name} {quoted(value, SHOWN_CHARS)} {message}")

        if not value or "\0" in value or len(value) > MAX_FILE_NAME or max(len(part) for part in value.split("/")) > 255:
            refuse("is not a usable file name")
            return None
        if os.path.isabs(value) or os.path.normpath(value).split(os.sep)[0] == os.pardir:
            refuse(f"leaves {folder}/")
            return None
        base, why = self.folder(folder)
        if base is None:
            refuse(f"cannot be read: {folder}/ is a {why}" if why else f"not found under {folder}/")
            return None
        try:
            target = os.path.realpath(os.path.join(base, value))
            if target != base and not target.startswith(base + os.sep):
                parts = os.path.relpath(target, self.real).split(os.sep)
                refuse(f"leads through a {OUTSIDE}" if parts[0] == os.pardir or ".git" in parts else f"leaves {folder}/")
                return None
            info = os.stat(target)
            if not stat.S_ISREG(info.st_mode):
                refuse(f"not found under {folder}/")
                return None
            if info.st_size > 1024 * 1024:
                refuse("is larger than 1 MiB")
                return None
            with open(target, encoding="utf-8") as file:
                return file.read()
        except UnicodeDecodeError as exc:
            refuse(f"cannot be read: not UTF-8 text: {exc.reason} at byte {exc.start}")
        except OSError as exc:
            refuse(f"not found under {folder}/" if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP) else "is not a usable file name")
        except ValueError:
            refuse("is not a usable file name")
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
        """Check references and dependsOn, and put resources in dependency order.

        A missing target is one problem, however many resources name it (one typo in a
        topic's name must not read as eighteen problems): at the first place that names it,
        with the closest existing resource and the others that refer to it."""
        by_ident = {r.ident: r for r in resources}
        by_physical = {(r.kind, r.physical): r.ident for r in resources}
        doc_of = {d.ident: d for d in docs}
        edges: dict[str, set[str]] = {}
        missing: dict[str, list[_Mention]] = {}

        def mention(target: str, ident: str, path: str, line: int, how: str) -> None:
            mentions = missing.setdefault(target, [])
            for index, seen in enumerate(mentions):
                if seen.ident == ident:
                    if line < seen.line:  # a resource names it where it does so first in its file
                        mentions[index] = _Mention(ident, path, line, how)
                    return
            mentions.append(_Mention(ident, path, line, how))

        for resource in resources:
            doc = doc_of.get(resource.ident)
            deps: set[str] = set()
            for index, target in enumerate(resource.depends_on):
                if target not in by_ident:
                    line = doc.line("metadata", "dependsOn", index) if doc else resource.line
                    mention(target, resource.ident, resource.path, line, "dependsOn")
                elif target != resource.ident:
                    deps.add(target)
            for path, target, attr in find_refs(resource.spec, ("spec",)):
                line = doc.line(*path) if doc else resource.line
                if attr == "\0invalid":
                    self.problem(env, resource.path, line, resource.ident, f"invalid reference 'ref:{target}': use ref:Kind/name or ref:Kind/name.attribute")
                elif target not in by_ident:
                    mention(target, resource.ident, resource.path, line, "ref")
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
                mention(target, f"Environment/{env}", env_path, 0, "ref")
        for target, mentions in missing.items():
            where, others = mentions[0], [m.ident for m in mentions[1:]]
            said = f"dependsOn {target}: no such resource in environment {env}" if where.how == "dependsOn" else f"reference to missing resource {target}"
            said += _did_you_mean(target, list(by_ident))
            if others:
                named = ", ".join(others[:MENTIONS_NAMED]) + (", ..." if len(others) > MENTIONS_NAMED else "")
                said += f"; {len(others)} more resource{'s' if len(others) > 1 else ''} refer{'' if len(others) > 1 else 's'} to it: {named}"
            self.problem(env, where.path, where.line, where.ident, said)
        order, cycle = topological_order([r.ident for r in resources], edges)
        if cycle:
            first = by_ident[cycle[0]]
            self.problem(env, first.path, first.line, first.ident, "dependency cycle: " + " -> ".join(cycle))
            return resources
        return [by_ident[i] for i in order]


@dataclass(frozen=True)
class _Mention:
    """A resource (or the Environment) naming a resource the environment does not have."""

    ident: str
    path: str
    line: int
    how: str
    """``ref`` (a ``ref:`` in the spec) or ``dependsOn``."""


def _did_you_mean(target: str, idents: list[str]) -> str:
    """`` (did you mean Topic/alerts?)`` for the closest existing resource (of the same kind first), or ''."""
    kind = target.partition("/")[0]
    close = difflib.get_close_matches(target, [i for i in idents if i.partition("/")[0] == kind], n=1, cutoff=0.6)
    close = close or difflib.get_close_matches(target, idents, n=1, cutoff=0.8)
    return f" (did you mean {close[0]}?)" if close else ""


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
