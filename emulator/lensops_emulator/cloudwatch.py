"""CloudWatch additions: composite alarms, and DescribeAlarms as AWS pages and filters it.

Part of the embedded AWS emulator used by tests and ``lensops demo`` (moto in
server mode plus what moto lacks). moto 5.2.5 has no PutCompositeAlarm, and its
DescribeAlarms returns one unsorted page of every alarm, ignoring AlarmTypes,
MaxRecords and NextToken. Written from the CloudWatch API reference:

- ``PutCompositeAlarm`` creates or replaces a composite alarm, kept in moto's
  CloudWatch backend next to the metric alarms, so moto's tagging, action
  enabling and SetAlarmState work on it. A new composite alarm is evaluated
  at once; an update keeps its state, re-evaluates it and ignores Tags.
  Alarms named in the rule must exist.
- A composite alarm's state follows its rule: when an alarm's state changes
  (SetAlarmState), the composite alarms naming it are re-evaluated, and so on
  up. SetAlarmState on a composite alarm itself holds until a child changes.
- ``DescribeAlarms`` returns metric alarms only unless ``AlarmTypes`` says
  otherwise, sorted by name, in pages of ``MaxRecords`` (default 50, at most
  100) continued by ``NextToken``; more than 100 ``AlarmNames`` is a
  ValidationError. AlarmNames, AlarmNamePrefix, StateValue and ActionPrefix
  (matched against AlarmActions, as moto does) filter together.
- ``DeleteAlarms`` refuses, deleting nothing, more than 100 names, more than
  one composite alarm, or an alarm a composite alarm depends on; it deletes
  the alarms' tags with them (moto kept them for the next alarm of the name).
"""

from __future__ import annotations

import base64
import binascii
import threading
from collections.abc import Iterable
from typing import Any

from moto.cloudwatch.exceptions import CloudWatchException, InvalidParameterCombination, ValidationError
from moto.cloudwatch.models import Alarm, CloudWatchBackend
from moto.cloudwatch.responses import CloudWatchResponse
from moto.core.responses import ActionResult, EmptyResult

from . import alarm_rule
from .dispatch import Addition

DEFAULT_MAX_RECORDS = 50
MAX_RECORDS = 100
MAX_ALARM_NAMES = 100
_TOKEN_PREFIX = "alarms-after:"
_METRIC_SETTINGS = (
    "namespace",
    "metric_name",
    "metric_data_queries",
    "comparison_operator",
    "evaluation_periods",
    "datapoints_to_alarm",
    "period",
    "threshold",
    "statistic",
    "extended_statistic",
    "unit",
    "treat_missing_data",
    "evaluate_low_sample_count_percentile",
    "threshold_metric_id",
)

# Composite alarm states depend on other alarms' states; one lock keeps each
# change and the re-evaluations it causes together across server threads.
_STATE_LOCK = threading.RLock()


class InvalidNextToken(CloudWatchException):
    code = "InvalidNextToken"


class CompositeAlarm(Alarm):
    """A composite alarm, stored in ``CloudWatchBackend.alarms`` like a metric alarm.

    moto tells the two apart by ``rule``, which only composite alarms have.
    """

    def __init__(
        self,
        backend: CloudWatchBackend,
        name: str,
        rule: str,
        expression: alarm_rule.Expr,
        description: str | None,
        actions_enabled: bool | None,
        alarm_actions: list[str],
        ok_actions: list[str],
        insufficient_data_actions: list[str],
        actions_suppressor: str | None,
        actions_suppressor_wait_period: int | None,
        actions_suppressor_extension_period: int | None,
    ) -> None:
        # moto's Alarm types these as required: a composite alarm has no metric
        # settings, and may have no description.
        loosely_typed: dict[str, Any] = {
            **dict.fromkeys(_METRIC_SETTINGS),
            "description": description,
            "actions_enabled": actions_enabled,
        }
        super().__init__(
            account_id=backend.account_id,
            region_name=backend.region_name,
            name=name,
            rule=rule,
            dimensions=[],
            alarm_actions=alarm_actions,
            ok_actions=ok_actions,
            insufficient_data_actions=insufficient_data_actions,
            **loosely_typed,
        )
        self.expression = expression
        self.actions_suppressor = actions_suppressor
        self.actions_suppressor_wait_period = actions_suppressor_wait_period
        self.actions_suppressor_extension_period = actions_suppressor_extension_period
        self.state_value = "INSUFFICIENT_DATA"

    # moto's serializer looks attributes up by the API's member names.
    @property
    def alarm_name(self) -> str:
        return self.name

    @property
    def alarm_rule(self) -> str | None:
        return self.rule

    @property
    def alarm_description(self) -> str:
        return self.description

    @property
    def alarm_configuration_updated_timestamp(self) -> object:
        return self.configuration_updated_timestamp

    @property
    def state_transitioned_timestamp(self) -> object:
        return self.state_updated_timestamp

    def keep_state_of(self, previous: Alarm) -> None:
        """Carry the state and its history over from the alarm this one replaces."""
        self.state_value = previous.state_value
        self.state_reason = previous.state_reason
        self.state_reason_data = previous.state_reason_data
        self.state_updated_timestamp = previous.state_updated_timestamp
        self.history = previous.history


