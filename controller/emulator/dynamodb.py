"""DynamoDB: make moto's conditional writes atomic, as DynamoDB's are.

Part of the embedded AWS emulator (tests and ``lensops demo``). moto reads an
item, evaluates the condition and writes in separate steps without a lock,
so two concurrent conditional writes served by the threaded server can both
succeed, which DynamoDB never allows; leases and exactly-once claims rely on
it. Serialising moto's write operations gives DynamoDB's per-item atomicity.
"""

from __future__ import annotations

import threading
from typing import Any

_LOCK = threading.RLock()
_WRITES = ("put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item")
_installed = False


def make_writes_atomic() -> None:
    """Wrap moto's DynamoDB write operations in one lock (once per process)."""
    global _installed
    if _installed:
        return
    from moto.dynamodb.models import DynamoDBBackend

    for name in _WRITES:
        original = getattr(DynamoDBBackend, name, None)
        if original is None:
            continue

        def locked(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            with _LOCK:
                return _original(self, *args, **kwargs)

        setattr(DynamoDBBackend, name, locked)
    _installed = True
