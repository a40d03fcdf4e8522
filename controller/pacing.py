"""Pacing by quota: every AWS request of the process waits for a token of its API's rate.

Where it stands: the core, under the client factory. ``controller/aws.py`` calls
``Pacer.acquire`` from botocore's ``before-send`` event, so each HTTP attempt
(botocore's retries included) takes a token first, and ``Pacer.answered`` from
``response-received``. AWS's request quotas are per account and region, per
operation (CloudWatch's ``PutMetricAlarm``: 3 a second), or per service where
the service says so (Lambda's control plane: 15 a second for all its APIs
together, but ``GetFunction`` and ``GetPolicy``); so are the buckets here, one
registry per process, shared by every environment, thread and the health gate.

- **The rates.** ``RATES`` is the built-in table of AWS's documented default
  quotas for every operation lensops calls (the source page of each service
  beside it; where AWS publishes no number, or none was confirmed, a
  conservative one, said so). ``LENSOPS_API_RATES`` overrides it
  (``parse_rates``): ``service:Operation=N`` and ``service:*=N`` (every operation of
  the service, or its shared bucket), or ``off`` (no pacing: emulators).
- **Buckets.** A token bucket per (account, region, service, operation): the
  rate a second, a burst of half a second's worth (at least one request).
  AWS's buckets hold about one second's worth: the half lensops leaves there
  absorbs the network's jitter (requests sent at the rate arrive at it only
  on average), where a bucket as large as AWS's would run it empty, each
  request arriving a little early then throttled.
- **Order.** A waiting request is served by priority, then first come first
  served: the health gate's reads and rollbacks (``urgent()``) before applies,
  so one environment's apply never starves another's rollback. The priority is
  a context variable; the engine's thread pools carry it to their workers.
- **AIMD.** A throttling answer halves the bucket's rate (at most once a
  second, never below a tenth of the configured rate) and empties it; every
  other answer gives back a twentieth of the configured rate, up to it.

A request waits here before it takes one of the factory's ``LENSOPS_CONCURRENCY``
slots, so a waiting thread never holds a slot another needs.
"""

from __future__ import annotations

import contextlib
import difflib
import heapq
import itertools
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from enum import IntEnum
from functools import cache

OFF = "off"
"""``LENSOPS_API_RATES=off``: no pacing (an emulator without quotas)."""

SHARED = frozenset({"lambda"})
"""Services whose quota is one for all their operations but those named on their own: the others
share one bucket per account and region, ``service:*`` (Lambda's control plane, GetFunction and
GetPolicy aside)."""

CLOUDWATCH = "https://docs.aws.amazon.com/general/latest/gr/cw_region.html"
LAMBDA = "https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html"
WAF = "https://docs.aws.amazon.com/waf/latest/developerguide/limits.html"

SOURCES: dict[str, str] = {
    "cloudwatch": f"{CLOUDWATCH} (Service quotas: 'Rate of <Operation> requests'; operations it does not list: 3, its lowest)",
    "lambda": f"{LAMBDA} (API requests: 15 a second for the control plane's APIs together; GetFunction 100 and GetPolicy 15, "
              "each on its own)",
    "wafv2": f"{WAF} (API call quotas: 5 a second for a Get or List action, 1 for a Create, Put or Update; Delete and tagging "
             "unlisted: 1, as the writes)",
    "budgets": "https://docs.aws.amazon.com/cost-management/latest/userguide/budgets-limits.html lists no request rate: "
               "conservative, 5 a second for reads, 2 for writes",
    "backup": "https://docs.aws.amazon.com/general/latest/gr/bk.html (rates not confirmed for this table): conservative, "
              "5 a second for reads, 2 for writes",
    "cloudformation": "https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/cloudformation-limits.html lists no "
                      "request rate: conservative, 5 a second for reads, 2 for writes",
    "sns": "https://docs.aws.amazon.com/general/latest/gr/sns.html (rates not confirmed for this table): conservative, 10 a second",
    "logs": "https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/cloudwatch_limits_cwl.html (rates not confirmed for "
            "this table): conservative, 5 a second",
    "resourcegroupstaggingapi": "https://docs.aws.amazon.com/general/latest/gr/arg.html (rates not confirmed for this "
                                "table): conservative, 5 a second",
    "ssm": "https://docs.aws.amazon.com/general/latest/gr/ssm.html (Parameter Store's default throughput; not confirmed for "
           "this table): conservative, 10 a second for GetParameter, 3 for PutParameter",
    "rds": "https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/CHAP_Limits.html (API throttling; rates not confirmed "
           "for this table): conservative, 5 a second",
    "sts": "https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html (rates not confirmed for this "
           "table): conservative, 20 a second",
    "dynamodb": "not paced: the state store's reads and writes are bound by the table's capacity, not a request rate "
                "(https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html)",
    "s3": "not paced: 3,500 writes and 5,500 reads a second per prefix "
          "(https://docs.aws.amazon.com/AmazonS3/latest/userguide/optimizing-performance.html), far above a Stack's template uploads",
}
"""Where each service's default rates come from, for the code's readers and docs/operations.md."""


