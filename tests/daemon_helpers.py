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


TRACEBACK = "Traceback (most recent call last):"
"""How Python starts printing an uncaught exception (the daemon's own logs are JSON lines)."""


def wait_for(check: Callable[[], Any], timeout: float = 30, every: float = 0.1, what: str = "", alive: subprocess.Popen[Any] | None = None) -> Any:
    """Poll ``check`` until it returns something true, and return that; fail (AssertionError) after
    ``timeout`` seconds, or as soon as the process ``alive`` (a command the test waits on) has exited."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        if alive is not None and alive.poll() is not None:
            out, err = alive.communicate() if alive.stdout or alive.stderr else ("", "")
            raise AssertionError(f"waiting for {what or check}: the process exited {alive.returncode} first\n{out or ''}{err or ''}"[-3000:])
        last = check()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or check}; last={last!r}")
        time.sleep(every)


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
        self.expected_exit: int | None = None
        """The exit code the test means the daemon to end with, when not a clean SIGTERM (see ``kill``)."""
        self.sigtermed = False
        """True once ``terminate`` has asked the daemon to stop."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """GET ``path``: with ``headers``, else with the bearer of the daemon's ``LENSOPS_API_TOKEN`` when it has one."""
        if headers is None:
            token = self.env.get("LENSOPS_API_TOKEN")
            headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            with urllib.request.urlopen(urllib.request.Request(self.url + path, headers=headers), timeout=5) as answer:
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

    def passes(self, env: str) -> int:
        """The passes over ``env`` finished so far (its ``reconcile_finished`` events)."""
        return sum(1 for e in self.events() if e.get("event") == "reconcile_finished" and e.get("environment") == env)

    def wait_passes(self, env: str, more: int = 2, timeout: float = 30) -> None:
        """Wait until ``more`` further passes over ``env`` have finished: with ``more`` >= 2 at least
        one whole pass started after this call (the first may already have been running). For
        checks that something does *not* happen on resyncs, instead of sleeping for a guess."""
        assert more >= 2, "one pass may have started before the call"
        seen = self.passes(env)
        self.wait_until(lambda: self.passes(env) >= seen + more, timeout=timeout)

    def applied_revision(self, env: str) -> str:
        return str(self.status()["environments"].get(env, {}).get("appliedRevision", ""))

    def logs(self) -> str:
        if not self.log.closed:
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

    def kill(self, timeout: float = 10) -> int:
        """SIGKILL on purpose, as a crash of the host would; the daemon is then expected to end so."""
        self.expected_exit = -signal.SIGKILL
        self.proc.send_signal(signal.SIGKILL)
        return self.proc.wait(timeout)

    def terminate(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.sigtermed = True
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return int(self.proc.returncode)

    def end(self) -> list[str]:
        """Stop the daemon if it still runs (SIGTERM); what was wrong with how it ended (empty: nothing).

        Wrong: an end other than ``expected_exit`` when the test set one (``kill``); else a
        non-zero exit, on SIGTERM or on its own (a crash); and, in every case, a Python
        traceback on its stderr (an uncaught exception, in any of its threads).
        """
        on_its_own = self.proc.poll() is not None and not self.sigtermed
        code = self.terminate()
        problems = []
        if self.expected_exit is not None:
            if code != self.expected_exit:
                problems.append(f"exited {code}, the test expected {self.expected_exit}")
        elif code != 0:
            problems.append(
                f"exited {code} on its own (a crash; a test that ends it on purpose says so: kill() or expected_exit)"
                if on_its_own
                else f"exited {code} on SIGTERM (expected 0)"
            )
        if traceback := self.traceback():
            problems.append(f"wrote a Python traceback to stderr:\n{traceback}")
        return [f"daemon on port {self.port} {p}" for p in problems]

    def stop(self) -> None:
        """``end``, failing the test when anything was wrong with how the daemon ended."""
        problems = self.end()
        assert not problems, "\n".join(problems) + "\n" + self.logs()[-3000:]

    def traceback(self) -> str:
        """The first uncaught-exception traceback in the daemon's output, with the line before it ('' if none)."""
        lines = self.logs().splitlines()
        for i, line in enumerate(lines):
            if line.startswith(TRACEBACK):
                end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("{")), len(lines))
                return "\n".join(lines[max(i - 1, 0):end])
        return ""
