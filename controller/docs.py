"""``docs/manifests.md``, generated from the registry: ``python -m controller.docs [--check]``.

Where this stands in the house: beside ``controller/schema.py``, a reader of
the registry's kinds (each reconciler class carries its docstring, example,
field notes and IAM actions) and of the Environment's and the RunbookRun's
models. Nothing here is used at run time. The reference is generated so that
it cannot drift from the code: ``tests/test_docs.py`` fails when the committed
page differs from what this module renders, and checks that every example
validates.

What the Environment's and the RunbookRun's models cannot say is kept here:
the meaning of the annotations, notes on fields (``NOTES``; a note whose path
no longer exists fails the generation) and their examples (``EXAMPLES``).
"""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import sys
import textwrap
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from controller import catalog
from controller.kinds import RUNBOOK_RUN, Reconciler, Registry
from controller.manifests.model import (
    ANNOTATION_ADOPT,
    ANNOTATION_IGNORE,
    ANNOTATION_PRUNE,
    ANNOTATION_SUSPEND,
    API_VERSION,
    EnvironmentSpec,
    Metadata,
)
from controller.manifests.interpolate import MAX_EXPANSION, MAX_STRING_GROWTH
from controller.manifests.types import Duration

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "docs" / "manifests.md"
REGENERATE = "python -m controller.docs"

EXAMPLE_ENVIRONMENT = "dev"
"""The environment folder the examples are written for (``environments/dev/``)."""

# --- what the models cannot say --------------------------------------------------

ANNOTATIONS: dict[str, str] = {
    ANNOTATION_ADOPT: (
        '`"true"`: take over a resource of that physical name that exists in AWS and that '
        "lensops does not own. Without it, such a resource is a `conflict` and is left alone."
    ),
    ANNOTATION_PRUNE: (
        '`"false"`: never delete the resource, even when its manifest is removed and `sync.prune` '
        "is on (the plan shows it as `retained`). Read from what was last applied: set it in a "
        "revision before the one that removes the manifest."
    ),
    ANNOTATION_SUSPEND: (
        '`"true"`: observe and report the resource (the plan shows its changes as `suspended`), '
        "never change it."
    ),
    ANNOTATION_IGNORE: (
        'Comma-separated field paths (`"threshold,alarmDescription"`, `tags.team` for one key of '
        "a map) whose live value is never diffed: for values another tool owns."
    ),
}

