"""lensops: a GitOps controller for AWS.

The engine lives here: sources, manifests, planning, state, the daemon, HTTP,
metrics and the command line. Reconcilers (one per kind) live in
``reconcilers/`` and depend only on the engine's small core: ``errors``,
``aws``, ``diff`` and ``types``.
"""

__version__ = "0.1.0"
