"""The reference: what a plain serial boto3 loop takes for the benchmark's alarms.

    python serial_boto3.py N    # prints one JSON line

First apply: ``PutMetricAlarm`` one alarm at a time, with the same parameters and
the same two ownership tags lensops writes. No-op check: ``DescribeAlarms`` 100
names at a time, each alarm compared with what the loop put. The endpoint and
credentials come from the environment (AWS_ENDPOINT_URL, AWS_DEFAULT_REGION).
"""

from __future__ import annotations

import json
import sys
import time

started = time.perf_counter()
import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402

WANTED = {
    "Namespace": "AWS/Lambda",
    "MetricName": "Errors",
    "Statistic": "Sum",
    "Period": 60,
    "EvaluationPeriods": 1,
    "Threshold": 5.0,
    "ComparisonOperator": "GreaterThanThreshold",
    "Dimensions": [{"Name": "FunctionName", "Value": "scenario-processor"}],
}


def main(n: int) -> dict[str, float | int]:
    cw = boto3.client("cloudwatch", config=Config(retries={"mode": "standard", "max_attempts": 3}))
    ready = time.perf_counter()
    names = [f"alarm-{i:05d}" for i in range(n)]

    t = time.perf_counter()
    for name in names:
        cw.put_metric_alarm(
            AlarmName=name,
            **WANTED,
            Tags=[{"Key": "lensops:environment", "Value": "dev"}, {"Key": "lensops:id", "Value": f"MetricAlarm/{name}"}],
        )
    put_s = time.perf_counter() - t

    t = time.perf_counter()
    calls = differing = 0
    for i in range(0, n, 100):
        batch = names[i : i + 100]
        live = {a["AlarmName"]: a for a in cw.describe_alarms(AlarmNames=batch, MaxRecords=100)["MetricAlarms"]}
        calls += 1
        for name in batch:
            alarm = live.get(name)
            if alarm is None or any(alarm.get(k) != v for k, v in WANTED.items()):
                differing += 1
    check_s = time.perf_counter() - t
    return {"startup_s": ready - started, "put_s": put_s, "check_s": check_s, "check_calls": calls, "differing": differing}


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]))))
