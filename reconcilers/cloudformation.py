"""CloudFormation: Stack (templates under ``templates/``, every change through a change set).

A stack's template, parameters and tags are compared as data first, so a
pass with nothing to change makes no write and creates no change set. Where
they differ, CloudFormation is asked through a change set: ``plan`` lists the
change set's Add/Modify/Remove entries, replacements marked (the ``changeSet``
change, an ``Outline`` the text plan prints one line per resource), and
deletes it; ``apply`` executes one. An empty change set means "in sync". A new
stack's plan lists its template's resources (``creation_view``): a CREATE
change set would leave a REVIEW_IN_PROGRESS stack behind.

The replacement guard (``refused_changes``): before a change set is executed,
one that replaces or removes a stateful resource (``STATEFUL_TYPES``, or a
``DeletionPolicy`` / ``UpdateReplacePolicy`` that keeps data, in either
template) whose logical id ``lensops.io/allow-replace`` does not name is
deleted and the stack fails with a ``PermanentError``; the preview marks the
same changes ``!``. Work that
CloudFormation is still doing is followed through ``settle`` (no sleeping):
a stack in progress is waited for, ``UPDATE_ROLLBACK_FAILED`` is continued,
a failed first creation that lensops owns is deleted and created again, and a
change that ends in a failed or rolled-back state is a ``PermanentError``
carrying the first failed resource's reason from the stack events.

Resource drift comes from ``DetectStackDrift`` where the service offers it:
a detection is started when the last one is older than
``drift_check_interval``, and its result is read on a later pass from
``DescribeStacks`` (``DriftInformation``) and ``DescribeStackResourceDrifts``;
an endpoint without these operations is logged once and skipped.

Call budget per pass for N stacks: one paginated ``DescribeStacks`` listing
(shared by every stack), one ``GetTemplate`` per existing stack, plus, only
where AWS reports drift or a check is due, one ``DescribeStackResourceDrifts``
or ``DetectStackDrift`` per stack. A stack that differs adds the preview
(``CreateChangeSet`` + ``DescribeChangeSet`` + ``DeleteChangeSet``) to plan and
apply alike (the reconciler is not told which it serves); apply then adds
``CreateChangeSet`` + ``DescribeChangeSet`` + ``ExecuteChangeSet`` (or
``DeleteChangeSet`` when the guard refuses it) and one ``DescribeStacks`` per
re-check until the stack settles. A new stack's plan makes no call of its own.
When the listing fails, one ``DescribeStacks`` per stack replaces it. A
template over the inline limit adds, where a change set is made for it, one
S3 ``HeadObject`` per pass and, in apply only, one ``PutObject`` the first
time it is seen.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, Literal, TypeVar

import botocore.exceptions
import botocore.parsers
from pydantic import Field

from controller import logs
from controller.apishape import map_to_tags, tags_to_map
from controller.diff import Change, diff
from controller.errors import PermanentError, classify, error_code
from controller.manifests.types import Spec
from controller.manifests.yamlsafe import MAX_DEPTH, MAX_FILE_BYTES, MAX_NODES, YamlProblem, load_documents
from controller.plan import KNOWN_AFTER_APPLY, Outline
from controller.sensitive import is_sealed, seal
from controller.kinds import OWNER_ENV_TAG, OWNER_ID_TAG, Context, Desired, Draft, Finding, Leftover, Live, Reconciler, with_own_tags
from reconcilers import cfn_validate
from reconcilers.listing import Listing

log = logs.get("lensops.reconcilers.cloudformation")

STACKS = Listing("cloudformation", "describe_stacks", "Stacks", "StackName", keep=lambda stack: stack["StackStatus"] != "DELETE_COMPLETE")

Capability = Literal["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]

"""Names the tree's ``templates/`` folder while the engine cannot hand the template to reconcilers."""

TEMPLATE_BODY_LIMIT = 51_200
"""Bytes CloudFormation accepts in ``TemplateBody`` (larger templates need ``TemplateURL`` in S3)."""
TEMPLATE_PREFIX = "lensops/templates/"
"""Where in the Environment's ``templateBucket`` large templates go, each under its content's SHA-256."""

READY = frozenset(
    {"CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_COMPLETE", "IMPORT_ROLLBACK_COMPLETE"}
)
"""Stack statuses that take a change set."""
RECREATE = frozenset({"ROLLBACK_COMPLETE", "CREATE_FAILED", "REVIEW_IN_PROGRESS"})
"""A first creation that failed or never ran: the stack can only be deleted and created again."""
SUCCEEDED = frozenset({"CREATE_COMPLETE", "UPDATE_COMPLETE", "IMPORT_COMPLETE"})
CHANGE_SET_FIELDS = ("template", "parameters", "tags", "roleARN", "notificationARNs")
"""State fields that only a change set can change."""
NO_ECHO_MASK = "****"
_NO_CHANGES = ("didn't contain changes", "No updates are to be performed")
_PENDING_CHANGE_SET = frozenset({"CREATE_PENDING", "CREATE_IN_PROGRESS"})


class StackSpec(Spec):
    """A stack: ``template`` is a path under ``templates/``.

    ``capabilities`` acknowledge what the template creates and are passed with
    every change set, never compared. ``timeoutInMinutes`` applies to creation
    only: CreateChangeSet takes no timeout, so a new stack that sets it is made
    with CreateStack instead.
    """

    stackName: str | None = None
    template: str
    parameters: dict[str, str | int | float | bool] = Field(default_factory=dict)
    capabilities: list[Capability] = Field(default_factory=list)
    tags: dict[str, str] = Field(default_factory=dict)
    terminationProtection: bool = False
    roleARN: str | None = None
    notificationARNs: list[str] = Field(default_factory=list)
    timeoutInMinutes: int | None = Field(default=None, ge=1)


# --- templates -----------------------------------------------------------


def _short_form(name: str, value: Any) -> dict[str, Any]:
    """CloudFormation's short form as its long form: ``!Ref x`` is ``{Ref: x}``, ``!GetAtt a.b`` is
    ``{Fn::GetAtt: [a, b]}``, ``!Sub [...]`` is ``{Fn::Sub: [...]}``; a scalar stays the text it is written as."""
    if name in ("Ref", "Condition"):
        return {name: value}
    if name == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{name}": value}