NOTES: dict[tuple[str, str], str] = {
    # Environment
    ("Environment", "region"): "Every resource of the environment is in this region.",
    ("Environment", "account"): (
        "Account guard: lensops asks STS which account the credentials act in and refuses to "
        "plan or apply when it is another one. A number is read as 12 digits."
    ),
    ("Environment", "assumeRoleArn"): "Role lensops assumes (sts:AssumeRole) for every call in this environment.",
    ("Environment", "tags"): (
        "Added to every taggable resource; a resource's own `tags` win over these. lensops adds "
        "`lensops:environment` and `lensops:id` itself."
    ),
    ("Environment", "vars"): "Values of the `{{ vars.<key> }}` placeholders in this environment's manifests.",
    ("Environment", "sync.prune"): (
        "Delete what lensops owns and Git no longer has. Off: such resources are reported as `orphan` "
        "(in the plan, and counted in `lensops status`). What lensops owns includes what it began to "
        "create and never recorded, found by its ownership tags (a Stack whose first creation rolled back)."
    ),
    ("Environment", "sync.selfHeal"): (
        "At each resync, revert drift of the applied revision. Off: drift is reported only."
    ),
    ("Environment", "sync.interval"): "Resync (drift detection) interval; default `LENSOPS_RESYNC_INTERVAL`.",
    ("Environment", "sync.windows"): (
        "Changes are held inside any `deny` window, and outside every `allow` window when there "
        "are allow windows. `lensops apply --force-window` goes through."
    ),
    ("Environment", "sync.windows[].schedule"): (
        "5-field cron line: when the window opens. Weekdays as in standard cron (0 and 7 are "
        "Sunday) or as names (`fri`)."
    ),
    ("Environment", "sync.windows[].duration"): "How long the window stays open after each opening.",
    ("Environment", "sync.windows[].timezone"): "IANA time zone of the schedule.",
    ("Environment", "sync.allowMassPrune"): (
        "Lift the mass-prune guard: a revision that deletes more than 10 % of the managed "
        "resources, or leaves the environment with no manifests, is refused without it."
    ),
    ("Environment", "health.alarms"): (
        "Alarm names or `ref:MetricAlarm/<name>` (`ref:CompositeAlarm/<name>`) watched for "
        "`bakeTime` after a new revision is applied. Only a transition to `ALARM` during "
        "the bake counts."
    ),
    ("Environment", "health.bakeTime"): "How long the alarms are watched after an apply.",
    ("Environment", "health.rollback"): (
        "`auto`: when an alarm fires, put every resource changed since the healthy point (the last "
        "passed bake) back as it was then, and hold the revision until a commit changes the "
        "environment. `off`: report only."
    ),
    ("Environment", "notifications.topic"): (
        "SNS topic ARN or `ref:Topic/<name>`: failures, rollbacks and runbook results are published to it."
    ),
    ("Environment", "notifications.webhookUrl"): "A Slack-compatible incoming webhook, sent the same messages.",
    ("Environment", "templateBucket"): (
        "An S3 bucket in the environment's region, for `Stack` templates over the 51,200 bytes CloudFormation "
        "takes inline: apply uploads each under `lensops/templates/<sha256>.json|yaml` (once; an object already "
        "under its key is used as it is) and passes its URL (`https://<bucket>.s3.<region>.amazonaws.com/<key>`). "
        "lensops does not create the bucket; a plan never writes to it. A name without dots (the URL is HTTPS). "
        "`lensops iam-policy` grants `s3:GetObject` and `s3:PutObject` on `lensops/templates/*` of the bucket "
        "and `s3:ListBucket` on it (a missing object then answers 404, not 403); CloudFormation reads the object "
        "with lensops's credentials. Without it, a Stack whose template is larger fails, in plan as in apply."
    ),
    # RunbookRun
    ("RunbookRun", "runbook"): "One of the runbooks listed below.",
    ("RunbookRun", "parameters"): "The runbook's parameters (below); unknown and missing required ones are errors.",
}

EXAMPLES: dict[str, str] = {
    "Environment": """\
apiVersion: lensops.io/v1
kind: Environment
metadata:
  name: dev          # must be the folder's name: environments/dev/environment.yaml
spec:
  region: us-east-1
  tags:
    app: econlens
  vars:
    errorThreshold: 5
  sync:
    prune: true
    interval: 5m
  health:
    alarms: [api-5xx]
    bakeTime: 5m
""",
    "RunbookRun": """\
apiVersion: lensops.io/v1
kind: RunbookRun
metadata:
  name: dr-drill-2025-06-12       # runs once per (environment, name): use a new name for a new run
spec:
  runbook: dr-restore
  parameters:
    dbInstanceIdentifier: econlens-dev-db
    snapshot: latest
    targetDbInstanceIdentifier: econlens-dev-db-drill
    endpointParameter: /econlens/dev/db-endpoint
""",
}
"""One minimal manifest per kind (the Environment's is the ``environment.yaml`` the others go with)."""


# --- walking the models ------------------------------------------------------------


@dataclass(frozen=True)
class FieldRow:
    """One line of a kind's field table."""

    path: str
    type: str
    required: bool
    default: str
    notes: str


@dataclass(frozen=True)
class DocKind:
    """What the reference says of one kind: the Environment, RunbookRun, or a registry kind."""

    kind: str
    model: type[BaseModel]
    example: str
    notes: dict[str, str]
    reconciler: type[Reconciler] | None = None
    example_files: dict[str, str] = field(default_factory=dict)


def documented(registry: Registry) -> list[DocKind]:
    """Every kind the reference documents: Environment and RunbookRun first, then the registry's, sorted."""
    own = {"Environment": EnvironmentSpec, RUNBOOK_RUN: registry.runbook_spec}
    out = [
        DocKind(kind, model, EXAMPLES[kind], {path: text for (k, path), text in NOTES.items() if k == kind})
        for kind, model in own.items()
        if model is not None
    ]
    for cls in registry:
        if not cls.example:
            raise ValueError(f"{cls.__module__}.{cls.__qualname__}: no example (the class's ``example``)")
        out.append(DocKind(cls.kind, cls.spec_model, cls.example, dict(cls.notes), cls, dict(cls.example_files)))
    return out