def _each(service: str, rate: float, *operations: str) -> dict[tuple[str, str], float | None]:
    return {(service, operation): rate for operation in operations}


RATES: dict[tuple[str, str], float | None] = {
    # CloudWatch: SOURCES["cloudwatch"]
    **_each("cloudwatch", 3, "PutMetricAlarm", "PutCompositeAlarm", "DeleteAlarms", "SetAlarmState", "*"),
    **_each("cloudwatch", 9, "DescribeAlarms"),
    **_each("cloudwatch", 10, "PutDashboard", "GetDashboard", "DeleteDashboards", "ListDashboards", "ListTagsForResource"),
    **_each("cloudwatch", 20, "TagResource", "UntagResource"),
    # Lambda: one bucket for the control plane (SHARED), GetFunction and GetPolicy on their own
    ("lambda", "*"): 15,
    ("lambda", "GetFunction"): 100,
    ("lambda", "GetPolicy"): 15,
    # WAFv2
    **_each("wafv2", 5, "GetIPSet", "GetWebACL", "ListIPSets", "ListWebACLs", "ListTagsForResource"),
    **_each("wafv2", 1, "CreateIPSet", "CreateWebACL", "UpdateIPSet", "UpdateWebACL", "DeleteIPSet", "DeleteWebACL",
            "TagResource", "UntagResource", "*"),
    # Budgets
    **_each("budgets", 5, "DescribeBudgets", "DescribeNotificationsForBudget", "DescribeSubscribersForNotification",
            "ListTagsForResource"),
    **_each("budgets", 2, "CreateBudget", "UpdateBudget", "DeleteBudget", "CreateNotification", "UpdateNotification",
            "DeleteNotification", "CreateSubscriber", "DeleteSubscriber", "TagResource", "UntagResource", "*"),
    # Backup
    **_each("backup", 5, "ListBackupVaults", "ListBackupPlans", "GetBackupPlan", "ListBackupSelections",
            "GetBackupSelection", "ListTags", "DescribeRestoreJob"),
    **_each("backup", 2, "CreateBackupVault", "DeleteBackupVault", "CreateBackupPlan", "UpdateBackupPlan",
            "DeleteBackupPlan", "CreateBackupSelection", "DeleteBackupSelection", "TagResource", "UntagResource",
            "StartRestoreJob", "*"),
    # CloudFormation
    **_each("cloudformation", 5, "DescribeStacks", "DescribeStackEvents", "DescribeChangeSet", "GetTemplate",
            "DescribeStackResourceDrifts", "ValidateTemplate"),
    **_each("cloudformation", 2, "CreateChangeSet", "ExecuteChangeSet", "DeleteChangeSet", "CreateStack", "DeleteStack",
            "UpdateTerminationProtection", "ContinueUpdateRollback", "DetectStackDrift", "*"),
    # SNS, CloudWatch Logs, the tagging API, SSM, RDS, STS
    ("sns", "*"): 10,
    ("logs", "*"): 5,
    ("resourcegroupstaggingapi", "*"): 5,
    ("ssm", "GetParameter"): 10,
    ("ssm", "*"): 3,
    ("rds", "*"): 5,
    ("sts", "*"): 20,
    # Not paced
    ("dynamodb", "*"): None,
    ("s3", "*"): None,
}
"""The built-in table: (service, operation) -> requests a second; ``*``: the service's other
operations (one bucket for them all in a SHARED service); None: not paced. Services are boto3's client
names. ``tests/test_pacing.py`` checks that every operation lensops calls has its rate here."""


@dataclass(frozen=True)
class Rates:
    """What the process paces to: the built-in table with ``LENSOPS_API_RATES`` over it, or off (``table`` None)."""

    table: Mapping[tuple[str, str], float | None] | None

    @property
    def enabled(self) -> bool:
        return self.table is not None

    def limit(self, service: str, operation: str) -> tuple[str, float] | None:
        """(the bucket's operation, its rate) for a call: ``*`` for a shared service's one bucket; None: not paced."""
        if self.table is None:
            return None
        if (service, operation) in self.table:
            rate = self.table[(service, operation)]
            return None if rate is None else (operation, rate)
        rate = self.table.get((service, "*"))
        return None if rate is None else ("*" if service in SHARED else operation, rate)


