"""SIGKILL at random points of a 500-resource apply, and 20 % of AWS calls failing at 500 resources.

``make soak`` (``pytest -s tests/soak``); prints its figures. The killed
applies are ``lensops apply`` subprocesses; the 20 %-faults run applies
in-process, so that ``lensops_aws_api_calls_total`` can be read. The emulator
runs in this pytest process.

Found on the way (the emulator, not lensops): moto's SNS backend is not
thread-safe; concurrent ``Subscribe`` calls sometimes fail with "OrderedDict
mutated during iteration" (an HTML 500 that botocore cannot parse), so the
set-up apply may need a second run.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from conftest import alarm, writes
from lensops_emulator import FaultPlan

SEED = 500
N_ALARMS = 250
N_TOPICS = 250
KILLS = 20
ALARM_NAMES = [f"soak-alarm-{i:03d}" for i in range(N_ALARMS)]
TOPIC_NAMES = [f"soak-topic-{i:03d}" for i in range(N_TOPICS)]
LENSOPS = str(Path(sys.executable).with_name("lensops"))

pytestmark = pytest.mark.timeout(1500)  # the suite's 120 s per test is for make test


def topic(name: str, version: int) -> str:
    return (
        f"apiVersion: lensops.io/v1\nkind: Topic\nmetadata: {{name: {name}}}\nspec:\n"
        f"  attributes: {{DisplayName: v{version}}}\n"
        f"  subscriptions: [{{protocol: email, endpoint: {name}@econlens.example}}]\n"
        "  tags: {team: platform}\n"
    )


def write_estate(tree: Any, version: int) -> None:
    """500 resources; every version changes all of them (each apply has 500 writes to make)."""
    tree.environment("dev", "sync: {prune: true}")
    tree.write("environments/dev/alarms.yaml", "---\n".join(alarm(n, threshold=version) for n in ALARM_NAMES))
    tree.write("environments/dev/topics.yaml", "---\n".join(topic(n, version) for n in TOPIC_NAMES))


def apply_process(tree: Any, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen([LENSOPS, "apply", "--repo", str(tree.root), "--output", "json"], stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy())


def live_alarms(client: Any) -> list[str]:
    names: list[str] = []
    for page in client("cloudwatch").get_paginator("describe_alarms").paginate(AlarmNamePrefix="soak-", PaginationConfig={"PageSize": 100}):
        names += [a["AlarmName"] for a in page["MetricAlarms"]]
    return names


def live_topics(client: Any) -> list[str]:
    names: list[str] = []
    for page in client("sns").get_paginator("list_topics").paginate():
        names += [t["TopicArn"].rsplit(":", 1)[1] for t in page["Topics"]]
    return names


def live_subscriptions(client: Any) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for page in client("sns").get_paginator("list_subscriptions").paginate():
        found += [(s["TopicArn"].rsplit(":", 1)[1], s["Endpoint"]) for s in page["Subscriptions"]]
    return found


def at_version(client: Any, version: int) -> int:
    """How many of the 500 resources AWS already has at ``version`` (threshold, DisplayName)."""
    done = 0
    for page in client("cloudwatch").get_paginator("describe_alarms").paginate(AlarmNamePrefix="soak-"):
        done += sum(1 for a in page["MetricAlarms"] if a["Threshold"] == version)
    sns = client("sns")
    for name in TOPIC_NAMES:
        arn = f"arn:aws:sns:us-east-1:123456789012:{name}"
        done += sns.get_topic_attributes(TopicArn=arn)["Attributes"].get("DisplayName") == f"v{version}"
    return done


def failures(report: str) -> list[str]:
    """The resources an apply's JSON report says failed, with their messages."""
    try:
        data = json.loads(report)
    except ValueError:
        return [f"(no JSON report) {report[-500:]}"]
    return [f"{r['kind']}/{r['name']}: {r['message']}" for env in data["environments"] for r in env["resources"] if r["status"] != "ok"]


def cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LENSOPS, *args], capture_output=True, text=True, timeout=timeout, env=os.environ.copy())


def run_until_first_write(aws: Any, proc: subprocess.Popen[bytes], limit: float = 120) -> float:
    """Seconds from now until the emulator sees the process's first write (or it ends)."""
    started = time.monotonic()
    while not writes(aws.requests()) and proc.poll() is None and time.monotonic() - started < limit:
        time.sleep(0.01)
    return time.monotonic() - started


