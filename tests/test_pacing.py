"""Pacing by quota: every AWS request waits for a token of its API's rate, one bucket per account,
region and operation for the whole process; urgent requests first; AIMD on throttling; the rates
from a built-in table of AWS's quotas, ``LENSOPS_API_RATES`` over it, or ``off``; and ``lensops
apply`` telling how long it will take at that pace.

The limiter's own behaviour runs on a clock the test moves (never a wall-clock speed assert);
against the emulator, requests are counted as they arrive and held to the rate's bound.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from lensops_emulator import FaultPlan, Quotas

from conftest import ACCOUNT, REGION, alarm

ROOT = Path(__file__).resolve().parent.parent


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.002)


def _within_rate(times: list[float], rate: float, burst: float, slack: int = 0) -> list[tuple[float, float, int]]:
    """Windows [t_i, t_j] holding more requests than a token bucket lets through: burst + rate * width."""
    times = sorted(times)
    over = []
    for i, start in enumerate(times):
        for j in range(i, len(times)):
            if j - i + 1 > burst + rate * (times[j] - start) + slack:
                over.append((start, times[j], j - i + 1))
    return over


def _put(cloudwatch: Any, name: str) -> None:
    cloudwatch.put_metric_alarm(
        AlarmName=name, Namespace="EconLens", MetricName="Errors", Statistic="Sum", Period=60,
        EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanThreshold",
    )


# --- the bucket: rate, burst, order, AIMD, off ---------------------------------------------


def test_a_bucket_grants_its_rate_and_half_a_seconds_burst_no_more():
    from controller.pacing import Pacer, parse_rates

    clock = Clock()
    pacer = Pacer(parse_rates("cloudwatch:PutMetricAlarm=4"), clock=clock)
    granted: list[float] = []

    def calls() -> None:
        for _ in range(20):
            pacer.acquire(ACCOUNT, REGION, "cloudwatch", "PutMetricAlarm")
            granted.append(clock.now)

    worker = threading.Thread(target=calls, daemon=True)
    worker.start()
    while worker.is_alive() and clock.now < 1100:
        time.sleep(0.002)
        clock.now += 0.05
        pacer.wake()
    worker.join(5)
    assert len(granted) == 20
    assert granted[:2] == [1000.0] * 2 and granted[2] > 1000.0, "a full bucket: half a second's worth at once"
    assert _within_rate(granted, rate=4, burst=2) == [], "more grants in a window than 4 a second and a burst of 2"
    assert granted[-1] >= 1000.0 + (20 - 2) / 4, "18 grants past the burst take 4.5 seconds at 4 a second"


def test_waiting_calls_are_served_urgent_first_then_in_order_of_arrival():
    """A rollback's write does not wait behind an apply's: urgent before normal, first come first served within each."""
    from controller import pacing
    from controller.pacing import Pacer, parse_rates

    clock = Clock()
    pacer = Pacer(parse_rates("cloudwatch:PutMetricAlarm=1"), clock=clock)
    pacer.acquire(ACCOUNT, REGION, "cloudwatch", "PutMetricAlarm")  # the one token of the burst
    served: list[str] = []

    def call(name: str, urgent: bool) -> None:
        if urgent:
            with pacing.urgent():
                pacer.acquire(ACCOUNT, REGION, "cloudwatch", "PutMetricAlarm")
        else:
            pacer.acquire(ACCOUNT, REGION, "cloudwatch", "PutMetricAlarm")
        served.append(name)

    arrivals = [("apply-1", False), ("apply-2", False), ("rollback-1", True), ("apply-3", False), ("rollback-2", True)]
    for number, (name, urgent) in enumerate(arrivals, 1):
        threading.Thread(target=call, args=(name, urgent), daemon=True).start()
        _until(lambda n=number: pacer.waiting(ACCOUNT, REGION, "cloudwatch", "PutMetricAlarm") == n, f"{name} waits")
    for number in range(1, len(arrivals) + 1):
        clock.now += 1.0  # one token
        pacer.wake()
        _until(lambda n=number: len(served) == n, "one call served per token")
    assert served == ["rollback-1", "rollback-2", "apply-1", "apply-2", "apply-3"]


def test_throttling_halves_the_rate_and_answers_bring_it_back():
    from controller.pacing import Pacer, parse_rates

    clock = Clock()
    pacer = Pacer(parse_rates("cloudwatch:PutMetricAlarm=10"), clock=clock)
    call = (ACCOUNT, REGION, "cloudwatch", "PutMetricAlarm")
    pacer.acquire(*call)
    assert pacer.rate(*call) == 10
    pacer.answered(*call, throttled=True)
    assert pacer.rate(*call) == 5
    pacer.answered(*call, throttled=True)
    assert pacer.rate(*call) == 5, "the answers of one burst cut the rate once"
    for expected in (2.5, 1.25, 1.0, 1.0):
        clock.now += 1.0
        pacer.answered(*call, throttled=True)
        assert pacer.rate(*call) == pytest.approx(expected), "halved, never below a tenth of the configured rate"
    # A throttling answer empties the bucket: the next call waits for a token at the lowered rate.
    done = threading.Event()
    threading.Thread(target=lambda: (pacer.acquire(*call), done.set()), daemon=True).start()
    _until(lambda: pacer.waiting(*call) == 1, "the next call waits")
    assert not done.wait(0.05)
    clock.now += 1.0  # one token at 1 a second
    pacer.wake()
    assert done.wait(5)
    rates = []
    for _ in range(20):
        pacer.answered(*call, throttled=False)
        rates.append(pacer.rate(*call))
    assert rates[0] == pytest.approx(1.5) and rates[1] == pytest.approx(2.0), "each answer gives back a twentieth of 10"
    assert rates[-1] == 10 and max(rates) == 10, "back to the configured rate, never above"
    assert pacer.rate(ACCOUNT, "eu-west-1", "cloudwatch", "PutMetricAlarm") == 10, "another region's bucket is its own"


def test_off_paces_nothing():
    from controller.pacing import Pacer, parse_rates

    clock = Clock()  # never moves: any wait would last for ever
    pacer = Pacer(parse_rates("off"), clock=clock)
    assert not pacer.enabled
    assert all(pacer.acquire(ACCOUNT, REGION, "cloudwatch", "PutMetricAlarm") == 0.0 for _ in range(1000))
    assert pacer.rate(ACCOUNT, REGION, "cloudwatch", "PutMetricAlarm") is None
    assert parse_rates(" OFF ").enabled is False


# --- the rates: the built-in table and LENSOPS_API_RATES ---------------------------------


def test_the_built_in_table_has_aws_quotas_and_one_bucket_for_lambda():
    from controller.pacing import parse_rates

    rates = parse_rates("")
    assert rates.limit("cloudwatch", "PutMetricAlarm") == ("PutMetricAlarm", 3)
    assert rates.limit("cloudwatch", "PutCompositeAlarm") == ("PutCompositeAlarm", 3)
    assert rates.limit("cloudwatch", "DeleteAlarms") == ("DeleteAlarms", 3)
    assert rates.limit("cloudwatch", "DescribeAlarms") == ("DescribeAlarms", 9)
    assert rates.limit("cloudwatch", "PutDashboard") == ("PutDashboard", 10)
    assert rates.limit("lambda", "UpdateAlias") == rates.limit("lambda", "ListAliases") == ("*", 15), "Lambda's control plane: one quota"
    assert rates.limit("lambda", "GetFunction") == ("GetFunction", 100), "but GetFunction's own"
    assert rates.limit("wafv2", "GetWebACL") == ("GetWebACL", 5) and rates.limit("wafv2", "UpdateWebACL") == ("UpdateWebACL", 1)
    assert rates.limit("dynamodb", "PutItem") is None, "the state store's table is bound by capacity, not paced"


def test_every_operation_lensops_calls_has_its_rate_in_the_table():
    """Every call of every kind, runbook step and the engine (read from the code, as the IAM policy's
    check reads it) has a row of its own or its service's; the services have their source."""
    from controller.catalog import registry
    from controller.pacing import RATES, SOURCES
    from runbooks import CATALOGUE
    from test_iam_policy import aws_calls, kind_calls, module_tree, operations, reachable, step_calls

    calls = {call for kind in registry().kinds for call in kind_calls(kind)}
    calls |= {call for runbook in CATALOGUE.values() for step in runbook.steps for call in step_calls(runbook.name, step)}
    for module, services in (("controller.aws", ["sts"]), ("controller.notify", ["sns"]), ("controller.health", ["cloudwatch"])):
        calls |= aws_calls(reachable(module, list(module_tree(module).body)), services)
    calls |= aws_calls(list(module_tree("controller.state.dynamodb").body), ["dynamodb"])
    assert len(calls) > 80
    missing = sorted(call for call in calls if call not in RATES and (call[0], "*") not in RATES)
    assert missing == [], f"no rate for {missing}"
    assert {service for service, _ in RATES} == set(SOURCES)
    for kind in registry().kinds:
        for action in ("create", "update", "delete"):
            for name in registry()[kind].write_calls(action):
                service, _, operation = name.partition(":")
                assert operation == "*" or operation in operations(service).values(), f"{kind} {action}: {name}"
                assert (service, operation) in RATES or (service, "*") in RATES, f"{kind} {action}: {name}"


