"""Run the lensops CLI under cProfile, every thread included, and dump the merged stats.

    python profile_plan.py [--cpu] OUT.prof plan --repo PATH

cProfile sees only the thread that enabled it; lensops observes kinds and
applies resources on worker threads, so each thread gets its own profiler
(``threading.Thread.run`` is wrapped) and the stats are merged at the end.
With ``--cpu`` the profilers count each thread's CPU time (``time.thread_time``)
instead of wall time, so that threads waiting on AWS or on the GIL do not
count: what is left is where this process burns its CPU.
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import threading
import time


def main() -> int:
    args = sys.argv[1:]
    cpu = bool(args) and args[0] == "--cpu"
    if cpu:
        args = args[1:]
    out, argv = args[0], args[1:]

    def make() -> cProfile.Profile:
        return cProfile.Profile(time.thread_time) if cpu else cProfile.Profile()
    profiles: list[cProfile.Profile] = []
    lock = threading.Lock()
    original = threading.Thread.run

    def run(self: threading.Thread) -> None:
        profile = make()
        with lock:
            profiles.append(profile)
        profile.enable()
        try:
            original(self)
        finally:
            profile.disable()

    threading.Thread.run = run  # type: ignore[method-assign]
    main_profile = make()
    main_profile.enable()
    from controller.cli import main as cli

    code = cli(argv)
    main_profile.disable()
    stats = pstats.Stats(main_profile)
    with lock:
        for profile in profiles:
            try:
                stats.add(profile)
            except TypeError:  # a thread still running (none should be)
                continue
    stats.dump_stats(out)
    return code


if __name__ == "__main__":
    sys.exit(main())
