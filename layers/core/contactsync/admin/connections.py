"""A connection's lifecycle: add, reconnect, look, start, resync, stop."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from contactsync.admin import access
from contactsync.admin.access import Caller
from contactsync.admin.change_feeds import subscribe_to_changes, unsubscribe
from contactsync.admin.context import AdminContext
from contactsync.admin.errors import ConflictError, ForbiddenError, InvalidRequest, UpstreamError
from contactsync.admin.lease import wait_for_running_pass
from contactsync.admin.sign_in import CardDavLogin, create_carddav, reconnect_carddav, start_sign_in
from contactsync.admin.views import connection_view
from contactsync.providers.base import AuthExpired, ProviderError
from contactsync.runtime.sides import PROVIDERS
from contactsync.store.connections import create_connection, list_connections, update_connection
from contactsync.sync.connection_states import RUNNING, ConnectionState, transition


def create(
    ctx: AdminContext, caller: Caller, provider: str, login: CardDavLogin | None = None
) -> dict[str, Any]:
    """A new connection ("add new account") and the provider's sign-in URL; a CardDAV
    connection signs in at once with the login given."""
    if provider not in PROVIDERS:
        raise InvalidRequest(f"unknown provider {provider!r}", details={"allowed": list(PROVIDERS)})
    if provider == "carddav":
        return create_carddav(ctx, caller, login)
    connection_id = uuid.uuid4().hex[:20]
    url, sealed = start_sign_in(ctx, provider, connection_id)
    create_connection(
        connection_id=connection_id,
        company_id=caller.company_id,
        user_id=caller.user_id,
        provider=provider,
        oauth_state=sealed,
    )
    return {"connection": get(ctx, caller, connection_id), "authorization_url": url}


def reconnect(
    ctx: AdminContext, caller: Caller, connection_id: str, login: CardDavLogin | None = None
) -> dict[str, Any]:
    """Sign in again (an expired or revoked token). The same account keeps its links; another
    account starts clean (decided when the callback arrives). CardDAV signs in again at once
    with the new (app-specific) password given."""
    conn = access.connection_of(caller, connection_id)
    if conn.provider == "carddav":
        return reconnect_carddav(ctx, caller, conn, login)
    url, sealed = start_sign_in(ctx, conn.provider, connection_id)
    update_connection(connection_id, oauth_state=sealed)
    return {"connection": get(ctx, caller, connection_id), "authorization_url": url}


def list_for(ctx: AdminContext, caller: Caller) -> list[dict[str, Any]]:
    """The caller's connections (a company admin: the company's)."""
    connections = list_connections(caller.company_id, access.users_seen(caller))
    return [connection_view(c, ctx.clock()) for c in connections]


def get(ctx: AdminContext, caller: Caller, connection_id: str) -> dict[str, Any]:
    return connection_view(access.connection_of(caller, connection_id), ctx.clock())


def start(ctx: AdminContext, caller: Caller, connection_id: str) -> dict[str, Any]:
    """Subscribe to both sides' changes and queue the initial sync."""
    conn = access.signed_in_connection(caller, connection_id)
    if not conn.folder_id:
        raise ConflictError("choose a contact folder or group before starting the sync")
    if conn.state in RUNNING:
        return connection_view(conn, ctx.clock())
    crm = ctx.wiring.crm_side(conn.company_id, conn.user_id)
    try:
        missing = crm.missing_permissions()
    except AuthExpired as exc:
        raise ConflictError("connect the CRM account first") from exc
    except ProviderError as exc:
        raise UpstreamError(f"the CRM did not answer: {exc.message}") from exc
    if missing:
        raise ForbiddenError(
            "you need the CRM permission to " + " and to ".join(missing) + " to sync contacts",
            details={"missing_permissions": missing},
        )
    subscribe_to_changes(ctx, conn, crm)
    update_connection(
        connection_id,
        state=transition(conn.state, ConnectionState.SYNCING_INITIAL),
        last_error=None,
        progress={"phase": "listing", "done": 0, "total": 0},
        next_run_at=ctx.clock() + timedelta(minutes=5),
        poll_seconds=0,
    )
    ctx.queue_pass(connection_id, "start", full=True)
    return get(ctx, caller, connection_id)


def resync(ctx: AdminContext, caller: Caller, connection_id: str) -> dict[str, Any]:
    """Re-list both sides in full and re-match: heals anything a missed change left behind,
    and never duplicates (existing links are kept, new matches are linked)."""
    conn = access.signed_in_connection(caller, connection_id)
    if conn.state == ConnectionState.NEEDS_ATTENTION:
        raise ConflictError("a pass is waiting for confirmation: confirm or discard it first")
    if conn.state not in RUNNING:
        raise ConflictError(f"the sync is {conn.state}: start it first")
    ctx.queue_pass(connection_id, "resync", full=True)
    return connection_view(conn, ctx.clock())


def stop(ctx: AdminContext, caller: Caller, connection_id: str) -> dict[str, Any]:
    """Stop syncing: once this returns, nothing more is written to either side."""
    conn = access.connection_of(caller, connection_id)
    update_connection(
        connection_id, state=transition(conn.state, ConnectionState.STOPPED), next_run_at=None
    )
    unsubscribe(ctx, conn)
    wait_for_running_pass(connection_id, ctx.clock)
    return get(ctx, caller, connection_id)