def test_the_operations_page_shows_the_table():
    from controller.pacing import table_markdown

    assert table_markdown() in (ROOT / "docs" / "operations.md").read_text()


def test_api_rates_override_the_table():
    from controller.pacing import parse_rates

    rates = parse_rates("cloudwatch:PutMetricAlarm=30, cloudwatch:DescribeAlarms=90,lambda:*=10")
    assert rates.limit("cloudwatch", "PutMetricAlarm") == ("PutMetricAlarm", 30)
    assert rates.limit("cloudwatch", "DescribeAlarms") == ("DescribeAlarms", 90)
    assert rates.limit("cloudwatch", "DeleteAlarms") == ("DeleteAlarms", 3), "the others keep the table's"
    assert rates.limit("lambda", "CreateAlias") == ("*", 10), "lambda:* is the shared bucket's rate"
    assert rates.limit("lambda", "GetFunction") == ("GetFunction", 100), "an operation of a quota of its own keeps it"
    own = parse_rates("lambda:*=150,lambda:GetFunction=1000")  # as the emulator's Quotas.setting() writes them
    assert own.limit("lambda", "GetFunction") == ("GetFunction", 1000) and own.limit("lambda", "UpdateAlias") == ("*", 150)
    every = parse_rates("cloudwatch:DescribeAlarms=90,cloudwatch:*=30,wafv2:*=0.5")
    assert every.limit("cloudwatch", "PutDashboard") == ("PutDashboard", 30), "service:* sets every operation of the service"
    assert every.limit("cloudwatch", "DescribeAlarms") == ("DescribeAlarms", 90), "an operation named beats service:*, in any order"
    assert every.limit("wafv2", "GetIPSet") == ("GetIPSet", 0.5)