def parse_template(body: str | dict[str, Any], source: str = "template") -> dict[str, Any]:
    """A template as data (YAML or JSON), so that formatting and !Ref vs Ref: never show as drift.

    YAML is read by the manifests' reader, with its caps (1 MiB, 64 levels, 100,000 nodes
    counted through aliases) and CloudFormation's short-form tags; dates stay text, as in
    JSON templates. JSON gets the same caps on depth and nodes. A template refused is a
    ``PermanentError`` of one line: ``<source>:<line>: why``.
    """
    if isinstance(body, dict):  # a JSON template, as botocore decodes GetTemplate's answer
        _within_caps(body, source)
        copied: dict[str, Any] = json.loads(json.dumps(body))
        return copied
    try:
        raw = body.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise PermanentError(f"{source}: not UTF-8 text: {exc.reason}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise PermanentError(f"{source}: {len(raw)} bytes, more than the {MAX_FILE_BYTES} allowed")
    try:
        data = json.loads(body)
    except RecursionError:
        raise PermanentError(f"{source}: nesting deeper than {MAX_DEPTH} levels") from None
    except ValueError:
        data = _yaml_template(raw, source)
    else:
        _within_caps(data, source)
    if not isinstance(data, dict):
        raise PermanentError(f"{source}: not a map of sections (Resources, Parameters, ...)")
    return data


def _yaml_template(raw: bytes, source: str) -> Any:
    """The one YAML document of a template (None when empty), read with the caps."""
    try:
        documents = load_documents(raw, local_tags=_short_form)
    except YamlProblem as exc:
        raise PermanentError(f"{source}:{exc.line}: {exc}" if exc.line else f"{source}: {exc}") from None
    if len(documents) > 1:
        raise PermanentError(f"{source}:{documents[1].line}: a template is one YAML document, and another starts here")
    return documents[0].data if documents else None


def _within_caps(data: Any, source: str) -> None:
    """JSON has no aliases, but its nesting and size get the YAML reader's caps (mapping keys count as nodes)."""
    nodes = 0
    pending: list[tuple[Any, int]] = [(data, 1)]
    while pending:
        value, depth = pending.pop()
        nodes += 1 + (len(value) if isinstance(value, dict) else 0)
        if nodes > MAX_NODES:
            raise PermanentError(f"{source}: document has more than {MAX_NODES} nodes")
        if isinstance(value, (dict, list)):
            if depth > MAX_DEPTH:
                raise PermanentError(f"{source}: nesting deeper than {MAX_DEPTH} levels")
            pending.extend((child, depth + 1) for child in (value.values() if isinstance(value, dict) else value))


def template_text(spec: dict[str, Any]) -> str:
    """The text of a Stack's template: the loader reads ``templates/<template>`` into ``templateBody``."""
    body = spec.get("templateBody")
    if not isinstance(body, str):
        raise PermanentError(f"template {spec.get('template')!r}: no template text was loaded")
    return body


def _template_source(spec: dict[str, Any]) -> str:
    """How a refused template is named: ``template templates/network.yaml``."""
    return f"template {StackReconciler.files['template']}/{spec.get('template')}"


def _parameter_types(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    declared = template.get("Parameters")
    if not isinstance(declared, dict):
        return {}
    return {k: v for k, v in declared.items() if isinstance(v, dict)}


def _number(text: str) -> str:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        return text
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def _parameter_value(value: Any, declared: dict[str, Any] | None) -> str:
    """A parameter value as CloudFormation compares it: a string, numbers in one form."""
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    kind = (declared or {}).get("Type", "String")
    if kind == "Number":
        return _number(text)
    if kind == "List<Number>":
        return ",".join(_number(part) for part in text.split(","))
    return text


def _parameters(given: dict[str, Any], template: dict[str, Any], with_defaults: bool) -> dict[str, str]:
    declared = _parameter_types(template)
    values = dict(given)
    if with_defaults:
        for key, slot in declared.items():
            if key not in values and "Default" in slot:
                values[key] = slot["Default"]
    return {k: _parameter_value(v, declared.get(k)) for k, v in sorted(values.items())}


def _no_echo(template: dict[str, Any]) -> frozenset[str]:
    """The parameters the template marks ``NoEcho``: their values are used, never shown or stored."""
    return frozenset(k for k, slot in _parameter_types(template).items() if str(slot.get("NoEcho", "")).lower() == "true")


def _sealable(value: Any) -> bool:
    return isinstance(value, str) and value != KNOWN_AFTER_APPLY and value != NO_ECHO_MASK and not is_sealed(value)


def _seal_parameters(physical: str, values: dict[str, str], secret: frozenset[str]) -> tuple[dict[str, str], dict[str, str]]:
    """``values`` with each NoEcho one sealed, and the plain values by seal (for this pass's writes only)."""
    sealed, plain = dict(values), {}
    for key in secret & values.keys():
        if _sealable(values[key]):
            sealed[key] = seal(values[key], f"{physical}/{key}")
            plain[sealed[key]] = values[key]
    return sealed, plain


# --- state ---------------------------------------------------------------


def _status_class(status: str) -> str:
    return "ready" if status in READY else status


def _pick(state: dict[str, Any]) -> dict[str, Any]:
    return {k: state[k] for k in CHANGE_SET_FIELDS if k in state}


def _digest(fields: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _unresolved(state: dict[str, Any]) -> bool:
    return KNOWN_AFTER_APPLY in state.get("parameters", {}).values()


def _no_changes(reason: str) -> bool:
    return any(marker in reason for marker in _NO_CHANGES)


# --- change sets as a plan shows them, and the replacement guard ----------


ALLOW_REPLACE = "lensops.io/allow-replace"
"""The annotation naming the logical ids whose replacement or removal a change set may carry."""

STATEFUL_TYPES = frozenset(
    {
        "AWS::RDS::DBInstance",
        "AWS::RDS::DBCluster",
        "AWS::RDS::GlobalCluster",
        "AWS::DocDB::DBCluster",
        "AWS::Neptune::DBCluster",
        "AWS::DynamoDB::Table",
        "AWS::DynamoDB::GlobalTable",
        "AWS::S3::Bucket",
        "AWS::EFS::FileSystem",
        "AWS::FSx::FileSystem",
        "AWS::OpenSearchService::Domain",
        "AWS::Elasticsearch::Domain",
        "AWS::Cognito::UserPool",
        "AWS::KMS::Key",
    }
)
"""Resource types whose replacement or removal loses data (or, for a KMS key, what it encrypts)."""

_KEEPING_POLICIES = frozenset({"Retain", "RetainExceptOnCreate", "Snapshot"})
"""``DeletionPolicy`` / ``UpdateReplacePolicy`` values by which a template says a resource's data matters."""
_KEEPING_ACTIONS = frozenset({"Retain", "Snapshot", "ReplaceAndRetain", "ReplaceAndSnapshot"})
"""``PolicyAction``s by which CloudFormation says the same of a change (AWS reports them, the templates may not be at hand)."""
_REPLACED = frozenset({"True", "Conditional"})
_LOGICAL_ID = re.compile(r"^[A-Za-z0-9]{1,255}$")
_SYMBOLS = {"Add": "+", "Remove": "-"}


def _allowed_replacements(annotations: dict[str, str]) -> frozenset[str]:
    """The logical ids ``lensops.io/allow-replace`` names."""
    return frozenset(part.strip() for part in annotations.get(ALLOW_REPLACE, "").split(",") if part.strip())


def _kept_resources(*templates: Any) -> dict[str, str]:
    """Logical id -> the policy by which a template says its data matters (``DeletionPolicy Retain``),
    from either template: the stack's (a removed resource is only there) and the new one."""
    kept: dict[str, str] = {}
    for template in templates:
        resources = template.get("Resources") if isinstance(template, dict) else None
        for logical, resource in (resources.items() if isinstance(resources, dict) else ()):
            for attribute in ("DeletionPolicy", "UpdateReplacePolicy"):
                policy = resource.get(attribute) if isinstance(resource, dict) else None
                if isinstance(policy, str) and policy in _KEEPING_POLICIES:
                    kept.setdefault(str(logical), f"{attribute} {policy}")
                elif isinstance(policy, (dict, list)) and any(word in json.dumps(policy) for word in _KEEPING_POLICIES):
                    kept.setdefault(str(logical), f"{attribute} computed, may keep")  # Fn::If under a transform
    return kept


def _stateful_risk(change: dict[str, Any], kept: dict[str, str]) -> str:
    """Why a change set's ``ResourceChange`` replaces or removes a stateful resource ('' when it does not):
    ``stateful`` for a type of ``STATEFUL_TYPES``, else the template's or CloudFormation's keeping policy.
    A ``Dynamic`` action (CloudFormation cannot say what it will do) counts as one that might."""
    action = change.get("Action")
    if not (action in ("Remove", "Dynamic") or (action == "Modify" and change.get("Replacement") in _REPLACED)):
        return ""
    logical = str(change.get("LogicalResourceId", ""))
    if change.get("ResourceType") in STATEFUL_TYPES:
        return "stateful"
    if logical in kept:
        return f"stateful: {kept[logical]}"
    if change.get("PolicyAction") in _KEEPING_ACTIONS:
        return f"stateful: PolicyAction {change['PolicyAction']}"
    return ""


def _describe_change(change: dict[str, Any]) -> str:
    """``Modify Table (AWS::DynamoDB::Table) REPLACEMENT: True``."""
    text = f"{change.get('Action', '?')} {change.get('LogicalResourceId', '?')} ({change.get('ResourceType', '?')})"
    if change.get("Action") == "Modify" and change.get("Replacement") in _REPLACED:
        text += f" REPLACEMENT: {change['Replacement']}"
    return text


def change_set_outline(changes: list[dict[str, Any]], kept: dict[str, str], allowed: frozenset[str]) -> Outline:
    """A change set's entries as plan lines, by logical id: ``+`` Add, ``-`` Remove, ``~`` the rest
    (a replacement included), and ``!`` for what replaces or removes a stateful resource, saying
    whether the annotation allows it; a last ``!`` line when apply will refuse the change set."""
    lines: list[str] = []
    for change in sorted(changes, key=lambda c: (str(c.get("LogicalResourceId", "")), str(c.get("Action", "")))):
        risk = _stateful_risk(change, kept)
        text = _describe_change(change)
        if not risk:
            lines.append(f"{_SYMBOLS.get(str(change.get('Action')), '~')} {text}")
            continue
        verdict = f"allowed by {ALLOW_REPLACE}" if change.get("LogicalResourceId") in allowed else "apply refuses it"
        lines.append(f"! {text}  [{risk}; {verdict}]")
    refused = refused_changes(changes, kept, allowed)
    if refused:
        lines.append(f"! apply refuses this change set unless the Stack is annotated {_annotation(refused, allowed)}")
    return Outline(lines)


def refused_changes(changes: list[dict[str, Any]], kept: dict[str, str], allowed: frozenset[str]) -> list[dict[str, Any]]:
    """The resource changes the guard refuses: a stateful resource replaced or removed whose logical
    id ``lensops.io/allow-replace`` does not name."""
    return [c for c in changes if _stateful_risk(c, kept) and c.get("LogicalResourceId") not in allowed]


def _annotation(refused: list[dict[str, Any]], allowed: frozenset[str]) -> str:
    """The annotation that would allow ``refused`` (with the ids it already names)."""
    ids = sorted(allowed | {str(c.get("LogicalResourceId", "")) for c in refused})
    return f'{ALLOW_REPLACE}: "{",".join(ids)}"'


def _refusal(refused: list[dict[str, Any]], kept: dict[str, str], allowed: frozenset[str]) -> str:
    """Why apply refuses a change set, naming each logical id and the annotation that allows them."""
    verbs = {"Modify": "replaces", "Remove": "removes"}
    what = [
        f"{verbs.get(str(c.get('Action')), 'may replace or remove')} {c.get('LogicalResourceId', '?')} "
        f"({c.get('ResourceType', '?')}; {_stateful_risk(c, kept)})"
        for c in refused
    ]
    return (
        f"change set refused: it {', '.join(what[:-1]) + ' and ' if len(what) > 1 else ''}{what[-1]}; nothing was executed "
        f"and the change set was deleted; to allow it, annotate the Stack {_annotation(refused, allowed)}"
    )


def _guard(desired: Desired, before: Any, state: dict[str, Any]) -> dict[str, Any]:
    """What the replacement guard needs to judge the change set that takes the stack from template
    ``before`` to ``state``: the resources either template keeps, the ids the annotation allows
    (a rollback's from the revision it goes back to)."""
    return {"kept": _kept_resources(before, state["template"]), "allowed": sorted(_allowed_replacements(desired.annotations))}


def _created_outline(template: dict[str, Any]) -> Outline:
    """The resources a new stack's template creates, in its order: ``+ Jobs (AWS::SQS::Queue)``."""
    resources = template.get("Resources")
    lines: list[str] = []
    for logical, resource in (resources.items() if isinstance(resources, dict) else ()):
        kind = resource.get("Type", "?") if isinstance(resource, dict) else "?"
        condition = resource.get("Condition") if isinstance(resource, dict) else None
        lines.append(f"+ {logical} ({kind})" + (f" if {condition}" if isinstance(condition, str) else ""))
    return Outline(lines)


def _readable(live: Live, state: dict[str, Any], applied: dict[str, Any] | None) -> dict[str, Any]:
    """The live state with what CloudFormation never reads back: NoEcho values as last applied
    (else as desired), capabilities as desired."""
    view = dict(live.state)
    wanted = {**state.get("parameters", {}), **(applied or {}).get("parameters", {})}
    view["parameters"] = {k: (wanted.get(k, v) if v == NO_ECHO_MASK else v) for k, v in live.state.get("parameters", {}).items()}
    view["capabilities"] = state.get("capabilities", [])
    return view


def _unchanged(state: dict[str, Any], view: dict[str, Any]) -> frozenset[str]:
    """The parameters whose desired value is the one ``view`` (the live stack as compared) has."""
    live = view.get("parameters", {})
    return frozenset(k for k, v in state["parameters"].items() if live.get(k) == v)


def _attrs(stack: dict[str, Any]) -> dict[str, Any]:
    attrs: dict[str, Any] = {"arn": stack["StackId"]}
    for output in stack.get("Outputs") or []:
        attrs[f"outputs.{output['OutputKey']}"] = output.get("OutputValue", "")
    return attrs


def template_key(text: str) -> str:
    """The object key of a large template: content-addressed, so a template is uploaded once."""
    try:
        json.loads(text)
        suffix = "json"
    except ValueError:
        suffix = "yaml"
    return f"{TEMPLATE_PREFIX}{hashlib.sha256(text.encode()).hexdigest()}.{suffix}"


def _s3_domain(region: str) -> tuple[str, str]:
    """(ARN partition, S3 endpoint domain) of a region."""
    if region.startswith("cn-"):
        return "aws-cn", "amazonaws.com.cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov", "amazonaws.com"
    return "aws", "amazonaws.com"


def template_url(bucket: str, region: str, key: str) -> str:
    """The bucket's regional virtual-hosted URL of ``key``, as CloudFormation's ``TemplateURL`` takes it (https only)."""
    return f"https://{bucket}.s3.{region}.{_s3_domain(region)[1]}/{key}"


class _NotUploaded(Exception):
    """While planning: a large template's object is not in the bucket yet (apply uploads it)."""


T = TypeVar("T")


def _each(ctx: Context, read: Callable[[str], T | None], names: list[str]) -> tuple[dict[str, T], dict[str, Exception]]:
    """``read`` of every name concurrently (``Context.map``): what each gave (None: nothing), and what each that failed raised."""

    def attempt(name: str) -> tuple[T | None, Exception | None]:
        try:
            return read(name), None
        except Exception as exc:  # kept per name: one stack that cannot be read fails alone
            return None, exc

    done: dict[str, T] = {}
    failed: dict[str, Exception] = {}
    for name, (value, error) in zip(names, ctx.map(attempt, names), strict=True):
        if error is not None:
            failed[name] = error
        elif value is not None:
            done[name] = value
    return done, failed


_NO_DRIFT_API: set[str] = set()
_NO_DRIFT_LOCK = threading.Lock()


class StackReconciler(Reconciler):
    """A CloudFormation stack; every change goes through a change set.

    `lensops plan` of a stack whose template, parameters or tags differ asks CloudFormation through a
    change set that it creates and deletes at once: a role that only plans needs
    `cloudformation:CreateChangeSet` and `cloudformation:DeleteChangeSet` too (and `iam:PassRole` with
    `roleARN`). The plan shows that change set one resource per line, as CloudFormation words it:
    `+ Add`, `- Remove`, `~ Modify`, with `REPLACEMENT: True` (or `Conditional`) where CloudFormation
    will make the resource anew and delete the old one. A new stack's plan lists the resources its
    template creates (`+ Jobs (AWS::SQS::Queue)`), read from the template: no change set is made for it.

    **Replacement guard.** Apply refuses a change set that replaces (`Replacement` `True` or
    `Conditional`) or removes a stateful resource: an RDS DB instance, cluster or global cluster, a
    DocumentDB or Neptune cluster, a DynamoDB table or global table, an S3 bucket, an EFS or FSx file
    system, an OpenSearch or Elasticsearch domain, a Cognito user pool, a KMS key, or any resource for
    which the stack's template or the new one sets `DeletionPolicy` or `UpdateReplacePolicy` to `Retain`,
    `RetainExceptOnCreate` or `Snapshot` (either policy is its author saying the data matters; so is
    CloudFormation's `PolicyAction`), or whose action CloudFormation cannot tell (`Dynamic`). The plan
    marks each such change with `!` and says that apply will refuse the change set; apply deletes it
    unexecuted, and the stack fails with an error naming the logical ids (not retried until the manifest
    or the revision changes) while the rest of the environment goes on. The annotation
    `lensops.io/allow-replace` names the logical ids allowed. A rollback is guarded alike, with the
    annotation of the revision it goes back to: one that would replace a table is refused and reported
    unless that revision allowed it, and the table is left as the failed revision made it.

    A template over 51,200 bytes (CloudFormation's limit for a template sent inline) goes through the
    Environment's `templateBucket`: apply uploads it to `lensops/templates/<sha256>.json|yaml` (once: an
    object already under its key is used as it is) and passes its URL, `https://<bucket>.s3.<region>.amazonaws.com/<key>`.
    Without `templateBucket` such a stack fails, in plan as in apply. A plan writes nothing to S3: it previews
    a large template's change set only when the object is in the bucket already; otherwise it shows the
    template's and parameters' differences and says that no change set was previewed.

    When the one `DescribeStacks` listing of a pass fails (throttled, denied, an answer that does not parse),
    each stack is read on its own, so that a stack that cannot be read fails alone. A stack whose first
    creation failed (`ROLLBACK_COMPLETE`, `CREATE_FAILED`) or never ran (`REVIEW_IN_PROGRESS`), tagged as
    this environment's by lensops and no longer in Git, is an orphan even if lensops never recorded it:
    reported as one, and deleted when `sync.prune` is on (within the mass-prune guard). lensops finds it in
    the pass's listing when the environment has other stacks, or from its own unfinished creation in the
    state store.

    Templates are checked before AWS, with no AWS call, as the tree loads: the daemon, `lensops plan`
    and `lensops validate` agree, and a Stack that fails refuses its environment's revision. The
    template must parse (YAML with CloudFormation's short forms, or JSON); every parameter given must
    be declared, and every declared one without a `Default` given; a value must fit its `Type`
    (`Number`, `List<Number>`; the `AWS::EC2::...` types as strings; `AWS::SSM::Parameter::...` types
    are taken as given), `AllowedValues`, `AllowedPattern`, `MinLength`/`MaxLength` and
    `MinValue`/`MaxValue`; every resource type must be one CloudFormation knows in the Environment's
    region, from cfn-lint's schemas, with a did-you-mean (`Custom::*` is; `AWS::Serverless::*` is under
    `Transform: AWS::Serverless-2016-10-31`; types outside the `AWS` and `Alexa` namespaces are registry
    extensions, left to CloudFormation). A problem points at the parameter's line in the manifest, or
    at the template's line: `templates/app.yaml:12: Stack/app: resource Jobs: unknown resource type
    'AWS::SQS::Queu' (did you mean AWS::SQS::Queue?)`.

    `lensops validate` also runs cfn-lint's rules: their errors are problems, their warnings are
    printed (`templates/app.yaml:3: Stack/app: warning: Parameter Unused not used. (cfn-lint W2001)`)
    and leave the exit code 0. They take from 30 ms to seconds per template, too slow for the load the
    daemon makes at every commit, so the daemon and `plan` leave them out. A template silences a rule
    as cfn-lint documents (`Metadata: {cfn-lint: {config: {ignore_checks: [W2001]}}}`). `lensops plan`
    asks CloudFormation (`ValidateTemplate`, once per template per pass) about the template of a stack
    that does not exist yet, and reports its answer as the Stack's failure; an existing stack's change
    set is CloudFormation's check already.
    """

    kind = "Stack"
    spec_model = StackSpec
    name_field = "stackName"
    files = {"template": "templates"}
    annotations = {
        ALLOW_REPLACE: (
            'Comma-separated logical ids (`"Table,Archive"`) whose replacement or removal a change set may carry past '
            "the replacement guard. Each must be a logical id (letters and digits). It allows every later replacement "
            "of those ids too: remove it once the change is applied."
        ),
    }
    service = "cloudformation"
    settle_interval = 10.0
    settle_timeout = 3600.0
    drift_check_interval: ClassVar[float] = 900.0
    """Seconds after which a stack's resource drift is detected again."""
    # A plan previews a change through a change set it then deletes: plan-only
    # roles need CreateChangeSet and DeleteChangeSet too.
    iam_read = (
        "cloudformation:DescribeStacks",
        "cloudformation:GetTemplate",
        "cloudformation:CreateChangeSet",
        "cloudformation:DeleteChangeSet",
        "cloudformation:DescribeChangeSet",
        "cloudformation:DescribeStackEvents",
        "cloudformation:DetectStackDrift",
        "cloudformation:DescribeStackResourceDrifts",
        "iam:PassRole",  # the preview's change set is given the spec's roleARN too
        "cloudformation:ValidateTemplate",
    )
    iam_write = (
        "cloudformation:CreateChangeSet",
        "cloudformation:ExecuteChangeSet",
        "cloudformation:DeleteChangeSet",
        "cloudformation:CreateStack",
        "cloudformation:DeleteStack",
        "cloudformation:UpdateTerminationProtection",
        "cloudformation:ContinueUpdateRollback",
        "iam:PassRole",  # roleARN: the change set or stack is given a service role
    )

    @classmethod
    def write_calls(cls, action: str) -> dict[str, int]:
        """A stack is created and updated through a change set (made, then executed), deleted by DeleteStack."""
        if action == "delete":
            return {"cloudformation:DeleteStack": 1}
        return {"cloudformation:CreateChangeSet": 1, "cloudformation:ExecuteChangeSet": 1}

    @classmethod
    def iam_scoped(cls, settings: dict[str, Any]) -> dict[str, tuple[str, ...]]:
        """With a ``templateBucket``: large templates' objects are read (HeadObject, and CloudFormation
        reads the TemplateURL with lensops's credentials) and written under ``TEMPLATE_PREFIX`` only;
        ``s3:ListBucket`` lets a missing object answer 404 rather than 403."""
        bucket = settings.get("templateBucket")
        if not bucket:
            return {}
        partition = _s3_domain(str(settings.get("region", "")))[0]
        return {
            f"arn:{partition}:s3:::{bucket}": ("s3:ListBucket",),
            f"arn:{partition}:s3:::{bucket}/{TEMPLATE_PREFIX}*": ("s3:GetObject", "s3:PutObject"),
        }

    example = """\
apiVersion: lensops.io/v1
kind: Stack
metadata:
  name: network
spec:
  stackName: econlens-{{ env.name }}-network
  template: network.yaml          # templates/network.yaml
  parameters:
    VpcCidr: 10.10.0.0/16
"""
    notes = {
        "template": "Path of a YAML or JSON template under `templates/` (it may not leave that folder); compared as data, so formatting never shows as drift. "
        "Read with the manifests' caps: 1 MiB, 64 levels of nesting, 100,000 nodes with YAML aliases expanded.",
        "parameters": (
            "Template parameters; numbers and booleans are sent as CloudFormation's strings. A parameter the template "
            "marks `NoEcho` shows as `(sensitive value)` in plans and is stored only as a salted digest; a rollback "
            "keeps it as it is when it did not change, and cannot put back one that did."
        ),
        "capabilities": "Passed with every change set, never compared.",
        "timeoutInMinutes": "Creation only: a new stack that sets it is made with CreateStack, not a change set.",
    }
    example_files = {
        'templates/network.yaml': """\
AWSTemplateFormatVersion: "2010-09-09"
Parameters:
  VpcCidr:
    Type: String
Resources:
  Vpc:
    Type: AWS::EC2::VPC
    Properties:
      CidrBlock: !Ref VpcCidr
Outputs:
  VpcId:
    Value: !Ref Vpc
""",
    }

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self._plain: dict[str, str] = {}
        """Seal -> the NoEcho value it seals, for this pass's change sets; never stored or shown."""
        self._texts: dict[str, tuple[str, str]] = {}
        """Stack name -> (digest of the change-set fields, template text) of this pass's desired state."""
        self._previews: dict[tuple[str, str], Outline | None] = {}
        """(stack name, digest) -> a change set's entries, kept for the pass (the drift check asks again)."""
        self._objects: dict[str, bool] = {}
        """Large templates' object keys -> whether the object is in the bucket, as this pass found or made it."""
        self._seen: dict[str, dict[str, Any]] = {}
        """Every stack this pass read, by name: the listing's, or the per-stack reads' when it failed."""
        self._unread: dict[str, Exception] = {}
        """Stacks that could not be read this pass, and why."""
        self._new: set[str] = set()
        """Stacks observed absent this pass: a plan asks CloudFormation to validate their templates."""

    @property
    def _client(self) -> Any:
        return self.ctx.client("cloudformation")

    @classmethod
    def annotation_problems(cls, annotations: dict[str, str]) -> dict[str, str]:
        """``lensops.io/allow-replace`` names logical ids, comma-separated."""
        raw = annotations.get(ALLOW_REPLACE)
        if raw is None:
            return {}
        ids = [part.strip() for part in raw.split(",") if part.strip()]
        if not ids:
            return {ALLOW_REPLACE: 'names no logical id; write them comma-separated: "Table,Archive"'}
        bad = [part for part in ids if not _LOGICAL_ID.match(part)]
        if bad:
            shown = ", ".join(repr(part[:64]) for part in bad[:5])
            return {ALLOW_REPLACE: f"{shown}: not a CloudFormation logical id (letters and digits, at most 255)"}
        return {}

    # --- observe ---------------------------------------------------------

    def _stacks(self, physicals: list[str]) -> dict[str, dict[str, Any]]:
        """The named stacks that exist, by name: from the pass's one listing of every stack of the
        region or, when the listing fails (throttled past the retries, denied, an answer that does
        not parse), from one ``DescribeStacks`` per name, so that a stack that cannot be read fails
        alone (``unread``)."""
        try:
            self._seen = STACKS.read(self.ctx)
        except Exception as exc:  # any failure of the listing: read the stacks one by one instead
            log.warning(
                "stack_listing_failed",
                environment=self.ctx.environment,
                error=str(classify(exc))[:300],
                fallback="one DescribeStacks per stack",
            )
            found, failed = _each(self.ctx, self._describe, physicals)
            self._seen, self._unread = found, {**self._unread, **failed}
        return {name: self._seen[name] for name in physicals if name in self._seen}

    def observe(self, physicals: list[str]) -> dict[str, Live]:
        if not physicals:
            return {}
        stacks = self._stacks(physicals)
        self._new.update(name for name in physicals if name not in stacks)
        lives, failed = _each(self.ctx, lambda name: self._live(stacks[name]), list(stacks))
        self._unread.update(failed)
        return lives

    def unread(self) -> dict[str, Exception]:
        return dict(self._unread)

    def leftovers(self) -> list[Leftover]:
        """Stacks of this environment (by their ownership tags) whose first creation failed or was
        never executed: lensops made them, and may never have recorded them."""
        found: list[Leftover] = []
        for stack in self._seen.values():
            status = stack["StackStatus"]
            tags = tags_to_map(stack.get("Tags"))
            owner = tags.get(OWNER_ID_TAG, "")
            if status not in RECREATE or tags.get(OWNER_ENV_TAG) != self.ctx.environment or not owner.startswith(f"{self.kind}/"):
                continue
            state = {"stackStatus": status, "terminationProtection": bool(stack.get("EnableTerminationProtection"))}
            live = Live.tagged(stack["StackName"], state, tags, arn=stack["StackId"], extra={"status": status})
            why = "creation never executed" if status == "REVIEW_IN_PROGRESS" else "creation failed"
            found.append(Leftover(live, f"{why}, {status}"))
        return found

    def _live(self, stack: dict[str, Any], drift: bool = True) -> Live:
        status = stack["StackStatus"]
        template: dict[str, Any] = {}
        body: str | dict[str, Any] = ""
        if status != "REVIEW_IN_PROGRESS" and not status.startswith("DELETE_"):
            body = self._client.get_template(StackName=stack["StackId"]).get("TemplateBody") or "{}"
            template = parse_template(body, f"the template of stack {stack['StackName']}")
        given = {p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters") or []}
        tags = tags_to_map(stack.get("Tags"))
        state = {
            "template": template,
            "parameters": _parameters(given, template, with_defaults=False),
            "capabilities": sorted(stack.get("Capabilities") or []),
            "tags": tags,
            "terminationProtection": bool(stack.get("EnableTerminationProtection")),
            "roleARN": stack.get("RoleARN") or "",
            "notificationARNs": sorted(stack.get("NotificationARNs") or []),
            "stackStatus": _status_class(status),
            "changeSet": [],
            "resourceDrift": self._resource_drift(stack) if drift and status in READY else [],
        }
        return Live.tagged(
            stack["StackName"],
            state,
            arn=stack["StackId"],
            attrs=_attrs(stack),
            tags=tags,
            extra={"status": status, "templateBody": body},
        )

    # --- import ----------------------------------------------------------

    def discover(self, prefix: str) -> list[str]:
        """Every stack of the pass's one ``DescribeStacks`` listing that stands on its own and is
        settled: nested stacks belong to their parent, a stack whose creation failed to nobody."""
        stacks = STACKS.read(self.ctx)
        return sorted(
            name
            for name, stack in stacks.items()
            if name.startswith(prefix) and not stack.get("ParentId") and stack["StackStatus"] not in RECREATE
        )

    def manifest_spec(self, live: Live) -> Draft:
        """The template as CloudFormation holds it (a file), the parameters that differ from the
        template's defaults, and each NoEcho parameter as a ``{{ vars.<name> }}`` placeholder:
        AWS answers ``****`` for it, which must never be written as its value."""
        body = live.extra.get("templateBody") or "{}"
        if isinstance(body, dict):
            text, suffix = json.dumps(body, indent=2) + "\n", ".json"
        else:
            text = str(body)
            suffix = ".json" if text.lstrip().startswith("{") else ".yaml"
        template = live.state.get("template") or {}
        declared = _parameter_types(template)
        parameters: dict[str, Any] = {}
        variables: dict[str, str] = {}
        for key, value in sorted((live.state.get("parameters") or {}).items()):
            slot = declared.get(key) or {}
            if value == NO_ECHO_MASK:
                variable = re.sub(r"[^A-Za-z0-9_]", "_", f"{live.physical}_{key}")
                parameters[key] = f"{{{{ vars.{variable} }}}}"
                variables[key] = variable
            elif "Default" not in slot or _parameter_value(slot["Default"], slot) != value:
                parameters[key] = value
        spec: dict[str, Any] = {"template": ""}
        if parameters:
            spec["parameters"] = parameters
        for key in ("capabilities", "notificationARNs"):
            if live.state.get(key):
                spec[key] = live.state[key]
        if live.state.get("terminationProtection"):
            spec["terminationProtection"] = True
        if live.state.get("roleARN"):
            spec["roleARN"] = live.state["roleARN"]
        return Draft(with_own_tags(spec, live), files={"template": text}, suffix=suffix, variables=variables)

    # --- drift -----------------------------------------------------------

    def _resource_drift(self, stack: dict[str, Any]) -> list[str]:
        """Drifted resources from the last finished detection; starts a new one when due."""
        info = stack.get("DriftInformation") or {}
        status = info.get("StackDriftStatus", "NOT_CHECKED")
        drifted: list[str] = []
        token: str | None = ""
        while status == "DRIFTED" and token is not None:
            page = self._drift_call(
                "describe_stack_resource_drifts",
                StackName=stack["StackId"],
                StackResourceDriftStatusFilters=["MODIFIED", "DELETED"],
                **({"NextToken": token} if token else {}),
            )
            for item in (page or {}).get("StackResourceDrifts", []):
                drifted.append(f"{item['StackResourceDriftStatus']} {item['LogicalResourceId']} ({item['ResourceType']})")
            token = (page or {}).get("NextToken")
        last = info.get("LastCheckTimestamp")
        if last is None or (datetime.now(UTC) - last).total_seconds() > self.drift_check_interval:
            self._drift_call("detect_stack_drift", StackName=stack["StackId"])
        return sorted(drifted)

    def _drift_call(self, operation: str, **params: Any) -> dict[str, Any] | None:
        """A drift API call that never fails the pass; an endpoint without the API is skipped from then on."""
        client = self._client
        endpoint = str(client.meta.endpoint_url)
        if endpoint in _NO_DRIFT_API:
            return None
        try:
            answer: dict[str, Any] = getattr(client, operation)(**params)
            return answer
        except (botocore.parsers.ResponseParserError, botocore.exceptions.ClientError) as exc:
            status = 0
            if isinstance(exc, botocore.exceptions.ClientError):
                status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            missing = not isinstance(exc, botocore.exceptions.ClientError) or status in (404, 501) or error_code(exc) in (
                "InvalidAction",
                "NotImplemented",
                "UnknownOperationException",
            )
            if not missing:
                log.warning("stack_drift_check_failed", physical=params.get("StackName"), operation=operation, error=str(exc))
                return None
            with _NO_DRIFT_LOCK:
                first = endpoint not in _NO_DRIFT_API
                _NO_DRIFT_API.add(endpoint)
            if first:
                log.warning("stack_drift_detection_unavailable", endpoint=endpoint, operation=operation, error=str(exc)[:200])
            return None

    # --- desired ---------------------------------------------------------

    def desired_state(self, desired: Desired) -> dict[str, Any]:
        spec = desired.spec
        text = template_text(spec)
        if len(text.encode()) > TEMPLATE_BODY_LIMIT:
            self._bucket(len(text.encode()))  # without one, the stack fails in plan as in apply
        template = parse_template(text, _template_source(spec))
        if not self.ctx.execute and desired.physical in self._new:
            cfn_validate.ask_cloudformation(self.ctx, self._client, text)  # no change set will read it
        parameters = _parameters(spec.get("parameters") or {}, template, with_defaults=True)
        parameters, plain = _seal_parameters(desired.physical, parameters, _no_echo(template))
        self._plain.update(plain)
        state: dict[str, Any] = {
            "template": template,
            "parameters": parameters,
            "capabilities": sorted(spec.get("capabilities") or []),
            "tags": dict(desired.tags),
            "terminationProtection": bool(spec.get("terminationProtection", False)),
            "notificationARNs": sorted(spec.get("notificationARNs") or []),
            "stackStatus": "ready",
            "changeSet": [],
            "resourceDrift": [],
        }
        if spec.get("roleARN"):
            state["roleARN"] = spec["roleARN"]
        # What preview may ask about this pass: only this desired state, and its template text.
        self._texts[desired.physical] = (_digest(_pick(state)), text)
        return state

    def creation_view(self, state: dict[str, Any]) -> dict[str, Any]:
        """A new stack shows the resources its template creates (``resources``), not the template's text."""
        return {("resources" if k == "template" else k): (_created_outline(v) if k == "template" else v) for k, v in state.items()}

    @classmethod
    def check(cls, spec: dict[str, Any], region: str, lint: bool = False) -> list[Finding]:
        """The template against its parameters and CloudFormation's resource types, offline; with
        ``lint``, cfn-lint's rules too (``reconcilers/cfn_validate.py``)."""
        body = spec.get("templateBody")
        if not isinstance(body, str):
            return []
        source = f"{cls.files['template']}/{spec.get('template')}"
        return cfn_validate.check(body, source, spec.get("parameters") or {}, region, lint, parse_template, _short_form)

    def stored_spec(self, desired: Desired) -> dict[str, Any] | None:
        """The spec with its NoEcho parameters sealed, as ``desired_state`` seals them."""
        given = desired.spec.get("parameters") or {}
        body = desired.spec.get("templateBody")
        if not given or not isinstance(body, str):
            return None
        template = parse_template(body, _template_source(desired.spec))
        secret = _no_echo(template) & given.keys()
        if not secret:
            return None
        values = _parameters({k: given[k] for k in secret}, template, with_defaults=False)
        sealed, _ = _seal_parameters(desired.physical, values, secret)
        return {**desired.spec, "parameters": {**given, **sealed}}

    def adoption_state(self, live: Live, state: dict[str, Any]) -> dict[str, Any]:
        """The stack's template, parameters, tags and settings as adopted; what lensops derives
        (status, change set, resource drift) as a settled stack has them."""
        found = super().adoption_state(live, state)
        found.update(stackStatus="ready", changeSet=[], resourceDrift=[])
        return found

    def compare_view(self, live: Live, state: dict[str, Any], applied: dict[str, Any] | None = None) -> dict[str, Any]:
        """The live stack against ``state``: NoEcho parameters (``****``) cannot be read back, so
        they are what lensops last applied (the desired values when it applied none); nor can
        capabilities, which take the desired ones."""
        return _readable(live, state, applied)

    def preview(self, desired: Desired, live: Live, state: dict[str, Any], view: dict[str, Any]) -> dict[str, Any]:
        """When the change-set fields differ, a change set (made and deleted at once) previews
        them: its entries become ``changeSet``, and an empty one means CloudFormation has nothing
        to do (in sync). Only for this pass's desired state of a settled stack."""
        fields = _pick(state)
        if live.extra.get("status") not in READY or not diff(fields, view) or _unresolved(state):
            return view
        key = _digest(fields)
        current = self._texts.get(live.physical)
        if current is None or current[0] != key:
            return view
        memo = (live.physical, key)
        if memo not in self._previews:
            self._previews[memo] = self._preview(desired, live, state, current[1], _unchanged(state, view))
        preview = self._previews[memo]
        view = dict(view)
        if preview is None:
            view.update(fields)
        else:
            view["changeSet"] = preview
        return view

    def _preview(self, desired: Desired, live: Live, state: dict[str, Any], text: str, unchanged: frozenset[str]) -> Outline | None:
        """The entries of a change set made and deleted at once, as plan lines that mark what the
        replacement guard refuses; None when it would change nothing."""
        client = self._client
        try:
            params = self._stack_params(live.physical, state, text, unchanged, upload=False)
        except _NotUploaded as missing:
            return Outline([f"~ (no change set previewed: the template is not in {missing} yet; apply uploads it)"])
        try:
            made = client.create_change_set(**params, ChangeSetName=_change_set_name("plan"), ChangeSetType="UPDATE")
        except botocore.exceptions.ClientError as exc:
            if _no_changes(str(exc)):
                return None
            raise
        try:
            pages = list(client.get_paginator("describe_change_set").paginate(ChangeSetName=made["Id"]))
        finally:
            client.delete_change_set(ChangeSetName=made["Id"])
        status = pages[0].get("Status", "") if pages else ""
        reason = pages[0].get("StatusReason", "") if pages else ""
        if status == "FAILED":
            if _no_changes(reason):
                return None
            raise PermanentError(f"change set failed: {reason}")
        if status in _PENDING_CHANGE_SET:
            return Outline([f"~ (change set still {status} when planned)"])
        changes = [c.get("ResourceChange") or {} for page in pages for c in page.get("Changes", [])]
        kept = _kept_resources(live.state.get("template"), state["template"])
        return change_set_outline(changes, kept, _allowed_replacements(desired.annotations))

    # --- apply -----------------------------------------------------------

    def create(self, desired: Desired, state: dict[str, Any]) -> Live:
        track: dict[str, Any] = {"stack": desired.physical, "planned": True}
        self._submit(desired, state, track, exists=False)
        return Live(desired.physical, state, extra={"track": track})

    def update(self, desired: Desired, state: dict[str, Any], live: Live, changes: list[Change]) -> Live:
        paths = {c.path.split(".", 1)[0] for c in changes}
        if "resourceDrift" in paths:
            log.warning(
                "stack_resources_drifted",
                physical=live.physical,
                resources=live.state.get("resourceDrift"),
                hint="CloudFormation does not revert drift by an update; fix the resources or change the template",
            )
        track: dict[str, Any] = {"stack": live.arn or live.physical, "planned": False}
        if live.extra.get("status") in READY:
            track["planned"] = True
            if paths & {*CHANGE_SET_FIELDS, "changeSet"}:
                changed = {c.path for c in changes}
                unchanged = frozenset(k for k in state["parameters"] if f"parameters.{k}" not in changed and "parameters" not in changed)
                track["guard"] = _guard(desired, live.state.get("template"), state)
                self._submit(desired, state, track, exists=True, unchanged=unchanged)
        return Live(live.physical, state, arn=live.arn, attrs=live.attrs, extra={"track": track})

    def settle(self, desired: Desired, live: Live) -> Live | None:
        track = live.extra.get("track")
        if track is None:
            return live
        return self._advance(desired, live.state, track)

    def _advance(self, desired: Desired, state: dict[str, Any], track: dict[str, Any]) -> Live | None:
        """Take the stack as far towards ``state`` as it goes now; None while CloudFormation works.

        Each turn reads the stack and makes at most one write; a handful of
        turns covers the longest path (delete, create, execute), never sleeping.
        """
        client = self._client
        for _ in range(8):
            stack = self._describe(track["stack"])
            status = stack["StackStatus"] if stack else "DELETE_COMPLETE"
            if status.endswith("_IN_PROGRESS") and status != "REVIEW_IN_PROGRESS":
                return None
            if track.get("inSync"):
                return self._done(desired, state, stack)
            if track.get("changeSet") and not track.get("executed"):
                if not self._execute_when_ready(track, stack):
                    return None
                continue
            if track.get("executed"):
                if stack is not None and status == "REVIEW_IN_PROGRESS":
                    return None
                if stack is None or status not in SUCCEEDED:
                    raise PermanentError(self._failure(desired.physical, stack))
                return self._done(desired, state, stack)
            if stack is None:
                self._submit(desired, state, track, exists=False)
            elif status == "UPDATE_ROLLBACK_FAILED":
                if track.get("continued"):
                    raise PermanentError(self._failure(desired.physical, stack))
                client.continue_update_rollback(StackName=stack["StackId"])
                track["continued"] = True
                log.info("stack_rollback_continued", physical=desired.physical)
            elif status in RECREATE:
                self._delete_for_recreate(desired, stack)
                track["stack"] = stack["StackId"]
            elif status not in READY:
                raise PermanentError(self._failure(desired.physical, stack) + "; lensops cannot change it from there")
            elif track.get("planned"):
                return self._done(desired, state, stack)
            else:
                track["planned"] = True
                view = _readable(self._live(stack, drift=False), state, None)
                # A NoEcho value read from the manifest may differ from the live one, which cannot be seen.
                if diff(_pick(state), view) or any(v in self._plain for v in state["parameters"].values()):
                    track["guard"] = _guard(desired, view.get("template"), state)
                    self._submit(desired, state, track, exists=True, unchanged=_unchanged(state, view))
        return None

    def _describe(self, ref: str) -> dict[str, Any] | None:
        """One stack by name or id, None once it is gone."""
        try:
            stacks = self._client.describe_stacks(StackName=ref).get("Stacks", [])
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) == "ValidationError" and "does not exist" in str(exc):
                return None
            raise
        stack = stacks[0] if stacks else None
        return None if stack is None or stack["StackStatus"] == "DELETE_COMPLETE" else stack

    def _rollback_configuration(self) -> dict[str, Any]:
        """CloudFormation's own rollback on the environment's health alarms, for the bake time.

        At most five triggers and 180 minutes, as the API allows; lensops's
        health gate still watches every alarm for the whole bake.
        """
        arns = self.ctx.gate.alarm_arns[:5]
        if not arns:
            return {}
        minutes = min(180, max(1, -(-self.ctx.gate.bake_seconds // 60)))
        return {
            "RollbackTriggers": [{"Arn": arn, "Type": "AWS::CloudWatch::Alarm"} for arn in arns],
            "MonitoringTimeInMinutes": minutes,
        }

    def _stack_params(
        self, physical: str, state: dict[str, Any], text: str, unchanged: frozenset[str], upload: bool = True
    ) -> dict[str, Any]:
        """CreateChangeSet's parameters for ``state``. A sealed NoEcho value is sent as this pass read
        it from the manifest, or left as it is (``UsePreviousValue``) when it is ``unchanged`` since
        lensops applied it; any other is refused: lensops keeps only its seal. A template over
        ``TEMPLATE_BODY_LIMIT`` goes as ``TemplateURL`` (``_template_param``; ``upload``: it may be put in the bucket)."""
        masked = sorted(k for k, v in state["parameters"].items() if v == NO_ECHO_MASK)
        if masked:
            raise PermanentError(
                f"NoEcho parameter(s) {', '.join(masked)}: their value when lensops adopted the stack was never readable, "
                "so the stack cannot be put back to it; set them by hand"
            )
        lost = sorted(k for k, v in state["parameters"].items() if is_sealed(v) and v not in self._plain and k not in unchanged)
        if lost:
            raise PermanentError(
                f"NoEcho parameter(s) {', '.join(lost)}: lensops keeps only a digest of their value, and it changed since, "
                "so the stack cannot be put back to it; set them by hand or commit the value again"
            )
        params: dict[str, Any] = {
            "StackName": physical,
            **self._template_param(text, upload),
            "Parameters": [self._parameter(k, v) for k, v in sorted(state["parameters"].items())],
            "Capabilities": state["capabilities"],
            "Tags": map_to_tags(state["tags"]),
            "NotificationARNs": state["notificationARNs"],
        }
        if state.get("roleARN"):
            params["RoleARN"] = state["roleARN"]
        return params

    def _bucket(self, size: int) -> str:
        """The Environment's ``templateBucket``, for a template of ``size`` bytes; an error naming the setting without one."""
        bucket = self.ctx.settings.get("templateBucket")
        if not bucket:
            raise PermanentError(
                f"template is {size} bytes, over the {TEMPLATE_BODY_LIMIT} CloudFormation takes inline: set the Environment's "
                "spec.templateBucket to an S3 bucket of its region, where lensops uploads large templates"
            )
        return str(bucket)

    def _template_param(self, text: str, upload: bool) -> dict[str, str]:
        """``TemplateBody``; or, over the limit, ``TemplateURL`` of the template's object in the
        Environment's ``templateBucket``. The key is the content's digest, so an object already
        there (``HeadObject``) is used as it is, and only a new template is uploaded (``PutObject``,
        only when ``upload``: a plan's preview never writes, and raises ``_NotUploaded`` instead)."""
        raw = text.encode()
        if len(raw) <= TEMPLATE_BODY_LIMIT:
            return {"TemplateBody": text}
        bucket, key = self._bucket(len(raw)), template_key(text)
        if key not in self._objects:
            self._objects[key] = self._object_exists(bucket, key)
        if not self._objects[key]:
            if not upload:
                raise _NotUploaded(f"s3://{bucket}/{key}")
            content = "application/json" if key.endswith(".json") else "text/yaml"
            self.ctx.client("s3").put_object(Bucket=bucket, Key=key, Body=raw, ContentType=content)
            self._objects[key] = True
            log.info("stack_template_uploaded", environment=self.ctx.environment, bucket=bucket, key=key, size=len(raw))
        return {"TemplateURL": template_url(bucket, self.ctx.region, key)}

    def _object_exists(self, bucket: str, key: str) -> bool:
        """Whether ``key`` is in ``bucket`` (HeadObject: IAM's ``s3:GetObject``; a missing key answers
        404 only with ``s3:ListBucket`` on the bucket, else 403)."""
        try:
            self.ctx.client("s3").head_object(Bucket=bucket, Key=key)
        except botocore.exceptions.ClientError as exc:
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            if status == 404 or error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return False
            if status == 403:
                raise PermanentError(
                    f"templateBucket {bucket}: HeadObject {key} was refused (403): lensops needs s3:GetObject on "
                    f"{TEMPLATE_PREFIX}* and s3:ListBucket on the bucket (lensops iam-policy)"
                ) from None
            raise
        return True

    def _parameter(self, key: str, value: str) -> dict[str, Any]:
        if not is_sealed(value):
            return {"ParameterKey": key, "ParameterValue": value}
        if value in self._plain:
            return {"ParameterKey": key, "ParameterValue": self._plain[value]}
        return {"ParameterKey": key, "UsePreviousValue": True}

    def _template_for(self, desired: Desired, state: dict[str, Any]) -> str:
        """The template text that makes ``state``: the spec's own text, as written, or, for a state
        not made from this spec (a rollback to a stack's state when it was adopted), its template as JSON."""
        cached = self._texts.get(desired.physical)
        if cached and cached[0] == _digest(_pick(state)):
            return str(cached[1])
        body = desired.spec.get("templateBody")
        if isinstance(body, str) and parse_template(body, _template_source(desired.spec)) == state["template"]:
            return body
        return json.dumps(state["template"])

    def _submit(
        self, desired: Desired, state: dict[str, Any], track: dict[str, Any], exists: bool, unchanged: frozenset[str] = frozenset()
    ) -> None:
        """Create the change set that takes the stack to ``state`` (or the stack, when a timeout is wanted)."""
        params = self._stack_params(desired.physical, state, self._template_for(desired, state), unchanged)
        client = self._client
        timeout = desired.spec.get("timeoutInMinutes")
        if not exists and timeout:
            made = client.create_stack(
                **params, TimeoutInMinutes=timeout, EnableTerminationProtection=state["terminationProtection"]
            )
            track.update(stack=made["StackId"], executed=True)
            return
        kind = "UPDATE" if exists else "CREATE"
        rollback = self._rollback_configuration()
        if rollback:
            params["RollbackConfiguration"] = rollback
        try:
            made = client.create_change_set(**params, ChangeSetName=_change_set_name("apply"), ChangeSetType=kind)
        except botocore.exceptions.ClientError as exc:
            if exists and _no_changes(str(exc)):
                track["inSync"] = True
                return
            raise
        track.update(stack=made["StackId"], changeSet=made["Id"], kind=kind)

    def _execute_when_ready(self, track: dict[str, Any], stack: dict[str, Any] | None) -> bool:
        """Execute the tracked change set once CloudFormation has made it; False while it is being made."""
        client = self._client
        answer = client.describe_change_set(ChangeSetName=track["changeSet"])
        status = answer.get("Status", "")
        if status in _PENDING_CHANGE_SET:
            return False
        if status == "FAILED":
            reason = answer.get("StatusReason", "")
            client.delete_change_set(ChangeSetName=track["changeSet"])
            if track.get("kind") == "CREATE" and stack is not None:
                client.delete_stack(StackName=stack["StackId"])
            if _no_changes(reason):
                track["inSync"] = True
                return True
            raise PermanentError(f"change set failed: {reason}")
        if answer.get("ExecutionStatus") == "AVAILABLE":
            self._refuse_stateful_loss(track, answer)
            client.execute_change_set(ChangeSetName=track["changeSet"])
        elif answer.get("ExecutionStatus") not in ("EXECUTE_IN_PROGRESS", "EXECUTE_COMPLETE"):
            return False
        track["executed"] = True
        return True

    def _refuse_stateful_loss(self, track: dict[str, Any], answer: dict[str, Any]) -> None:
        """The replacement guard, before a change set is executed: one that replaces or removes a
        stateful resource whose logical id the Stack's ``lensops.io/allow-replace`` does not name is
        deleted, unexecuted, and the stack fails with a ``PermanentError`` naming them."""
        guard = track.get("guard")
        if guard is None:
            return  # a CREATE change set: nothing to replace or remove
        changes = [c.get("ResourceChange") or {} for c in answer.get("Changes", [])]
        token = answer.get("NextToken")
        while token:
            page = self._client.describe_change_set(ChangeSetName=track["changeSet"], NextToken=token)
            changes += [c.get("ResourceChange") or {} for c in page.get("Changes", [])]
            token = page.get("NextToken")
        allowed = frozenset(guard["allowed"])
        refused = refused_changes(changes, guard["kept"], allowed)
        if not refused:
            return
        self._client.delete_change_set(ChangeSetName=track["changeSet"])
        log.warning("stack_change_set_refused", physical=track["stack"], resources=sorted(str(c.get("LogicalResourceId")) for c in refused))
        raise PermanentError(_refusal(refused, guard["kept"], allowed))

    def _delete_for_recreate(self, desired: Desired, stack: dict[str, Any]) -> None:
        """A stack whose first creation failed: delete it (only if lensops made it) so it can be created again."""
        tags = tags_to_map(stack.get("Tags"))
        status = stack["StackStatus"]
        if tags.get(OWNER_ID_TAG) != desired.ident or tags.get(OWNER_ENV_TAG) != self.ctx.environment:
            raise PermanentError(f"stack is {status} and was not created by lensops: delete it by hand to let lensops create it")
        if stack.get("EnableTerminationProtection"):
            raise PermanentError(f"stack is {status} and has termination protection on: turn it off or delete it by hand")
        self._client.delete_stack(StackName=stack["StackId"])
        log.info("stack_recreating", physical=desired.physical, status=status)

    def _done(self, desired: Desired, state: dict[str, Any], stack: dict[str, Any] | None) -> Live:
        """The settled stack, with termination protection as wanted."""
        if stack is None:
            raise PermanentError("stack is gone")
        if bool(stack.get("EnableTerminationProtection")) != state["terminationProtection"]:
            self._client.update_termination_protection(
                StackName=stack["StackId"], EnableTerminationProtection=state["terminationProtection"]
            )
        tags = tags_to_map(stack.get("Tags"))
        return Live.tagged(
            stack["StackName"],
            state,
            arn=stack["StackId"],
            attrs=_attrs(stack),
            tags=tags,
        )

    def _failure(self, physical: str, stack: dict[str, Any] | None) -> str:
        """Why the last operation on the stack failed: its first failed resource, from the stack events."""
        if stack is None:
            return f"stack {physical} is gone"
        first: dict[str, Any] | None = None
        pages = self._client.get_paginator("describe_stack_events").paginate(StackName=stack["StackId"])
        for page in pages:
            for event in page.get("StackEvents", []):
                is_stack = event.get("ResourceType") == "AWS::CloudFormation::Stack"
                if is_stack and event.get("ResourceStatusReason") == "User Initiated":
                    break
                if not is_stack and event.get("ResourceStatus", "").endswith("_FAILED"):
                    first = event
            else:
                continue
            break
        status = stack["StackStatus"]
        if first is None:
            return f"stack is {status}: {stack.get('StackStatusReason') or 'no failed resource reported'}"
        return (
            f"stack is {status}: {first['LogicalResourceId']} ({first.get('ResourceType', '?')}) "
            f"{first['ResourceStatus']}: {first.get('ResourceStatusReason') or 'no reason given'}"
        )

    def delete(self, live: Live) -> None:
        if live.state.get("terminationProtection"):
            raise PermanentError(
                f"stack {live.physical} has termination protection on: lensops does not delete a protected stack"
            )
        self._client.delete_stack(StackName=live.arn or live.physical)


def _change_set_name(purpose: str) -> str:
    return f"lensops-{purpose}-{uuid.uuid4().hex[:16]}"
