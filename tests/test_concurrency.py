"""LENSOPS_CONCURRENCY bounds the AWS requests in flight, reads and writes alike, and throttling is answered with backoff.

Every AWS call is delayed (the emulator's latency fault) so that calls overlap
as they do against a region; the emulator counts the most requests it was
answering at once.
"""

from __future__ import annotations

import re
import time

from lensops_emulator import FaultPlan

from test_batching import _many


def _peak(aws, lensops, tree, *args: str) -> int:
    aws.clear_requests()
    result = lensops(*args, "--repo", str(tree.root))
    assert result.code in (0, 2), result.out[-2000:] + result.err[-2000:]
    return aws.peak_in_flight()


def test_requests_in_flight_never_exceed_the_setting(aws, tree, lensops, monkeypatch):
    _many(tree, 250)
    aws.set_faults(FaultPlan(latency_ms=40))
    monkeypatch.setenv("LENSOPS_CONCURRENCY", "3")
    assert _peak(aws, lensops, tree, "apply", "--yes") == 3  # 250 creates, 3 at a time
    assert 2 <= _peak(aws, lensops, tree, "plan") <= 3  # 3 batches of reads, each with its tags

    monkeypatch.setenv("LENSOPS_CONCURRENCY", "8")
    path = tree.root / "environments/dev/alarms.yaml"
    path.write_text(re.sub(r"threshold: (\d+)", lambda m: f"threshold: {int(m[1]) + 1000}", path.read_text()))
    assert 3 < _peak(aws, lensops, tree, "apply", "--yes") <= 8


def test_throttling_backs_off_within_the_attempt_budget(aws, tree, lensops):
    """Every call throttled: each is tried at most 5 times, with growing waits, and the resources fail cleanly."""
    _many(tree, 4)
    aws.set_faults(FaultPlan(error_rate=1.0, kinds={"throttle"}, services={"cloudwatch"}))
    started = time.monotonic()
    result = lensops("apply", "--repo", str(tree.root), "--yes")
    elapsed = time.monotonic() - started
    assert result.code == 1
    seen = aws.requests()
    assert seen[("cloudwatch", "DescribeAlarms")] == 5  # one read, its 5 attempts, then the kind fails
    assert ("cloudwatch", "PutMetricAlarm") not in seen  # nothing is written blind
    assert elapsed >= 1.0, "4 retries of a throttled call back off for a second or more"
    assert "throttl" in (result.out + result.err).lower()


def test_an_unreadable_answer_frees_its_slot_and_is_counted(aws):
    """An answer botocore cannot parse raises before botocore's response-received event: the slot must still come back."""
    import threading

    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from controller.aws import ClientFactory
    from controller.metrics import REGISTRY

    cloudformation = ClientFactory(concurrency=1, max_attempts=1).client("cloudformation", "us-east-1")
    for _ in range(2):  # moto lacks the operation: an HTML page, which is not XML
        try:
            cloudformation.describe_generated_template(GeneratedTemplateName="absent")
        except Exception as exc:  # the error's type is botocore's business; the slot is ours
            assert "parse" in str(exc).lower()
    answered: list[object] = []
    worker = threading.Thread(target=lambda: answered.append(cloudformation.describe_stacks()), daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert answered, "the one slot was never given back: the next call waits for ever"

    samples = [
        s for f in text_string_to_metric_families(generate_latest(REGISTRY).decode()) if f.name == "lensops_aws_api_calls"
        for s in f.samples if s.name.endswith("_total") and s.labels["operation"] == "DescribeGeneratedTemplate"
    ]
    assert sum(s.value for s in samples if s.labels["outcome"] == "error") >= 2
