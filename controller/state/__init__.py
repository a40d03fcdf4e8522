"""The state store: what lensops applied, owns and decided, per environment.

``open_store(url)`` takes ``LENSOPS_STATE_URL``: ``sqlite:///path`` (one
process) or ``dynamodb://table`` (several replicas with leases).
"""

from __future__ import annotations

from controller.errors import UsageError
from controller.state.base import EnvironmentRecord, ResourceRecord, RevisionRecord, StateStore

__all__ = ["EnvironmentRecord", "ResourceRecord", "RevisionRecord", "StateStore", "open_store"]


def open_store(url: str) -> StateStore:
    """The store named by a URL."""
    if url.startswith("sqlite://"):
        from controller.state.sqlite import SqliteStore

        path = url[len("sqlite://") :]
        if path.startswith("/"):
            path = path[1:] if not path.startswith("//") else path[1:]
        return SqliteStore(path or ".lensops/state.db")
    if url.startswith("dynamodb://"):
        raise UsageError("dynamodb:// state store is not available in this version; use sqlite:///path")
    raise UsageError(f"LENSOPS_STATE_URL {url!r}: expected sqlite:///path or dynamodb://table")
