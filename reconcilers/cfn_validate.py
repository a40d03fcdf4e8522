"""A Stack's template checked before AWS: ``StackReconciler.check`` and the plan's ``ValidateTemplate``.

Not a kind: the Stack reconciler's helper. Three levels, each where its cost fits:

- **Offline, in the loader** (``check``; the daemon, ``plan`` and ``validate`` alike,
  so a Stack that fails refuses its environment's revision): the template parses
  (YAML with CloudFormation's short forms, or JSON, under the manifests' caps); every
  parameter the manifest passes is declared, every declared one without a ``Default``
  is given, each value fits its ``Type`` (``Number``, ``List<Number>``; the
  ``AWS::EC2::...`` types as strings; ``AWS::SSM::Parameter::...`` types as given),
  ``AllowedValues``, ``AllowedPattern``, ``MinLength``/``MaxLength`` and
  ``MinValue``/``MaxValue``; every resource type is one CloudFormation knows in the
  Environment's region (``Custom::*``; ``AWS::Serverless::*`` under
  ``Transform: AWS::Serverless-2016-10-31``; other namespaces are registry
  extensions, which cannot be known offline), with a did-you-mean. The list of
  types is cfn-lint's (its schema of every resource type per region), imported on
  the first Stack only: about 0.3 s once per process. Then a check costs what
  parsing the template costs, and its findings are kept by template digest,
  region and parameters.
- **cfn-lint's rules, in ``lensops validate`` only** (``lint=True``): its errors are
  problems, its warnings are warnings (``(cfn-lint W2001)``). They take 30 ms to
  seconds per template (about 6 ms per resource): too slow for the loader the
  daemon runs at every commit, and a new cfn-lint release may add rules, which
  must not start refusing a running daemon's revisions. Kept by template digest
  and region. A template silences a rule as cfn-lint documents
  (``Metadata: {cfn-lint: {config: {ignore_checks: [W2001]}}}``).
- **CloudFormation, in ``plan``** (``ask_cloudformation``): ``ValidateTemplate``
  for a stack that does not exist yet, once per template per pass; an existing
  stack's change set is CloudFormation's check already.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import posixpath
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from decimal import Decimal, InvalidOperation
from typing import Any

import botocore.exceptions
import regex

from controller import logs
from controller.errors import PermanentError, error_code, quoted
from controller.kinds import Context, Finding
from controller.manifests.graph import is_ref
from controller.manifests.yamlsafe import Document, LocalTags, YamlProblem, load_documents

log = logs.get("lensops.reconcilers.cfn_validate")

SAM_TRANSFORM = "AWS::Serverless-2016-10-31"
SAM_PREFIX = "AWS::Serverless::"
REFERENCE_REGION = "us-east-1"
"""The region whose types name what CloudFormation knows elsewhere (cfn-lint's primary)."""
SHOWN_CHARS = 60
"""Characters of a parameter's value shown in a problem."""
PATTERN_SECONDS = 0.1
"""Time an ``AllowedPattern`` gets to match a value (a catastrophic pattern is left unchecked)."""
CACHE_ENTRIES = 1024
"""Checks kept (by template digest, region and parameters), the least recently used dropped first."""
VALIDATE_TEMPLATE_LIMIT = 51_200
"""Bytes ``ValidateTemplate`` takes in ``TemplateBody``."""

_UNREADABLE = "cannot be read: "
"""How a template that does not parse starts its one finding (cfn-lint is then not asked)."""

Parse = Callable[[str, str], dict[str, Any]]
"""``parse_template(text, source)``: the template as data, or a one-line ``PermanentError``."""


class _Cache:
    """A bounded map kept across loads (the daemon reloads at every commit); thread-safe."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[tuple[Any, ...], list[Finding]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...], compute: Callable[[], list[Finding]]) -> list[Finding]:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return list(self._items[key])
        found = compute()
        with self._lock:
            self._items[key] = found
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return list(found)


_CHECKED = _Cache(CACHE_ENTRIES)
_LINTED = _Cache(CACHE_ENTRIES)


def check(
    text: str, source: str, given: dict[str, Any], region: str, lint: bool, parse: Parse, local_tags: LocalTags
) -> list[Finding]:
    """What is wrong with a Stack's template ``text`` (``source``: its path under the tree's root)
    and the ``given`` parameters, offline; with ``lint``, cfn-lint's findings too."""
    source = posixpath.normpath(source)
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    key = (digest, source, region, json.dumps(given, sort_keys=True, default=str))
    found = _CHECKED.get(key, lambda: _Template(text, source, local_tags).check(given, region, parse))
    if lint and not any(f.file and f.message.startswith(_UNREADABLE) for f in found):
        taken = {f.line for f in found if f.file}
        linted = _LINTED.get((digest, source, region), lambda: _lint(text, source, region))
        found += [f for f in linted if f.line not in taken]  # the line's problem is reported already
    return found


