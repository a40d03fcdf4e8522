"""``make soak`` only: the ``soak_*.py`` files here are collected when this folder (or a file in
it) is named on the command line (``pytest -s tests/soak``), never by ``pytest tests`` (``make test``).

The same approach as tests/benchmarks/: files that ``pytest tests`` does not match as test
modules, collected by this conftest only when asked for.
"""

from __future__ import annotations

from pathlib import Path

from opt_in import opt_in_collector

HERE = Path(__file__).resolve().parent


pytest_collect_file = opt_in_collector(HERE, "soak_")
