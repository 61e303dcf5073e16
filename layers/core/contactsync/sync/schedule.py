"""Which connections are due for a pass, and when they are due next."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from contactsync.runtime.messages import SyncMessage
from contactsync.runtime.queue import PassQueue
from contactsync.store.connections import claim_due, due_connections

CLAIM = timedelta(minutes=5)  # a claimed connection is not enqueued again for this long


def enqueue_due(
    queue: PassQueue,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    limit: int = 1000,
) -> int:
    """One message per due connection; each is claimed for CLAIM so a slow queue does not get
    it twice (the pass sets the real next run when it finishes, which ends the claim). A claim
    is one small write that moves no index key."""
    now = clock()
    due = [c for c in due_connections(now, limit=limit) if claim_due(c, now, now + CLAIM)]
    if not due:
        return 0
    return queue.send(SyncMessage(connection_id=c, reason="schedule") for c in due)