class CloudWatchAdditions(CloudWatchResponse):
    """CloudWatch operations moto lacks or gets wrong; the rest stay moto's."""

    def put_composite_alarm(self) -> ActionResult:
        backend = self.cloudwatch_backend
        name = self._get_param("AlarmName")
        rule = self._get_param("AlarmRule")
        try:
            expression = alarm_rule.parse(rule)
        except alarm_rule.AlarmRuleError as error:
            raise ValidationError(str(error)) from error
        with _STATE_LOCK:
            missing = [ref for ref in alarm_rule.alarm_names(expression) if _resolve(backend, ref) not in backend.alarms]
            if missing:
                raise ValidationError(
                    f"Could not save the composite alarm as alarms [{', '.join(missing)}] in the alarm rule do not exist"
                )
            alarm = CompositeAlarm(
                backend=backend,
                name=name,
                rule=rule,
                expression=expression,
                description=self._get_param("AlarmDescription"),
                actions_enabled=self._get_bool_param("ActionsEnabled"),
                alarm_actions=self._get_param("AlarmActions", []),
                ok_actions=self._get_param("OKActions", []),
                insufficient_data_actions=self._get_param("InsufficientDataActions", []),
                actions_suppressor=self._get_param("ActionsSuppressor"),
                actions_suppressor_wait_period=self._get_param("ActionsSuppressorWaitPeriod"),
                actions_suppressor_extension_period=self._get_param("ActionsSuppressorExtensionPeriod"),
            )
            previous = backend.alarms.get(name)
            if previous is None:
                backend.tagger.tag_resource(alarm.alarm_arn, self._get_param("Tags", []))
            else:
                alarm.keep_state_of(previous)
            backend.alarms[name] = alarm
            _evaluate(backend, alarm, visited=set())
        return EmptyResult()

    def describe_alarms(self) -> ActionResult:
        names: list[str] = self._get_param("AlarmNames", [])
        _check_alarm_names(names)
        max_records = self._get_param("MaxRecords") or DEFAULT_MAX_RECORDS
        if max_records > MAX_RECORDS:
            raise ValidationError(
                f"1 validation error detected: Value '{max_records}' at 'maxRecords' failed to satisfy "
                f"constraint: Member must have value less than or equal to {MAX_RECORDS}"
            )
        for unsupported in ("ChildrenOfAlarmName", "ParentsOfAlarmName"):
            if self._get_param(unsupported):
                raise ValidationError(f"{unsupported} is not supported by the lensops AWS emulator")
        prefix = self._get_param("AlarmNamePrefix")
        if names and prefix:
            raise InvalidParameterCombination("AlarmNamePrefix and AlarmNames cannot be specified together")
        types = set(self._get_param("AlarmTypes") or ["MetricAlarm"])
        state = self._get_param("StateValue")
        action_prefix = self._get_param("ActionPrefix")
        after = _decode_token(self._get_param("NextToken"))

        def wanted(alarm: Alarm) -> bool:
            return (
                ("CompositeAlarm" if _is_composite(alarm) else "MetricAlarm") in types
                and (not prefix or alarm.name.startswith(prefix))
                and (not state or alarm.state_value == state)
                and (not action_prefix or any(a.startswith(action_prefix) for a in alarm.alarm_actions))
                and (after is None or alarm.name > after)
            )

        alarms = self.cloudwatch_backend.alarms
        # By name: look the (at most 100) names up rather than scan every alarm.
        candidates = [alarms.get(name) for name in set(names)] if names else list(alarms.values())
        selected = sorted((a for a in candidates if a is not None and wanted(a)), key=lambda a: a.name)
        page = selected[:max_records]
        result: dict[str, object] = {
            "MetricAlarms": [a for a in page if not _is_composite(a)],
            "CompositeAlarms": [a for a in page if _is_composite(a)],
        }
        if len(selected) > len(page):
            result["NextToken"] = _encode_token(page[-1].name)
        return ActionResult(result)

    def delete_alarms(self) -> ActionResult:
        backend = self.cloudwatch_backend
        names: list[str] = self._get_param("AlarmNames", [])
        _check_alarm_names(names)
        with _STATE_LOCK:
            existing = [backend.alarms[name] for name in names if name in backend.alarms]
            if sum(_is_composite(alarm) for alarm in existing) > 1:
                raise ValidationError("A DeleteAlarms request can delete at most one composite alarm.")
            depended_on = [alarm.name for alarm in existing if _parents(backend, alarm.name)]
            if depended_on:
                pronoun = "it" if len(depended_on) == 1 else "them"
                raise ValidationError(
                    f"Cannot delete {','.join(depended_on)} as there are composite alarm(s) depending on {pronoun}."
                )
            backend.delete_alarms(names)
            for alarm in existing:  # moto keeps a deleted alarm's tags: a new alarm of its name would inherit them
                backend.tagger.delete_all_tags_for_resource(alarm.alarm_arn)
        return EmptyResult()

    def set_alarm_state(self) -> ActionResult:
        backend = self.cloudwatch_backend
        name = self._get_param("AlarmName")
        with _STATE_LOCK:
            before = backend.alarms[name].state_value if name in backend.alarms else None
            result = super().set_alarm_state()
            if backend.alarms[name].state_value != before:
                _evaluate_parents(backend, name, visited={name})
        return result


