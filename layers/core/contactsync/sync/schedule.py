"""Which connections are due for a pass, and when they are due next."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from contactsync.runtime.messages import SyncMessage
from contactsync.runtime.queue import PassQueue
from contactsync.store.connections import due_connections, set_next_run

CLAIM = timedelta(minutes=5)  # a claimed connection is not enqueued again for this long


def enqueue_due(
    queue: PassQueue,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    limit: int = 1000,
) -> int:
    """One message per due connection; each is pushed back by CLAIM so a slow queue does not
    get it twice (the pass sets the real next run when it finishes)."""
    now = clock()
    due = due_connections(now, limit=limit)
    for connection_id in due:
        set_next_run(connection_id, now + CLAIM)
    if not due:
        return 0
    return queue.send(SyncMessage(connection_id=c, reason="schedule") for c in due)
