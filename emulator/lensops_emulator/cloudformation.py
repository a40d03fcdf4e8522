"""AWS CloudFormation additions: change sets that behave as AWS's, termination protection, rollbacks, drift.

Part of the embedded AWS emulator used by tests and ``lensops demo`` (moto in
server mode plus what moto lacks). moto 5.2.5 creates, updates and deletes
stacks and change sets, but a stack made or updated through a change set
keeps no outputs, tags, role or notification topics from it; a change set
changing only tags is refused; executed change sets stay listed;
termination protection, ContinueUpdateRollback and drift detection are
missing; and a stack whose creation fails stays CREATE_IN_PROGRESS. Written
from the AWS CloudFormation API reference, on moto's own Stack and ChangeSet
objects, so moto's DescribeStacks, GetTemplate, DescribeStackEvents and the
rest see every change:

- ``CreateChangeSet``: parameters are checked as AWS checks them (missing
  values, unknown keys); an UPDATE change set compares template (as data),
  parameter values (defaults included), tags, notification topics and role
  with the stack's, so a change set changing only tags or parameters is
  CREATE_COMPLETE, and one changing nothing is FAILED with AWS's "didn't
  contain changes" reason. Its ``Changes`` are computed from the templates:
  Add/Remove; Modify with Scope and Details for properties and attributes
  changed in the template (DirectModification), for properties referring to a
  changed parameter through ``Ref`` or ``Fn::Sub`` (ParameterReference), for
  properties referring to a resource being replaced (ResourceReference /
  ResourceAttribute, Dynamic), and a Tags-scoped Modify of every taggable
  resource when the stack tags change. ``RequiresRecreation`` is Always for
  the resource type's create-only properties (from the resource schemas that
  ship with cfn-lint, which moto uses), else Never; ``Replacement`` follows
  as the API reference says. ``PolicyAction`` says what a removal or a
  replacement does with the resource: ``Delete``, ``Retain`` or ``Snapshot``
  from the old resource's ``DeletionPolicy`` for a Remove, ``ReplaceAndDelete``,
  ``ReplaceAndRetain`` or ``ReplaceAndSnapshot`` from the new one's
  ``UpdateReplacePolicy`` for a replacing Modify. A CREATE change set for a name in use is
  AlreadyExistsException (unless the stack is REVIEW_IN_PROGRESS); an UPDATE
  change set for a stack that cannot be updated is a ValidationError.
- ``ExecuteChangeSet``: refuses a change set that is not AVAILABLE; after
  moto applies it, also updates the resources moto leaves alone that the
  change set lists (e.g. a parameter reached through ``Fn::Sub``), makes
  anew what it replaces (``Replacement: True``) where moto updated it in place
  or could not (a renamed DynamoDB table or SQS queue), deleting the old
  resource unless ``UpdateReplacePolicy`` is Retain, then gives
  the stack the change set's template, parameters, outputs, exports, tags,
  RoleARN, NotificationARNs and Capabilities, and deletes the stack's change
  sets: the executed one stays describable by ARN but is no longer listed. A
  CREATE change set whose resources fail ends ROLLBACK_COMPLETE, as below.
- ``ListChangeSets`` lists only the named stack's change sets;
  ``DescribeChangeSet`` and ``DeleteChangeSet`` answer ChangeSetNotFound.
- ``CreateStack``: a resource that fails to create leaves the stack
  ROLLBACK_COMPLETE (CREATE_FAILED with DisableRollback or OnFailure
  DO_NOTHING; deleted with OnFailure DELETE), with CREATE_FAILED,
  ROLLBACK_IN_PROGRESS and DELETE_COMPLETE events naming the resource and
  moto's error; template errors moto finds while creating stay synchronous
  ValidationErrors and leave no stack. ``Capabilities`` are kept.
- ``UpdateStack``: keeps the stack's role when RoleARN is not given, applies
  NotificationARNs, clears tags given as an empty list, keeps Capabilities,
  refreshes exports; an update changing only tags, topics or role succeeds.
- ``UpdateTerminationProtection``; ``DeleteStack`` refuses a protected stack
  with AWS's ValidationError and drops the stack's change sets.
- ``ContinueUpdateRollback``: UPDATE_ROLLBACK_FAILED -> UPDATE_ROLLBACK_COMPLETE.
- ``ValidateTemplate`` fails on cfn-lint's errors only, as "Template format
  error: ..." (moto's fails on its warnings too, which AWS's check does not
  know, and words it "Stack with id ... does not exist").
- ``DescribeStacks`` shows a ``NoEcho`` parameter's value as ``****``, as AWS
  does (moto 5.2 compares the parameter's *value* with the NoEcho keys, so
  it shows every value).
- ``TemplateURL``: read from the emulator's S3, a virtual-hosted URL by its
  host name whatever the bucket's name (moto misreads a bucket named ``s3...``).
- ``DetectStackDrift`` (complete at once, always IN_SYNC: real drift is not
  detected), ``DescribeStackDriftDetectionStatus``, ``DescribeStackResourceDrifts``
  (always empty); ``DescribeStacks`` reports ``DriftInformation`` (NOT_CHECKED
  until a detection).
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import unquote, urlparse

from moto.cloudformation.exceptions import AlreadyExistsException, CloudFormationError, ValidationError
from moto.cloudformation.models import Change, ChangeSet, CloudFormationBackend, Event, Stack
from moto.cloudformation.parsing import OutputMap, parse_and_create_resource, parse_and_update_resource
from moto.cloudformation.responses import CloudFormationResponse, transform_dict
from moto.cloudformation.utils import generate_changeset_id, validate_create_change_set, validate_template_cfn_lint
from moto.core.responses import ActionResult, EmptyResult
from moto.moto_api._internal import mock_random

from .dispatch import Addition

NO_CHANGES = "The submitted information didn't contain changes. Submit different information to create a change set."
UPDATABLE = frozenset(
    {"CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_COMPLETE", "IMPORT_ROLLBACK_COMPLETE"}
)
SUCCEEDED = frozenset({"CREATE_COMPLETE", "UPDATE_COMPLETE"})
# Resource attributes a Modify can be scoped to, in the API's order (Tags is last).
_ATTRIBUTES = ("Metadata", "CreationPolicy", "UpdatePolicy", "DeletionPolicy", "UpdateReplacePolicy")
_SCOPES = ("Properties", *_ATTRIBUTES, "Tags")
_SUB_VARIABLE = re.compile(r"\$\{([^!}][^}]*)\}")
# https://<bucket>.s3.<region>.amazonaws.com (also .s3.amazonaws.com, .s3-<region>., .amazonaws.com.cn)
_VIRTUAL_HOSTED = re.compile(r"^(?P<bucket>[a-z0-9][a-z0-9.-]*[a-z0-9])\.s3(?:[.-][a-z0-9-]+)?\.amazonaws\.com(?:\.cn)?$")


class ChangeSetNotFoundException(CloudFormationError):
    # The API model's shape name; on the wire its code is ChangeSetNotFound (HTTP 404).
    code = "ChangeSetNotFoundException"


class InvalidChangeSetStatusException(CloudFormationError):
    code = "InvalidChangeSetStatusException"


def _parameter_list(stack: Stack) -> list[dict[str, Any]]:
    secret = set(stack.resource_map.no_echo_parameter_keys)
    return [
        {"ParameterKey": k, "ParameterValue": "****" if k in secret else v}
        for k, v in stack.resource_map.resolved_parameters.items()
    ]


# What DescribeStacks serialises; moto's own masks a value only when it equals a NoEcho key's name.
Stack.parameter_list = property(_parameter_list)  # type: ignore[method-assign,assignment]


def _transform_tags(tags: dict[str, str] | None) -> list[dict[str, str]]:
    return transform_dict(tags or {})


class CloudFormationAdditions(CloudFormationResponse):
    """CloudFormation operations moto lacks or gets wrong; the rest stay moto's."""

    RESPONSE_KEY_PATH_TO_TRANSFORMER = {
        **CloudFormationResponse.RESPONSE_KEY_PATH_TO_TRANSFORMER,
        # moto keeps a change set's tags as a dict and would send none.
        "DescribeChangeSetOutput.Tags": _transform_tags,
    }

    @property
    def _backend(self) -> CloudFormationBackend:
        return self.cloudformation_backend

    def _get_stack_from_s3_url(self, template_url: str) -> str:
        """A TemplateURL's object. moto takes a virtual-hosted URL whose bucket name starts with
        ``s3`` for a path-style one; the bucket is read from the host name here whatever its name."""
        from moto.s3.models import s3_backends

        parts = urlparse(template_url)
        found = _VIRTUAL_HOSTED.match(parts.netloc)
        if found is None:
            return super()._get_stack_from_s3_url(template_url)
        key = s3_backends[self.current_account][self.partition].get_object(found["bucket"], unquote(parts.path.lstrip("/")))
        if key is None:
            raise ValidationError(message=f"S3 error: the object {template_url} does not exist")
        return str(key.value.decode("utf-8"))

    # --- stacks ------------------------------------------------------------

    def create_stack(self) -> ActionResult:
        name = self._get_param("StackName")
        before = set(self._backend.stacks)
        try:
            result = super().create_stack()
        except Exception as exc:
            stack = _new_stack(self._backend, before, name)
            if stack is None:
                raise
            if _template_error(exc):
                _discard(self._backend, stack)
                raise
            stack.capabilities = self._list("Capabilities")
            on_failure = self._get_param("OnFailure") or ("DO_NOTHING" if self._get_bool_param("DisableRollback") else "ROLLBACK")
            _fail_creation(self._backend, stack, exc, on_failure)
            return ActionResult({"StackId": stack.stack_id})
        stack = _new_stack(self._backend, before, name)
        if stack is not None:
            stack.capabilities = self._list("Capabilities")
        return result

    def update_stack(self) -> ActionResult:
        stack = self._backend.get_stack(self._get_param("StackName"))
        role_arn = self._get_param("RoleARN") or stack.role_arn
        tags = self._tags() if self._given("Tags") else stack.tags
        notifications = self._list("NotificationARNs") if self._given("NotificationARNs") else stack.notification_arns
        settings_change = _settings_differ(stack, tags, notifications, role_arn)
        if stack.status not in UPDATABLE:
            raise ValidationError(message=f"Stack:{stack.stack_id} is in {stack.status} state and can not be updated.")
        resources_change, unmoved = self._review_stack_update(stack)
        try:
            if resources_change is False:
                raise ValidationError(stack.name, message="No updates are to be performed.")
            super().update_stack()
        except ValidationError as exc:
            if "No updates are to be performed" not in exc.message or not settings_change:
                raise
            # Only the stack's own settings change: an update with no resource work.
            stack._add_stack_event("UPDATE_IN_PROGRESS", resource_status_reason="User Initiated")
            stack._add_stack_event("UPDATE_COMPLETE")
            stack.status = "UPDATE_COMPLETE"
        else:
            _update_resources(stack, unmoved)
            stack.output_map = stack._create_output_map()
        _apply_settings(stack, tags, notifications, role_arn, self._list("Capabilities"))
        _refresh_exports(self._backend, stack)
        return ActionResult({"StackId": stack.stack_id})

    def delete_stack(self) -> EmptyResult:
        name = self._get_param("StackName")
        stack = _find_live(self._backend, name)
        if stack is not None and stack.enable_termination_protection:
            raise ValidationError(message=f"Stack [{stack.name}] cannot be deleted while TerminationProtection is enabled")
        super().delete_stack()
        if stack is not None:
            for change_set_id in [i for i, cs in self._backend.change_sets.items() if cs.stack_id == stack.stack_id]:
                del self._backend.change_sets[change_set_id]
        return EmptyResult()

    def describe_stacks(self) -> ActionResult:
        for stack in [*self._backend.stacks.values(), *self._backend.deleted_stacks.values()]:
            if getattr(stack, "drift_information", None) is None:
                stack.drift_information = {"StackDriftStatus": "NOT_CHECKED"}
        return super().describe_stacks()

    def update_termination_protection(self) -> ActionResult:
        stack = self._live(self._get_param("StackName"))
        stack.enable_termination_protection = self._get_bool_param("EnableTerminationProtection", False)
        return ActionResult({"StackId": stack.stack_id})

    def continue_update_rollback(self) -> EmptyResult:
        stack = self._live(self._get_param("StackName"))
        if stack.status != "UPDATE_ROLLBACK_FAILED":
            raise ValidationError(message="ContinueUpdateRollback cannot be called from current stack status")
        if self._get_param("RoleARN"):
            stack.role_arn = self._get_param("RoleARN")
        stack._add_stack_event("UPDATE_ROLLBACK_IN_PROGRESS", resource_status_reason="User Initiated")
        stack._add_stack_event("UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS")
        stack._add_stack_event("UPDATE_ROLLBACK_COMPLETE")
        stack.status = "UPDATE_ROLLBACK_COMPLETE"
        return EmptyResult()

    # --- drift ---------------------------------------------------------------

    def detect_stack_drift(self) -> ActionResult:
        stack = self._live(self._get_param("StackName"))
        now = datetime.now(UTC)
        detection = {
            "StackId": stack.stack_id,
            "StackDriftDetectionId": str(mock_random.uuid4()),
            "StackDriftStatus": "IN_SYNC",
            "DetectionStatus": "DETECTION_COMPLETE",
            "DriftedStackResourceCount": 0,
            "Timestamp": now,
        }
        _detections(self._backend)[detection["StackDriftDetectionId"]] = detection
        stack.drift_information = {"StackDriftStatus": "IN_SYNC", "LastCheckTimestamp": now}
        return ActionResult({"StackDriftDetectionId": detection["StackDriftDetectionId"]})

    def describe_stack_drift_detection_status(self) -> ActionResult:
        detection_id = self._get_param("StackDriftDetectionId")
        detection = _detections(self._backend).get(detection_id)
        if detection is None:
            raise ValidationError(message=f"Drift detection with id {detection_id} does not exist")
        return ActionResult(detection)

    def describe_stack_resource_drifts(self) -> ActionResult:
        self._live(self._get_param("StackName"))
        return ActionResult({"StackResourceDrifts": []})

    # --- change sets ---------------------------------------------------------

    def create_change_set(self) -> ActionResult:
        kind = self._get_param("ChangeSetType", "CREATE")
        if kind not in ("CREATE", "UPDATE"):
            return super().create_change_set()  # IMPORT: moto's, as before
        name = self._get_param("StackName")
        change_set_name = self._get_param("ChangeSetName")
        validate_create_change_set(change_set_name)
        stack = _find_live(self._backend, name)
        if kind == "UPDATE":
            if stack is None:
                raise ValidationError(name)
            if stack.status not in UPDATABLE:
                raise ValidationError(message=f"Stack:{stack.stack_id} is in {stack.status} state and can not be updated.")
            self.validate_template_and_stack_body()
        elif stack is not None and stack.status != "REVIEW_IN_PROGRESS":
            raise AlreadyExistsException(f"Stack [{stack.name}] already exists")
        body = self._template_body(stack)
        template = _parse(body)
        parameters = self._change_set_parameters(template, stack)
        if stack is None:
            change_set_id, _ = self._backend.create_change_set(
                stack_name=name,
                change_set_name=change_set_name,
                template=body,
                parameters=parameters,
                description=self._get_param("Description"),
                change_set_type="CREATE",
                notification_arns=self._list("NotificationARNs"),
                tags=self._tags(),
                role_arn=self._get_param("RoleARN"),
            )
            change_set = self._backend.change_sets[change_set_id]
            # Fn::ImportValue in a stack made by a change set reads the region's exports, as in CreateStack.
            change_set.stack.cross_stack_resources = self._backend.exports
            change_set.stack.resource_map.cross_stack_resources = self._backend.exports
        else:
            change_set = ChangeSet(
                change_set_type=kind,
                change_set_id=generate_changeset_id(change_set_name, self.region, self.current_account),
                change_set_name=change_set_name,
                stack=stack,
                template=body,
                parameters=parameters,
                description=self._get_param("Description"),
                notification_arns=self._list("NotificationARNs")
                if self._given("NotificationARNs")
                else list(stack.notification_arns),
                tags=self._tags() if self._given("Tags") or kind == "CREATE" else dict(stack.tags),
                role_arn=self._get_param("RoleARN") or stack.role_arn,
            )
            self._backend.change_sets[change_set.change_set_id] = change_set
            if kind == "UPDATE":
                _review_update(stack, change_set)
            else:
                change_set.status, change_set.execution_status = "CREATE_COMPLETE", "AVAILABLE"
        change_set.capabilities = self._list("Capabilities")
        return ActionResult({"Id": change_set.change_set_id, "StackId": change_set.stack_id})

    def describe_change_set(self) -> ActionResult:
        return ActionResult(self._change_set())

    def delete_change_set(self) -> EmptyResult:
        change_set = self._change_set()
        del self._backend.change_sets[change_set.change_set_id]
        return EmptyResult()

    def list_change_sets(self) -> ActionResult:
        name = self._get_param("StackName")
        stack_ids = {s.stack_id for s in self._backend.stacks.values() if name in (s.name, s.stack_id)}
        if name in self._backend.deleted_stacks:
            stack_ids.add(name)
        if not stack_ids:
            raise ValidationError(name)
        summaries = [
            cs
            for cs in self._backend.change_sets.values()
            if cs.stack_id in stack_ids and cs.execution_status != "EXECUTE_COMPLETE"
        ]
        return ActionResult({"Summaries": summaries})

    def execute_change_set(self) -> EmptyResult:
        change_set = self._change_set()
        if change_set.execution_status != "AVAILABLE":
            status = change_set.status if change_set.status == "FAILED" else change_set.execution_status
            raise InvalidChangeSetStatusException(
                f"ChangeSet [{change_set.change_set_id}] cannot be executed in its current status of [{status}]"
            )
        stack = self._backend.stacks.get(change_set.stack_id)
        if stack is None:
            raise ValidationError(change_set.stack_id)
        # What moto's own apply will update, to update the rest of the listed resources after it.
        moto_updates: set[str] = set()
        replaced: dict[str, tuple[Any, dict[str, Any]]] = {}
        if change_set.change_set_type == "UPDATE":
            moto_updates = set(stack.resource_map.build_resource_diff(change_set.template_dict, change_set.parameters)["Modify"])
            replaced = _to_replace(stack, change_set)
        try:
            self._backend.execute_change_set(change_set_name=change_set.change_set_id, stack_name=stack.stack_id)
        except Exception as exc:
            if change_set.change_set_type != "CREATE":
                raise
            change_set.execution_status = "EXECUTE_FAILED"
            _fail_creation(self._backend, stack, exc, "ROLLBACK")
            return EmptyResult()
        if stack.status not in SUCCEEDED:
            return EmptyResult()  # failed and rolled back: the stack keeps what it had
        if change_set.change_set_type == "UPDATE":
            listed = [c.logical_resource_id for c in change_set.changes if c.action == "Modify"]
            _update_resources(stack, [n for n in listed if n not in moto_updates and n not in replaced])
            _replace_resources(stack, replaced)
        stack.parameters = dict(change_set.parameters)
        stack._parse_template()
        stack.description = stack.template_dict.get("Description")
        stack.output_map = stack._create_output_map()
        _refresh_exports(self._backend, stack)
        _apply_settings(
            stack,
            change_set.tags or {},
            change_set.notification_arns or [],
            change_set.role_arn,
            getattr(change_set, "capabilities", []),
        )
        # AWS deletes a stack's change sets once one is executed; the executed one
        # can still be described by its ARN, but is no longer listed.
        for other in [i for i, cs in self._backend.change_sets.items() if cs.stack_id == stack.stack_id and cs is not change_set]:
            del self._backend.change_sets[other]
        return EmptyResult()

    # --- templates -------------------------------------------------------------

    def validate_template(self) -> ActionResult:
        """moto fails on any cfn-lint finding, a warning included (an unused parameter), and words it
        "Stack with id <message> does not exist"; AWS's check knows no cfn-lint warnings. Only
        cfn-lint's errors fail it here, as a template format error."""
        body = self._get_param("TemplateBody")
        if self._get_param("TemplateURL"):
            body = self._get_stack_from_s3_url(self._get_param("TemplateURL"))
        errors = [m for m in validate_template_cfn_lint(body) if str(m.rule.id).startswith("E")]
        if errors:
            raise ValidationError(message=f"Template format error: {errors[0].message}")
        return ActionResult({"Parameters": [], "Capabilities": [], "DeclaredTransforms": []})

    # --- helpers ---------------------------------------------------------------

    def _given(self, name: str) -> bool:
        """Whether the request carries ``name``: boto3 sends an empty list as ``Name=``."""
        return any(key == name or key.startswith(f"{name}.") for key in self.querystring)

    def _list(self, name: str) -> list[Any]:
        """A list parameter; boto3 sends an empty list as ``Name=``, which parses as ""."""
        return list(self._get_param(name) or [])

    def _tags(self) -> dict[str, str]:
        return {item["Key"]: item["Value"] for item in self._list("Tags")}

    def _live(self, name_or_id: str) -> Stack:
        stack = _find_live(self._backend, name_or_id)
        if stack is None:
            raise ValidationError(name_or_id)
        return stack

    def _change_set(self) -> ChangeSet:
        name = self._get_param("ChangeSetName")
        stack_name = self._get_param("StackName")
        change_set = self._backend.change_sets.get(name)
        if change_set is None:
            candidates = [
                cs
                for cs in self._backend.change_sets.values()
                if cs.change_set_name == name and (not stack_name or stack_name in (cs.stack_name, cs.stack_id))
            ]
            change_set = candidates[-1] if candidates else None
        if change_set is None:
            raise ChangeSetNotFoundException(f"ChangeSet [{name}] does not exist")
        return change_set

    def _template_body(self, stack: Stack | None) -> str:
        body = self._get_param("TemplateBody")
        if self._get_param("TemplateURL"):
            body = self._get_stack_from_s3_url(self._get_param("TemplateURL"))
        elif stack is not None and self._get_bool_param("UsePreviousTemplate", False):
            body = stack.template if isinstance(stack.template, str) else json.dumps(stack.template)
        if not body:
            raise ValidationError(message="Either Template URL or Template Body must be specified.")
        return str(body)

    def _review_stack_update(self, stack: Stack) -> tuple[bool | None, list[str]]:
        """Whether an UpdateStack changes the template or parameter values (None: moto is left to tell),
        and the resources it changes that moto's update leaves alone (a parameter used through Fn::Sub)."""
        try:
            body = stack.template if self._get_bool_param("UsePreviousTemplate", False) else self._template_body(stack)
            old = _stack_template(stack)
            template = _parse(body if isinstance(body, str) else json.dumps(body))
            given = self._backend._resolve_update_parameters(instance=stack, incoming_params=self._list("Parameters"))
            old_values, new_values = _effective(old, _inputs(stack)), _effective(template, given)
            changed = {k for k, v in new_values.items() if old_values.get(k) != v}
            moto_updates = set(stack.resource_map.build_resource_diff(template, given)["Modify"])
        except Exception:  # noqa: BLE001 - moto's UpdateStack reports a bad request itself
            return None, []
        listed = _changes(stack, old, template, changed, tags_changed=False)
        unmoved = [c.logical_resource_id for c in listed if c.action == "Modify" and c.logical_resource_id not in moto_updates]
        return old != template or bool(changed), unmoved

    def _change_set_parameters(self, template: dict[str, Any], stack: Stack | None) -> dict[str, str]:
        declared = template.get("Parameters") or {}
        previous = _inputs(stack) if stack is not None else {}
        values: dict[str, str] = {}
        for item in self._list("Parameters"):
            key = item["ParameterKey"]
            if item.get("UsePreviousValue"):
                if item.get("ParameterValue"):
                    raise ValidationError(
                        message=f"Invalid input for parameter key {key}. "
                        "Cannot specify usePreviousValue as true and non empty value for a parameter"
                    )
                if key not in previous:
                    raise ValidationError(
                        message=f"Invalid input for parameter key {key}. "
                        "Cannot specify usePreviousValue as true for a parameter key not in the previous template"
                    )
                values[key] = previous[key]
            else:
                values[key] = item.get("ParameterValue", "")
        unknown = sorted(set(values) - set(declared))
        if unknown:
            raise ValidationError(message=f"Parameters: [{', '.join(unknown)}] do not exist in the template")
        missing = [k for k, slot in declared.items() if k not in values and "Default" not in (slot or {})]
        if missing:
            raise ValidationError(message=f"Parameters: [{', '.join(missing)}] must have values")
        return values


