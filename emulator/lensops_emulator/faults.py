"""Injected faults: throttling, 5xx answers, dropped connections, access denied, latency, services that are down.

Part of the embedded AWS emulator used by tests and ``lensops demo`` (moto in
server mode plus what moto lacks). Reliability tests describe the weather with
a ``FaultPlan``; the gateway asks a ``FaultInjector`` before every AWS request
(never ``/moto-api/`` ones) what to do with it. Decisions come from one
seeded random generator, so a plan replays the same sequence of faults for the
same sequence of requests.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Literal

from .wire import AwsError

FAULT_KINDS: frozenset[str] = frozenset({"throttle", "5xx", "reset"})
"""The transient kinds: a plan's default, what botocore retries."""
KNOWN_FAULT_KINDS: frozenset[str] = FAULT_KINDS | {"denied", "gateway", "garbled"}
"""Every kind a plan may name: the transient ones, ``denied`` (a permanent error, never retried),
``gateway`` (HTTP 502 and an HTML page in place of AWS's answer) and ``garbled`` (HTTP 200 with a
body no client can parse, as a proxy's error page)."""

THROTTLING = AwsError(400, "Throttling", "ThrottlingException", "Rate exceeded", sender_fault=True)
"""Throttling as the query services and CloudWatch say it (JSON services: ThrottlingException)."""
_THROTTLING_BY_SERVICE: dict[str, AwsError] = {
    "lambda": AwsError(
        429,
        "TooManyRequestsException",
        "TooManyRequestsException",
        "Rate exceeded",
        sender_fault=True,
        fields=(("Type", "User"), ("Reason", "CallerRateLimitExceeded")),
    ),
    "sns": AwsError(400, "ThrottlingException", "ThrottlingException", "Rate exceeded", sender_fault=True),
    "resourcegroupstaggingapi": AwsError(400, "ThrottledException", "ThrottledException", "Rate exceeded", sender_fault=True),
}


def throttling_error(service: str) -> AwsError:
    """The error AWS answers a request over its rate with, as each service words it.

    - CloudWatch, CloudFormation, STS, RDS (query, or CloudWatch's query-compatible JSON):
      ``Throttling``, HTTP 400, "Rate exceeded".
    - Lambda: ``TooManyRequestsException``, HTTP 429, ``Type: User``, ``Reason:
      CallerRateLimitExceeded`` (botocore's model of the error: HTTP 429, its members, and
      CallerRateLimitExceeded among its ThrottleReason values, the one for API request rates).
    - SNS: ``ThrottlingException``, HTTP 400 (AWS's knowledge-center article "How do I
      troubleshoot ThrottlingException and Rate exceeded errors in Amazon SNS?" quotes
      "An error occurred (ThrottlingException) when calling the Subscribe operation: Rate
      exceeded"; the model's ``Throttled`` / 429 belongs to its SMS operations).
    - The tagging API: ``ThrottledException``, HTTP 400 (the one its model lists for GetResources).
    - WAFv2, Budgets, CloudWatch Logs and the other JSON and REST-JSON services:
      ``ThrottlingException``, HTTP 400 (WAFv2's is not in its model: its users report
      "ThrottlingException: Rate exceeded" from UpdateIPSet, aws-solutions/aws-waf-security-automations#152).
    """
    return _THROTTLING_BY_SERVICE.get(service, THROTTLING)


INTERNAL_FAILURE = AwsError(
    500,
    "InternalFailure",
    "InternalFailure",
    "The request processing has failed because of an unknown error, exception or failure.",
    sender_fault=False,
)
SERVICE_UNAVAILABLE = AwsError(
    503, "ServiceUnavailable", "ServiceUnavailableException", "Service is unavailable. Try again later.", sender_fault=False
)


def access_denied(service: str) -> AwsError:
    """AccessDenied as AWS answers a caller whose policy does not allow the call (HTTP 403).

    Query services and CloudWatch's query-compatible JSON say ``AccessDenied``,
    the other JSON and REST-JSON services ``AccessDeniedException``.
    """
    return AwsError(
        403,
        "AccessDenied",
        "AccessDeniedException",
        f"User: arn:aws:sts::123456789012:assumed-role/lensops/lensops is not authorized to perform: {service}:* "
        "with an explicit deny in an identity-based policy",
        sender_fault=True,
    )


RESET = "reset"
"""The decision to close the connection without answering."""
GATEWAY = "gateway"
"""The decision to answer as a proxy in front of AWS does when AWS is away: HTTP 502 and an HTML page."""
GARBLED = "garbled"
"""The decision to answer HTTP 200 with a body that is neither XML nor JSON."""

Fault = AwsError | Literal["reset", "gateway", "garbled"]


@dataclass(frozen=True)
class FaultRule:
    """One operation failing on purpose, whatever the plan's ``error_rate`` says.

    Requests to ``service``'s ``operation`` (boto3 client name, API operation name) whose
    parameters include every one of ``params`` (name -> value; None: the parameter is absent)
    are answered with a fault of ``kind``: the first ``times`` of them (None: every one).
    Parameters are read from the query string, a form body (query protocol) and a JSON body's
    top-level scalars; REST paths are not parameters here.
    """

    service: str
    operation: str
    kind: str = "denied"
    params: Mapping[str, str | None] = field(default_factory=dict)
    times: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", dict(self.params))
        if self.kind not in KNOWN_FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; known: {sorted(KNOWN_FAULT_KINDS)}")
        if self.times is not None and self.times < 1:
            raise ValueError(f"times must be >= 1 or None, got {self.times}")

    def matches(self, given: Mapping[str, str]) -> bool:
        """Whether a request with parameters ``given`` is one this rule fails."""
        return all(given.get(name) == value for name, value in self.params.items())


