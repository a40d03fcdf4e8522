"""CloudWatch: MetricAlarm, CompositeAlarm and Dashboard.

Alarms are read 100 names per ``DescribeAlarms`` call, and the tags of each
batch's alarms with one ``GetResources(ResourceARNList=...)``; batches run
concurrently, so neither the reads nor the tags wait on a serial page token.
For N alarms of a kind: ceil(N/100) ``DescribeAlarms`` and as many
``GetResources`` (none for a batch that found no alarm). ``PutMetricAlarm``
and ``PutCompositeAlarm`` replace a whole alarm, so an update is one put
(plus tag calls when tags changed). Dashboards have no batch read: one
``GetDashboard`` each.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import Field, model_validator

from controller.alarms import BATCH, describe_alarms
from controller.apishape import from_api, map_to_tags, shape
from controller.diff import Change
from controller.errors import PermanentError
from controller.kinds import Desired, Draft, Live, Reconciler
from controller.manifests.types import Spec
from reconcilers.tags import TagApi, chunks, only_tags_changed, tags_of

Statistic = Literal["SampleCount", "Average", "Sum", "Minimum", "Maximum"]
ComparisonOperator = Literal[
    "GreaterThanOrEqualToThreshold",
    "GreaterThanThreshold",
    "LessThanThreshold",
    "LessThanOrEqualToThreshold",
    "LessThanLowerOrGreaterThanUpperThreshold",
    "LessThanLowerThreshold",
    "GreaterThanUpperThreshold",
]

TAGS = TagApi(arn="ResourceARN")
"""How cloudwatch spells its tag writes."""


class Metric(Spec):
    namespace: str | None = None
    metricName: str | None = None
    dimensions: dict[str, str] = Field(default_factory=dict)


class MetricStat(Spec):
    metric: Metric
    period: int = Field(ge=1)
    stat: str
    unit: str | None = None


class MetricDataQuery(Spec):
    id: str
    metricStat: MetricStat | None = None
    expression: str | None = None
    label: str | None = None
    returnData: bool | None = None
    period: int | None = None
    accountId: str | None = None


class MetricAlarmSpec(Spec):
    """PutMetricAlarm parameters; ``dimensions`` and ``tags`` as maps."""

    alarmName: str | None = None
    alarmDescription: str | None = None
    actionsEnabled: bool = True
    okActions: list[str] = Field(default_factory=list)
    alarmActions: list[str] = Field(default_factory=list)
    insufficientDataActions: list[str] = Field(default_factory=list)
    metricName: str | None = None
    namespace: str | None = None
    statistic: Statistic | None = None
    extendedStatistic: str | None = None
    dimensions: dict[str, str] = Field(default_factory=dict)
    period: int | None = Field(default=None, ge=1)
    unit: str | None = None
    evaluationPeriods: int = Field(ge=1)
    datapointsToAlarm: int | None = Field(default=None, ge=1)
    threshold: float | None = None
    comparisonOperator: ComparisonOperator
    treatMissingData: Literal["breaching", "notBreaching", "ignore", "missing"] | None = None
    evaluateLowSampleCountPercentile: Literal["evaluate", "ignore"] | None = None
    metrics: list[MetricDataQuery] | None = None
    thresholdMetricId: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_metric_form(self) -> "MetricAlarmSpec":
        if self.metrics:
            if self.metricName or self.namespace or self.statistic or self.extendedStatistic:
                raise ValueError("give either metrics or metricName/namespace/statistic, not both")
        else:
            if not self.metricName or not self.namespace:
                raise ValueError("metricName and namespace are required (or metrics)")
            if bool(self.statistic) == bool(self.extendedStatistic):
                raise ValueError("give exactly one of statistic and extendedStatistic")
            if self.period is None:
                raise ValueError("period is required with metricName")
        if self.threshold is None and not self.thresholdMetricId:
            raise ValueError("threshold is required (or thresholdMetricId for anomaly detection)")
        return self


class CompositeAlarmSpec(Spec):
    """PutCompositeAlarm parameters."""

    alarmName: str | None = None
    alarmRule: str
    alarmDescription: str | None = None
    actionsEnabled: bool = True
    alarmActions: list[str] = Field(default_factory=list)
    okActions: list[str] = Field(default_factory=list)
    insufficientDataActions: list[str] = Field(default_factory=list)
    actionsSuppressor: str | None = None
    actionsSuppressorWaitPeriod: int | None = None
    actionsSuppressorExtensionPeriod: int | None = None
    tags: dict[str, str] = Field(default_factory=dict)


class DashboardSpec(Spec):
    """PutDashboard parameters; ``body`` is a map, sent as JSON."""

    dashboardName: str | None = None
    body: dict[str, Any]


_RULE_ALARM = re.compile(r'(?:ALARM|OK|INSUFFICIENT_DATA)\s*\(\s*("[^"]+"|[^\s()]+)\s*\)')


def _dims(value: Any) -> dict[str, str]:
    if isinstance(value, list):
        return {d["name"]: d.get("value", "") for d in value}
    return dict(value or {})


def _metric_queries(queries: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    if not queries:
        return None
    out = []
    for q in queries:
        q = {k: v for k, v in q.items() if v is not None}
        stat = q.get("metricStat")
        if stat:
            stat = {k: v for k, v in stat.items() if v is not None}
            metric = {k: v for k, v in stat["metric"].items() if v is not None}
            metric["dimensions"] = _dims(metric.get("dimensions"))
            stat["metric"] = metric
            q["metricStat"] = stat
        q.setdefault("returnData", True)
        out.append(q)
    return out


def _api_queries(queries: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    if not queries:
        return None
    out = []
    for q in queries:
        item: dict[str, Any] = {"Id": q["id"], "ReturnData": q.get("returnData", True)}
        for key, api in (("expression", "Expression"), ("label", "Label"), ("period", "Period"), ("accountId", "AccountId")):
            if q.get(key) is not None:
                item[api] = q[key]
        stat = q.get("metricStat")
        if stat:
            metric = stat["metric"]
            api_metric: dict[str, Any] = {
                "Dimensions": [{"Name": k, "Value": v} for k, v in sorted(metric.get("dimensions", {}).items())]
            }
            if metric.get("namespace"):
                api_metric["Namespace"] = metric["namespace"]
            if metric.get("metricName"):
                api_metric["MetricName"] = metric["metricName"]
            item["MetricStat"] = {"Metric": api_metric, "Period": stat["period"], "Stat": stat["stat"]}
            if stat.get("unit"):
                item["MetricStat"]["Unit"] = stat["unit"]
        out.append(item)
    return out


def _metric_alarm_state(d: dict[str, Any]) -> dict[str, Any]:
    """The canonical comparable form of a metric alarm, from a spec or from DescribeAlarms."""
    evaluation = d.get("evaluationPeriods")
    return {
        "alarmDescription": d.get("alarmDescription") or "",
        "actionsEnabled": d.get("actionsEnabled", True),
        "okActions": sorted(d.get("okActions") or []),
        "alarmActions": sorted(d.get("alarmActions") or []),
        "insufficientDataActions": sorted(d.get("insufficientDataActions") or []),
        "metricName": d.get("metricName"),
        "namespace": d.get("namespace"),
        "statistic": d.get("statistic"),
        "extendedStatistic": d.get("extendedStatistic"),
        "dimensions": _dims(d.get("dimensions")),
        "period": d.get("period"),
        "unit": d.get("unit"),
        "evaluationPeriods": evaluation,
        "datapointsToAlarm": d.get("datapointsToAlarm") or evaluation,
        "threshold": float(d["threshold"]) if d.get("threshold") is not None else None,
        "comparisonOperator": d.get("comparisonOperator"),
        "treatMissingData": d.get("treatMissingData") or "missing",
        "evaluateLowSampleCountPercentile": d.get("evaluateLowSampleCountPercentile") or None,
        "metrics": _metric_queries(d.get("metrics")),
        "thresholdMetricId": d.get("thresholdMetricId"),
    }


def _composite_state(d: dict[str, Any]) -> dict[str, Any]:
    return {
        "alarmRule": d.get("alarmRule"),
        "alarmDescription": d.get("alarmDescription") or "",
        "actionsEnabled": d.get("actionsEnabled", True),
        "okActions": sorted(d.get("okActions") or []),
        "alarmActions": sorted(d.get("alarmActions") or []),
        "insufficientDataActions": sorted(d.get("insufficientDataActions") or []),
        "actionsSuppressor": d.get("actionsSuppressor"),
        "actionsSuppressorWaitPeriod": d.get("actionsSuppressorWaitPeriod"),
        "actionsSuppressorExtensionPeriod": d.get("actionsSuppressorExtensionPeriod"),
    }


class _AlarmReconciler(Reconciler):
    """What metric and composite alarms share: batched reads, tags, delete."""

    service = "cloudwatch"
    name_field = "alarmName"
    alarm_type: str

    def _canonical(self, d: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def arn(self, physical: str) -> str:
        return f"arn:aws:cloudwatch:{self.ctx.region}:{self.ctx.account}:alarm:{physical}"

    def observe(self, physicals: list[str]) -> dict[str, Live]:
        if not physicals:
            return {}
        client = self.ctx.client("cloudwatch")
        batches = chunks(sorted(set(physicals)), BATCH)
        out_shape = shape("cloudwatch", self.alarm_type)
        found: dict[str, Live] = {}
        for raws, tags in self.ctx.map(lambda batch: self._describe(client, batch), batches):
            for raw in raws:
                arn = raw.get("AlarmArn", "")
                state = self._canonical(from_api(raw, out_shape))
                owned = tags.get(arn) or {}
                state["tags"] = owned
                found[raw["AlarmName"]] = Live.tagged(
                    physical=raw["AlarmName"],
                    state=state,
                    arn=arn,
                    attrs={"arn": arn, "stateValue": raw.get("StateValue")},
                    tags=owned,
                )
        return found

    def discover(self, prefix: str) -> list[str]:
        """Every alarm of this type: one paginated ``DescribeAlarms`` (100 a page), by name prefix."""
        params: dict[str, Any] = {"AlarmTypes": [self.alarm_type]}
        if prefix:
            params["AlarmNamePrefix"] = prefix
        key = "MetricAlarms" if self.alarm_type == "MetricAlarm" else "CompositeAlarms"
        names: list[str] = []
        for page in self.ctx.client("cloudwatch").get_paginator("describe_alarms").paginate(**params):
            names.extend(raw["AlarmName"] for raw in page.get(key, []))
        return names

    def _describe(self, client: Any, names: list[str]) -> tuple[list[dict[str, Any]], dict[str, dict[str, str]]]:
        """The alarms of this type among ``names`` (at most 100), every page of them, and their tags by ARN."""
        found = describe_alarms(client, names, [self.alarm_type])
        return found, tags_of(self.ctx, [raw["AlarmArn"] for raw in found if raw.get("AlarmArn")])

    def desired_state(self, desired: Desired) -> dict[str, Any]:
        state = self._canonical(desired.spec)
        state["tags"] = dict(desired.tags)
        return state

    def _put(self, desired: Desired, state: dict[str, Any], with_tags: bool) -> None:
        raise NotImplementedError

    def create(self, desired: Desired, state: dict[str, Any]) -> Live:
        self._put(desired, state, with_tags=True)
        arn = self.arn(desired.physical)
        return Live(desired.physical, state, arn=arn, attrs={"arn": arn})

    def update(self, desired: Desired, state: dict[str, Any], live: Live, changes: list[Change]) -> Live:
        if not only_tags_changed(changes):
            self._put(desired, state, with_tags=False)
        client = self.ctx.client("cloudwatch")
        TAGS.write(client, live.arn, changes)
        return Live(live.physical, state, arn=live.arn, attrs=live.attrs)

    def delete(self, live: Live) -> None:
        self.ctx.client("cloudwatch").delete_alarms(AlarmNames=[live.physical])


def _actions(state: dict[str, Any]) -> dict[str, Any]:
    return {
        "ActionsEnabled": state["actionsEnabled"],
        "OKActions": state["okActions"],
        "AlarmActions": state["alarmActions"],
        "InsufficientDataActions": state["insufficientDataActions"],
    }


class MetricAlarmReconciler(_AlarmReconciler):
    """A CloudWatch metric alarm (PutMetricAlarm)."""

    kind = "MetricAlarm"
    spec_model = MetricAlarmSpec
    alarm_type = "MetricAlarm"
    iam_read = ("cloudwatch:DescribeAlarms", "tag:GetResources")
    iam_write = ("cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms", "cloudwatch:TagResource", "cloudwatch:UntagResource")

    example = """\
