"""``make bench`` only: the ``bench_*.py`` files here are collected when this folder (or a file
in it) is named on the command line, never by ``pytest tests`` (``make test``).

The figures gathered by the benchmarks are printed as one table at the end of the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from opt_in import opt_in_collector

HERE = Path(__file__).resolve().parent


pytest_collect_file = opt_in_collector(HERE, "bench_")


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    from benchmarks.report import RESULTS

    if RESULTS.empty():
        return
    text = RESULTS.render()
    terminalreporter.write_sep("=", "lensops benchmarks")
    terminalreporter.write_line(text)
    out = Path(config.rootpath) / ".lensops" / "bench.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    terminalreporter.write_line(f"(also written to {out})")