ADDITION = Addition(
    service="cloudformation",
    operations=frozenset(
        {
            "CreateStack",
            "UpdateStack",
            "DeleteStack",
            "DescribeStacks",
            "UpdateTerminationProtection",
            "ContinueUpdateRollback",
            "DetectStackDrift",
            "DescribeStackDriftDetectionStatus",
            "DescribeStackResourceDrifts",
            "CreateChangeSet",
            "DescribeChangeSet",
            "DeleteChangeSet",
            "ListChangeSets",
            "ExecuteChangeSet",
            "ValidateTemplate",
        }
    ),
    handler=CloudFormationAdditions,
)


# --- stacks -----------------------------------------------------------------


def _find_live(backend: CloudFormationBackend, name_or_id: str) -> Stack | None:
    return next((s for s in backend.stacks.values() if name_or_id in (s.name, s.stack_id)), None)


def _new_stack(backend: CloudFormationBackend, before: set[str], name: str) -> Stack | None:
    return next((s for i, s in backend.stacks.items() if i not in before and s.name == name), None)


def _detections(backend: CloudFormationBackend) -> dict[str, dict[str, Any]]:
    """Drift detections by id, kept on moto's backend so moto's reset drops them."""
    detections: dict[str, dict[str, Any]] = vars(backend).setdefault("drift_detections", {})
    return detections


