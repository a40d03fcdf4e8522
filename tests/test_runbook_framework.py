"""The runbook framework: claims, checkpoints, waits, timeouts, races, results — with runbooks made
for the test, a real SQLite state store (and DynamoDB on the emulator for the races) and a clock
the test moves."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from controller.aws import ClientFactory
from controller.errors import PermanentError, RetryableError
from controller.metrics import REGISTRY
from controller.state import StateStore, open_store
from controller.status import status_document, status_text
from controller.kinds import Context
from runbooks import CATALOGUE
from runbooks.base import Runbook, RunContext, Step, StepResult, done, fail, wait
from runbooks.executor import RunRequest, advance, runbook_runs
from runbooks.record import NAMESPACE

ROOT = Path(__file__).resolve().parent.parent


class Clock:
    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class Calls:
    """What the test runbook's steps were asked to do, by whom."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: list[tuple[str, str]] = []

    def add(self, step: str, who: str) -> None:
        with self.lock:
            self.seen.append((step, who))

    def steps(self) -> list[str]:
        return [s for s, _ in self.seen]


OWNER = threading.local()


def _runbook(calls: Calls, behaviours: dict[str, Any] | None = None, name: str = "drill", timeout: float = 4 * 3600) -> Runbook:
    behaviours = behaviours or {}

    def make(step: str, outputs: dict[str, Any]):
        def run(ctx: RunContext) -> StepResult:
            calls.add(step, getattr(OWNER, "name", "main"))
            behaviour = behaviours.get(step)
            if behaviour is not None:
                return behaviour(ctx)
            return done(outputs)

        return run

    return Runbook(
        name=name,
        summary="a runbook for tests",
        parameters=(),
        steps=(
            Step("first", make("first", {"a": 1}), "first step"),
            Step("second", make("second", {"b": 2}), "second step"),
            Step("third", make("third", {"c": 3}), "third step"),
        ),
        page="none.md",
        timeout=timeout,
        report=("a", "c"),
    )


@pytest.fixture
def store(tmp_path):
    opened = open_store(f"sqlite:///{tmp_path}/runbooks.db")
    yield opened
    opened.close()


@pytest.fixture
def ctx() -> Context:
    return Context(environment="dev", region="us-east-1", account="123456789012", role_arn="", factory=ClientFactory())


def _request(name: str = "run-1", runbook: str = "drill", **parameters: Any) -> RunRequest:
    return RunRequest("dev", name, runbook, dict(parameters), revision="abc123")


def _counted(runbook: str, result: str) -> float:
    return REGISTRY.get_sample_value("lensops_runbook_runs_total", {"runbook": runbook, "result": result}) or 0.0


def test_steps_run_in_order_once_and_the_result_is_counted_and_notified(store, ctx):
    calls, sent = Calls(), []
    registry = {"drill": _runbook(calls)}
    before = _counted("drill", "succeeded")
    progress = advance(store, _request(), ctx, registry=registry, notify=lambda subject, fields: sent.append((subject, fields)))
    assert progress.state == "succeeded" and progress.next_check is None
    assert calls.steps() == ["first", "second", "third"]
    assert progress.outputs == {"a": 1, "b": 2, "c": 3}
    assert _counted("drill", "succeeded") == before + 1
    assert len(sent) == 1 and sent[0][0] == "lensops: dev runbook drill run-1 succeeded"
    assert sent[0][1]["a"] == 1 and sent[0][1]["c"] == 3 and "b" not in sent[0][1]

    item, _version = store.get_item(NAMESPACE, "dev/run-1")
    assert item["state"] == "succeeded" and item["notified"] is True
    assert [s["state"] for s in item["steps"]] == ["done", "done", "done"]


def test_a_finished_run_is_never_run_again_even_with_new_parameters(store, ctx):
    calls, sent = Calls(), []
    registry = {"drill": _runbook(calls)}
    advance(store, _request(), ctx, registry=registry, notify=lambda s, f: sent.append(s))
    before = _counted("drill", "succeeded")

    again = advance(store, _request(), ctx, registry=registry, notify=lambda s, f: sent.append(s))
    changed = advance(store, _request(size="large"), ctx, registry=registry, notify=lambda s, f: sent.append(s))
    assert again.already_finished and changed.already_finished and changed.state == "succeeded"
    assert calls.steps() == ["first", "second", "third"]
    assert len(sent) == 1 and _counted("drill", "succeeded") == before

    runs = runbook_runs(store, "dev")
    assert runs[0]["state"] == "succeeded" and runs[0]["parameters"] == {}
    assert runs[0]["ignoredChange"]["parameters"] == {"size": "large"}
    assert "never run again" in runs[0]["ignoredChange"]["message"]