ADDITION = Addition(
    service="cloudwatch",
    operations=frozenset({"PutCompositeAlarm", "DescribeAlarms", "DeleteAlarms", "SetAlarmState"}),
    handler=CloudWatchAdditions,
)


def _is_composite(alarm: Alarm) -> bool:
    return alarm.rule is not None


def _resolve(backend: CloudWatchBackend, ref: str) -> str:
    """The alarm name an AlarmRule reference means: a name, or this account and region's alarm ARN."""
    prefix = f"arn:{backend.partition}:cloudwatch:{backend.region_name}:{backend.account_id}:alarm:"
    return ref.removeprefix(prefix)


def _parents(backend: CloudWatchBackend, name: str) -> list[CompositeAlarm]:
    return [
        alarm
        for alarm in list(backend.alarms.values())
        if isinstance(alarm, CompositeAlarm)
        and name in (_resolve(backend, ref) for ref in alarm_rule.alarm_names(alarm.expression))
    ]


def _evaluate(backend: CloudWatchBackend, alarm: CompositeAlarm, visited: set[str]) -> None:
    """Set ``alarm``'s state from its rule; if it changed, re-evaluate its parents too."""
    visited.add(alarm.name)

    def state_of(ref: str) -> str | None:
        child = backend.alarms.get(_resolve(backend, ref))
        return child.state_value if child else None

    holds = alarm_rule.evaluate(alarm.expression, state_of)
    state = "ALARM" if holds else "OK"
    if state != alarm.state_value:
        alarm.update_state(f"Alarm rule evaluated to {'TRUE' if holds else 'FALSE'}", "{}", state)
        _evaluate_parents(backend, alarm.name, visited)


def _evaluate_parents(backend: CloudWatchBackend, name: str, visited: set[str]) -> None:
    # visited stops the walk on cycles, which AWS allows composite alarms to form.
    for parent in _parents(backend, name):
        if parent.name not in visited:
            _evaluate(backend, parent, visited)


def _check_alarm_names(names: Iterable[str]) -> None:
    names = list(names)
    if len(names) > MAX_ALARM_NAMES:
        raise ValidationError(
            f"1 validation error detected: Value '[{', '.join(names)}]' at 'alarmNames' failed to satisfy "
            f"constraint: Member must have length less than or equal to {MAX_ALARM_NAMES}"
        )


def _encode_token(last_name: str) -> str:
    return base64.urlsafe_b64encode((_TOKEN_PREFIX + last_name).encode()).decode()


def _decode_token(token: str | None) -> str | None:
    """The name of the last alarm of the previous page, or None for the first page."""
    if not token:
        return None
    try:
        decoded = base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeDecodeError) as error:
        raise InvalidNextToken(f"Invalid NextToken: {token}") from error
    if not decoded.startswith(_TOKEN_PREFIX):
        raise InvalidNextToken(f"Invalid NextToken: {token}")
    return decoded.removeprefix(_TOKEN_PREFIX)