def _own_doc(model: type[BaseModel]) -> str:
    """A model's own docstring (not the one inherited from ``Spec`` or ``BaseModel``)."""
    doc = model.__dict__.get("__doc__")
    return inspect.cleandoc(doc) if doc else ""


def _attribute_docs(model: type[BaseModel]) -> dict[str, str]:
    """Docstrings written under a model's fields (``name: str`` then a string literal)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(model)))
    except (OSError, TypeError, SyntaxError):
        return {}
    out: dict[str, str] = {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    for node, following in zip(body, body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            out[node.target.id] = inspect.cleandoc(following.value.value)
    return out


def _is_none(tp: Any) -> bool:
    return tp is type(None)


def _union_args(tp: Any) -> tuple[Any, ...] | None:
    origin = get_origin(tp)
    if origin is Union or origin is types.UnionType:
        return get_args(tp)
    return None


def _is_duration(tp: Any, metadata: list[Any]) -> bool:
    marker = get_args(Duration)[1]
    if tp == Duration:
        return True
    return any(item is marker for item in metadata)


def _model_of(tp: Any) -> type[BaseModel] | None:
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def type_text(tp: Any, metadata: list[Any] | None = None) -> str:
    """A readable name for a field type: ``list of string``, ``map: string → number``, ``duration``."""
    metadata = metadata or []
    if _is_duration(tp, metadata):
        return "duration"
    if get_origin(tp) is Annotated:
        inner, *extra = get_args(tp)
        return type_text(inner, list(extra))
    union = _union_args(tp)
    if union is not None:
        parts = [type_text(a) for a in union if not _is_none(a)]
        unique = list(dict.fromkeys(parts))
        return " or ".join(unique)
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(f"`{v}`" for v in get_args(tp))
    origin = get_origin(tp)
    if origin is list:
        (item,) = get_args(tp) or (Any,)
        return "list of " + ("objects" if _model_of(item) else type_text(item))
    if origin is dict:
        _key, value = get_args(tp) or (str, Any)
        if value is Any:
            return "map"
        return "map: string → " + ("object" if _model_of(value) else type_text(value))
    if _model_of(tp):
        return "object"
    return {str: "string", int: "integer", float: "number", bool: "boolean", Any: "any", dict: "map", list: "list"}.get(tp, getattr(tp, "__name__", str(tp)))


def _constraints(metadata: list[Any], tp: Any) -> list[str]:
    """Readable constraints from a field's metadata (bounds, lengths, pattern)."""
    collection = get_origin(_strip_optional(tp)) in (list, dict)
    unit = "items" if collection else "characters"
    out: list[str] = []
    for item in metadata:
        if isinstance(item, annotated_types.Ge):
            out.append(f"≥ {item.ge}")
        elif isinstance(item, annotated_types.Gt):
            out.append(f"> {item.gt}")
        elif isinstance(item, annotated_types.Le):
            out.append(f"≤ {item.le}")
        elif isinstance(item, annotated_types.Lt):
            out.append(f"< {item.lt}")
        elif isinstance(item, annotated_types.MinLen):
            out.append(f"at least {item.min_length} {unit if item.min_length != 1 else unit[:-1]}")
        elif isinstance(item, annotated_types.MaxLen):
            out.append(f"at most {item.max_length} {unit if item.max_length != 1 else unit[:-1]}")
        elif getattr(item, "pattern", None):
            out.append(f"pattern `{item.pattern}`")
    return out


def _strip_optional(tp: Any) -> Any:
    union = _union_args(tp)
    if union is not None:
        rest = [a for a in union if not _is_none(a)]
        if len(rest) == 1:
            return rest[0]
    return tp


def _default_text(info: FieldInfo) -> str:
    if info.default_factory is not None:
        factory = info.default_factory
        if _model_of(factory):
            return "(its defaults)"
        value = factory()  # type: ignore[call-arg]
    elif info.default is PydanticUndefined:
        return ""
    else:
        value = info.default
    if value is None:
        return ""
    if isinstance(value, BaseModel):
        return "(its defaults)"
    return "`" + json.dumps(value, separators=(", ", ": ")) + "`"