apiVersion: lensops.io/v1
kind: MetricAlarm
metadata:
  name: api-5xx
spec:
  namespace: AWS/ApiGateway
  metricName: 5XXError
  dimensions: {ApiName: econlens}
  statistic: Sum
  period: 60
  evaluationPeriods: 3
  threshold: "{{ vars.errorThreshold }}"
  comparisonOperator: GreaterThanThreshold
"""
    notes = {
        "metricName": "With `namespace`, `period` and exactly one of `statistic` / `extendedStatistic`; or give `metrics` instead.",
        "threshold": "Required unless `thresholdMetricId` (anomaly detection) is given.",
        "metrics": "Metric math queries, instead of `metricName` / `namespace` / `statistic`.",
        "datapointsToAlarm": "Defaults to `evaluationPeriods`.",
    }

    def _canonical(self, d: dict[str, Any]) -> dict[str, Any]:
        return _metric_alarm_state(d)

    def _put(self, desired: Desired, state: dict[str, Any], with_tags: bool) -> None:
        params: dict[str, Any] = {
            "AlarmName": desired.physical,
            "AlarmDescription": state["alarmDescription"],
            **_actions(state),
            "EvaluationPeriods": state["evaluationPeriods"],
            "DatapointsToAlarm": state["datapointsToAlarm"],
            "ComparisonOperator": state["comparisonOperator"],
            "TreatMissingData": state["treatMissingData"],
        }
        optional = {
            "MetricName": state["metricName"],
            "Namespace": state["namespace"],
            "Statistic": state["statistic"],
            "ExtendedStatistic": state["extendedStatistic"],
            "Period": state["period"],
            "Unit": state["unit"],
            "Threshold": state["threshold"],
            "EvaluateLowSampleCountPercentile": state["evaluateLowSampleCountPercentile"],
            "ThresholdMetricId": state["thresholdMetricId"],
            "Metrics": _api_queries(state["metrics"]),
        }
        params.update({k: v for k, v in optional.items() if v is not None})
        if state["metricName"]:
            params["Dimensions"] = [{"Name": k, "Value": v} for k, v in sorted(state["dimensions"].items())]
        if with_tags and state["tags"]:
            params["Tags"] = map_to_tags(state["tags"])
        self.ctx.client("cloudwatch").put_metric_alarm(**params)


class CompositeAlarmReconciler(_AlarmReconciler):
    """A CloudWatch composite alarm (PutCompositeAlarm)."""

    kind = "CompositeAlarm"
    spec_model = CompositeAlarmSpec
    alarm_type = "CompositeAlarm"
    iam_read = ("cloudwatch:DescribeAlarms", "tag:GetResources")
    iam_write = ("cloudwatch:PutCompositeAlarm", "cloudwatch:DeleteAlarms", "cloudwatch:TagResource", "cloudwatch:UntagResource")

    example = """\
