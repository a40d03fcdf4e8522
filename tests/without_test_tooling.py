"""``lensops`` where the test tooling cannot be imported, as after a plain ``pip install .``.

    python tests/without_test_tooling.py validate desired-state

Installs a meta-path finder, first in line, that refuses ``moto``,
``lensops_emulator`` and what only moto's server brings (Flask, flask-cors,
Werkzeug, responses): importing any of them raises ModuleNotFoundError, as
where they are not installed. Then runs the CLI's ``main``. The test tooling
is still installed in the test virtualenv; this proves that lensops never
needs it (tests/test_packaging.py).
"""

from __future__ import annotations

import importlib.abc
import sys
from pathlib import Path
from typing import Any

REFUSED = ("moto", "lensops_emulator", "flask", "flask_cors", "werkzeug", "responses")


class RefuseTestTooling(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name.partition(".")[0] in REFUSED:
            raise ModuleNotFoundError(f"No module named {name!r} (refused: test tooling)", name=name)
        return None


def install() -> None:
    if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
        del sys.path[0]  # the product comes from its installation, not from tests/
    sys.meta_path.insert(0, RefuseTestTooling())


if __name__ == "__main__":
    install()
    from controller.cli import main

    code = main(sys.argv[1:])
    leaked = sorted(m for m in sys.modules if m.partition(".")[0] in REFUSED)
    assert not leaked, leaked
    sys.exit(code)