def test_a_wait_returns_the_next_check_and_the_step_resumes_then(store, ctx):
    calls, clock = Calls(), Clock()
    answers = iter([wait(30, "instance is creating"), done({"ready": True})])
    registry = {"drill": _runbook(calls, {"second": lambda c: next(answers)})}

    first = advance(store, _request(), ctx, registry=registry, clock=clock)
    assert first.state == "running" and first.step == "second"
    assert first.next_check == clock.now + 30 and first.message == "instance is creating"

    clock.now += 10
    early = advance(store, _request(), ctx, registry=registry, clock=clock)
    assert early.next_check == clock.now + 20
    assert calls.steps() == ["first", "second"]

    clock.now += 25
    last = advance(store, _request(), ctx, registry=registry, clock=clock)
    assert last.state == "succeeded"
    assert calls.steps() == ["first", "second", "second", "third"]
    item, _ = store.get_item(NAMESPACE, "dev/run-1")
    assert item["steps"][1]["attempts"] == 2


def test_every_runbook_event_names_the_revision_it_runs_at(store, ctx):
    from structlog.testing import capture_logs

    from controller import logs

    logs.configure("json", "info")  # as the daemon logs (an in-process CLI run before may have left "warning")
    calls, clock = Calls(), Clock()
    answers = iter([wait(30, "instance is creating"), fail("no snapshot")])
    registry = {"drill": _runbook(calls, {"second": lambda c: next(answers)})}
    with capture_logs() as events:
        advance(store, _request(), ctx, registry=registry, clock=clock)
        clock.now += 31
        advance(store, _request(), ctx, registry=registry, clock=clock)
    names = [e["event"] for e in events]
    assert {"runbook_claimed", "runbook_step_done", "runbook_step_waiting", "runbook_step_failed", "runbook_finished"} <= set(names), names
    assert all(e.get("revision") == "abc123" and e.get("environment") == "dev" for e in events), events


def test_a_step_that_waits_past_its_timeout_fails_the_run(store, ctx):
    calls, clock = Calls(), Clock()
    registry = {"drill": _runbook(calls, {"second": lambda c: wait(600, "still creating")})}
    before = _counted("drill", "failed")
    progress = advance(store, _request(), ctx, registry=registry, clock=clock)
    for _ in range(6):
        clock.now = progress.next_check
        progress = advance(store, _request(), ctx, registry=registry, clock=clock)
        assert progress.state == "running"
    clock.now += 601
    progress = advance(store, _request(), ctx, registry=registry, clock=clock)
    assert progress.state == "failed"
    assert progress.message == "step second timed out after 60 min (still creating)"
    assert "third" not in calls.steps()
    assert _counted("drill", "failed") == before + 1


def test_a_run_past_its_own_timeout_fails(store, ctx):
    calls, clock = Calls(), Clock()
    registry = {"drill": _runbook(calls, {"second": lambda c: wait(60, "slow")}, timeout=120)}
    advance(store, _request(), ctx, registry=registry, clock=clock)
    clock.now += 121
    progress = advance(store, _request(), ctx, registry=registry, clock=clock)
    assert progress.state == "failed" and progress.message == "run timed out after 2 min"


def test_errors_from_steps_are_retried_or_fail_by_kind(store, ctx):
    clock = Clock()
    throttled = iter([RetryableError("Throttling: slow down", delay=7)])

    def flaky(c: RunContext) -> StepResult:
        for error in throttled:
            raise error
        return done()

    registry = {"drill": _runbook(Calls(), {"first": flaky, "second": lambda c: (_ for _ in ()).throw(PermanentError("AccessDenied: no"))})}
    progress = advance(store, _request(), ctx, registry=registry, clock=clock)
    assert progress.state == "running" and progress.next_check == clock.now + 7
    assert progress.message == "retrying: Throttling: slow down"
    clock.now += 7
    progress = advance(store, _request(), ctx, registry=registry, clock=clock)
    assert progress.state == "failed" and progress.message == "step second: AccessDenied: no"


