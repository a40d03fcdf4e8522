"""Atomic writes where moto has none: DynamoDB's conditional writes and SNS's backend.

Part of the embedded AWS emulator (tests and ``lensops demo``). moto reads an
item, evaluates the condition and writes in separate steps without a lock,
so two concurrent conditional writes served by the threaded server can both
succeed, which DynamoDB never allows; leases and exactly-once claims rely on
it. moto's SNS backend mutates shared dicts unguarded, so concurrent
Subscribe calls can fail with an HTML 500. Serialising those write
operations gives the emulator the atomicity AWS has.
"""

from __future__ import annotations

import threading
from typing import Any

_LOCK = threading.RLock()
_installed = False


def _serialise(cls: type, names: tuple[str, ...]) -> None:
    for name in names:
        original = getattr(cls, name, None)
        if original is None:
            continue

        def locked(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            with _LOCK:
                return _original(self, *args, **kwargs)

        setattr(cls, name, locked)


def make_writes_atomic() -> None:
    """Wrap moto's DynamoDB and SNS write operations in one lock (once per process)."""
    global _installed
    if _installed:
        return
    from moto.dynamodb.models import DynamoDBBackend
    from moto.sns.models import SNSBackend

    _serialise(DynamoDBBackend, ("put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item"))
    _serialise(SNSBackend, ("create_topic", "delete_topic", "subscribe", "unsubscribe", "set_topic_attribute", "tag_resource", "untag_resource"))
    _installed = True
