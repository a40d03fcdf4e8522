"""A contract over the registry: every kind forbids unknown fields, declares its IAM actions,
and has a test against the emulator.

The kinds come from the registry itself (``controller.catalog.registry()``), never from a
list kept here, so a kind added to lensops is under the contract the moment its module exists.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

from controller.catalog import registry

TESTS = Path(__file__).resolve().parent
RECONCILED = registry().kinds


def test_the_registry_is_not_empty():
    """The parametrized checks below would pass vacuously over an empty registry."""
    assert RECONCILED, "no kind is registered: does reconcilers.registry() still find the kind modules?"


@pytest.mark.parametrize("kind", RECONCILED)
def test_spec_forbids_unknown_fields(kind):
    assert registry()[kind].spec_model.model_config.get("extra") == "forbid"


@pytest.mark.parametrize("kind", RECONCILED)
def test_reconciler_declares_iam_actions(kind):
    reconciler = registry()[kind]
    assert reconciler.iam_read and reconciler.iam_write
    for action in (*reconciler.iam_read, *reconciler.iam_write):
        service, _, name = action.partition(":")
        assert service and name and name[0].isupper(), action


@pytest.mark.parametrize("kind", RECONCILED)
def test_reconciler_documents_its_kind(kind):
    """The generated reference reads the class: its docstring, and an example of its own kind."""
    reconciler = registry()[kind]
    assert reconciler.__doc__ and reconciler.example, f"{reconciler.__qualname__}: a docstring and an example"
    assert re.search(rf"^kind: {kind}$", reconciler.example, re.M), f"{reconciler.__qualname__}.example is not a {kind}"


@cache
def _applying_modules() -> dict[str, tuple[str, ...]]:
    """Test module name -> the string constants of modules that apply manifests to the emulator.

    A module counts when one of its functions takes the ``aws`` fixture (the emulator) and
    the module passes ``"apply"`` to the command line. This file never counts.
    """
    found: dict[str, tuple[str, ...]] = {}
    for path in sorted(TESTS.glob("test_*.py")):
        if path.resolve() == Path(__file__).resolve():
            continue
        module = ast.parse(path.read_text())
        strings = tuple(n.value for n in ast.walk(module) if isinstance(n, ast.Constant) and isinstance(n.value, str))
        uses_emulator = any(
            isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and "aws" in [a.arg for a in n.args.args] for n in ast.walk(module)
        )
        if uses_emulator and "apply" in strings:
            found[path.name] = strings
    return found


@pytest.mark.parametrize("kind", RECONCILED)
def test_kind_has_a_test_that_applies_it_to_the_emulator(kind):
    """Some test module other than this one holds a manifest of the kind (a ``kind: <Kind>`` line
    in a string) and applies manifests against the emulator."""
    line = re.compile(rf"(^|\n)[ \t]*kind:[ \t]*{re.escape(kind)}[ \t]*(\n|$)")
    tested = [name for name, strings in _applying_modules().items() if any(line.search(s) for s in strings)]
    assert tested, f"no test module under tests/ applies a manifest of kind {kind} to the emulator (a string with 'kind: {kind}')"