@pytest.mark.parametrize(
    "value, message",
    [
        ("cloudwatch:PutMetricAlarms=30", "'cloudwatch:PutMetricAlarms=30': cloudwatch has no operation 'PutMetricAlarms' (did you mean PutMetricAlarm?)"),
        ("cloudwach:*=30", "'cloudwach:*=30': no AWS service 'cloudwach' (did you mean cloudwatch?)"),
        ("cloudwatch:PutMetricAlarm=fast", "'cloudwatch:PutMetricAlarm=fast': 'fast' is not a number of requests a second"),
        ("cloudwatch:DescribeAlarms=9,cloudwatch:PutMetricAlarm=0", "'cloudwatch:PutMetricAlarm=0': the rate must be a number of requests a second above 0"),
        ("cloudwatch:PutMetricAlarm", "'cloudwatch:PutMetricAlarm': expected service:Operation=N or service:*=N (requests a second), or off"),
        ("PutMetricAlarm=3", "'PutMetricAlarm=3': expected service:Operation=N or service:*=N (requests a second), or off"),
        ("lambda:*=15,lambda:GetFunctions=5", "'lambda:GetFunctions=5': lambda has no operation 'GetFunctions' (did you mean GetFunction?)"),
    ],
)
def test_a_malformed_value_is_one_line_naming_the_item(value, message):
    from controller.errors import UsageError
    from controller.settings import load_settings

    with pytest.raises(UsageError) as raised:
        load_settings(environ={"LENSOPS_API_RATES": value})
    assert str(raised.value) == f"LENSOPS_API_RATES: {message}"


