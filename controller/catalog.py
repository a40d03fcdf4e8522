"""The program's registry: the kinds of ``reconcilers/`` and the runbook runs of ``runbooks/``.

The one place that names the plugin packages; the CLI, the daemon and the docs
hand what it builds to the loader and the engine.
"""

from __future__ import annotations

import dataclasses
from functools import cache

import reconcilers
from controller.kinds import Registry
from runbooks import RunbookRunSpec


@cache
def registry() -> Registry:
    """Every kind lensops knows."""
    return dataclasses.replace(reconcilers.registry(), runbook_spec=RunbookRunSpec)
