"""`lensops demo`: the daemon on the embedded emulator and a repository made from desired-state/."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
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
    finally:
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(40) == 0
        log.close()
