"""A pass held by the mass-change guard: confirm it (it runs) or discard it (nothing it planned
is written)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from contactsync.admin import access
from contactsync.admin.access import Caller
from contactsync.admin.context import AdminContext
from contactsync.admin.errors import ConflictError
from contactsync.admin.views import connection_view
from contactsync.store.audit import add_audit
from contactsync.store.connections import update_connection
from contactsync.sync.connection_states import ConnectionState, transition


def confirm(ctx: AdminContext, caller: Caller, connection_id: str) -> dict[str, Any]:
    """Let the held pass go ahead: the reconciler runs it again, confirmed."""
    conn = access.connection_of(caller, connection_id)
    if conn.state != ConnectionState.NEEDS_ATTENTION:
        raise ConflictError(f"no pass is waiting for confirmation (the sync is {conn.state})")
    add_audit(
        connection_id,
        "confirm",
        "the held pass was confirmed and runs now",
        details=conn.held_plan,
        now=ctx.clock(),
    )
    ctx.queue_pass(connection_id, "confirm")
    return {"queued": True, "connection": connection_view(conn, ctx.clock())}


def discard(ctx: AdminContext, caller: Caller, connection_id: str) -> dict[str, Any]:
    """Drop the held pass. Nothing it planned is written; if its cause is still there the
    next pass will be held again, so the user is asked to fix the cause first."""
    conn = access.connection_of(caller, connection_id)
    if conn.state != ConnectionState.NEEDS_ATTENTION or conn.held_plan is None:
        raise ConflictError(f"no pass is held (the sync is {conn.state})")
    poll = timedelta(seconds=ctx.wiring.settings.safety_poll_seconds)
    was = str(dict(conn.held_plan).get("was") or "active")  # an initial sync stays one
    update_connection(
        connection_id,
        state=transition(conn.state, was),
        held_plan=None,
        next_run_at=ctx.clock() + poll,
    )
    add_audit(
        connection_id,
        "discard",
        "the held pass was discarded: nothing it planned was written",
        details=conn.held_plan,
        now=ctx.clock(),
    )
    return {
        "discarded": True,
        "message": "fix what caused the mass change; the next pass checks again",
        "connection": connection_view(access.connection_of(caller, connection_id), ctx.clock()),
    }