def test_the_cli_refuses_a_malformed_value_in_one_line(lensops, tree, monkeypatch):
    tree.environment("dev")
    monkeypatch.setenv("LENSOPS_API_RATES", "cloudwatch:PutMetricAlarm=3/s")
    result = lensops("plan", "--repo", str(tree.root))
    assert result.code == 1
    assert result.err == "lensops: LENSOPS_API_RATES: 'cloudwatch:PutMetricAlarm=3/s': '3/s' is not a number of requests a second\n"


def test_a_config_file_gives_the_rates_as_text_or_as_a_mapping(tmp_path):
    from controller.pacing import parse_rates
    from controller.settings import load_settings

    as_map = tmp_path / "map.yaml"
    as_map.write_text("api_rates:\n  cloudwatch:PutMetricAlarm: 30\n  lambda:*: 10\n")
    assert parse_rates(load_settings(str(as_map), environ={}).api_rates).limit("lambda", "GetAlias") == ("*", 10)
    off = tmp_path / "off.yaml"
    off.write_text("api_rates: off\n")  # YAML's false
    assert load_settings(str(off), environ={}).api_rates == "off"
    assert load_settings(str(off), environ={"LENSOPS_API_RATES": "sns:*=1"}).api_rates == "sns:*=1", "the environment wins"


def test_the_demo_is_unpaced_unless_the_user_says(tmp_path, monkeypatch):
    """The demo's emulator has no quotas: the daemon it starts paces nothing, unless LENSOPS_API_RATES is set."""
    import lensops_emulator
    import lensops_emulator.estate

    from controller import daemon, demo
    from controller.settings import load_settings

    class Emulator:
        url = "http://127.0.0.1:9"

        def stop(self) -> None:
            pass

    ran: list[Any] = []
    for key in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.setenv(key, "restored after the test")
    monkeypatch.setenv("LENSOPS_DEMO_DIR", str(tmp_path / "demo"))
    monkeypatch.setattr(lensops_emulator, "start", lambda *args: Emulator())
    monkeypatch.setattr(lensops_emulator.estate, "seed", lambda url: None)
    monkeypatch.setattr(daemon, "run_daemon", lambda settings: ran.append(settings) or 0)
    demo.run_demo(load_settings(environ={}))
    demo.run_demo(load_settings(environ={"LENSOPS_API_RATES": "cloudwatch:*=30"}))
    assert [s.api_rates for s in ran] == ["off", "cloudwatch:*=30"]


# --- against the emulator: every request of the process through one bucket per API -------


