"""Shared fixtures: one AWS emulator per test run (reset per test), real Git repositories,
and the ``lensops`` command line run in-process or as a subprocess."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from lensops_emulator import Emulator, start

MiB = 1024 * 1024
REGION = "us-east-1"
ACCOUNT = "123456789012"
WRITE_PREFIXES = ("Put", "Create", "Delete", "Update", "Tag", "Untag", "Set", "Subscribe", "Unsubscribe", "Execute", "Publish", "Start", "Associate", "Disassociate")


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    running = start()
    os.environ.update(
        AWS_ENDPOINT_URL=running.url,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=REGION,
        AWS_REGION=REGION,
    )
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(key, None)
    yield running
    running.stop()


@pytest.fixture
def aws(emulator: Emulator) -> Emulator:
    """The emulator, wiped and with its request counts cleared."""
    emulator.reset()
    emulator.set_faults(None)
    emulator.clear_requests()
    return emulator


@pytest.fixture
def client(aws: Emulator) -> Any:
    """``client("cloudwatch")``: a boto3 client of the emulator that sends each call once."""

    def make(service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=aws.url,
            region_name=REGION,
            config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
        )

    return make


def writes(requests: dict[tuple[str, str], int]) -> dict[tuple[str, str], int]:
    """The write operations among counted emulator requests."""
    return {k: v for k, v in requests.items() if k[1].startswith(WRITE_PREFIXES)}


def second_apply(aws: Any, tree: Any, lensops: Any) -> dict[tuple[str, str], int]:
    """Apply ``tree`` twice and return the requests of the second apply, which must succeed and
    write nothing (the idempotence every kind promises)."""
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    aws.clear_requests()
    again = lensops("apply", "--repo", str(tree.root))
    assert again.code == 0, again.out + again.err
    seen: dict[tuple[str, str], int] = aws.requests()
    assert writes(seen) == {}
    return seen


QUOTA_BENCHMARKS = Path(__file__).resolve().parent / "benchmarks" / "bench_quotas.py"
"""Benchmarks against the emulator's quotas: they give lensops its rates themselves (or none)."""


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    """Every test gets its own state store and Git cache, and no LENSOPS_* from outside.

    AWS requests are not paced (``LENSOPS_API_RATES=off``): the emulator has no quotas unless
    a test gives it some, and a test of pacing sets the rates it checks (the quota benchmarks
    too, or leave lensops its built-in ones)."""
    from controller import pacing

    for key in list(os.environ):
        if key.startswith("LENSOPS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("LENSOPS_STATE_URL", f"sqlite:///{tmp_path}/state/state.db")
    monkeypatch.setenv("LENSOPS_CACHE_DIR", str(tmp_path / "cache"))
    if Path(str(request.node.path)).resolve() != QUOTA_BENCHMARKS:
        monkeypatch.setenv("LENSOPS_API_RATES", pacing.OFF)
    pacing.configure(pacing.OFF)  # the process's buckets, for factories made outside a Runner


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def lensops() -> Any:
    """Run the CLI in-process: ``lensops("plan", "--repo", path)`` -> Result(code, out, err)."""
    from controller.cli import main

    def run(*argv: str) -> Result:
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = main(list(argv))
        return Result(code, out.getvalue(), err.getvalue())

    return run


def run_cli(*argv: str, env: dict[str, str] | None = None, timeout: float = 60) -> Result:
    """Run the installed ``lensops`` console script as a subprocess."""
    exe = Path(sys.executable).with_name("lensops")
    done = subprocess.run([str(exe), *argv], capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})
    return Result(done.returncode, done.stdout, done.stderr)