def test_a_failed_step_ends_the_run_and_says_why(store, ctx):
    calls, sent = Calls(), []
    registry = {"drill": _runbook(calls, {"second": lambda c: fail("snapshot not found")})}
    progress = advance(store, _request(), ctx, registry=registry, notify=lambda s, f: sent.append(f))
    assert progress.state == "failed" and progress.message == "step second: snapshot not found"
    assert calls.steps() == ["first", "second"]
    assert sent[0]["result"] == "failed" and sent[0]["message"] == "step second: snapshot not found"


class _ReadThenWrite:
    """A state store that holds its executor at a barrier shared with the other executor's, just
    before its first write of one run's item: every read either made before writing (the claim's
    read of an absent item, or a take's read of one version) is done before either writes. So the
    two conditional puts always race on what both read, and only a real compare-and-set lets one
    of them through. The versions each read before that write are kept (None: absent)."""

    def __init__(self, inner: StateStore, key: str, barrier: threading.Barrier):
        self._inner, self._key, self._barrier = inner, key, barrier
        self.read_before_write: list[int | None] = []
        self._written = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def get_item(self, namespace: str, key: str) -> tuple[dict[str, Any], int] | None:
        got = self._inner.get_item(namespace, key)
        if (namespace, key) == (NAMESPACE, self._key) and not self._written:
            self.read_before_write.append(None if got is None else got[1])
        return got

    def put_item(self, namespace: str, key: str, value: dict[str, Any], expected_version: int | None) -> bool:
        if (namespace, key) == (NAMESPACE, self._key) and not self._written:
            self._written = True
            self._barrier.wait(timeout=10)
        return self._inner.put_item(namespace, key, value, expected_version)