def test_two_environments_share_one_bucket_per_account_region_and_operation(aws):
    """dev and staging in one account and region: their PutMetricAlarm calls, from two threads, go
    through one bucket, so together they keep to the rate. Another account has its own."""
    from controller.aws import ClientFactory
    from controller.kinds import Context
    from controller.pacing import Pacer, parse_rates

    pacer = Pacer(parse_rates("cloudwatch:PutMetricAlarm=10"))  # a burst of 5
    factory = ClientFactory(8, max_attempts=1, pacer=pacer)
    sent: list[float] = []
    lock = threading.Lock()

    def client(environment: str, account: str) -> Any:
        made = Context(environment, REGION, account, "", factory).client("cloudwatch")
        return made

    def stamp(**_: Any) -> None:  # after the factory's own before-send: the request got its token
        with lock:
            sent.append(time.monotonic())

    dev, staging = client("dev", ACCOUNT), client("staging", ACCOUNT)
    assert dev is staging, "one client per account and region: one bucket"
    dev.meta.events.register("before-send", stamp)
    threads = [threading.Thread(target=lambda env=env: [_put(dev, f"{env}-{i}") for i in range(12)]) for env in ("dev", "staging")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(sent) == 24
    assert _within_rate(sent, rate=10, burst=5, slack=1) == [], "dev and staging together above 10 a second"
    assert aws.requests()[("cloudwatch", "PutMetricAlarm")] == 24
    assert pacer.rate("210987654321", REGION, "cloudwatch", "PutMetricAlarm") == 10
    assert pacer.waiting("210987654321", REGION, "cloudwatch", "PutMetricAlarm") == 0


def test_a_throttling_answer_slows_the_bucket_of_that_account_region_and_operation(aws):
    from controller.aws import ClientFactory
    from controller.pacing import Pacer, parse_rates

    pacer = Pacer(parse_rates("cloudwatch:PutMetricAlarm=10"))
    cloudwatch = ClientFactory(2, max_attempts=1, pacer=pacer).client("cloudwatch", REGION, account=ACCOUNT)
    aws.set_faults(FaultPlan(error_rate=1.0, kinds={"throttle"}, services={"cloudwatch"}))
    with pytest.raises(ClientError, match="Throttling"):
        _put(cloudwatch, "x")
    assert pacer.rate(ACCOUNT, REGION, "cloudwatch", "PutMetricAlarm") == 5
    aws.set_faults(None)
    _put(cloudwatch, "x")
    assert pacer.rate(ACCOUNT, REGION, "cloudwatch", "PutMetricAlarm") == pytest.approx(5.5)
    assert pacer.rate(ACCOUNT, REGION, "cloudwatch", "DescribeAlarms") == 9, "another operation's bucket is untouched"


def test_an_apply_keeps_to_the_rate_it_is_given(aws, tree, lensops, monkeypatch):
    """20 new alarms at cloudwatch:PutMetricAlarm=5: the emulator sees at most 5 a second, after a burst of 2.5."""
    from test_faults import api_calls, since

    tree.environment("dev")
    tree.write("environments/dev/alarms.yaml", "---\n".join(alarm(f"a{i:02d}", i) for i in range(20)))
    monkeypatch.setenv("LENSOPS_API_RATES", "cloudwatch:PutMetricAlarm=5")
    seen: list[tuple[float, float, int]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            before = time.monotonic()
            count = aws.requests().get(("cloudwatch", "PutMetricAlarm"), 0)
            seen.append((before, time.monotonic(), count))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    before = api_calls()
    sampler.start()
    try:
        result = lensops("apply", "--repo", str(tree.root), "--yes")
    finally:
        stop.set()
        sampler.join(5)
    assert result.code == 0, result.err[-2000:]
    assert aws.requests()[("cloudwatch", "PutMetricAlarm")] == 20
    assert len(seen) > 10, "the requests were sampled while they were made"
    # Between two samples, no more PutMetricAlarm than the bucket lets through (the earlier count read
    # after its time, the later one before its own: the bound holds for the true counts).
    over = [
        (later[2] - earlier[2], later[1] - earlier[0]) for i, earlier in enumerate(seen) for later in seen[i + 1 :]
        if later[2] - earlier[2] > 2.5 + 5 * (later[1] - earlier[0]) + 1
    ]
    assert over == [], f"(requests, seconds) above 5 a second and a burst of 2.5: {over[:5]}"
    assert not {k: v for k, v in since(before).items() if k[2] == "throttled"}


def test_at_the_emulators_quotas_an_apply_draws_no_throttling(aws, tree, lensops, monkeypatch):
    """The emulator throttles at AWS's rates (x5 here, to be quick), lensops is told them: 40 new
    alarms and their reads, and not one answer throttled (the buckets leave AWS's half a burst)."""
    quotas = Quotas.aws(scale=5, latency_ms=5)
    tree.environment("dev")
    tree.write("environments/dev/alarms.yaml", "---\n".join(alarm(f"q{i:02d}", i) for i in range(40)))
    monkeypatch.setenv("LENSOPS_API_RATES", quotas.setting())
    aws.set_quotas(quotas)
    try:
        result = lensops("apply", "--repo", str(tree.root), "--yes")
        assert result.code == 0, result.err[-2000:]
        assert lensops("plan", "--repo", str(tree.root)).code == 0
    finally:
        aws.set_quotas(None)
    assert aws.requests()[("cloudwatch", "PutMetricAlarm")] == 40
    assert aws.throttled() == {}


# --- priorities through the engine ----------------------------------------------------------


def test_a_rollback_and_the_health_gates_reads_are_urgent_an_apply_is_not(aws, client, tree, tmp_path):
    """The priority is carried into the engine's thread pools: the apply's writes are normal, the bake
    check's alarm reads and the rollback's writes urgent."""
    from controller import pacing
    from controller.aws import ClientFactory
    from controller.catalog import registry
    from controller.engine import Engine
    from controller.pacing import Pacer, parse_rates
    from controller.state import open_store
    from test_rollback import _set
    from test_rollback_sequences import _apply, _check, _healthy

    class Recording(Pacer):
        def __init__(self) -> None:
            super().__init__(parse_rates("off"))
            self.seen: list[tuple[str, str, pacing.Priority]] = []

        def acquire(self, account: str, region: str, service: str, operation: str) -> float:
            self.seen.append((service, operation, pacing.priority()))
            return super().acquire(account, region, service, operation)

    recording = Recording()
    store = open_store(f"sqlite:///{tmp_path}/pacing.db")
    engine = Engine(ClientFactory(4, pacer=recording), store, registry(), 4)
    try:
        _healthy(engine, client, tree, alarm("a", 5) + "---\n" + alarm("b", 5))
        tree.write("environments/dev/a.yaml", alarm("a", 6) + "---\n" + alarm("b", 6))
        recording.seen.clear()
        env, _, gate = _apply(engine, tree, "r2")
        assert {p for s, o, p in recording.seen if o == "PutMetricAlarm"} == {pacing.Priority.NORMAL}
        _set(client, "ALARM")
        recording.seen.clear()
        assert gate is not None and _check(engine, env, gate) == "rolled_back"
        writes = [p for s, o, p in recording.seen if o == "PutMetricAlarm"]
        assert len(writes) == 2 and set(writes) == {pacing.Priority.URGENT}, recording.seen
        assert {p for s, o, p in recording.seen if o == "DescribeAlarms"} == {pacing.Priority.URGENT}
    finally:
        store.close()


# --- the apply's time at this pace ------------------------------------------------------------


def _forecast(rates: str, lines: list[str], clock: Clock) -> Any:
    from controller.catalog import registry
    from controller.forecast import Forecast
    from controller.pacing import Pacer, parse_rates

    return Forecast("dev", ACCOUNT, REGION, registry(), Pacer(parse_rates(rates)), lines.append, clock=clock)


def test_a_long_apply_says_how_long_up_front_and_how_far_along_it_is():
    from controller.plan import Action, ResourcePlan

    clock, lines = Clock(), []
    forecast = _forecast("", lines, clock)
    forecast.start([("MetricAlarm", Action.CREATE)] * 1000)
    assert lines == ["dev: 1,000 writes at 3/s (cloudwatch:PutMetricAlarm): about 5 min 34 s"]
    for number in range(1, 151):
        forecast.finished(ResourcePlan("MetricAlarm", f"a{number}", f"a{number}", Action.CREATE))
        if number == 120:
            clock.now += 15.0
    assert lines[1:] == [
        "dev: 100/1,000 writes, about 5 min left",  # a tenth done
        "dev: 121/1,000 writes, about 4 min 53 s left",  # 15 s since the last line
    ]


def test_the_slowest_api_sets_the_time_and_a_short_apply_says_nothing():
    from controller.plan import Action

    clock, lines = Clock(), []
    mixed = _forecast("", lines, clock)
    mixed.start([("MetricAlarm", Action.UPDATE)] * 45 + [("Dashboard", Action.CREATE)] * 200 + [("LambdaAlias", Action.UPDATE)] * 30)
    assert lines == ["dev: 275 writes, 200 of them at 10/s (cloudwatch:PutDashboard): about 20 s"]
    lines.clear()
    short = _forecast("cloudwatch:PutMetricAlarm=3", lines, clock)
    short.start([("MetricAlarm", Action.CREATE)] * 30)  # 10 s
    assert lines == [] and not short.shown
    unpaced = _forecast("off", lines, clock)
    unpaced.start([("MetricAlarm", Action.CREATE)] * 10_000)
    assert lines == []


def test_the_engine_forecasts_the_writes_before_making_them(aws, tree, tmp_path):
    from controller.aws import ClientFactory
    from controller.catalog import registry
    from controller.engine import Engine
    from controller.plan import Action
    from controller.state import open_store
    from test_rollback_sequences import _load

    tree.environment("dev", "sync: {prune: true, allowMassPrune: true}")
    tree.write("environments/dev/a.yaml", "---\n".join(alarm(name, 5) for name in ("a", "b", "c")))
    store = open_store(f"sqlite:///{tmp_path}/forecast.db")
    engine = Engine(ClientFactory(4), store, registry(), 4)
    told: list[list[tuple[str, Action]]] = []
    try:
        engine.reconcile(_load(tree, "r1"), ACCOUNT, execute=True, on_forecast=told.append)
        tree.write("environments/dev/a.yaml", "---\n".join([alarm("a", 6), alarm("b", 5)]))
        engine.reconcile(_load(tree, "r2"), ACCOUNT, execute=True, on_forecast=told.append)
        engine.reconcile(_load(tree, "r2"), ACCOUNT, execute=True, on_forecast=told.append)
        engine.reconcile(_load(tree, "r2"), ACCOUNT, execute=False, on_forecast=told.append)
    finally:
        store.close()
    assert told == [[("MetricAlarm", Action.CREATE)] * 3, [("MetricAlarm", Action.UPDATE), ("MetricAlarm", Action.DELETE)], []]


def test_lensops_apply_prints_the_estimate(aws, tree, lensops, monkeypatch):
    from controller import forecast

    tree.environment("dev")
    tree.write("environments/dev/alarms.yaml", "---\n".join(alarm(f"a{i}", i) for i in range(5)))
    monkeypatch.setenv("LENSOPS_API_RATES", "cloudwatch:PutMetricAlarm=50")
    monkeypatch.setattr(forecast, "SHOWN_ABOVE", 0.0)  # every estimate shown: 5 writes at 50/s
    result = lensops("apply", "--repo", str(tree.root), "--yes")
    assert result.code == 0, result.err[-2000:]
    assert "dev: 5 writes at 50/s (cloudwatch:PutMetricAlarm): about 1 s\n" in result.err
