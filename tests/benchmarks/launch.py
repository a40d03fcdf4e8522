"""Running a command as a user does, for the benchmarks: a subprocess, timed, with its peak RSS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

LENSOPS = str(Path(sys.executable).with_name("lensops"))
"""The installed ``lensops`` console script."""


@dataclass
class Run:
    seconds: float
    code: int
    rss_mb: float
    out: str
    err: str


LAUNCHER = """
import json, os, resource, subprocess, sys, time
out, argv = sys.argv[1], sys.argv[2:]
started = time.perf_counter()
code = subprocess.call(argv)
seconds = time.perf_counter() - started
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(out, "w") as handle:
    json.dump({"seconds": seconds, "maxrss_kb": usage.ru_maxrss}, handle)
sys.exit(code)
"""


def run(argv: list[str], timeout: float = 1800, env: dict[str, str] | None = None) -> Run:
    """A subprocess, timed, with its peak RSS from ``getrusage(RUSAGE_CHILDREN)``.

    Through a small launcher process: Linux carries a parent's RSS high-water mark
    over fork and exec, so a child of this pytest process (the emulator lives here)
    would report at least pytest's size; the launcher is small, so its child's
    figure is the child's own. The time is taken in the launcher, around the child.
    """
    with tempfile.TemporaryDirectory() as tmp:
        measured = Path(tmp) / "usage.json"
        out_path, err_path = Path(tmp) / "out", Path(tmp) / "err"
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            done = subprocess.run(
                [sys.executable, "-c", LAUNCHER, str(measured), *argv],
                stdout=out, stderr=err, env={**os.environ, **(env or {})}, timeout=timeout,
            )
        usage = json.loads(measured.read_text()) if measured.exists() else {"seconds": float("nan"), "maxrss_kb": 0}
        return Run(
            float(usage["seconds"]), done.returncode, usage["maxrss_kb"] / 1024,
            out_path.read_text(errors="replace"), err_path.read_text(errors="replace"),
        )


def lensops(*args: str, timeout: float = 1800, env: dict[str, str] | None = None) -> Run:
    """``lensops ARGS``, through ``run``; ``env`` is added to this process's environment."""
    return run([LENSOPS, *args], timeout, env)
