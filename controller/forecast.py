"""How long an apply will take at the pace of AWS's API rates, and how far along it is.

Where it stands: beside the runner, for ``lensops apply``'s progress lines. Before
an apply's first write, the engine says which writes the pass will probably
make (``Engine.reconcile``'s ``on_forecast``: the (kind, action) of each); each
kind says which API calls such a write makes (``Reconciler.write_calls``), and
the process's pacer (``controller/pacing.py``) the rate each API goes at. The
slowest API sets the time: 1,000 new alarms are 1,000 ``PutMetricAlarm`` at 3 a
second, 5 min 34 s, however fast everything else goes.

An apply estimated at over ``SHOWN_ABOVE`` seconds says so up front
(``dev: 1,000 writes at 3/s (cloudwatch:PutMetricAlarm): about 5 min 34 s``), then
every tenth of its writes or every ``EVERY_SECONDS`` seconds, whichever comes
first, how far it is and what is left at the rates of now (a throttled API's
rate is lower: ``dev: 300/1,000 writes, about 3 min 54 s left``). A shorter apply
says nothing more than its resources' lines. Approximate by design: the
writes are decided before any is made, without previews.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Callable

from controller.kinds import Registry
from controller.pacing import Pacer
from controller.plan import Action, ResourcePlan

SHOWN_ABOVE = 10.0
"""Seconds: an apply estimated at this or less says nothing of its time."""
EVERY_SECONDS = 15.0
"""Seconds between two progress lines at most (while the estimate is shown)."""
EVERY_SHARE = 0.1
"""A progress line at every such share of the writes done."""

Bucket = tuple[str, str]
"""(service, the bucket's operation: ``*`` for a service of one quota)."""


def duration(seconds: float) -> str:
    """``5 min 34 s``, ``42 s``, ``1 h 5 min``: whole seconds, rounded up."""
    total = max(1, math.ceil(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    return f"{secs} s"


class Forecast:
    """One environment's apply: its writes per API, their time at the API's rate, the progress lines."""

    def __init__(
        self,
        environment: str,
        account: str,
        region: str,
        registry: Registry,
        pacer: Pacer,
        emit: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
    ):
        self.environment = environment
        self.account = account
        self.region = region
        self.registry = registry
        self.pacer = pacer
        self.emit = emit
        self.clock = clock
        self.planned: dict[Bucket, int] = {}
        self.done: dict[Bucket, int] = {}
        self.shown = False
        """Whether the estimate was shown (progress lines follow only then)."""
        self._lock = threading.Lock()
        self._next_share = EVERY_SHARE
        self._last_line = 0.0

    @property
    def total(self) -> int:
        return sum(self.planned.values())

    def start(self, expected: list[tuple[str, Action]]) -> None:
        """The apply's writes, before the first (``Engine.reconcile``'s ``on_forecast``): the estimate, when it is long."""
        for kind, action in expected:
            for bucket, count in self._calls(kind, action).items():
                self.planned[bucket] = self.planned.get(bucket, 0) + count
        seconds, slowest = self.seconds(self.planned)
        if slowest is None or seconds <= SHOWN_ABOVE:
            return
        self.shown = True
        self._last_line = self.clock()
        count = self.planned[slowest]
        rate = f"{self._rate(slowest):.3g}/s ({slowest[0]}:{slowest[1]})"
        writes = f"{self.total:,} writes at {rate}" if count == self.total else f"{self.total:,} writes, {count:,} of them at {rate}"
        self.emit(f"{self.environment}: {writes}: about {duration(seconds)}")

    def finished(self, rp: ResourcePlan) -> None:
        """A resource was acted on (the pass's ``on_resource``): a progress line when one is due."""
        if not self.shown or rp.action not in (Action.CREATE, Action.UPDATE, Action.DELETE):
            return
        with self._lock:
            for bucket, count in self._calls(rp.kind, rp.action).items():
                self.done[bucket] = self.done.get(bucket, 0) + count
            left = {bucket: max(0, count - self.done.get(bucket, 0)) for bucket, count in self.planned.items()}
            made = self.total - sum(left.values())
            now = self.clock()
            if made >= self.total or (made < self._next_share * self.total and now - self._last_line < EVERY_SECONDS):
                return
            while self._next_share * self.total <= made:
                self._next_share += EVERY_SHARE
            self._last_line = now
            line = f"{self.environment}: {made:,}/{self.total:,} writes, about {duration(self.seconds(left)[0])} left"
        self.emit(line)

    def seconds(self, writes: dict[Bucket, int]) -> tuple[float, Bucket | None]:
        """The time ``writes`` take at the rates of now (their APIs' in parallel: the slowest's), and that API."""
        slowest: tuple[float, Bucket | None] = (0.0, None)
        for bucket, count in writes.items():
            rate = self._rate(bucket)
            if count and rate and count / rate > slowest[0]:
                slowest = (count / rate, bucket)
        return slowest

    def _rate(self, bucket: Bucket) -> float:
        return self.pacer.rate(self.account, self.region, *bucket) or 0.0

    def _calls(self, kind: str, action: str) -> dict[Bucket, int]:
        """The paced API calls one write of ``kind`` makes, by the bucket each waits for."""
        reconciler = self.registry.get(kind)
        calls: dict[Bucket, int] = {}
        for name, count in (reconciler.write_calls(str(action)) if reconciler else {}).items():
            service, _, operation = name.partition(":")
            found = self.pacer.key(self.account, self.region, service, operation)
            if found is not None:
                bucket = (service, found[0][3])
                calls[bucket] = calls.get(bucket, 0) + count
        return calls
