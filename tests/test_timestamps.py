"""Timestamps from AWS answers: lensops's parser gives the instants botocore's own gives."""

from __future__ import annotations

import datetime as dt

import botocore.utils
import pytest

from controller.aws import ClientFactory, parse_timestamp

FORMS = [
    1700000000.5,
    1700000000,
    "1700000000",
    "20261202",
    "2026-12-02T06:47:11Z",
    "2026-12-02T06:47:11.123Z",
    "2026-12-02T06:47:11.123456+02:00",
    "2026-12-02T06:47:11",
    "Wed, 02 Dec 2026 06:47:11 GMT",
]


@pytest.mark.parametrize("value", FORMS, ids=[repr(v) for v in FORMS])
def test_same_instant_as_botocore(value):
    ours, theirs = parse_timestamp(value), botocore.utils.parse_timestamp(value)
    assert ours == theirs
    assert (ours.tzinfo is None) == (theirs.tzinfo is None)


def test_clients_answer_with_aware_datetimes(aws):
    """Through a real client: an alarm's timestamps come back as aware datetimes in UTC."""
    cloudwatch = ClientFactory(max_attempts=1).client("cloudwatch", "us-east-1")
    cloudwatch.put_metric_alarm(
        AlarmName="ts", Namespace="AWS/Lambda", MetricName="Errors", Statistic="Sum", Period=60,
        EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanThreshold",
    )
    alarm = cloudwatch.describe_alarms(AlarmNames=["ts"])["MetricAlarms"][0]
    updated = alarm["AlarmConfigurationUpdatedTimestamp"]
    assert updated.utcoffset() == dt.timedelta(0)
    assert abs((dt.datetime.now(dt.timezone.utc) - updated).total_seconds()) < 300
