"""The dependency scheduler: run each item once its dependencies are done, independent ones concurrently.

Linear in the items: each keeps a count of its unfinished dependencies, a
finished one releases its dependents onto the ready queue, and at most twice
the pool's size is in flight, so each wait looks at few futures. An item may
answer "not finished yet" (a change AWS is still making): it is re-checked
when due, never by a sleeping worker. Each item runs in a copy of the caller's
context (``contextvars``): a rollback's urgency for the API rates
(``controller/pacing.py``) goes with it.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Callable, Generic, Protocol, TypeVar


class Pending(Protocol):
    """Work still in progress: re-checked after ``interval`` seconds."""

    @property
    def interval(self) -> float: ...


P = TypeVar("P", bound=Pending)


class Scheduler(Generic[P]):
    """Runs ``start(item)`` in dependency order on a pool; ``recheck(pending)`` for work still in progress."""

    def __init__(self, workers: int, stopping: threading.Event):
        self.workers = max(1, workers)
        self.stopping = stopping

    def run(
        self,
        items: list[str],
        deps: dict[str, set[str]],
        start: Callable[[str], P | None],
        recheck: Callable[[P], P | None],
        owner: Callable[[P], str],
        abandon: Callable[[P], None],
    ) -> None:
        """Every item once; ``abandon`` is told of work still in progress when stopping."""
        known = set(items)
        unfinished = {item: len(deps.get(item, set()) & known) for item in items}
        dependents: dict[str, list[str]] = {}
        for item in items:
            for dep in deps.get(item, set()) & known:
                dependents.setdefault(dep, []).append(item)
        ready = deque(item for item in items if unfinished[item] == 0)
        limit = 2 * self.workers
        running: dict[Future[P | None], str] = {}
        delayed: list[tuple[float, P]] = []

        def release(item: str) -> None:
            for dependent in dependents.get(item, ()):
                unfinished[dependent] -= 1
                if unfinished[dependent] == 0:
                    ready.append(dependent)

        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            while ready or running or delayed:
                while ready and len(running) < limit:
                    item = ready.popleft()
                    running[pool.submit(contextvars.copy_context().run, start, item)] = item
                if self.stopping.is_set():
                    for _, pending in delayed:
                        abandon(pending)
                        release(owner(pending))
                    delayed.clear()
                now = time.monotonic()
                due = [d for d in delayed if d[0] <= now]
                if due:
                    delayed = [d for d in delayed if d[0] > now]
                    for _, pending in due:
                        running[pool.submit(contextvars.copy_context().run, recheck, pending)] = owner(pending)
                if not running:
                    if ready:
                        continue
                    if not delayed:
                        break
                    time.sleep(max(0.0, min(d[0] for d in delayed) - time.monotonic()))
                    continue
                timeout = max(0.0, min(d[0] for d in delayed) - time.monotonic()) if delayed else None
                finished, _ = wait(list(running), timeout=timeout, return_when=FIRST_COMPLETED)
                for future in finished:
                    item = running.pop(future)
                    still = future.result()
                    if still is not None:
                        delayed.append((time.monotonic() + still.interval, still))
                    else:
                        release(item)