def _settings_differ(stack: Stack, tags: dict[str, str], notifications: list[str], role_arn: str | None) -> bool:
    return (
        dict(tags) != dict(stack.tags or {})
        or sorted(notifications) != sorted(stack.notification_arns or [])
        or (role_arn or None) != (stack.role_arn or None)
    )


def _apply_settings(
    stack: Stack, tags: dict[str, str], notifications: list[str], role_arn: str | None, capabilities: list[str]
) -> None:
    stack.tags = dict(tags)
    stack.notification_arns = list(notifications)
    stack.role_arn = role_arn or None
    stack.capabilities = list(capabilities)
    stack.last_updated_time = datetime.now(UTC)


def _refresh_exports(backend: CloudFormationBackend, stack: Stack) -> None:
    """The region's exports as the stack's outputs now say (moto registers them only in CreateStack)."""
    for name in [n for n, e in backend.exports.items() if e.exporting_stack_id == stack.stack_id]:
        del backend.exports[name]
    for export in stack.exports:
        backend.exports[export.name] = export


def _template_error(exc: Exception) -> bool:
    """A template error moto finds while creating resources: AWS refuses those before creating the stack."""
    return isinstance(exc, ValidationError) and str(getattr(exc, "message", "")).startswith("Template")


def _discard(backend: CloudFormationBackend, stack: Stack) -> None:
    """Undo a stack moto half-created before refusing the request."""
    try:
        stack.resource_map.delete()
    except Exception:  # noqa: BLE001 - best effort: the request fails anyway
        pass
    backend.stacks.pop(stack.stack_id, None)
    for name in [n for n, e in backend.exports.items() if e.exporting_stack_id == stack.stack_id]:
        del backend.exports[name]