class _Template:
    """One template being checked; its lines are found only when a finding needs one."""

    def __init__(self, text: str, source: str, local_tags: LocalTags) -> None:
        self.text = text
        self.source = source
        self.local_tags = local_tags
        self._document: Document | None = None
        self.findings: list[Finding] = []

    def line(self, *path: str | int) -> int:
        """The template's line of ``path`` (0 when the text cannot be read as YAML: a JSON oddity)."""
        if self._document is None:
            try:
                self._document = load_documents(self.text, local_tags=self.local_tags)[0]
            except (YamlProblem, IndexError):
                self._document = Document(None, 0)
        return self._document.line_of(path)

    def here(self, message: str, *path: str | int) -> None:
        """A finding at ``path`` in the template."""
        self.findings.append(Finding(message, file=self.source, line=self.line(*path)))

    def there(self, message: str, *field: str | int) -> None:
        """A finding at ``field`` of the manifest."""
        self.findings.append(Finding(message, field=("spec", *field)))

    def check(self, given: dict[str, Any], region: str, parse: Parse) -> list[Finding]:
        try:
            template = parse(self.text, self.source)
        except PermanentError as exc:
            line, message = _located(str(exc), self.source)
            return [Finding(_UNREADABLE + message, file=self.source, line=line)]
        self.parameters(template, given)
        self.resources(template, region)
        return self.findings

    # --- parameters ------------------------------------------------------

    def parameters(self, template: dict[str, Any], given: dict[str, Any]) -> None:
        section = template.get("Parameters")
        declared = {k: v for k, v in section.items() if isinstance(v, dict)} if isinstance(section, dict) else {}
        types: dict[str, str] = {}
        for name, slot in declared.items():
            kind = slot.get("Type")
            if not isinstance(kind, str):
                self.here(f"parameter {name} has no Type", "Parameters", name)
            elif kind not in _parameter_types():
                self.here(f"parameter {name}: unknown Type {kind!r}{_did_you_mean(kind, _parameter_types())}", "Parameters", name, "Type")
            else:
                types[name] = kind
        for name in given:
            if name not in declared:
                missing = [n for n in declared if n not in given]
                self.there(f"parameter {name} is not declared by {self.source}{_did_you_mean(name, missing)}", "parameters", name)
        for name, slot in declared.items():
            if name not in given and "Default" not in slot:
                where = f"{self.source}:{self.line('Parameters', name)}"
                self.there(f"parameter {name} is required: {where} declares it without a Default", "parameters")
        for name, value in given.items():
            if name in types and not is_ref(value):
                why = _unfit(_text(value), types[name], declared[name])
                if why:
                    secret = str(declared[name].get("NoEcho", "")).lower() == "true"
                    shown = "its value" if secret else quoted(_text(value), SHOWN_CHARS)
                    self.there(f"parameter {name}: {shown} {why}", "parameters", name)

    # --- resources -------------------------------------------------------

    def resources(self, template: dict[str, Any], region: str) -> None:
        section = template.get("Resources")
        if not isinstance(section, dict):
            self.here("the template has no Resources section (a map of logical id to resource)" if section is None else "Resources is not a map")
            return
        transform = template.get("Transform")
        names = [transform] if isinstance(transform, str) else [t for t in transform if isinstance(t, str)] if isinstance(transform, list) else []
        if any(not n.startswith("AWS::") for n in names):
            return  # a macro may make resources of any type: nothing to know offline
        for path, body in _resources(section):
            kind = body.get("Type") if isinstance(body, dict) else None
            logical = path[-1]
            if not isinstance(kind, str):
                self.here(f"resource {logical} has no Type", *path)
                continue
            why = _unknown_type(kind, region, SAM_TRANSFORM in names)
            if why:
                self.here(f"resource {logical}: {why}", *path, "Type")


