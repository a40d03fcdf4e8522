"""One module per AWS service, one reconciler per kind.

``registry()`` imports every module of this package and collects the
reconciler classes they define: adding a kind is adding a module.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from functools import cache

from controller.kinds import Reconciler, Registry


@cache
def registry() -> Registry:
    """Every kind of this package (the runbook runs' spec is the program's to add)."""
    found: list[type[Reconciler]] = []
    for module in pkgutil.iter_modules(__path__, f"{__name__}."):
        imported = importlib.import_module(module.name)
        for _, cls in inspect.getmembers(imported, inspect.isclass):
            if cls.__module__ == imported.__name__ and issubclass(cls, Reconciler) and "kind" in cls.__dict__:
                found.append(cls)
    return Registry(tuple(found))