def _fail_creation(backend: CloudFormationBackend, stack: Stack, exc: Exception, on_failure: str) -> None:
    """What AWS does when a resource fails to create: CREATE_FAILED, then rollback (or as OnFailure says)."""
    resource_map = stack.resource_map
    if stack.status == "CREATE_PENDING":
        stack._add_stack_event("CREATE_IN_PROGRESS", resource_status_reason="User Initiated")
    failed = _failed_resource(stack)
    reason = _reason(exc)
    resources = dict(resource_map._resource_json_map)
    if failed is not None:
        stack.events.append(_event(stack, failed, resources[failed].get("Type", ""), "CREATE_FAILED", reason))
    summary = f"The following resource(s) failed to create: [{failed}]. " if failed else f"{reason}. "
    if on_failure == "DO_NOTHING":
        stack._add_stack_event("CREATE_FAILED", resource_status_reason=summary + "Rollback disabled.")
        stack.status = "CREATE_FAILED"
        return
    stack._add_stack_event("ROLLBACK_IN_PROGRESS", resource_status_reason=summary + "Rollback requested by user.")
    created = [n for n in resources if n in resource_map._parsed_resources]
    try:
        resource_map.delete()
    except Exception:  # noqa: BLE001 - a resource moto cannot delete stays behind, as DELETE_SKIPPED would
        pass
    for name in [*reversed(created), *([failed] if failed else [])]:
        stack.events.append(_event(stack, name, resources[name].get("Type", ""), "DELETE_COMPLETE", None))
    # Nothing is left: no resources (moto's map would create them again when listed) and no outputs.
    resource_map._resource_json_map = {}
    stack.output_map = OutputMap(resource_map, {}, stack.stack_id)
    for name in [n for n, e in backend.exports.items() if e.exporting_stack_id == stack.stack_id]:
        del backend.exports[name]
    stack.status = "ROLLBACK_COMPLETE"
    stack._add_stack_event("ROLLBACK_COMPLETE")
    if on_failure == "DELETE":
        backend.delete_stack(stack.stack_id)


