"""docs/architecture.md keeps step with the code: its module map has one row per module under
``controller/`` (every ``.py`` file, ``__init__.py`` of each package included), names no module
that does not exist, and the page points at no product module that is gone."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "architecture.md"
MAP_HEADING = "## Module map"

MODULE_PATH = re.compile(r"`((?:controller|reconcilers|runbooks)/[A-Za-z0-9_/]*\.py)`")


def _modules() -> list[str]:
    """Every module under controller/, as a path from the repository's root."""
    found = (path.relative_to(ROOT).as_posix() for path in (ROOT / "controller").rglob("*.py"))
    return sorted(p for p in found if "/__pycache__/" not in p)


def _section(text: str, heading: str) -> str:
    """The text under ``heading`` up to the next heading of the same level."""
    start = text.index(heading + "\n")
    rest = text[start + len(heading) + 1 :]
    end = re.search(r"^## ", rest, flags=re.MULTILINE)
    return rest[: end.start()] if end else rest


def _map_rows(text: str) -> list[str]:
    """The module each row of the map's table names in its first cell."""
    rows: list[str] = []
    for line in _section(text, MAP_HEADING).splitlines():
        if not line.startswith("| `controller/"):
            continue
        first = line.split("|")[1]
        rows.extend(MODULE_PATH.findall(first))
    return rows


def test_the_page_has_a_module_map() -> None:
    text = PAGE.read_text(encoding="utf-8")
    assert MAP_HEADING + "\n" in text, f"docs/architecture.md has no '{MAP_HEADING}' section"
    assert len(_map_rows(text)) > 10


def test_every_controller_module_has_a_row_in_the_map() -> None:
    rows = set(_map_rows(PAGE.read_text(encoding="utf-8")))
    missing = [module for module in _modules() if module not in rows]
    assert missing == [], f"docs/architecture.md's module map has no row for: {', '.join(missing)}"


def test_the_map_names_only_modules_that_exist_once_each() -> None:
    rows = _map_rows(PAGE.read_text(encoding="utf-8"))
    modules = set(_modules())
    unknown = [row for row in rows if row not in modules]
    assert unknown == [], f"docs/architecture.md's module map names modules that do not exist: {', '.join(unknown)}"
    repeated = sorted({row for row in rows if rows.count(row) > 1})
    assert repeated == [], f"docs/architecture.md's module map has more than one row for: {', '.join(repeated)}"


def test_every_module_the_page_names_exists() -> None:
    named = sorted(set(MODULE_PATH.findall(PAGE.read_text(encoding="utf-8"))))
    gone = [path for path in named if not (ROOT / path).is_file()]
    assert gone == [], f"docs/architecture.md names modules that do not exist: {', '.join(gone)}"