apiVersion: lensops.io/v1
kind: CompositeAlarm
metadata:
  name: api-unhealthy
spec:
  alarmRule: ALARM("api-5xx") OR ALARM("api-latency-p99")
"""
    notes = {
        "alarmRule": "Alarms named in `ALARM(...)` / `OK(...)` that are in the environment are applied first.",
    }

    def _canonical(self, d: dict[str, Any]) -> dict[str, Any]:
        return _composite_state(d)

    @classmethod
    def implied_dependencies(cls, spec: dict[str, Any]) -> list[tuple[str, str]]:
        names = _RULE_ALARM.findall(spec.get("alarmRule", ""))
        return [(kind, name.strip('"')) for name in names for kind in ("MetricAlarm", "CompositeAlarm")]

    def _put(self, desired: Desired, state: dict[str, Any], with_tags: bool) -> None:
        params: dict[str, Any] = {
            "AlarmName": desired.physical,
            "AlarmRule": state["alarmRule"],
            "AlarmDescription": state["alarmDescription"],
            **_actions(state),
        }
        for key in ("actionsSuppressor", "actionsSuppressorWaitPeriod", "actionsSuppressorExtensionPeriod"):
            if state[key] is not None:
                params[key[0].upper() + key[1:]] = state[key]
        if with_tags and state["tags"]:
            params["Tags"] = map_to_tags(state["tags"])
        self.ctx.client("cloudwatch").put_composite_alarm(**params)


class DashboardReconciler(Reconciler):
    """A CloudWatch dashboard (PutDashboard); the body is compared as data, not text."""

    kind = "Dashboard"
    spec_model = DashboardSpec
    name_field = "dashboardName"
    service = "cloudwatch"
    taggable = False
    iam_read = ("cloudwatch:GetDashboard", "cloudwatch:ListDashboards")  # listing: lensops import
    iam_write = ("cloudwatch:PutDashboard", "cloudwatch:DeleteDashboards")

    example = """\
