"""Holding a connection's lease from the admin side: a fix holds it against passes; a stop waits
until a running pass has let go."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

from contactsync.admin.errors import ConflictError
from contactsync.store.connections import acquire_lease, release_lease

FIX_LEASE_SECONDS = 60  # how long a fix may hold the connection against passes
FIX_WAIT_SECONDS = 8.0  # how long a fix waits for a running pass to let go
STOP_WAIT_SECONDS = 10.0  # under API Gateway's 29 s; a pass lets go between chunks


def _take(
    connection_id: str,
    owner: str,
    *,
    seconds: float,
    wait: float,
    pause: float,
    clock: Callable[[], datetime],
) -> bool:
    """Take the lease, trying for ``wait`` seconds; whether it was taken."""
    deadline = time.monotonic() + wait
    while not acquire_lease(connection_id, owner, seconds, clock()):
        if time.monotonic() > deadline:
            return False
        time.sleep(pause)
    return True


@contextmanager
def holding_lease(connection_id: str, clock: Callable[[], datetime]) -> Iterator[None]:
    """Hold the connection's lease while a fix changes links and contacts, so no pass works
    from what it read before the fix."""
    owner = f"support-{uuid.uuid4().hex}"
    taken = _take(
        connection_id,
        owner,
        seconds=FIX_LEASE_SECONDS,
        wait=FIX_WAIT_SECONDS,
        pause=0.25,
        clock=clock,
    )
    if not taken:
        raise ConflictError("a sync pass is working on this connection; try again shortly")
    try:
        yield
    finally:
        release_lease(connection_id, owner)


def wait_for_running_pass(connection_id: str, clock: Callable[[], datetime]) -> None:
    """A pass that began before a stop checks the state before its next write; wait (a few
    seconds at most) until it has let go of the connection."""
    owner = f"stop-{uuid.uuid4().hex}"
    taken = _take(
        connection_id,
        owner,
        seconds=STOP_WAIT_SECONDS,
        wait=STOP_WAIT_SECONDS,
        pause=0.2,
        clock=clock,
    )
    if taken:
        release_lease(connection_id, owner)