@pytest.fixture(params=["sqlite", "dynamodb"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A state URL: the test runs once per store (DynamoDB on the emulator, wiped)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/race.db"
    request.getfixturevalue("aws")
    return "dynamodb://lensops-state"


def _race(url: str, request: RunRequest, registry: dict[str, Runbook], clock: Clock, ctx: Context) -> tuple[dict[str, _ReadThenWrite], dict[str, Any]]:
    """Two executors, each with its own store connection, advance one run; each is held after its
    reads and before its first write until the other has read too (see _ReadThenWrite)."""
    barrier = threading.Barrier(2)
    stores = {who: _ReadThenWrite(open_store(url), request.key, barrier) for who in ("replica-a", "replica-b")}
    results: dict[str, Any] = {}

    def executor(who: str) -> None:
        OWNER.name = who
        try:
            results[who] = advance(stores[who], request, ctx, owner=who, registry=registry, clock=clock)
        except BaseException as exc:  # reported by the test (a broken barrier, a crash)
            results[who] = exc

    threads = [threading.Thread(target=executor, args=(who,)) for who in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    for own in stores.values():
        own.close()
    return stores, results


@pytest.mark.parametrize("race", ["claim", "take"])
def test_two_executors_that_read_the_same_record_exactly_one_runs_the_steps(url, race, ctx):
    """claim: both read the run as absent, then both claim it (create-if-absent).
    take: a claimed run waits on its second step; once due, both read it at one version, then both
    take the step (a put on that version). Either way the race happens on every run (no luck
    needed): one executor runs the remaining steps, once, and counts the result; the other runs
    nothing and says why (the run is held by the winner or already finished; another executor
    advanced it)."""
    calls, clock = Calls(), Clock()
    registry = {"drill": _runbook(calls)}
    expected, read = ["first", "second", "third"], None
    if race == "take":
        registry = {"drill": _runbook(calls, {"second": lambda c: wait(30, "slow") if c.attempt == 1 else done({"b": 2})})}
        seed = open_store(url)
        assert advance(seed, _request(), ctx, owner="seed", registry=registry, clock=clock).step == "second"
        read = seed.get_item(NAMESPACE, "dev/run-1")[1]
        seed.close()
        clock.now += 31
        calls.seen.clear()
        expected = ["second", "third"]
    before = _counted("drill", "succeeded")

    stores, results = _race(url, _request(), registry, clock, ctx)

    assert not [r for r in results.values() if isinstance(r, BaseException)], results
    assert [s.read_before_write for s in stores.values()] == [[read], [read]]  # the race was forced: both read, then both wrote
    assert [step for step, _ in calls.seen] == expected, calls.seen
    winner = calls.seen[0][1]
    assert {who for _, who in calls.seen} == {winner}, calls.seen
    (loser,) = set(stores) - {winner}
    assert results[winner].state == "succeeded", results[winner]
    lost = results[loser]
    if race == "take":  # its put on the version read was refused: it stops
        assert (lost.state, lost.next_check, lost.message) == ("running", None, "another executor advanced the run"), lost
    elif lost.state == "running":  # its claim was refused; it read the run again: held by the winner
        assert lost.next_check is not None and f"is being run by {winner}" in lost.message, lost
    else:  # ... or with every step done by then: it saw the run finished (or finished it: whoever's put does counts it)
        assert lost.state == "succeeded", lost
    assert _counted("drill", "succeeded") == before + 1
    after = open_store(url)
    item, _ = after.get_item(NAMESPACE, "dev/run-1")
    after.close()
    assert item["state"] == "succeeded" and [s["state"] for s in item["steps"]] == ["done", "done", "done"]


def test_a_lost_checkpoint_means_another_replica_advanced_it_and_this_one_stops(store, ctx):
    calls = Calls()

    def meddle(c: RunContext) -> StepResult:
        item, version = store.get_item(NAMESPACE, "dev/run-1")
        assert store.put_item(NAMESPACE, "dev/run-1", item, version)  # another replica wrote meanwhile
        return done({"b": 2})

    registry = {"drill": _runbook(calls, {"second": meddle})}
    progress = advance(store, _request(), ctx, registry=registry)
    assert progress.state == "running" and progress.next_check is None
    assert progress.message == "another executor advanced the run"
    item, _ = store.get_item(NAMESPACE, "dev/run-1")
    assert item["steps"][1]["state"] == "running" and "b" not in item["outputs"]
    assert calls.steps() == ["first", "second"]


class _Died(BaseException):
    """The process holding the step dies in the middle of it."""


def test_a_step_whose_holder_died_is_taken_over_after_its_lease(store, ctx):
    calls, clock = Calls(), Clock()

    def dies(c: RunContext) -> StepResult:
        raise _Died()

    with pytest.raises(_Died):
        advance(store, _request(), ctx, owner="dead", registry={"drill": _runbook(calls, {"second": dies})}, clock=clock)

    registry = {"drill": _runbook(calls)}
    clock.now += 60
    held = advance(store, _request(), ctx, owner="alive", registry=registry, clock=clock)
    assert held.state == "running" and held.message.startswith("step second is being run by dead")
    assert held.next_check is not None and held.next_check > clock.now
    assert calls.steps() == ["first", "second"]

    clock.now = held.next_check + 1
    finished = advance(store, _request(), ctx, owner="alive", registry=registry, clock=clock)
    assert finished.state == "succeeded"
    assert calls.steps() == ["first", "second", "second", "third"]


def test_a_holder_that_died_on_this_host_is_taken_over_at_once(store, ctx):
    calls = Calls()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    dead = f"{socket.gethostname()}:{int(gone.stdout)}:0dead0"

    def dies(c: RunContext) -> StepResult:
        raise _Died()

    with pytest.raises(_Died):
        advance(store, _request(), ctx, owner=dead, registry={"drill": _runbook(calls, {"second": dies})})
    finished = advance(store, _request(), ctx, registry={"drill": _runbook(calls)})
    assert finished.state == "succeeded"
    assert calls.steps() == ["first", "second", "second", "third"]


def test_a_run_whose_runbook_changed_its_steps_is_not_resumed(store, ctx):
    clock = Clock()
    advance(store, _request(), ctx, registry={"drill": _runbook(Calls(), {"second": lambda c: wait(30, "slow")})}, clock=clock)
    renamed = _runbook(Calls())
    renamed = Runbook(renamed.name, renamed.summary, (), (renamed.steps[0], Step("second-v2", renamed.steps[1].run, "renamed")), "none.md")
    clock.now += 60
    progress = advance(store, _request(), ctx, registry={"drill": renamed}, clock=clock)
    assert progress.state == "failed" and "steps changed since the run was claimed" in progress.message


def test_rollback_runbook_asks_the_daemon_for_the_hold(store, ctx):
    without = advance(store, _request("rb-1", "rollback"), ctx)
    assert without.state == "failed" and without.message == "step request-rollback: rollback runbook needs the daemon (lensops run)"

    asked: list[str | None] = []
    with_hold = advance(store, _request("rb-2", "rollback", revision="0123abcd"), ctx, request_rollback=lambda r: asked.append(r) or "0123abcd")
    assert with_hold.state == "succeeded" and with_hold.outputs["revision"] == "0123abcd"
    assert asked == ["0123abcd"]


def test_status_shows_a_line_per_run(store, ctx):
    from controller.state import EnvironmentRecord

    store.put_environment(EnvironmentRecord("dev", applied_revision="abc123", status="synced"))
    clock = Clock()
    advance(store, _request("slow"), ctx, registry={"drill": _runbook(Calls(), {"second": lambda c: wait(30, "instance is creating")})}, clock=clock)
    advance(store, _request("quick"), ctx, registry={"drill": _runbook(Calls())}, clock=clock)
    doc = status_document(store)
    runs = {r["name"]: r for r in doc["environments"]["dev"]["runbooks"]}
    assert runs["quick"]["state"] == "succeeded" and runs["quick"]["stepsDone"] == 3
    assert runs["slow"]["currentStep"] == "second" and runs["slow"]["nextCheck"]
    text = status_text(doc)
    assert "RunbookRun/quick (drill): succeeded, 3/3 steps" in text
    assert "RunbookRun/slow (drill): running, 1/3 steps, second waiting: instance is creating (next check" in text


# --- the registry is the one source of truth ---------------------------------------------


def test_validate_reads_parameters_from_the_registry(lensops, tree):
    tree.environment("dev")
    tree.write(
        "environments/dev/run.yaml",
        """
        apiVersion: lensops.io/v1
        kind: RunbookRun
        metadata: {name: drill}
        spec:
          runbook: dr-restore
          parameters: {dbInstanceIdentifier: db, targetDbInstanceIdentifier: db-drill, snapshot: latest, recoveryPointArn: arn:aws:backup:x, colour: red}
        """,
    )
    result = lensops("validate", str(tree.root))
    assert result.code == 1 and "unknown parameter(s) colour for runbook dr-restore" in result.err
    tree.write("environments/dev/run.yaml", tree.root.joinpath("environments/dev/run.yaml").read_text().replace(", colour: red", ""))
    result = lensops("validate", str(tree.root))
    assert result.code == 1 and "exactly one of snapshot" in result.err
    tree.write("environments/dev/run.yaml", tree.root.joinpath("environments/dev/run.yaml").read_text().replace(", recoveryPointArn: arn:aws:backup:x", ""))
    assert lensops("validate", str(tree.root)).code == 0


def test_runbook_show_lists_steps_and_what_they_touch(lensops):
    shown = lensops("runbook", "show", "dr-restore", "--output", "json")
    data = json.loads(shown.out)
    assert [s["name"] for s in data["steps"]] == [s.name for s in CATALOGUE["dr-restore"].steps]
    assert [p["name"] for p in data["parameters"]] == [p.name for p in CATALOGUE["dr-restore"].parameters]
    assert "rds:RestoreDBInstanceFromDBSnapshot" in data["touches"] and "ssm:PutParameter" in data["touches"]
    text = lensops("runbook", "show", "rollback").out
    assert "1. request-rollback" in text and "runbooks/rollback.md" in text
    listed = lensops("runbook", "list").out
    assert "dr-restore" in listed and "rollback" in listed


def test_every_runbook_has_its_page():
    for runbook in CATALOGUE.values():
        page = ROOT / "runbooks" / runbook.page
        assert page.is_file(), page
        text = page.read_text()
        for parameter in runbook.parameters:
            assert f"`{parameter.name}`" in text, (runbook.name, parameter.name)


def test_the_staging_dr_drill_example_validates_when_uncommented(lensops, tmp_path):
    copy = tmp_path / "desired-state"
    shutil.copytree(ROOT / "desired-state", copy)
    path = copy / "environments/staging/dr-drill.yaml"
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("# apiVersion:"))
    path.write_text("\n".join(lines[:start] + [line[2:] if line.startswith("# ") else line.lstrip("#") for line in lines[start:]]) + "\n")
    assert "kind: RunbookRun" in path.read_text() and "\n# kind" not in path.read_text()
    result = lensops("validate", str(copy), "--output", "json")
    assert result.code == 0, result.out + result.err
