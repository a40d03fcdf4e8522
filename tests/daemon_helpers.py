"""Running `lensops run` as a subprocess for tests, and reading its HTTP endpoints."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def crash_launcher(step: str) -> list[str]:
    """`lensops` that SIGKILLs itself once runbook step ``step`` is checkpointed (tests/crash_launcher.py)."""
    return [sys.executable, str(Path(__file__).with_name("crash_launcher.py")), step]


class DaemonProcess:
    """`lensops run` in a subprocess, its logs in a file, its HTTP on a free port.

    ``launcher``: the command that stands for ``lensops`` (default: the installed
    console script), e.g. ``crash_launcher("restore")``."""

    def __init__(self, tmp: Path, env: dict[str, str], launcher: list[str] | None = None):
        self.port = free_port()
        self.log_path = tmp / f"daemon-{self.port}.log"
        self.env = {
            **os.environ,
            "LENSOPS_HTTP_ADDR": f"127.0.0.1:{self.port}",
            "LENSOPS_LOG_FORMAT": "json",
            **env,
        }
        command = launcher or [str(Path(sys.executable).with_name("lensops"))]
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([*command, "run"], env=self.env, stdout=self.log, stderr=subprocess.STDOUT)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def status(self) -> dict[str, Any]:
        code, body = self.get("/api/v1/status")
        assert code == 200
        return json.loads(body)

    def post_hook(self, body: bytes, secret: str | None, delivery: str = "") -> int:
        headers = {"Content-Type": "application/json", "X-GitHub-Event": "push"}
        if secret is not None:
            headers["X-Hub-Signature-256"] = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        if delivery:
            headers["X-GitHub-Delivery"] = delivery
        request = urllib.request.Request(self.url + "/hooks/git", data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                return answer.status
        except urllib.error.HTTPError as exc:
            return exc.code

    def wait_until(self, check: Callable[[], Any], timeout: float = 30, every: float = 0.2) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"daemon exited {self.proc.returncode}:\n{self.logs()[-3000:]}"
            try:
                last = check()
            except (urllib.error.URLError, ConnectionError, AssertionError, KeyError):
                last = None
            if last:
                return last
            time.sleep(every)
        raise AssertionError(f"timed out; last={last!r}\n{self.logs()[-3000:]}")

    def applied_revision(self, env: str) -> str:
        return str(self.status()["environments"].get(env, {}).get("appliedRevision", ""))

    def logs(self) -> str:
        self.log.flush()
        return self.log_path.read_text()

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.logs().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def terminate(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return int(self.proc.returncode)