apiVersion: lensops.io/v1
kind: Dashboard
metadata:
  name: overview
spec:
  dashboardName: econlens-{{ env.name }}
  body:
    widgets:
      - type: metric
        x: 0
        y: 0
        width: 12
        height: 6
        properties:
          region: "{{ env.region }}"
          metrics: [[AWS/Lambda, Errors]]
"""
    notes = {
        "body": "The dashboard body as a map, sent as JSON and compared as data.",
    }

    def arn(self, physical: str) -> str:
        return f"arn:aws:cloudwatch::{self.ctx.account}:dashboard/{physical}"

    def observe(self, physicals: list[str]) -> dict[str, Live]:
        client = self.ctx.client("cloudwatch")

        def read(name: str) -> Live | None:
            try:
                page = client.get_dashboard(DashboardName=name)
            except (client.exceptions.ResourceNotFound, client.exceptions.DashboardNotFoundError):
                return None
            body = json.loads(page.get("DashboardBody") or "{}")
            arn = page.get("DashboardArn") or self.arn(name)
            return Live(name, {"body": body}, arn=arn, attrs={"arn": arn})

        return {name: live for name, live in zip(physicals, self.ctx.map(read, physicals), strict=True) if live is not None}

    def discover(self, prefix: str) -> list[str]:
        """Every dashboard: one paginated ``ListDashboards``, by name prefix."""
        params = {"DashboardNamePrefix": prefix} if prefix else {}
        names: list[str] = []
        for page in self.ctx.client("cloudwatch").get_paginator("list_dashboards").paginate(**params):
            names.extend(entry["DashboardName"] for entry in page.get("DashboardEntries", []))
        return names

    def desired_state(self, desired: Desired) -> dict[str, Any]:
        return {"body": desired.spec["body"]}

    def manifest_spec(self, live: Live) -> Draft:
        return Draft({"body": live.state.get("body") or {}})

    def create(self, desired: Desired, state: dict[str, Any]) -> Live:
        return self.update(desired, state, Live(desired.physical, {}), [])

    def update(self, desired: Desired, state: dict[str, Any], live: Live, changes: list[Change]) -> Live:
        answer = self.ctx.client("cloudwatch").put_dashboard(
            DashboardName=desired.physical, DashboardBody=json.dumps(state["body"], sort_keys=True)
        )
        problems = answer.get("DashboardValidationMessages") or []
        if problems:
            raise PermanentError("; ".join(str(p.get("Message")) for p in problems))
        arn = self.arn(desired.physical)
        return Live(desired.physical, state, arn=arn, attrs={"arn": arn})

    def delete(self, live: Live) -> None:
        self.ctx.client("cloudwatch").delete_dashboards(DashboardNames=[live.physical])
