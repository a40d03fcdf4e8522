"""Test folders run only when named on the command line (``make bench``, ``make soak``).

Their files are named so that ``pytest tests`` does not match them as test
modules (``bench_*.py``, ``soak_*.py``); the folder's conftest collects them
with ``opt_in_collector`` only when the folder, or a file in it, is asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest


def _named(config: pytest.Config) -> list[Path]:
    """The paths named on the command line."""
    base = Path(config.invocation_params.dir)
    return [(base / arg.split("::", 1)[0]).resolve() for arg in config.args]


def _asked_for(config: pytest.Config, folder: Path) -> bool:
    """True when a command-line argument is ``folder`` or something in it."""
    return any(path == folder or folder in path.parents for path in _named(config))


def opt_in_collector(folder: Path, prefix: str) -> Callable[[Path, Any], Any]:
    """A ``pytest_collect_file`` hook collecting ``<prefix>*.py`` in ``folder`` when it is asked for."""

    def collect(file_path: Path, parent: Any) -> Any:
        if file_path.suffix == ".py" and file_path.name.startswith(prefix) and _asked_for(parent.config, folder):
            if file_path.resolve() in _named(parent.config):
                return None  # a file named on the command line is collected by pytest itself
            return pytest.Module.from_parent(parent, path=file_path)
        return None

    return collect
