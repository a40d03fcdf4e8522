"""lensops: a GitOps controller for AWS.

The engine lives here: sources, manifests, planning, state, the daemon, HTTP,
metrics and the command line. Reconcilers (one module per AWS service, one
class per kind) live in ``reconcilers/`` and depend only on the protocol in
``controller/kinds.py`` and the small core (``errors``, ``diff``,
``apishape``, ``plan``, ``manifests.types``); ``controller/catalog.py``
builds the registry of kinds the loader and the engine are handed.
"""

__version__ = "0.1.0"
