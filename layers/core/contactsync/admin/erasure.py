"""Removal for good: a user's connection, a whole user, a whole company.

Removing stops the sync (no pass writes after it returns), revokes the provider's grant where
the provider offers a revocation (Google and the CRM do; Microsoft has no per-app revocation: the
tokens are erased and lapse), and erases tokens, cursors, mappings, pending writes, review holds,
subscriptions and the activity log (it holds contact snapshots). Revocation is best effort: a
provider that does not answer does not keep anything stored.
"""

from __future__ import annotations

import contextlib
from typing import Any

from contactsync.admin import access
from contactsync.admin.access import Caller
from contactsync.admin.change_feeds import unsubscribe
from contactsync.admin.context import AdminContext
from contactsync.admin.errors import ForbiddenError, NotFoundError
from contactsync.admin.lease import wait_for_running_pass
from contactsync.auth import google as google_auth
from contactsync.auth import pipedrive as pipedrive_auth
from contactsync.auth.tokens import connection_context, crm_context
from contactsync.providers.base import ProviderError
from contactsync.runtime.observability import logger
from contactsync.store.connections import delete_connection, list_connections, update_connection
from contactsync.store.credentials import credentials_of
from contactsync.store.crm_grants import crm_grant_users, delete_crm_grant, get_crm_grant
from contactsync.store.key_claims import release_claims
from contactsync.store.models import Connection
from contactsync.sync.connection_states import ConnectionState, transition


def remove_connection(ctx: AdminContext, caller: Caller, connection_id: str) -> dict[str, Any]:
    """The owner (or an admin of the company) removes one connection."""
    _erase_connection(ctx, access.connection_of(caller, connection_id))
    return {"removed": {"connections": 1}}


def remove_user(ctx: AdminContext, caller: Caller, user_id: str) -> dict[str, Any]:
    """An admin (or the user themself) removes a user: every connection and the CRM grant."""
    if not access.reaches(caller, caller.company_id, user_id):
        raise ForbiddenError("only a company admin can remove another user")
    removed = _erase_user(ctx, caller.company_id, user_id)
    if removed == 0 and get_crm_grant(caller.company_id, user_id) is None:
        raise NotFoundError(f"no user {user_id!r} with anything stored")
    _erase_crm_grant(ctx, caller.company_id, user_id)
    return {"removed": {"connections": removed, "users": 1}}


def remove_company(ctx: AdminContext, caller: Caller, company_id: str) -> dict[str, Any]:
    """A company admin removes everything stored for the company."""
    if not access.in_company(caller, company_id):
        raise NotFoundError(f"no company {company_id!r}")
    if not access.reaches(caller, company_id, None):
        raise ForbiddenError("only a company admin can remove the company")
    users = {conn.user_id for conn in list_connections(company_id)}
    users |= set(crm_grant_users(company_id))
    removed = 0
    for user_id in sorted(users):
        removed += _erase_user(ctx, company_id, user_id)
        _erase_crm_grant(ctx, company_id, user_id)
    return {"removed": {"connections": removed, "users": len(users)}}


# --- the steps ---------------------------------------------------------------------------------


def _erase_user(ctx: AdminContext, company_id: str, user_id: str) -> int:
    connections = list_connections(company_id, user_id)
    for conn in connections:
        _erase_connection(ctx, conn)
    return len(connections)


def _erase_connection(ctx: AdminContext, conn: Connection) -> None:
    connection_id = conn.connection_id
    # Stop first: a running pass lets go before its next write, and no new one is scheduled.
    update_connection(
        connection_id, state=transition(conn.state, ConnectionState.STOPPED), next_run_at=None
    )
    with contextlib.suppress(ProviderError):
        unsubscribe(ctx, conn)
    wait_for_running_pass(connection_id, ctx.clock)
    _revoke_provider_grant(ctx, conn)
    release_claims(conn.company_id, conn.user_id, connection_id)
    delete_connection(connection_id)


def _revoke_provider_grant(ctx: AdminContext, conn: Connection) -> None:
    sealed = credentials_of(conn) if conn.provider == "google" else None
    if sealed is None:
        return  # Microsoft offers no revocation of one app's grant
    secrets = ctx.wiring.vault.open_json(sealed, connection_context(conn.connection_id))
    refresh_token = google_auth.grant_from_dict(secrets["grant"]).refresh_token
    try:
        google_auth.revoke(ctx.wiring.google, refresh_token, client=ctx.wiring.http)
    except ProviderError as exc:
        logger.warning("could not revoke a Google grant", extra={"reason": exc.message})


def _erase_crm_grant(ctx: AdminContext, company_id: str, user_id: str) -> None:
    stored = get_crm_grant(company_id, user_id)
    if stored is None:
        return
    data = ctx.wiring.vault.open_json(bytes(stored.tokens), crm_context(company_id, user_id))
    try:
        pipedrive_auth.revoke(ctx.wiring.pipedrive, data["refresh_token"], client=ctx.wiring.http)
    except ProviderError as exc:
        logger.warning("could not revoke a CRM grant", extra={"reason": exc.message})
    delete_crm_grant(company_id, user_id)