def _resources(section: dict[str, Any], path: tuple[str | int, ...] = ("Resources",)) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    """(path, body) of each resource, those of ``Fn::ForEach`` loops (AWS::LanguageExtensions) included."""
    for key, body in section.items():
        if isinstance(key, str) and key.startswith("Fn::ForEach::"):
            if isinstance(body, list) and len(body) == 3 and isinstance(body[2], dict):
                yield from _resources(body[2], (*path, key, 2))
            continue
        yield (*path, key), body


def _unknown_type(kind: str, region: str, sam: bool) -> str:
    """Why ``kind`` is not a resource type CloudFormation knows in ``region`` ('' when it is one)."""
    if kind.startswith("Custom::") and len(kind) > len("Custom::") or kind.endswith("::MODULE"):
        return ""
    namespace = kind.split("::", 1)[0]
    if namespace not in ("AWS", "Alexa"):
        return ""  # a registry extension (third-party or private): not knowable offline
    known = _resource_types(region)
    if kind in known:
        if kind.startswith(SAM_PREFIX) and not sam:
            return f"type {kind} needs `Transform: {SAM_TRANSFORM}` in the template"
        return ""
    if region != REFERENCE_REGION and kind in _resource_types(REFERENCE_REGION):
        return f"type {kind} is not available in {region}"
    return f"unknown resource type {kind!r}{_did_you_mean(kind, known)}"


# --- parameter values ----------------------------------------------------------


def _text(value: Any) -> str:
    """A parameter value as CloudFormation receives it: a string."""
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _number(text: str) -> Decimal | None:
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def _unfit(text: str, kind: str, slot: dict[str, Any]) -> str:
    """Why ``text`` does not fit the declared parameter ``slot`` of type ``kind`` ('' when it does)."""
    if kind.startswith("AWS::SSM::Parameter::"):
        return ""  # the name of an SSM parameter: its value is read by CloudFormation
    listed = kind == "CommaDelimitedList" or kind.startswith("List<")
    items = text.split(",") if listed else [text]
    numeric = kind in ("Number", "List<Number>")
    if numeric:
        bad = [item for item in items if _number(item) is None]
        if bad:
            return f"is not a number ({kind})" if not listed else f"has an item that is not a number: {quoted(bad[0], SHOWN_CHARS)} ({kind})"
    allowed = slot.get("AllowedValues")
    if isinstance(allowed, list):
        for item in items:
            if not any(_same(item, _text(choice), numeric) for choice in allowed):
                choices = ", ".join(_text(c) for c in allowed)
                return f"is not one of the AllowedValues: {choices}" if not listed else f"has an item not in the AllowedValues ({choices}): {quoted(item, SHOWN_CHARS)}"
    pattern = slot.get("AllowedPattern")
    if isinstance(pattern, str) and not numeric:
        for item in items:
            if _matches(pattern, item) is False:
                return f"does not match the AllowedPattern {pattern!r}" if not listed else f"has an item that does not match the AllowedPattern {pattern!r}: {quoted(item, SHOWN_CHARS)}"
    return _bounds(text, slot, numeric)


def _bounds(text: str, slot: dict[str, Any], numeric: bool) -> str:
    """MinLength/MaxLength of a string, MinValue/MaxValue of a number ('' when within)."""
    limits = (("MinValue", "at least"), ("MaxValue", "at most")) if numeric else (("MinLength", "at least"), ("MaxLength", "at most"))
    for key, word in limits:
        bound = _number(_text(slot[key])) if key in slot else None
        if bound is None:
            continue
        if numeric:
            value = _number(text)
            if value is not None and (value < bound if word == "at least" else value > bound):
                return f"must be {word} {_text(slot[key])} ({key})"
        elif len(text) < bound if word == "at least" else len(text) > bound:
            return f"must be {word} {_text(slot[key])} characters long ({key})"
    return ""


def _same(value: str, choice: str, numeric: bool) -> bool:
    if numeric:
        a, b = _number(value), _number(choice)
        if a is not None and b is not None:
            return a == b
    return value == choice