def _failed_resource(stack: Stack) -> str | None:
    """The resource moto was creating when it failed: the first one not made, or what it was making first."""
    resource_map = stack.resource_map
    resources = resource_map._resource_json_map
    try:
        # moto creates in this order (DependsOn first); a resource's references are made on the way.
        order = resource_map._ResourceMap__get_resources_in_dependency_order()  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001
        order = list(resources)

    def pending(name: str) -> bool:
        if name not in resources or name in resource_map._parsed_resources:
            return False
        condition = resources[name].get("Condition")
        try:
            return condition is None or bool(resource_map.lazy_condition_map[condition])
        except Exception:  # noqa: BLE001
            return True

    candidate = next((n for n in order if pending(n)), None)
    seen: set[str] = set()
    while candidate is not None and candidate not in seen:
        seen.add(candidate)
        deps = [t for t, _ in _references(resources[candidate].get("Properties"))]
        depends_on = resources[candidate].get("DependsOn") or []
        deps += [depends_on] if isinstance(depends_on, str) else list(depends_on)
        following = next((d for d in deps if pending(d) and d not in seen), None)
        if following is None:
            break
        candidate = following
    return candidate


def _reason(exc: Exception) -> str:
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    code = getattr(exc, "code", None) or getattr(exc, "error_type", None)
    return f"{message} (Error Code: {code})" if isinstance(code, str) and code else str(message)