def _nested(tp: Any) -> tuple[type[BaseModel] | None, str]:
    """The model a field holds and the path suffix to reach its fields (``.``, ``[].``, ``.<key>.``)."""
    tp = _strip_optional(tp)
    if _model_of(tp):
        return tp, "."
    origin = get_origin(tp)
    args = get_args(tp)
    if origin is list and args and _model_of(args[0]):
        return args[0], "[]."
    if origin is dict and len(args) == 2 and _model_of(args[1]):
        return args[1], ".<key>."
    return None, ""


def field_rows(model: type[BaseModel], prefix: str = "") -> list[FieldRow]:
    """Every field of ``model``, nested models' fields right after their parent."""
    rows: list[FieldRow] = []
    attribute_docs = _attribute_docs(model)
    for name, info in model.model_fields.items():
        path = prefix + name
        inner, suffix = _nested(info.annotation)
        notes = [text for text in (info.description, attribute_docs.get(name)) if text]
        if inner is not None and _own_doc(inner):
            notes.append(_own_doc(inner))
        type_name = type_text(info.annotation, list(info.metadata))
        constraints = _constraints(list(info.metadata), info.annotation)
        rows.append(
            FieldRow(
                path=path,
                type=", ".join([type_name, *constraints]),
                required=info.is_required(),
                default=_default_text(info),
                notes=" ".join(_sentence(n) for n in notes),
            )
        )
        if inner is not None:
            rows.extend(field_rows(inner, path + suffix))
    return rows


def _sentence(text: str) -> str:
    """Docstring text as Markdown: one line, single backticks, a final full stop."""
    text = " ".join(text.replace("``", "`").split())
    return text if text.endswith((".", ")", "!", "?")) else text + "."


# --- rendering ---------------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(rows: list[FieldRow], notes: dict[str, str]) -> list[str]:
    lines = ["| field | type | required / default | notes |", "| --- | --- | --- | --- |"]
    for row in rows:
        extra = notes.get(row.path, "")
        text = " ".join(t for t in (row.notes, extra) if t)
        need = "**required**" if row.required else (row.default or "optional")
        lines.append(f"| `{_cell(row.path)}` | {_cell(row.type)} | {_cell(need)} | {_cell(text)} |")
    return lines


def _notes_for(kind: DocKind, rows: list[FieldRow]) -> dict[str, str]:
    paths = {row.path for row in rows}
    unknown = sorted(set(kind.notes) - paths)
    if unknown:
        raise ValueError(f"{kind.kind}: a note for no field: {', '.join(unknown)}")
    return kind.notes


def _anchor(kind: str) -> str:
    return kind.lower()


