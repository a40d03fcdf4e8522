"""``make soak`` only: the ``soak_*.py`` files here are collected when this folder (or a file in
it) is named on the command line (``pytest -s tests/soak``), never by ``pytest tests`` (``make test``).

The same approach as tests/benchmarks/: files that ``pytest tests`` does not match as test
modules, collected by this conftest only when asked for.
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
    if file_path.suffix == ".py" and file_path.name.startswith("soak_") and _asked_for(parent.config):
        return pytest.Module.from_parent(parent, path=file_path)
    return None
