"""Run the lensops CLI with wall-clock timers around the steps of a pass, and write them as JSON.

    python phases.py OUT.json plan --repo PATH

No profiler (so no overhead beyond a few timer calls): the engine's functions
are wrapped from outside, nothing in lensops changes. Timed, in seconds:
``imports`` (the CLI, the runner, the reconcilers, boto3), ``load`` (read,
parse and validate the manifests), ``account guard`` (STS), ``state read``
(the inventory), ``observe`` (every kind's reads, wall clock), inside it
``observe: longest alarm batch`` (one batch's ``DescribeAlarms`` and its tags), ``decide`` (the walk: refs, desired
state, diff, and the writes of an apply), ``decide: scheduler CPU`` (CPU time
of the thread running the walk, i.e. the scheduling loop when applying),
``record`` and ``render``; ``total`` is the CLI's main, ``cpu`` the process's
CPU time at the end; ``peak MB after <step>`` the process's peak RSS so far.
"""

from __future__ import annotations

import functools
import json
import resource
import sys
import time
from typing import Any, Callable

started = time.perf_counter()
TIMES: dict[str, float] = {}


def _peak_mb() -> float:
    """This process's peak RSS: VmHWM, which belongs to the process's own memory map.

    (``getrusage(RUSAGE_SELF).ru_maxrss`` would not do: Linux carries the parent's
    high-water mark over a fork and exec, so a child of a big pytest process
    reports at least the parent's size.)
    """
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed(name: str, fn: Callable[..., Any], cpu_name: str | None = None, longest: bool = False) -> Callable[..., Any]:
    """``fn`` timed into ``TIMES[name]`` (summed over calls, or the longest call), with the peak RSS after it."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t, c = time.perf_counter(), time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            took = time.perf_counter() - t
            TIMES[name] = max(TIMES.get(name, 0.0), took) if longest else TIMES.get(name, 0.0) + took
            if cpu_name:
                TIMES[cpu_name] = TIMES.get(cpu_name, 0.0) + time.thread_time() - c
            TIMES[f"peak MB after {name}"] = _peak_mb()

    return wrapper


def main() -> int:
    out, argv = sys.argv[1], sys.argv[2:]
    import boto3  # noqa: F401 - counted with the imports

    from controller import cli, render, runner
    from controller.engine import passes, walk
    from controller.manifests import loader
    from controller.state import sqlite
    import controller.kinds  # noqa: F401 - counted with the imports
    import reconcilers.cloudwatch

    TIMES["imports"] = time.perf_counter() - started
    TIMES["peak MB after imports"] = _peak_mb()
    runner.load_tree = _timed("load", loader.load_tree)  # runner imported the name
    loader.load_tree = _timed("load", loader.load_tree)  # validate imports it when it runs
    runner.check_account = _timed("account guard", runner.check_account)
    sqlite.SqliteStore.resources = _timed("state read", sqlite.SqliteStore.resources)
    walk.Pass.observe = _timed("observe", walk.Pass.observe)
    passes.Engine._record = _timed("record", passes.Engine._record)
    walk.Pass.walk = _timed("decide", walk.Pass.walk, "decide: scheduler CPU")
    alarms = reconcilers.cloudwatch._AlarmReconciler
    alarms._describe = _timed("observe: longest alarm batch", alarms._describe, longest=True)
    render.plan_text = _timed("render", render.plan_text)
    t = time.perf_counter()
    code = cli.main(argv)
    TIMES["total"] = time.perf_counter() - t
    TIMES["cpu"] = time.process_time()
    TIMES["peak MB"] = _peak_mb()
    with open(out, "w") as handle:
        json.dump(TIMES, handle)
    return code


if __name__ == "__main__":
    sys.exit(main())