def _matches(pattern: str, text: str) -> bool | None:
    """Whether ``pattern`` matches all of ``text``, as CloudFormation's (Java) patterns do; None when
    it cannot be told (not a pattern this engine reads, or too slow to match)."""
    try:
        return regex.fullmatch(pattern, text, timeout=PATTERN_SECONDS) is not None
    except regex.error:
        return None
    except TimeoutError:
        log.warning("allowed_pattern_too_slow", pattern=pattern[:200], seconds=PATTERN_SECONDS)
        return None


def _did_you_mean(word: str, known: Any) -> str:
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.8)
    return f" (did you mean {close[0]}?)" if close else ""


def _located(message: str, source: str) -> tuple[int, str]:
    """``parse_template``'s one line, ``<source>[:<line>]: why``, as (line, why)."""
    if not message.startswith(source):
        return 0, message
    rest = message[len(source) :]
    number, _, why = rest[1:].partition(": ")
    if rest.startswith(":") and number.isdigit():
        return int(number), why
    return 0, rest.removeprefix(": ")


# --- cfn-lint --------------------------------------------------------------


_LOCK = threading.Lock()
_RULES: list[Any] = []


@functools.cache
def _resource_types(region: str) -> frozenset[str]:
    """Every resource type cfn-lint's schemas know in ``region`` (SAM's included)."""
    from cfnlint.schema import PROVIDER_SCHEMA_MANAGER  # 0.3 s to import: only once a tree has a Stack

    return frozenset(PROVIDER_SCHEMA_MANAGER.get_resource_types(_lint_region(region)))


@functools.cache
def _parameter_types() -> frozenset[str]:
    """The parameter types CloudFormation takes, as cfn-lint lists them."""
    from cfnlint.helpers import VALID_PARAMETER_TYPES

    return frozenset(VALID_PARAMETER_TYPES)


def _lint_region(region: str) -> str:
    """``region`` when cfn-lint knows it, else its primary region (a region newer than this cfn-lint)."""
    from cfnlint.helpers import REGIONS

    return region if region in REGIONS else REFERENCE_REGION


def _lint(text: str, source: str, region: str) -> list[Finding]:
    """cfn-lint's errors and warnings on ``text``, in ``region``, each ``... (cfn-lint E3012)``;
    what the template's ``Metadata`` tells cfn-lint to ignore, ignored."""
    from cfnlint.config import ConfigMixIn
    from cfnlint.decode import decode_str
    from cfnlint.runner import Runner, run_template_by_data

    config = ConfigMixIn(regions=[_lint_region(region)])
    with _LOCK:
        if not _RULES:
            _RULES.append(Runner(config).rules)  # 0.2 s to load: once per process
    template, matches = decode_str(text)
    if not matches:
        matches = list(run_template_by_data(template, config, _RULES[0]))
    found: list[Finding] = []
    for match in matches:
        rule = str(match.rule.id)
        if rule[:1] not in ("E", "W"):
            continue
        message = f"{match.message} (cfn-lint {rule})"
        found.append(Finding(message, file=source, line=int(match.linenumber or 0), warning=rule.startswith("W")))
    return found


# --- CloudFormation --------------------------------------------------------


def ask_cloudformation(ctx: Context, client: Any, text: str) -> None:
    """``ValidateTemplate`` of ``text``, once per template per pass: CloudFormation's own check of
    a template that no change set reads in a plan (a new stack's). Its ``ValidationError`` fails
    the Stack (``PermanentError``); any other error is logged and the plan goes on without it."""
    if len(text.encode("utf-8", "surrogatepass")) > VALIDATE_TEMPLATE_LIMIT:
        return  # TemplateBody takes no more; CreateChangeSet checks it at apply
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    complaint = ctx.once(f"cloudformation:ValidateTemplate:{digest}", lambda: _validate(client, text))
    if complaint:
        raise PermanentError(f"ValidateTemplate: {complaint}")


def _validate(client: Any, text: str) -> str:
    try:
        client.validate_template(TemplateBody=text)
    except botocore.exceptions.ClientError as exc:
        if error_code(exc) == "ValidationError":
            return str(exc.response.get("Error", {}).get("Message") or exc)
        log.warning("validate_template_skipped", error=str(exc)[:300])
    return ""
