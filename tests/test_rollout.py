"""Progressive Lambda delivery: canary and linear steps gated by alarms, resumable after a restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import run_cli
from daemon_helpers import DaemonProcess
from test_lambda_alias import _function, alias

GATE = "scenario-errors"


def _setup(client) -> None:
    import json

    role = client("iam").create_role(
        RoleName="lambda",
        AssumeRolePolicyDocument=json.dumps({"Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}),
    )["Role"]["Arn"]
    _function(client("lambda"), role, "api")
    client("cloudwatch").put_metric_alarm(
        AlarmName=GATE, Namespace="AWS/Lambda", MetricName="Errors", Statistic="Sum", Period=60,
        EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanThreshold",
    )


def _routing(client) -> tuple[str, dict] | None:
    lam = client("lambda")
    try:
        live = lam.get_alias(FunctionName="api", Name="live")
    except lam.exceptions.ResourceNotFoundException:
        return None
    return live["FunctionVersion"], (live.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}


def _deployment(kind: str, step: int, interval: str) -> str:
    return f"deployment: {{type: {kind}, stepPercent: {step}, interval: {interval}, alarms: [{GATE}]}}"


def _write(tree, version: str, kind: str = "canary", step: int = 10, interval: str = "3s") -> None:
    tree.write("environments/dev/alias.yaml", alias("live", version=version, extra=_deployment(kind, step, interval)))


def _wait(predicate, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_canary_is_seen_at_its_first_weight_then_aborted_by_its_alarm(aws, client, tree):
    _setup(client)
    tree.environment("dev", "health: {bakeTime: 2s}")
    _write(tree, "1")
    assert run_cli("apply", "--repo", str(tree.root)).code == 0
    assert _routing(client) == ("1", {})

    _write(tree, "2", interval="5s")
    exe = Path(sys.executable).with_name("lensops")
    running = subprocess.Popen([str(exe), "apply", "--repo", str(tree.root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    _wait(lambda: _routing(client) == ("1", {"2": 0.1}))
    client("cloudwatch").set_alarm_state(AlarmName=GATE, StateValue="ALARM", StateReason="errors")
    out, err = running.communicate(timeout=60)
    assert running.returncode == 1, out + err
    assert f"{GATE} went to ALARM" in err and "LambdaAlias/live restored" in err
    assert _routing(client) == ("1", {})


def test_linear_rollout_completes_when_no_alarm_fires(aws, client, tree):
    _setup(client)
    tree.environment("dev", "health: {bakeTime: 1s}")
    _write(tree, "1", kind="linear", step=34, interval="1s")
    assert run_cli("apply", "--repo", str(tree.root)).code == 0
    _write(tree, "2", kind="linear", step=34, interval="1s")
    result = run_cli("apply", "--repo", str(tree.root))
    assert result.code == 0, result.err
    assert "LambdaAlias/live: step 2 of 3" in result.err and "LambdaAlias/live: rollout complete" in result.err
    assert _routing(client) == ("2", {})
    assert run_cli("plan", "--repo", str(tree.root)).code == 0


def test_a_daemon_killed_mid_canary_resumes_it(aws, client, git_remote, tmp_path):
    _setup(client)
    git_remote.tree.environment("dev", "health: {bakeTime: 1s}")
    _write(git_remote.tree, "1", interval="4s")
    git_remote.commit("v1")
    settings = {"LENSOPS_REPO_URL": git_remote.url, "LENSOPS_POLL_INTERVAL": "1s", "LENSOPS_RESYNC_INTERVAL": "2s"}
    first = DaemonProcess(tmp_path, settings)
    try:
        first.wait_until(lambda: _routing(client) == ("1", {}))
        _write(git_remote.tree, "2", interval="4s")
        git_remote.commit("v2")
        first.wait_until(lambda: _routing(client) == ("1", {"2": 0.1}), timeout=20, every=0.05)
        assert first.kill() == -signal.SIGKILL
    finally:
        first.stop()
    second = DaemonProcess(tmp_path, settings)
    try:
        assert _routing(client) == ("1", {"2": 0.1}), "traffic stays split while no daemon runs"
        second.wait_until(lambda: _routing(client) == ("2", {}), timeout=30)
        assert any(e.get("event") == "bake_resumed" for e in second.events())
        second.wait_until(lambda: second.status()["environments"]["dev"]["status"] in ("synced",), timeout=20)
    finally:
        second.stop()
