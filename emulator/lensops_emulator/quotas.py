"""Request quotas and the latency of a call: AWS's per-account API rate limits, modelled as token buckets.

Part of the embedded AWS emulator used by tests and ``lensops demo`` (moto in
server mode plus what moto lacks). AWS throttles each account and region per
API operation (CloudWatch's ``PutMetricAlarm``: 3 requests a second), or per
service where the quota is shared (Lambda's control plane: 15 a second for all
its operations together). A request over the rate is answered with the
service's throttling error, before it reaches the service, so it changes
nothing. Tests and ``make bench`` set quotas through ``Emulator.set_quotas``;
they are off by default and ``Emulator.reset()`` turns them off.

Each bucket holds one second's worth of requests (``rate`` tokens, at least
one), full at the start, and refills continuously at ``rate`` a second: N
requests sent as fast as possible over T seconds get about ``rate * T + rate``
answers, the rest are throttled. AWS documents its quotas as requests a second
and says no more of its buckets; one second's burst is what clients observe.

``AWS_RATES`` holds AWS's documented default rates for the operations lensops
calls, each with its source below. Operations whose rate AWS does not document
(Budgets, CloudFormation, SNS topics, CloudWatch Logs' log groups, AWS Backup,
the tagging API, STS, SSM, RDS, S3, DynamoDB; CloudWatch's TagResource and
UntagResource) have no bucket there: they are never throttled unless a test
names them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

SHARED = "*"
"""The operation of a service-wide bucket: ``("lambda", "*")`` is shared by every Lambda operation not named on its own."""

# Sources:
# - CloudWatch: "CloudWatch service quotas",
#   https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/cloudwatch_limits.html
#   (PutMetricAlarm 3 TPS; DescribeAlarms 9; DeleteAlarms, SetAlarmState 3; DescribeAlarmsForMetric 9;
#   DeleteDashboards, GetDashboard, ListDashboards, PutDashboard 10 each). PutCompositeAlarm's 3 TPS is
#   the page's current row (issue 18 quotes it); the page names no rate for TagResource or UntagResource.
# - Lambda: "Lambda quotas", https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html
#   ("Remainder of the control plane API requests (excludes invocation, GetFunction, and GetPolicy
#   requests)": 15 a second, all of them together; GetFunction 100; GetPolicy 15; invocations
#   10 x the concurrent executions quota of 1,000).
# - WAFv2: "AWS WAF quotas", https://docs.aws.amazon.com/waf/latest/developerguide/limits.html
#   ("any individual Get or List action, if no other quota is defined for it": five a second;
#   "any individual Create, Put, or Update action": one a second; Delete and the tagging calls
#   are not named).
_CLOUDWATCH: dict[str, float] = {
    "PutMetricAlarm": 3,
    "PutCompositeAlarm": 3,
    "DeleteAlarms": 3,
    "SetAlarmState": 3,
    "DescribeAlarmHistory": 3,
    "EnableAlarmActions": 3,
    "DisableAlarmActions": 3,
    "DescribeAlarms": 9,
    "DescribeAlarmsForMetric": 9,
    "PutDashboard": 10,
    "GetDashboard": 10,
    "ListDashboards": 10,
    "DeleteDashboards": 10,
}
_LAMBDA: dict[str, float] = {SHARED: 15, "GetFunction": 100, "GetPolicy": 15, "Invoke": 10_000}
_WAFV2: dict[str, float] = {
    **dict.fromkeys(("GetIPSet", "GetWebACL", "ListIPSets", "ListWebACLs", "ListTagsForResource"), 5),
    **dict.fromkeys(("CreateIPSet", "CreateWebACL", "UpdateIPSet", "UpdateWebACL"), 1),
}

AWS_RATES: Mapping[tuple[str, str], float] = {
    **{("cloudwatch", op): rate for op, rate in _CLOUDWATCH.items()},
    **{("lambda", op): rate for op, rate in _LAMBDA.items()},
    **{("wafv2", op): rate for op, rate in _WAFV2.items()},
}
"""AWS's documented default request rates (a second, per account and region) for the operations lensops calls."""


@dataclass(frozen=True)
class Quotas:
    """Request rates per (service, operation), and the latency of every call.

    ``rates``: requests a second, keyed by boto3 client name and API operation name;
    the operation ``"*"`` (``SHARED``) makes one bucket for every operation of that
    service not named on its own. ``scale`` multiplies every rate (10: an account
    whose quotas were raised tenfold). ``latency_ms`` delays every AWS request, of
    every service, throttled ones included (a round trip to a region's API: tens of
    milliseconds). ``Quotas.aws()`` is AWS's documented defaults (``AWS_RATES``).
    """

    rates: Mapping[tuple[str, str], float] = field(default_factory=dict)
    scale: float = 1.0
    latency_ms: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "rates", dict(self.rates))
        for key, rate in self.rates.items():
            if not (isinstance(key, tuple) and len(key) == 2 and all(isinstance(part, str) and part for part in key)):
                raise ValueError(f"a rate's key is (service, operation), got {key!r}")
            if not rate > 0:
                raise ValueError(f"the rate of {key[0]}:{key[1]} must be > 0, got {rate!r}")
        if not self.scale > 0:
            raise ValueError(f"scale must be > 0, got {self.scale!r}")
        if self.latency_ms < 0:
            raise ValueError(f"latency_ms must be >= 0, got {self.latency_ms}")

    @classmethod
    def aws(cls, scale: float = 1.0, latency_ms: int = 0) -> Quotas:
        """AWS's documented default rates (``AWS_RATES``), times ``scale``."""
        return cls(AWS_RATES, scale, latency_ms)

    def rate(self, service: str, operation: str) -> float | None:
        """The scaled rate a request to ``service``'s ``operation`` draws from (None: not limited)."""
        rate = self.rates.get((service, operation), self.rates.get((service, SHARED)))
        return None if rate is None else rate * self.scale

    def setting(self) -> str:
        """The scaled rates written as lensops' ``LENSOPS_API_RATES`` setting:
        ``cloudwatch:PutMetricAlarm=30,...,lambda:*=150``."""
        return ",".join(f"{service}:{operation}={_number(rate * self.scale)}" for (service, operation), rate in sorted(self.rates.items()))


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


class _Bucket:
    """``rate`` tokens a second, holding at most ``capacity``; full at the start."""

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.updated = now

    def take(self, now: float) -> bool:
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class QuotaKeeper:
    """The buckets of the quotas in force, thread-safely; the gateway asks it about every AWS request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._quotas: Quotas | None = None
        self._buckets: dict[tuple[str, str], _Bucket] = {}

    def set_quotas(self, quotas: Quotas | None) -> None:
        """Hold requests to ``quotas`` from the next one on, every bucket full; None: no quotas."""
        with self._lock:
            self._quotas = quotas
            self._buckets = {}

    def latency_seconds(self) -> float:
        """How long to hold every AWS request before answering it."""
        quotas = self._quotas
        return quotas.latency_ms / 1000 if quotas else 0.0

    def admit(self, service: str, operation: str) -> bool:
        """Whether this request fits its bucket (it takes a token); False: throttle it."""
        with self._lock:
            quotas = self._quotas
            if quotas is None:
                return True
            key = (service, operation) if (service, operation) in quotas.rates else (service, SHARED)
            rate = quotas.rate(service, operation)
            if rate is None:
                return True
            now = time.monotonic()
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(rate, max(1.0, rate), now)
            return bucket.take(now)