def parse_rates(text: str | None) -> Rates:
    """``LENSOPS_API_RATES``: ``off``, or ``service:Operation=N,service:*=N`` over the built-in table.

    An operation named beats a ``service:*`` given beside it, whatever their order; a
    ``service:*`` replaces the built-in rates of every operation of that service, or, for a
    SHARED service, the rate of its shared bucket (its operations with quotas of their own
    keep theirs). An operation named has a bucket of its own. Raises ``ValueError`` naming
    the first item that cannot be used (one line)."""
    text = (text or "").strip()
    if text.lower() == OFF:
        return Rates(None)
    table = dict(RATES)
    named: dict[tuple[str, str], float] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, equals, value = item.partition("=")
        service, colon, operation = (part.strip() for part in name.partition(":"))
        if not equals or not colon or not service or not operation:
            raise ValueError(f"{item!r}: expected service:Operation=N or service:*=N (requests a second), or off")
        try:
            rate = float(value)
        except ValueError:
            raise ValueError(f"{item!r}: {value.strip()!r} is not a number of requests a second") from None
        if not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"{item!r}: the rate must be a number of requests a second above 0")
        _check_name(item, service, operation)
        named[(service, operation)] = rate
    for (service, operation), rate in named.items():
        if operation == "*":  # every operation of the service; of a SHARED one, its shared bucket
            if service not in SHARED:
                table = {key: value for key, value in table.items() if key[0] != service}
            table[(service, "*")] = rate
    table.update({key: rate for key, rate in named.items() if key[1] != "*"})
    return Rates(table)


@cache
def _services() -> tuple[str, ...]:
    import botocore.session

    return tuple(botocore.session.get_session().get_available_services())


@cache
def _operations(service: str) -> tuple[str, ...]:
    import botocore.session

    return tuple(botocore.session.get_session().get_service_model(service).operation_names)


def _check_name(item: str, service: str, operation: str) -> None:
    """A service boto3 knows, and one of its operations (or ``*``), with a did-you-mean."""
    if service not in _services():
        near = difflib.get_close_matches(service, _services(), n=1)
        raise ValueError(f"{item!r}: no AWS service {service!r}" + (f" (did you mean {near[0]}?)" if near else ""))
    if operation != "*" and operation not in _operations(service):
        near = difflib.get_close_matches(operation, _operations(service), n=1)
        raise ValueError(f"{item!r}: {service} has no operation {operation!r}" + (f" (did you mean {near[0]}?)" if near else ""))


# --- priorities --------------------------------------------------------------


class Priority(IntEnum):
    """Who goes first among requests waiting for the same bucket."""

    NORMAL = 0
    URGENT = 1
    """The health gate's reads, its rollbacks and the rollback runbook's pass."""


_PRIORITY: ContextVar[Priority] = ContextVar("lensops_pacing_priority", default=Priority.NORMAL)


def priority() -> Priority:
    """The priority of the AWS requests made here now."""
    return _PRIORITY.get()


@contextlib.contextmanager
def urgent() -> Iterator[None]:
    """The AWS requests made within (in this thread, and in the pools it starts) go before normal ones."""
    token = _PRIORITY.set(Priority.URGENT)
    try:
        yield
    finally:
        _PRIORITY.reset(token)


# --- buckets -----------------------------------------------------------------

Key = tuple[str, str, str, str]
"""(account, region, service, the bucket's operation)."""


class _Bucket:
    """One API's token bucket, and the requests waiting for it (a heap of (-priority, arrival))."""

    def __init__(self, limit: float, now: float):
        self.limit = limit
        self.rate = limit
        self.tokens = self.capacity
        self.stamp = now
        self.cut = -math.inf
        self.waiting: list[tuple[int, int]] = []

    @property
    def capacity(self) -> float:
        """Half a second's worth, at least one request (the module's docstring says why)."""
        return max(1.0, self.rate / 2)

    def refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + max(0.0, now - self.stamp) * self.rate)
        self.stamp = now

    def wait(self, now: float) -> float:
        """Seconds until a token is there (0: one is)."""
        self.refill(now)
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate


class Pacer:
    """The token buckets of one process (``process_pacer()``), at the rates of a ``Rates``."""

    FLOOR = 0.1
    """A throttled bucket's rate never falls below this share of its configured rate."""
    RECOVERY = 0.05
    """Share of the configured rate each unthrottled answer gives back."""

    def __init__(self, rates: Rates | None = None, clock: Callable[[], float] = time.monotonic):
        self._rates = rates if rates is not None else Rates(RATES)
        self._clock = clock
        self._cond = threading.Condition()
        self._buckets: dict[Key, _Bucket] = {}
        self._arrivals = itertools.count()

    @property
    def rates(self) -> Rates:
        return self._rates

    @property
    def enabled(self) -> bool:
        return self._rates.enabled

    def configure(self, rates: Rates) -> None:
        """Pace to ``rates`` from now on (the same rates keep the buckets as they are)."""
        with self._cond:
            if rates != self._rates:
                self._rates = rates
                self._buckets = {}
                self._cond.notify_all()

    def key(self, account: str, region: str, service: str, operation: str) -> tuple[Key, float] | None:
        """The bucket a call goes through and its configured rate; None when it is not paced."""
        found = self._rates.limit(service, operation)
        return None if found is None else ((account, region, service, found[0]), found[1])

    def acquire(self, account: str, region: str, service: str, operation: str) -> float:
        """Block until the call may go: its bucket has a token and no waiting call of a higher
        priority, or an earlier one of the same, is before it. Returns the seconds waited."""
        found = self.key(account, region, service, operation)
        if found is None:
            return 0.0
        key, limit = found
        arrival = (-int(_PRIORITY.get()), next(self._arrivals))
        with self._cond:
            started = self._clock()
            bucket = self._bucket(key, limit, started)
            heapq.heappush(bucket.waiting, arrival)
            try:
                while True:
                    if bucket.waiting[0] == arrival:
                        wait = bucket.wait(self._clock())
                        if wait <= 0:
                            bucket.tokens -= 1.0
                            heapq.heappop(bucket.waiting)
                            self._cond.notify_all()  # the next in line looks at the bucket
                            return self._clock() - started
                        self._cond.wait(wait)
                    else:
                        self._cond.wait()
            except BaseException:
                if arrival in bucket.waiting:
                    bucket.waiting.remove(arrival)
                    heapq.heapify(bucket.waiting)
                    self._cond.notify_all()
                raise

    def answered(self, account: str, region: str, service: str, operation: str, *, throttled: bool) -> None:
        """AIMD: a throttling answer halves the bucket's rate and empties it; another answer recovers it a step."""
        found = self.key(account, region, service, operation)
        if found is None:
            return
        with self._cond:
            bucket = self._buckets.get(found[0])
            if bucket is None:
                return
            now = self._clock()
            bucket.refill(now)
            if throttled:
                bucket.tokens = min(bucket.tokens, 0.0)
                if now - bucket.cut >= 1.0:  # one cut for the answers of one burst
                    bucket.rate = max(bucket.limit * self.FLOOR, bucket.rate / 2)
                    bucket.cut = now
            elif bucket.rate < bucket.limit:
                bucket.rate = min(bucket.limit, bucket.rate + bucket.limit * self.RECOVERY)
                self._cond.notify_all()

    def rate(self, account: str, region: str, service: str, operation: str) -> float | None:
        """The rate a call is paced at now (below the configured one after throttling); None: not paced."""
        found = self.key(account, region, service, operation)
        if found is None:
            return None
        with self._cond:
            bucket = self._buckets.get(found[0])
            return bucket.rate if bucket is not None else found[1]

    def waiting(self, account: str, region: str, service: str, operation: str) -> int:
        """How many calls wait for the call's bucket now."""
        found = self.key(account, region, service, operation)
        with self._cond:
            bucket = self._buckets.get(found[0]) if found else None
            return len(bucket.waiting) if bucket is not None else 0

    def wake(self) -> None:
        """Have waiting calls look at their buckets again (a test's clock moved)."""
        with self._cond:
            self._cond.notify_all()

    def _bucket(self, key: Key, limit: float, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(limit, now)
        return bucket


_process: Pacer | None = None
_process_lock = threading.Lock()


def process_pacer() -> Pacer:
    """The process's one registry of buckets (the built-in table until ``configure``)."""
    global _process
    with _process_lock:
        if _process is None:
            _process = Pacer()
        return _process


def configure(text: str | None) -> Pacer:
    """Pace the process to ``LENSOPS_API_RATES`` (``text``); returns the process's pacer."""
    pacer = process_pacer()
    pacer.configure(parse_rates(text))
    return pacer


def table_markdown() -> str:
    """The built-in table as docs/operations.md shows it, one row per service and rate
    (``tests/test_pacing.py`` keeps the page equal to it)."""
    lines = ["| service | operations | requests a second | source |", "| --- | --- | --- | --- |"]
    for service, source in SOURCES.items():
        rows: dict[tuple[float | None, bool], list[str]] = {}
        for (svc, operation), rate in RATES.items():
            if svc == service:  # a shared service's one bucket is a row of its own
                rows.setdefault((rate, service in SHARED and operation == "*"), []).append(operation)
        for number, (key, operations) in enumerate(sorted(rows.items(), key=lambda row: "*" in row[1])):
            named = [f"`{op}`" for op in sorted(operations) if op != "*"]
            if "*" in operations:
                alone = len(rows) == 1
                named.append(("every operation" if alone else "every other operation") + (", one quota" if key[1] else ""))
                if not alone and not key[1]:
                    named[-1] = "any other"
            shown = "not paced" if key[0] is None else f"{key[0]:g}"
            lines.append(f"| `{service}` | {', '.join(named)} | {shown} | {source if number == 0 else ''} |")
    return "\n".join(lines)