class Tree:
    """A desired-state tree on disk: ``tree.write("environments/dev/a.yaml", text)``."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def write(self, relative: str, text: str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    def remove(self, relative: str) -> None:
        (self.root / relative).unlink()

    def environment(self, name: str = "dev", extra: str = "") -> Path:
        body = textwrap.dedent(extra).strip("\n")
        body = textwrap.indent(body, "  ") + "\n" if body else ""
        return self.write(
            f"environments/{name}/environment.yaml",
            f"apiVersion: lensops.io/v1\nkind: Environment\nmetadata:\n  name: {name}\nspec:\n  region: {REGION}\n" + body,
        )


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    return Tree(tmp_path / "repo")


class GitRemote:
    """A bare remote and a working clone that pushes to it (branch main)."""

    def __init__(self, base: Path):
        self.bare = base / "remote.git"
        self.work = base / "work"
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(self.bare)], check=True)
        subprocess.run(["git", "clone", "-q", str(self.bare), str(self.work)], check=True, capture_output=True)
        self._git("checkout", "-q", "-b", "main")
        self.tree = Tree(self.work)

    @property
    def url(self) -> str:
        return f"file://{self.bare}"

    def _git(self, *args: str) -> str:
        env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
        return subprocess.run(["git", "-C", str(self.work), *args], check=True, capture_output=True, text=True, env=env).stdout.strip()

    def commit(self, message: str = "change") -> str:
        """Commit everything and push; returns the commit id."""
        self._git("add", "-A")
        self._git("commit", "-q", "--allow-empty", "-m", message)
        self._git("push", "-q", "origin", "main")
        return self._git("rev-parse", "HEAD")


@pytest.fixture
def git_remote(tmp_path: Path) -> GitRemote:
    return GitRemote(tmp_path / "git")


def alarm(name: str, threshold: float = 5, extra: str = "", physical: str | None = None) -> str:
    """A MetricAlarm manifest."""
    lines = [
        "apiVersion: lensops.io/v1",
        "kind: MetricAlarm",
        "metadata:",
        f"  name: {name}",
        "spec:",
    ]
    if physical:
        lines.append(f"  alarmName: {physical}")
    lines += [
        "  namespace: AWS/Lambda",
        "  metricName: Errors",
        "  statistic: Sum",
        "  period: 60",
        "  evaluationPeriods: 1",
        f"  threshold: {threshold}",
        "  comparisonOperator: GreaterThanThreshold",
        "  dimensions: {FunctionName: scenario-processor}",
    ]
    text = "\n".join(lines) + "\n"
    if extra:
        text += textwrap.indent(textwrap.dedent(extra).strip("\n"), "  ") + "\n"
    return text


def alarms(names: list[str], threshold: float = 5) -> str:
    """Several MetricAlarm documents in one file."""
    return "---\n".join(alarm(n, threshold) for n in names)


@pytest.fixture
def daemon(aws: Emulator, git_remote: GitRemote, tmp_path: Path) -> Any:
    """``daemon(**settings)``: `lensops run` as a subprocess watching ``git_remote``
    (polling every second, resync every 2 s unless given). At teardown one still running
    must exit 0 on SIGTERM; one that ended on its own must have exited 0; none may have
    written a traceback. A test that ends one on purpose says so (``process.kill()``, or
    ``process.expected_exit`` for a crash it provokes).
    ``daemon(crash_after_step="restore")``: one that SIGKILLs itself after that runbook step."""
    from daemon_helpers import DaemonProcess, crash_launcher

    started: list[DaemonProcess] = []

    def start(crash_after_step: str | None = None, **env: str) -> DaemonProcess:
        settings = {"LENSOPS_REPO_URL": git_remote.url, "LENSOPS_POLL_INTERVAL": "1s", "LENSOPS_RESYNC_INTERVAL": "2s", **env}
        process = DaemonProcess(tmp_path, settings, crash_launcher(crash_after_step) if crash_after_step else None)
        started.append(process)
        return process

    yield start
    ended = [(process, process.end()) for process in started]
    problems = [(process, found) for process, found in ended if found]
    assert not problems, "\n\n".join("; ".join(found) + ":\n" + process.logs()[-3000:] for process, found in problems)


class StandIn:
    """What the HTTP server asks of the daemon, answered at once: alive, ready, an empty status
    (``status_error``: raised instead), and the fetches webhooks triggered, counted."""

    def __init__(self) -> None:
        self.fetches = 0
        self.status_error: Exception | None = None

    def alive(self) -> bool:
        return True

    def ready(self) -> tuple[bool, str]:
        return True, ""

    def status(self) -> dict[str, Any]:
        if self.status_error is not None:
            raise self.status_error
        return {"environments": {"dev": {"status": "synced"}}}

    def trigger_fetch(self, reason: str) -> None:
        self.fetches += 1


@pytest.fixture
def http_server() -> Any:
    """``http_server(webhook_secret=None, api_token=None, limits=None)``: the daemon's HTTP server
    (controller/server.py) on a free port of 127.0.0.1 serving a ``StandIn``, stopped at teardown;
    returns ``(server, stand_in)``."""
    from controller.server import Server

    started: list[Any] = []

    def start(webhook_secret: str | None = None, api_token: str | None = None, limits: Any = None) -> tuple[Any, StandIn]:
        stand_in = StandIn()
        options = {"api_token": api_token, "limits": limits}
        server = Server("127.0.0.1", 0, stand_in, webhook_secret, **{k: v for k, v in options.items() if v is not None})
        server.start()
        started.append(server)
        return server, stand_in

    yield start
    for server in started:
        server.stop()


def bounded(call: Any, clock: Any = time.thread_time) -> tuple[Any, float, float]:
    """``call()``'s result (or the exception it raised), its CPU seconds and the peak MiB it allocated.

    Timed and traced in two runs: tracing every allocation slows the work it measures several times.
    """

    def run() -> Any:
        try:
            return call()
        except Exception as exc:  # the caller asserts what it is
            return exc

    started = clock()
    outcome = run()
    seconds = clock() - started
    tracemalloc.start()
    try:
        run()
        peak = tracemalloc.get_traced_memory()[1] / MiB
    finally:
        tracemalloc.stop()
    return outcome, seconds, peak