def _envelope(entries: list[DocKind]) -> list[str]:
    rows = field_rows(Metadata)
    notes = {
        "name": "Unique per (environment, kind): lowercase letters, digits and `-`, starting and ending alphanumeric.",
        "environment": "Defaults to the `environments/<env>/` folder; when given, must equal it.",
        "dependsOn": "`Kind/name` of resources of the same environment applied first. A `ref:` implies it.",
        "annotations": "String to string. Those below have a meaning; any other is kept and ignored.",
    }
    out = [
        "## The envelope",
        "",
        "Every YAML document of the tree (`base/*.yaml`, `environments/<env>/*.yaml`; several documents per file allowed):",
        "",
        "```yaml",
        f"apiVersion: {API_VERSION}",
        "kind: MetricAlarm          # one of the kinds below",
        "metadata:",
        "  name: api-5xx",
        "  environment: prod        # optional",
        "  dependsOn: [Topic/alerts]  # optional",
        "  annotations: {}          # optional",
        "spec: {}                   # the kind's fields, below",
        "```",
        "",
        "| field | type | required / default | notes |",
        "| --- | --- | --- | --- |",
        f"| `apiVersion` | string | **required** | `{API_VERSION}` |",
        "| `kind` | string | **required** | One of the kinds below. |",
    ]
    for row in rows:
        need = "**required**" if row.required else (row.default or "optional")
        text = " ".join(t for t in (notes.get(row.path, ""), row.notes) if t)
        out.append(f"| `metadata.{_cell(row.path)}` | {_cell(row.type)} | {_cell(need)} | {_cell(text)} |")
    out += ["| `spec` | object | `{}` | The kind's fields. Unknown fields are errors. |", ""]
    out += ["### Annotations with a meaning", "", "| annotation | meaning |", "| --- | --- |"]
    out += [f"| `{key}` | {_cell(text)} |" for key, text in ANNOTATIONS.items()]
    for entry in entries:
        own = entry.reconciler.annotations if entry.reconciler is not None else {}
        for key, text in own.items():
            summary = _markdown(text).split(". ", 1)[0].rstrip(".")
            summary = summary[:1].lower() + summary[1:]
            out.append(f"| `{key}` | {entry.kind} only: {_cell(summary)}. See [{entry.kind}](#{_anchor(entry.kind)}). |")
    out += [
        "",
        "### Values",
        "",
        "- **Field names** are the AWS API's request parameters in lowerCamelCase (`OKActions` → `okActions`); "
        "AWS lists of `{Key, Value}` pairs are written as maps (`tags`, `dimensions`).",
        "- **Physical names** (`alarmName`, `stackName`, ...) default to `metadata.name`: each kind below says which field it is.",
        "- **Placeholders** `{{ env.name }}`, `{{ env.region }}`, `{{ env.account }}` and `{{ vars.<key> }}` "
        "(the Environment's `spec.vars`) are substituted in every string; a string that is one placeholder takes "
        "the variable's type (`threshold: \"{{ vars.limit }}\"` stays a number). An unknown variable is an error, "
        f"and so are placeholders that add more than {MAX_STRING_GROWTH // 1024} KiB to one string or more than "
        f"{MAX_EXPANSION // (1024 * 1024)} MiB to one environment's manifests.",
        "- **References** `ref:<Kind>/<name>` become that resource's ARN, `ref:<Kind>/<name>.<attribute>` another "
        "attribute (`ref:Stack/network.outputs.VpcId`). A reference implies `dependsOn`.",
        "- **Durations** are seconds (`90`) or text: `30s`, `5m`, `1h`, `1h30m`.",
        "- **Overlays**: a manifest in `base/` is instantiated in every environment; one of the same Kind/name in "
        "`environments/<env>/` replaces it, its `spec` deep-merged over the base one (maps merge, lists replace). "
        "A problem in `base/` (a file that cannot be read, an unknown kind) refuses every environment.",
        "- **Symlinks** in the tree are followed only to files and folders inside the repository (and outside its "
        "`.git`): one that leads out of it, or a manifest's that leads nowhere, is a problem of the environment it "
        "is in (of every environment, in `base/`); so is a Stack's `template` reached through one.",
        "",
    ]
    return out


def _runbooks() -> list[str]:
    from runbooks import CATALOGUE

    out = ["#### Runbooks", ""]
    for name in sorted(CATALOGUE):
        runbook = CATALOGUE[name]
        page = getattr(runbook, "page", "")
        link = f" See [`runbooks/{page}`](../runbooks/{page})." if page and (ROOT / "runbooks" / page).is_file() else ""
        out += [f"`{name}`: {runbook.summary}{link}", ""]
        if runbook.parameters:
            out += ["| parameter | required | meaning |", "| --- | --- | --- |"]
            out += [f"| `{p.name}` | {'yes' if p.required else 'no'} | {_cell(p.description)} |" for p in runbook.parameters]
            out.append("")
    return out


def _markdown(doc: str) -> str:
    """A docstring as Markdown paragraphs (single backticks, lines of a paragraph joined)."""
    paragraphs = inspect.cleandoc(doc).replace("``", "`").split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)


def _first_sentence(text: str) -> str:
    return text.split("\n")[0].split(";")[0].rstrip(".").strip().lower()


def _overridden_doc(reconciler: type, method: str) -> str:
    """The docstring of ``method`` when the reconciler overrides the base class's one, else ''."""
    mine = inspect.getattr_static(reconciler, method, None)
    base = inspect.getattr_static(Reconciler, method, None)
    found = getattr(mine, "__func__", mine)
    if found is None or found is getattr(base, "__func__", base) or not getattr(found, "__doc__", None):
        return ""
    return _markdown(found.__doc__)


