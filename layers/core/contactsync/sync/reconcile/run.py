"""Running a pass: the lease around it, and how the way it stopped (done, out of time, throttled,
signed out, failed) becomes its result and the connection's status. And previewing one."""

from __future__ import annotations

import time
from datetime import timedelta

from contactsync.engine.plan import Plan
from contactsync.providers.base import AuthExpired, ProviderError, RateLimited
from contactsync.runtime.messages import SyncMessage
from contactsync.store.pass_interface import ConnectionView, PassStore
from contactsync.sync.connection_states import RUNNING, ConnectionState, transition
from contactsync.sync.reconcile.context import PassContext, PassScope
from contactsync.sync.reconcile.engine_input import plan_changes
from contactsync.sync.reconcile.feeds import read_side
from contactsync.sync.reconcile.hints import keep_hints
from contactsync.sync.reconcile.sending import TooSoonToTell
from contactsync.sync.reconcile.status import PassResult, retry_delay
from contactsync.sync.reconcile.sync_pass import SyncPass

# A connection waiting for its user keeps the hints pushes bring, for the pass after.
WAITING_WITH_HINTS = frozenset({ConnectionState.NEEDS_REAUTH, ConnectionState.NEEDS_ATTENTION})


def _turned_away(conn: ConnectionView | None, message: SyncMessage) -> str:
    """Why this message runs no pass on the connection as it stands ("" when it runs one)."""
    if conn is None or conn.state not in RUNNING:
        return f"connection is {conn.state if conn else 'gone'}"
    if conn.state == ConnectionState.NEEDS_ATTENTION and message.reason != "confirm":
        return "waiting for the user to confirm a held pass"
    return ""


def _skipped(
    store: PassStore, conn: ConnectionView | None, message: SyncMessage, why: str
) -> PassResult:
    """A message that runs no pass; a connection waiting for its user keeps its hints."""
    if conn is not None and conn.state in WAITING_WITH_HINTS:
        keep_hints(store, conn, message)
    return PassResult("skipped", why)


def run_pass(connection_id: str, message: SyncMessage, ctx: PassContext) -> PassResult:
    store = ctx.store
    conn = store.load_connection(connection_id)
    if why := _turned_away(conn, message):
        return _skipped(store, conn, message, why)
    assert conn is not None
    now = ctx.clock()
    if not store.acquire_lease(connection_id, ctx.owner, now, ctx.lease_seconds):
        return PassResult("busy", "another pass holds the lease")
    try:
        # From here on a push queues another pass; what was pushed before, this one reads.
        conn = store.answer_ring(connection_id) or conn
        if why := _turned_away(conn, message):
            # The pass before, whose lease this one waited out, held its plan for the user
            # (or the user stopped the sync) after this one read the connection.
            store.release_lease(connection_id, ctx.owner)
            return _skipped(store, conn, message, why)
        deadline = time.monotonic() + ctx.budget_seconds
        runner = SyncPass(PassScope.begin(conn, message, ctx, deadline))
    except Exception:
        store.release_lease(connection_id, ctx.owner)
        raise
    try:
        return runner.run()
    except TooSoonToTell as exc:
        keep_hints(store, conn, message)
        wake = ctx.clock() + timedelta(seconds=exc.retry_after)
        store.update_connection(connection_id, next_run_at=wake, plan_open=False)
        return PassResult("recheck", str(exc), retry_after=exc.retry_after)
    except RateLimited as exc:
        runner.fail(exc, counted=False)
        wake = ctx.clock() + timedelta(seconds=max(exc.retry_after, 1.0))
        # An orderly stop: what is left of the plan is handed to the pass after the wait.
        store.update_connection(connection_id, next_run_at=wake, plan_open=False)
        return PassResult("throttled", exc.message, retry_after=exc.retry_after)
    except AuthExpired as exc:
        runner.fail(exc)
        signed_out = transition(runner.state, ConnectionState.NEEDS_REAUTH)
        store.update_connection(connection_id, state=signed_out, next_run_at=None)
        return PassResult("needs_reauth", exc.message)
    except ProviderError as exc:
        # Said in status; the message comes back after the delay (the queue's retry).
        failures = runner.fail(exc)
        return PassResult("failed", exc.message, retry_after=retry_delay(failures))
    except Exception as exc:
        # Said in status without its text (it may quote contact data); the queue retries it.
        runner.fail(ProviderError(f"an unexpected {type(exc).__name__}; retrying automatically"))
        raise
    finally:
        store.release_lease(connection_id, ctx.owner, **runner.closing)


def preview_pass(connection_id: str, ctx: PassContext) -> Plan:
    """What a full pass would do right now, computed without writing anything.

    Both sides are listed in full and planned exactly as a resync would; no lease is taken, no
    cursor, mapping or audit entry is written, so it is safe before the first sync and at any
    time after.
    """
    conn = ctx.store.load_connection(connection_id)
    if conn is None:
        raise LookupError(f"no connection {connection_id!r}")
    message = SyncMessage(connection_id=connection_id, reason="resync", full=True)
    scope = PassScope.begin(conn, message, ctx, deadline=float("inf"))
    crm = read_side(scope, "crm", True)
    provider = read_side(scope, "provider", True)
    return plan_changes(scope, crm, provider, mapped=conn.mapped_count, counts={}).plan
