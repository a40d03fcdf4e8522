"""CloudFormation: Stack (templates under ``templates/``, every change through a change set).

A stack's template, parameters and tags are compared as data first, so a
pass with nothing to change makes no write and creates no change set. Where
they differ, CloudFormation is asked through a change set: ``plan`` lists the
change set's Add/Modify/Remove entries (the ``changeSet`` change) and deletes
it; ``apply`` executes one. An empty change set means "in sync". Work that
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
``CreateChangeSet`` + ``DescribeChangeSet`` + ``ExecuteChangeSet`` and one
``DescribeStacks`` per re-check until the stack settles.
"""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, Literal

import botocore.exceptions
import botocore.parsers
from pydantic import Field

from controller import logs
from controller.apishape import map_to_tags, tags_to_map
from controller.diff import Change, diff
from controller.errors import PermanentError, error_code
from controller.manifests.types import Spec
from controller.manifests.yamlsafe import MAX_DEPTH, MAX_FILE_BYTES, MAX_NODES, YamlProblem, load_documents
from controller.plan import KNOWN_AFTER_APPLY
from controller.sensitive import is_sealed, seal
from controller.kinds import OWNER_ENV_TAG, OWNER_ID_TAG, Context, Desired, Finding, Live, Reconciler
from reconcilers import cfn_validate
from reconcilers.listing import Listing

log = logs.get("lensops.reconcilers.cloudformation")

STACKS = Listing("cloudformation", "describe_stacks", "Stacks", "StackName", keep=lambda stack: stack["StackStatus"] != "DELETE_COMPLETE")

Capability = Literal["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]

"""Names the tree's ``templates/`` folder while the engine cannot hand the template to reconcilers."""

TEMPLATE_BODY_LIMIT = 51_200
"""Bytes CloudFormation accepts in ``TemplateBody`` (larger templates need ``TemplateURL`` in S3)."""

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


def _change_entry(change: dict[str, Any]) -> str:
    rc = change.get("ResourceChange") or {}
    text = f"{rc.get('Action', '?')} {rc.get('LogicalResourceId', '?')} ({rc.get('ResourceType', '?')})"
    if rc.get("Replacement") in ("True", "Conditional"):
        text += f" replacement: {rc['Replacement']}"
    return text


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


_NO_DRIFT_API: set[str] = set()
_NO_DRIFT_LOCK = threading.Lock()


class StackReconciler(Reconciler):
    """A CloudFormation stack; every change goes through a change set.

    `lensops plan` of a stack whose template, parameters or tags differ asks CloudFormation through a
    change set that it creates and deletes at once: a role that only plans needs
    `cloudformation:CreateChangeSet` and `cloudformation:DeleteChangeSet` too (and `iam:PassRole` with
    `roleARN`).

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
    )

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
        self._previews: dict[tuple[str, str], list[str] | None] = {}
        """(stack name, digest) -> a change set's entries, kept for the pass (the drift check asks again)."""
        self._new: set[str] = set()
        """Stacks observed absent this pass: a plan asks CloudFormation to validate their templates."""

    @property
    def _client(self) -> Any:
        return self.ctx.client("cloudformation")

    # --- observe ---------------------------------------------------------

    def _stacks(self) -> dict[str, dict[str, Any]]:
        """Every stack of the region by name, one paginated listing per pass."""
        return STACKS.read(self.ctx)

    def observe(self, physicals: list[str]) -> dict[str, Live]:
        if not physicals:
            return {}
        stacks = self._stacks()
        present = [name for name in physicals if name in stacks]
        self._new.update(name for name in physicals if name not in stacks)
        return dict(zip(present, self.ctx.map(lambda name: self._live(stacks[name]), present), strict=True))

    def _live(self, stack: dict[str, Any], drift: bool = True) -> Live:
        status = stack["StackStatus"]
        template: dict[str, Any] = {}
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
            extra={"status": status},
        )

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
                log.warning("stack_drift_check_failed", stack=params.get("StackName"), operation=operation, error=str(exc))
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
            self._previews[memo] = self._preview(live, state, current[1], _unchanged(state, view))
        preview = self._previews[memo]
        view = dict(view)
        if preview is None:
            view.update(fields)
        else:
            view["changeSet"] = preview
        return view

    def _preview(self, live: Live, state: dict[str, Any], text: str, unchanged: frozenset[str]) -> list[str] | None:
        """The entries of a change set made and deleted at once; None when it would change nothing."""
        client = self._client
        params = self._stack_params(live.physical, state, text, unchanged)
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
            return [f"(change set still {status} when planned)"]
        return sorted(_change_entry(c) for page in pages for c in page.get("Changes", []))

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
                stack=live.physical,
                resources=live.state.get("resourceDrift"),
                hint="CloudFormation does not revert drift by an update; fix the resources or change the template",
            )
        track: dict[str, Any] = {"stack": live.arn or live.physical, "planned": False}
        if live.extra.get("status") in READY:
            track["planned"] = True
            if paths & {*CHANGE_SET_FIELDS, "changeSet"}:
                changed = {c.path for c in changes}
                unchanged = frozenset(k for k in state["parameters"] if f"parameters.{k}" not in changed and "parameters" not in changed)
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
                log.info("stack_rollback_continued", stack=desired.physical)
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

    def _stack_params(self, physical: str, state: dict[str, Any], text: str, unchanged: frozenset[str]) -> dict[str, Any]:
        """CreateChangeSet's parameters for ``state``. A sealed NoEcho value is sent as this pass read
        it from the manifest, or left as it is (``UsePreviousValue``) when it is ``unchanged`` since
        lensops applied it; any other is refused: lensops keeps only its seal."""
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
        if len(text.encode()) > TEMPLATE_BODY_LIMIT:
            raise PermanentError(f"template is over {TEMPLATE_BODY_LIMIT} bytes: TemplateURL (S3) is not supported yet")
        params: dict[str, Any] = {
            "StackName": physical,
            "TemplateBody": text,
            "Parameters": [self._parameter(k, v) for k, v in sorted(state["parameters"].items())],
            "Capabilities": state["capabilities"],
            "Tags": map_to_tags(state["tags"]),
            "NotificationARNs": state["notificationARNs"],
        }
        if state.get("roleARN"):
            params["RoleARN"] = state["roleARN"]
        return params

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
            client.execute_change_set(ChangeSetName=track["changeSet"])
        elif answer.get("ExecutionStatus") not in ("EXECUTE_IN_PROGRESS", "EXECUTE_COMPLETE"):
            return False
        track["executed"] = True
        return True

    def _delete_for_recreate(self, desired: Desired, stack: dict[str, Any]) -> None:
        """A stack whose first creation failed: delete it (only if lensops made it) so it can be created again."""
        tags = tags_to_map(stack.get("Tags"))
        status = stack["StackStatus"]
        if tags.get(OWNER_ID_TAG) != desired.ident or tags.get(OWNER_ENV_TAG) != self.ctx.environment:
            raise PermanentError(f"stack is {status} and was not created by lensops: delete it by hand to let lensops create it")
        if stack.get("EnableTerminationProtection"):
            raise PermanentError(f"stack is {status} and has termination protection on: turn it off or delete it by hand")
        self._client.delete_stack(StackName=stack["StackId"])
        log.info("stack_recreating", stack=desired.physical, status=status)

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