def _kind_section(entry: DocKind) -> list[str]:
    kind, model, reconciler = entry.kind, entry.model, entry.reconciler
    out = [f"## {kind}", ""]
    doc = _markdown(reconciler.__doc__) if reconciler is not None and reconciler.__doc__ else ""
    spec_doc = _markdown(_own_doc(model)) if _own_doc(model) else ""
    if doc:
        out += [doc, ""]
    if spec_doc and not (doc and _first_sentence(spec_doc) in doc.lower()):
        out += [spec_doc, ""]
    if kind == "Environment":
        out += [
            "One per folder, in `environments/<env>/environment.yaml` and named as the folder, whose name follows the rule "
            "of `metadata.name` (another folder there is refused). It makes no AWS resource.",
            "",
        ]
    elif kind == RUNBOOK_RUN:
        out += [
            "Runs once per (environment, `metadata.name`), even inside a deny sync window; removing the "
            "manifest does not undo a run. It makes no AWS resource of its own.",
            "",
        ]
    if reconciler is not None:
        if reconciler.name_field:
            out += [f"**Physical name**: `spec.{reconciler.name_field}`, defaults to `metadata.name`.", ""]
        else:
            out += ["**Physical name**: `metadata.name`.", ""]
        override = _overridden_doc(reconciler, "physical_name")
        if override:
            out += [f"In AWS: {override}", ""]
        tagged = (
            "tagged `lensops:environment` and `lensops:id` (ownership from those tags and the state store)"
            if reconciler.taggable
            else "not taggable (ownership from the state store only)"
        )
        out += [f"**AWS**: `{reconciler.service}`, {tagged}.", ""]
        for key, text in reconciler.annotations.items():
            out += [f"**Annotation** `{key}`: {_markdown(text)}", ""]
        if reconciler.iam_read or reconciler.iam_write:
            out += [
                f"**IAM** to observe: {', '.join(f'`{a}`' for a in reconciler.iam_read) or 'none'}; "
                f"to change, also: {', '.join(f'`{a}`' for a in reconciler.iam_write) or 'none'}.",
                "",
            ]
    rows = field_rows(model)
    out += _table(rows, _notes_for(entry, rows)) + [""]
    if kind == RUNBOOK_RUN:
        out += _runbooks()
    out += ["#### Example", ""]
    if kind == "Environment":
        out += [f"`environments/{EXAMPLE_ENVIRONMENT}/environment.yaml`:", ""]
    out += ["```yaml", entry.example.rstrip("\n"), "```", ""]
    for path, text in entry.example_files.items():
        out += [f"with `{path}`:", "", "```yaml", text.rstrip("\n"), "```", ""]
    return out


def render(registry: Registry) -> str:
    """The whole of ``docs/manifests.md`` for the kinds of ``registry``."""
    entries = documented(registry)
    out = [
        "<!-- Generated by `python -m controller.docs` from the spec models: do not edit by hand. -->",
        "",
        "# Manifest reference",
        "",
        "Every kind lensops understands, its fields and a minimal example. Generated from the pydantic "
        f"models that `lensops validate` uses; `lensops schema` prints the same as JSON Schema. After changing "
        f"a model, run `{REGENERATE}`.",
        "",
        "Kinds: " + ", ".join(f"[{e.kind}](#{_anchor(e.kind)})" for e in entries) + ".",
        "",
        "In the field tables, a path `a.b` is field `b` of the object `a`, `a[].b` field `b` of each item of "
        "the list `a`. A field that is neither required nor given a default may be left out.",
        "",
    ]
    out += _envelope(entries)
    for entry in entries:
        out += _kind_section(entry)
    return "\n".join(out).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write ``docs/manifests.md``; with ``--check``, exit 1 when it is stale."""
    parser = argparse.ArgumentParser(prog="python -m controller.docs", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 when the file differs from what the models give")
    parser.add_argument("--output", default=str(OUTPUT), help=f"where to write (default {OUTPUT.relative_to(ROOT)})")
    args = parser.parse_args(argv)
    target = Path(args.output)
    text = render(catalog.registry())
    if args.check:
        current = target.read_text(encoding="utf-8") if target.is_file() else ""
        if current != text:
            print(f"{target} is stale: run `{REGENERATE}`", file=sys.stderr)
            return 1
        print(f"{target} is up to date")
        return 0
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
