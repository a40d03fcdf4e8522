"""``make bench`` only: the ``bench_*.py`` files here are collected when this folder (or a file
in it) is named on the command line, never by ``pytest tests`` (``make test``).

The figures gathered by the benchmarks are printed as one table at the end of the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent


def _asked_for(config: pytest.Config) -> bool:
    """True when a command-line argument is this folder or something in it."""
    base = Path(config.invocation_params.dir)
    for arg in config.args:
        path = (base / arg.split("::", 1)[0]).resolve()
        if path == HERE or HERE in path.parents:
            return True
    return False


def pytest_collect_file(file_path: Path, parent: Any) -> Any:
    if file_path.suffix == ".py" and file_path.name.startswith("bench_") and _asked_for(parent.config):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


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