def _event(stack: Stack, logical_id: str, resource_type: str, status: str, reason: str | None) -> Event:
    parsed = stack.resource_map._parsed_resources.get(logical_id)
    physical = getattr(parsed, "physical_resource_id", "") or ""
    return Event(stack.stack_id, stack.name, logical_id, physical, resource_type, status, reason, None)


def _update_resources(stack: Stack, names: list[str]) -> None:
    """Update resources the change set lists but moto's apply leaves alone, as moto updates the others."""
    resource_map = stack.resource_map
    for name in names:
        resource_json = resource_map._resource_json_map.get(name)
        if resource_json is None or name not in resource_map._parsed_resources:
            continue
        updated = parse_and_update_resource(
            name, resource_json, resource_map, account_id=stack.account_id, region_name=stack.region_name
        )
        if updated is not None:
            resource_map._parsed_resources[name] = updated


def _to_replace(stack: Stack, change_set: ChangeSet) -> dict[str, tuple[Any, dict[str, Any]]]:
    """Logical id -> (the resource, its template entry) of what the change set replaces, read before it runs."""
    parsed = stack.resource_map._parsed_resources
    old_resources = _stack_template(stack).get("Resources") or {}
    return {
        c.logical_resource_id: (parsed[c.logical_resource_id], old_resources.get(c.logical_resource_id) or {})
        for c in change_set.changes
        if c.action == "Modify" and getattr(c, "replacement", None) == "True" and parsed.get(c.logical_resource_id) is not None
    }