def test_sigkill_at_random_points_of_a_500_resource_apply(aws, client, tree, tmp_path):
    rng = random.Random(SEED)
    write_estate(tree, 0)
    setup = []
    while len(setup) < 3:  # moto's SNS backend is not thread-safe (the soak's report): the set-up may take a second apply
        started = time.monotonic()
        first = cli("apply", "--repo", str(tree.root), "--output", "json")
        setup.append((first.returncode, round(time.monotonic() - started, 1), failures(first.stdout)))
        if first.returncode == 0:
            break
    print(f"\nset-up: first apply of {N_ALARMS + N_TOPICS} resources, runs (exit, seconds, failed): {setup}")
    assert first.returncode == 0, first.stderr[-2000:]

    # calibration: an apply of 500 changes, not killed: how long until its first write, and how long its writes take
    version = 1
    write_estate(tree, version)
    aws.clear_requests()
    proc = apply_process(tree, tmp_path / "apply-calibration.log")
    before_writes = run_until_first_write(aws, proc)
    started = time.monotonic()
    assert proc.wait(300) == 0
    writing = time.monotonic() - started
    print(f"calibration: first write after {before_writes:.1f}s (start-up, load, observe), then {writing:.1f}s of writes")

    rows = []
    kills = 0
    while kills < KILLS:
        version += 1
        write_estate(tree, version)
        aws.clear_requests()
        proc = apply_process(tree, tmp_path / f"apply-{version}.log")
        if rng.random() < 0.2:  # a fifth of the kills before any write: start-up, loading, observing
            delay = rng.uniform(0.05, before_writes)
            time.sleep(delay)
        else:
            delay = run_until_first_write(aws, proc)
            extra = rng.uniform(0.0, writing)
            time.sleep(extra)
            delay += extra
        if proc.poll() is not None:  # finished before the kill: not a kill, go on with the next version
            rows.append((version, delay, "finished first", sum(writes(aws.requests()).values()), at_version(client, version), proc.returncode, 0, 0.0))
            continue
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        time.sleep(1.0)  # requests the killed process had sent are still being served: let them land
        kills += 1
        written_before_kill = sum(writes(aws.requests()).values())
        done_before_kill = at_version(client, version)
        aws.clear_requests()
        started = time.monotonic()
        after = cli("apply", "--repo", str(tree.root), "--output", "json")
        took = time.monotonic() - started
        assert after.returncode == 0, f"apply after kill {kills} (version {version}, {delay:.2f}s): {failures(after.stdout)}\n{after.stderr[-3000:]}"
        changed = len(json.loads(after.stdout)["environments"][0]["applied"])
        point = "while writing" if written_before_kill else "before any write"  # as it turned out
        rows.append((version, delay, f"kill {kills} {point}", written_before_kill, done_before_kill, proc.returncode, changed, took))
        # nothing missed, nothing done twice: the next apply changes exactly what the killed one had not done
        assert done_before_kill + changed == N_ALARMS + N_TOPICS, rows[-1]

    plan = cli("plan", "--repo", str(tree.root))
    alarms, topics, subscriptions = live_alarms(client), live_topics(client), live_subscriptions(client)
    status = json.loads(cli("status", "--output", "json").stdout)["environments"]["dev"]
    history = json.loads(cli("history", "--output", "json", "--limit", "1000").stdout)["revisions"]
    thresholds = Counter(a["Threshold"] for page in client("cloudwatch").get_paginator("describe_alarms").paginate(AlarmNamePrefix="soak-") for a in page["MetricAlarms"])

    print(f"{'version':>7} {'delay s':>8} {'what':>28} {'write requests':>15} {'done':>5} {'exit':>5} {'changes next apply':>19} {'next apply s':>12}")
    for v, d, what, w, done, code, changed, took in rows:
        print(f"{v:>7} {d:>8.2f} {what:>28} {w:>15} {done:>5} {code:>5} {changed:>19} {took:>12.1f}")
    print("(write requests: what the emulator received before the kill, a request cut short included; done: resources "
          "already at the new version in AWS after the kill)")
    results = Counter(h["result"] or "(killed, unfinished)" for h in history)
    print(f"after {kills} SIGKILLs: plan exit {plan.returncode}; alarms {len(alarms)} ({len(set(alarms))} distinct), topics {len(topics)} "
          f"({len(set(topics))} distinct), subscriptions {len(subscriptions)} ({len(set(subscriptions))} distinct); status {status['status']}, "
          f"counts {status['counts']}; history {dict(results)}")
    assert plan.returncode == 0, plan.stdout[-3000:] + plan.stderr[-3000:]
    assert sorted(alarms) == ALARM_NAMES
    assert sorted(topics) == TOPIC_NAMES
    assert sorted(subscriptions) == sorted((n, f"{n}@econlens.example") for n in TOPIC_NAMES)
    assert thresholds == {float(version): N_ALARMS}
    assert status["counts"]["total"] == N_ALARMS + N_TOPICS and status["counts"]["synced"] == N_ALARMS + N_TOPICS
    assert status["counts"]["failed"] == 0


def test_500_resources_converge_with_20_percent_of_calls_failing(aws, client, tree, lensops):
    from test_faults import api_calls, by_outcome, since

    write_estate(tree, 1)
    before = api_calls()
    aws.clear_requests()
    aws.set_faults(FaultPlan(error_rate=0.2, kinds={"throttle", "5xx"}, seed=SEED))
    runs = []
    try:
        while len(runs) < 5:
            started = time.monotonic()
            result = lensops("apply", "--repo", str(tree.root), "--output", "json")
            report = json.loads(result.out)
            failed = sum(1 for env in report["environments"] for r in env["resources"] if r["status"] == "failed")
            runs.append((result.code, len(report["environments"][0]["applied"]), failed, time.monotonic() - started))
            if result.code == 0:
                break
    finally:
        aws.set_faults(None)
    sent = sum(aws.requests().values())
    outcomes = by_outcome(since(before))
    plan = lensops("plan", "--repo", str(tree.root))
    print(f"\n20 % faults (throttle+5xx, seed {SEED}), {N_ALARMS + N_TOPICS} resources: {len(runs)} apply run(s)")
    for number, (code, applied, failed, took) in enumerate(runs, 1):
        print(f"  apply {number}: exit {code}, {applied} changes applied, {failed} failed, {took:.1f}s")
    print(f"  AWS requests {sum(outcomes.values())} (ok {outcomes['ok']}, throttled {outcomes['throttled']}, error {outcomes['error']}); "
          f"the emulator saw {sent}; plan without faults: exit {plan.code}")
    assert runs[-1][0] == 0
    assert plan.code == 0, plan.out[-3000:]
    assert sorted(live_alarms(client)) == ALARM_NAMES and sorted(live_topics(client)) == TOPIC_NAMES
    assert sum(outcomes.values()) == sent
