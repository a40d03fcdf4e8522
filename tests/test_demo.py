"""`lensops demo`: the daemon on the embedded emulator and a repository made from desired-state/."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import boto3
from pathlib import Path

from daemon_helpers import free_port

ROOT = Path(__file__).resolve().parent.parent


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return answer.status, answer.read()


def test_demo_applies_the_econlens_estate_and_serves_status(tmp_path):
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LENSOPS_"))},
        "LENSOPS_DEMO_DIR": str(tmp_path / "demo"),
        "LENSOPS_HTTP_ADDR": f"127.0.0.1:{port}",
        "LENSOPS_LOG_FORMAT": "json",
    }
    exe = Path(sys.executable).with_name("lensops")
    log = open(tmp_path / "demo.log", "w")
    demo = subprocess.Popen([str(exe), "demo"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        dev: dict = {}
        while time.monotonic() < deadline:
            assert demo.poll() is None, (tmp_path / "demo.log").read_text()[-3000:]
            try:
                status = json.loads(_get(f"http://127.0.0.1:{port}/api/v1/status")[1])
                dev = status["environments"].get("dev", {})
                if dev.get("appliedRevision") and dev.get("status") in ("baking", "synced"):
                    break
            except OSError:
                pass
            time.sleep(0.5)
        assert dev.get("appliedRevision"), (tmp_path / "demo.log").read_text()[-3000:]
        assert dev["counts"]["failed"] == 0 and dev["counts"]["total"] >= 15
        assert b"lensops_revision_info" in _get(f"http://127.0.0.1:{port}/metrics")[1]
        printed = (tmp_path / "demo.log").read_text()
        assert f"http://127.0.0.1:{port}/metrics" in printed and "git commit" in printed
        _the_banners_block_works(printed, env, dev["appliedRevision"])
        _the_banners_change_goes_live(printed)
    finally:
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(40) == 0
        log.close()


def _the_banners_block_works(printed: str, env: dict[str, str], revision: str) -> None:
    """The banner's block, pasted in another terminal of the project's folder, reads the demo's
    store and AWS: status shows dev at its revision, and plan finds dev in sync (exit 0)."""
    export = next(line.strip() for line in printed.splitlines() if line.strip().startswith("export AWS_ENDPOINT_URL="))
    commands = [line.strip() for line in printed.splitlines() if line.strip().startswith(".venv/bin/lensops ")]
    assert {c.split()[1] for c in commands} >= {"status", "history", "plan"}, commands
    shell_env = {k: v for k, v in env.items() if not k.startswith(("AWS_", "LENSOPS_"))}
    for command in commands:
        done = subprocess.run(["bash", "-c", f"{export} && {command}"], cwd=ROOT, env=shell_env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{command}: {done.returncode}\n{done.stdout}\n{done.stderr}"
        if command.split()[1] == "status":
            assert revision[:12] in done.stdout, done.stdout


def test_a_busy_port_says_which_setting_to_change(tmp_path, tree):
    tree.environment("dev")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        env = {**os.environ, "LENSOPS_HTTP_ADDR": address, "LENSOPS_REPO_URL": str(tree.root)}
        exe = Path(sys.executable).with_name("lensops")
        done = subprocess.run([str(exe), "run"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert f"lensops: cannot listen on {address}: Address already in use; set LENSOPS_HTTP_ADDR" in done.stderr, done.stderr
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr


def _the_banners_change_goes_live(printed: str) -> None:
    """The tour's step 2, as the banner prints it: the edit and the commit, in the demo's repository;
    the daemon applies the commit, and the dev alarm's threshold becomes 9 in the emulator."""
    lines = [line.strip() for line in printed.splitlines()]
    start = next(i for i, line in enumerate(lines) if line.startswith("cd ") and "repo" in line)
    commands = " && ".join(lines[start : start + 3])
    assert "sed -i" in commands and "git commit -am" in commands and "lower" in commands, commands
    git_env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    done = subprocess.run(["bash", "-c", commands], env=git_env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    aws_url = next(line.split()[2] for line in lines if line.startswith("AWS emulator"))
    alarms = boto3.client("cloudwatch", endpoint_url=aws_url, region_name="us-east-1", aws_access_key_id="demo", aws_secret_access_key="demo")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = alarms.describe_alarms(AlarmNames=["econlens-dev-lambda-errors"])["MetricAlarms"]
        if found and found[0]["Threshold"] == 9:
            return
        time.sleep(0.5)
    raise AssertionError(f"the dev alarm's threshold is still {found[0]['Threshold'] if found else None}")