def _replace_resources(stack: Stack, replaced: dict[str, tuple[Any, dict[str, Any]]]) -> None:
    """Make anew each replaced resource that moto updated in place (or could not update), then delete
    the old one unless the new template's UpdateReplacePolicy retains it, as AWS replaces. A resource
    moto made anew itself is left as it is; one that cannot be made (a custom name still in use) keeps
    the old resource."""
    resource_map = stack.resource_map
    for name, (old, old_json) in replaced.items():
        current = resource_map._parsed_resources.get(name)
        if current is not None and current is not old and current.physical_resource_id != old.physical_resource_id:
            continue
        resource_json = resource_map._resource_json_map.get(name)
        if resource_json is None:
            continue
        try:
            made = parse_and_create_resource(name, resource_json, resource_map, stack.account_id, stack.region_name)
        except Exception:  # noqa: BLE001 - moto refused it (a name in use): the old resource stays
            resource_map._parsed_resources[name] = old
            continue
        resource_map._parsed_resources[name] = made
        if resource_json.get("UpdateReplacePolicy") != "Retain":
            resource_map._delete_resource(old, old_json)


# --- change set review ------------------------------------------------------


def _parse(body: str) -> dict[str, Any]:
    try:
        template = Stack.parse_template(body)
    except Exception as exc:  # noqa: BLE001 - YAML and JSON both refused it
        raise ValidationError(message=f"Template format error: {exc}") from None
    if not isinstance(template, dict) or not template.get("Resources"):
        raise ValidationError(message="Template format error: At least one Resources member must be defined.")
    return template


def _stack_template(stack: Stack) -> dict[str, Any]:
    """The stack's current template, parsed afresh (moto changes its parsed copies while creating resources)."""
    if isinstance(stack.template, dict):
        return copy.deepcopy(stack.template)
    return Stack.parse_template(stack.template) or {}


def _inputs(stack: Stack) -> dict[str, str]:
    """The parameter values the stack was last given, as strings."""
    inputs = getattr(stack.resource_map, "input_parameters", None) or stack.parameters or {}
    return {k: _text(v) for k, v in inputs.items()}


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_text(v) for v in value)
    return str(value)


def _number(text: str) -> str:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        return text
    return str(int(value)) if value == value.to_integral_value() else format(value.normalize(), "f")


def _effective(template: dict[str, Any], given: dict[str, str]) -> dict[str, str | None]:
    """Each declared parameter's value (given, else its default) in one canonical form."""
    values: dict[str, str | None] = {}
    for key, slot in (template.get("Parameters") or {}).items():
        slot = slot or {}
        value = given[key] if key in given else slot.get("Default")
        if value is None:
            values[key] = None
            continue
        text = _text(value)
        kind = str(slot.get("Type", "String"))
        if kind == "Number" or kind == "List<Number>":
            text = ",".join(_number(part) for part in text.split(","))
        values[key] = text
    return values


def _review_update(stack: Stack, change_set: ChangeSet) -> None:
    """Decide an UPDATE change set's status and Changes by comparing it with the stack, as AWS does."""
    old = _stack_template(stack)
    new = copy.deepcopy(change_set.template_dict)
    old_values = _effective(old, _inputs(stack))
    new_values = _effective(new, change_set.parameters)
    changed_parameters = {k for k, v in new_values.items() if old_values.get(k) != v}
    tags_changed = dict(change_set.tags or {}) != dict(stack.tags or {})
    changed = (
        old != new
        or bool(changed_parameters)
        or _settings_differ(stack, change_set.tags or {}, change_set.notification_arns or [], change_set.role_arn)
    )
    change_set.changes = _changes(stack, old, new, changed_parameters, tags_changed)
    if changed:
        change_set.status, change_set.execution_status, change_set.status_reason = "CREATE_COMPLETE", "AVAILABLE", None
    else:
        change_set.status, change_set.execution_status, change_set.status_reason = "FAILED", "UNAVAILABLE", NO_CHANGES


def _references(node: Any) -> Iterator[tuple[str, str]]:
    """(logical name, attribute) of every Ref ("" attribute), Fn::GetAtt and Fn::Sub variable in ``node``."""
    if isinstance(node, list):
        for item in node:
            yield from _references(item)
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key == "Ref" and isinstance(value, str):
            yield value, ""
        elif key == "Fn::GetAtt":
            parts = value.split(".", 1) if isinstance(value, str) else value
            if isinstance(parts, list) and parts and isinstance(parts[0], str):
                yield parts[0], str(parts[1]) if len(parts) > 1 else ""
        elif key == "Fn::Sub":
            text, local = (value, {}) if isinstance(value, str) else (value[0], value[1]) if len(value) == 2 else ("", {})
            for match in _SUB_VARIABLE.finditer(str(text)):
                target, _, attribute = match.group(1).strip().partition(".")
                if target not in (local or {}):
                    yield target, attribute
            yield from _references(local)
        else:
            yield from _references(value)


@functools.lru_cache(maxsize=512)
def _schema(resource_type: str) -> tuple[frozenset[str], frozenset[str], bool] | None:
    """(create-only properties, those with create-only parts, taggable) from cfn-lint's resource schemas."""
    try:
        from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

        schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema("us-east-1", resource_type).schema
    except Exception:  # noqa: BLE001 - cfn-lint missing, or a type it does not know
        return None
    paths = [p.split("/") for p in schema.get("createOnlyProperties", []) if p.startswith("/properties/")]
    whole = frozenset(p[2] for p in paths if len(p) == 3)
    parts = frozenset(p[2] for p in paths if len(p) > 3)
    taggable = bool((schema.get("tagging") or {}).get("taggable", "Tags" in schema.get("properties", {})))
    return whole, parts, taggable