@dataclass(frozen=True)
class FaultPlan:
    """What goes wrong, and how often.

    ``error_rate``: fraction of requests (0..1) answered with a fault drawn
    evenly from ``kinds``: ``throttle`` (HTTP 400 Throttling), ``5xx``
    (HTTP 500 InternalFailure or 503 ServiceUnavailable), ``reset`` (the
    connection closes without an answer), ``denied`` (HTTP 403 AccessDenied:
    a permanent error, not in the default kinds), ``gateway`` (HTTP 502 with an
    HTML page, as a proxy answers: not in the default kinds). ``services`` limits ``error_rate``
    and ``latency_ms`` to those boto3 client names (None: every service).
    ``latency_ms`` delays each of those requests. Services in ``down`` answer
    every request with 503, whatever ``services`` says. ``rules`` fail given
    operations (and parameters) on purpose, before any of that. ``seed`` seeds the draws.
    """

    error_rate: float = 0.0
    kinds: AbstractSet[str] = FAULT_KINDS
    services: AbstractSet[str] | None = None
    latency_ms: int = 0
    down: AbstractSet[str] = field(default_factory=frozenset)
    seed: int = 0
    rules: Sequence[FaultRule] = ()

    def __post_init__(self) -> None:
        # Store frozensets whatever collection was given, so a plan stays immutable.
        object.__setattr__(self, "kinds", _names("kinds", self.kinds))
        object.__setattr__(self, "rules", tuple(self.rules))
        object.__setattr__(self, "down", _names("down", self.down))
        if self.services is not None:
            object.__setattr__(self, "services", _names("services", self.services))
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError(f"error_rate must be within 0..1, got {self.error_rate}")
        if unknown := self.kinds - KNOWN_FAULT_KINDS:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {sorted(KNOWN_FAULT_KINDS)}")
        if self.error_rate > 0 and not self.kinds:
            raise ValueError("error_rate > 0 needs at least one fault kind")
        if self.latency_ms < 0:
            raise ValueError(f"latency_ms must be >= 0, got {self.latency_ms}")

    def applies_to(self, service: str) -> bool:
        """Whether ``error_rate`` and ``latency_ms`` apply to ``service``."""
        return self.services is None or service in self.services


class FaultInjector:
    """Decides, request by request and thread-safely, which fault a plan calls for."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._plan: FaultPlan | None = None
        self._random = random.Random()
        self._hits: dict[int, int] = {}

    def set_plan(self, plan: FaultPlan | None) -> None:
        """Follow ``plan`` from the next request on; None injects nothing."""
        with self._lock:
            self._plan = plan
            self._random = random.Random(plan.seed if plan else None)
            self._hits = {}

    def match(self, service: str, operation: str, params: Callable[[], Mapping[str, str]]) -> Fault | None:
        """The fault a rule of the plan calls for on this request, or None (``params`` is asked only
        when a rule names the operation)."""
        with self._lock:
            plan = self._plan
        if plan is None:
            return None
        named = [(i, rule) for i, rule in enumerate(plan.rules) if rule.service == service and rule.operation == operation]
        if not named:
            return None
        given = params()
        with self._lock:
            if self._plan is not plan:
                return None
            for i, rule in named:
                if rule.matches(given) and (rule.times is None or self._hits.get(i, 0) < rule.times):
                    self._hits[i] = self._hits.get(i, 0) + 1
                    return self._fault(rule.kind, service)
        return None

    def latency_seconds(self, service: str) -> float:
        """How long to hold a request to ``service`` before answering it."""
        plan = self._plan
        if plan is None or not plan.applies_to(service):
            return 0.0
        return plan.latency_ms / 1000

    def draw(self, service: str) -> Fault | None:
        """The fault for the next request to ``service``, or None to serve it."""
        with self._lock:
            plan = self._plan
            if plan is None:
                return None
            if service in plan.down:
                return SERVICE_UNAVAILABLE
            if not plan.applies_to(service) or self._random.random() >= plan.error_rate:
                return None
            return self._fault(self._random.choice(sorted(plan.kinds)), service)

    def _fault(self, kind: str, service: str) -> Fault:
        """The answer a fault of ``kind`` gets (the lock held: 5xx draws from the generator)."""
        if kind == "throttle":
            return throttling_error(service)
        if kind == "5xx":
            return self._random.choice((INTERNAL_FAILURE, SERVICE_UNAVAILABLE))
        if kind == "denied":
            return access_denied(service)
        if kind == GATEWAY:
            return GATEWAY
        if kind == GARBLED:
            return GARBLED
        return RESET


def _names(field_name: str, names: Iterable[str]) -> frozenset[str]:
    if isinstance(names, str):
        raise TypeError(f"{field_name} must be a collection of names, not the string {names!r}")
    return frozenset(names)