def _recreation(resource_type: str, prop: str) -> str:
    schema = _schema(resource_type)
    if schema is None:
        return "Conditionally"
    whole, parts, _ = schema
    return "Always" if prop in whole else "Conditionally" if prop in parts else "Never"


def _detail(
    attribute: str, name: str | None, recreation: str, source: str, entity: str | None, evaluation: str
) -> dict[str, Any]:
    target: dict[str, Any] = {"Attribute": attribute, "RequiresRecreation": recreation}
    if name is not None:
        target["Name"] = name
    detail: dict[str, Any] = {"Target": target, "Evaluation": evaluation, "ChangeSource": source}
    if entity is not None:
        detail["CausingEntity"] = entity
    return detail


def _replacement(details: list[dict[str, Any]]) -> str:
    worst = "False"
    for detail in details:
        recreation = detail["Target"]["RequiresRecreation"]
        if recreation == "Always" and detail["Evaluation"] == "Static":
            return "True"
        if recreation != "Never":
            worst = "Conditional"
    return worst


def _changes(
    stack: Stack, old: dict[str, Any], new: dict[str, Any], changed_parameters: set[str], tags_changed: bool
) -> list[Change]:
    """The Changes of an UPDATE change set, from the two templates (see the module docstring)."""
    old_resources: dict[str, Any] = old.get("Resources") or {}
    new_resources: dict[str, Any] = new.get("Resources") or {}
    details: dict[str, list[dict[str, Any]]] = {}
    for name, resource in new_resources.items():
        before = old_resources.get(name)
        if before is None:
            continue
        kind = str(resource.get("Type", ""))
        found: list[dict[str, Any]] = []
        if before.get("Type") != kind:
            found.append(_detail("Properties", None, "Always", "DirectModification", None, "Static"))
        for attribute in _ATTRIBUTES:
            if before.get(attribute) != resource.get(attribute):
                found.append(_detail(attribute, None, "Never", "DirectModification", None, "Static"))
        old_props, new_props = before.get("Properties") or {}, resource.get("Properties") or {}
        for prop in [*new_props, *[p for p in old_props if p not in new_props]]:
            if old_props.get(prop) != new_props.get(prop):
                found.append(_detail("Properties", prop, _recreation(kind, prop), "DirectModification", None, "Static"))
                continue
            for parameter in sorted({t for t, a in _references(new_props[prop]) if not a and t in changed_parameters}):
                found.append(_detail("Properties", prop, _recreation(kind, prop), "ParameterReference", parameter, "Static"))
        schema = _schema(kind)
        if tags_changed and schema is not None and schema[2]:
            found.append(_detail("Tags", None, "Never", "DirectModification", None, "Static"))
        if found or before != resource:
            details[name] = found
    _cascade(new_resources, old_resources, details)

    changes: list[Change] = []
    parsed = stack.resource_map._parsed_resources
    for name, resource in new_resources.items():
        if name not in old_resources:
            changes.append(_change("Add", name, str(resource.get("Type", "")), None, None, []))
        elif name in details:
            physical = getattr(parsed.get(name), "physical_resource_id", None)
            replacement = _replacement(details[name])
            change = _change("Modify", name, str(resource.get("Type", "")), physical, replacement, details[name])
            if replacement != "False":
                change.policy_action = "ReplaceAnd" + _policy(resource, "UpdateReplacePolicy")
            changes.append(change)
    for name, resource in old_resources.items():
        if name not in new_resources:
            physical = getattr(parsed.get(name), "physical_resource_id", None)
            change = _change("Remove", name, str(resource.get("Type", "")), physical, None, [])
            change.policy_action = _policy(resource, "DeletionPolicy")
            changes.append(change)
    return changes


def _policy(resource: dict[str, Any], attribute: str) -> str:
    """What a resource's DeletionPolicy / UpdateReplacePolicy does to it: Delete, Retain or Snapshot
    (RetainExceptOnCreate retains a resource that exists)."""
    policy = resource.get(attribute)
    if policy == "RetainExceptOnCreate":
        return "Retain"
    return policy if policy in ("Retain", "Snapshot") else "Delete"


def _cascade(new_resources: dict[str, Any], old_resources: dict[str, Any], details: dict[str, list[dict[str, Any]]]) -> None:
    """Properties referring to a resource that is replaced change too, once it is (Dynamic)."""
    while True:
        replaced = {n for n, d in details.items() if _replacement(d) != "False"}
        added = False
        for name, resource in new_resources.items():
            if name not in old_resources:
                continue
            found = details.get(name, [])
            kind = str(resource.get("Type", ""))
            for prop, value in (resource.get("Properties") or {}).items():
                for target, attribute in _references(value):
                    if target not in replaced or target == name:
                        continue
                    if attribute:
                        source, entity = "ResourceAttribute", f"{target}.{attribute}"
                    else:
                        source, entity = "ResourceReference", target
                    if any(d.get("CausingEntity") == entity and d["Target"].get("Name") == prop for d in found):
                        continue
                    found.append(_detail("Properties", prop, _recreation(kind, prop), source, entity, "Dynamic"))
                    added = True
            if found:
                details[name] = found
        if not added:
            return


def _change(
    action: str, name: str, resource_type: str, physical: str | None, replacement: str | None, details: list[dict[str, Any]]
) -> Change:
    change = Change(action=action, logical_resource_id=name, resource_type=resource_type)
    change.physical_resource_id = physical
    if action == "Modify":
        change.replacement = replacement
        attributes = {d["Target"]["Attribute"] for d in details}
        change.scope = [s for s in _SCOPES if s in attributes]
        change.details = details
    return change
