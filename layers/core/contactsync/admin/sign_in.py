"""Signing a connection's accounts in: the CRM and the OAuth providers through their sign-in
pages, CardDAV at once with a username and an app-specific password.

A sign-in is finished only by the user who started it; a finished sign-in of the same account
keeps the connection's links, another account starts clean.
"""

from __future__ import annotations

import contextlib
import secrets
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from contactsync.admin import access
from contactsync.admin.access import Caller
from contactsync.admin.change_feeds import unsubscribe
from contactsync.admin.context import AdminContext
from contactsync.admin.errors import ForbiddenError, InvalidRequest, NotFoundError, UpstreamError
from contactsync.admin.views import connection_view
from contactsync.auth import pipedrive as pipedrive_auth
from contactsync.auth.tokens import connection_context, crm_sign_in_context, sign_in_context
from contactsync.providers.base import AuthExpired, NotFound, ProviderError, Transient
from contactsync.runtime.sides import GOOGLE_DEFAULT_GROUP, PROVIDERS, SignedIn
from contactsync.store.connections import (
    create_connection,
    forget_sync_state,
    get_connection,
    update_connection,
)
from contactsync.store.credentials import credentials_of
from contactsync.store.crm_grants import delete_crm_sign_in, get_crm_sign_in, put_crm_sign_in
from contactsync.store.models import Connection
from contactsync.sync.connection_states import RUNNING, ConnectionState, transition


@dataclass(frozen=True)
class CardDavLogin:
    """What a user gives to connect a CardDAV account (no OAuth exists for it)."""

    username: str = ""
    password: str = field(default="", repr=False)
    server_url: str = ""
    email: str = ""


CARDDAV_EXAMPLE = {
    "provider": "carddav",
    "server_url": "https://contacts.icloud.com",
    "username": "you@icloud.com",
    "password": "xxxx-xxxx-xxxx-xxxx",
}


# --- the CRM account ---------------------------------------------------------------------------


def crm_authorization(ctx: AdminContext, caller: Caller) -> dict[str, str]:
    """Where to send the user to let us act on their CRM persons.

    The state is a nonce and nothing else: whose sign-in it is stays in the table.
    """
    state = f"crm.{secrets.token_urlsafe(32)}"
    sealed = ctx.wiring.vault.seal_json(
        {"state": state}, crm_sign_in_context(caller.company_id, caller.user_id)
    )
    put_crm_sign_in(caller.company_id, caller.user_id, state, sealed)
    url = pipedrive_auth.authorization_url(
        ctx.wiring.pipedrive, ctx.wiring.redirect_uri("pipedrive"), state
    )
    return {"authorization_url": url}


def _finish_crm_authorization(
    ctx: AdminContext, query: dict[str, str], caller: Caller
) -> dict[str, Any]:
    state = query.get("state", "")
    pending = get_crm_sign_in(state) if state.startswith("crm.") else None
    if pending is not None and not access.is_own(caller, pending.company_id, pending.user_id):
        # Only the user who started the authorization may finish it.
        raise NotFoundError("no CRM authorization of yours is in progress for this state")
    if pending is None:
        raise InvalidRequest("no CRM authorization is in progress for this state")
    company_id, user_id = pending.company_id, pending.user_id
    context = crm_sign_in_context(company_id, user_id)
    expected = ctx.wiring.vault.open_json(bytes(pending.oauth_state), context)
    if not secrets.compare_digest(str(expected.get("state", "")), state):
        raise InvalidRequest("the state parameter does not match")
    if "code" not in query:
        raise InvalidRequest(f"the CRM refused: {query.get('error', 'no code returned')}")
    try:
        grant = pipedrive_auth.exchange_code(
            ctx.wiring.pipedrive,
            query["code"],
            ctx.wiring.redirect_uri("pipedrive"),
            client=ctx.wiring.http,
        )
        approver = ctx.wiring.crm_user(grant)
    except AuthExpired as exc:
        raise InvalidRequest(f"the CRM did not accept the authorization: {exc}") from exc
    except ProviderError as exc:
        raise UpstreamError(f"the CRM did not answer: {exc.message}") from exc
    delete_crm_sign_in(state)  # one use, whatever the outcome from here
    if (str(approver.get("id")), str(approver.get("company_id"))) != (user_id, company_id):
        raise ForbiddenError(
            "the CRM account that approved is not yours: sign in to the CRM as yourself "
            "and connect again"
        )
    ctx.wiring.tokens.save_crm_grant(company_id, user_id, grant)
    return {"connected": "crm", "company_id": company_id, "user_id": user_id}


# --- the OAuth providers -----------------------------------------------------------------------


def start_sign_in(ctx: AdminContext, provider: str, connection_id: str) -> tuple[str, bytes]:
    """The provider's sign-in URL, and the sealed flow to keep until the callback."""
    state = f"{connection_id}.{secrets.token_urlsafe(24)}"
    try:
        url, flow = ctx.wiring.start_sign_in(provider, state)
    except ValueError as exc:
        raise UpstreamError(f"could not start the sign-in: {exc}") from exc
    return url, ctx.wiring.vault.seal_json(flow, sign_in_context(connection_id))


def finish_authorization(
    ctx: AdminContext, provider: str, query: dict[str, str], caller: Caller
) -> dict[str, Any]:
    """Attach the account the provider signed in to the connection whose sign-in this is,
    only for the user who started it: anyone else's completion attaches nothing."""
    if provider == "pipedrive":
        return _finish_crm_authorization(ctx, query, caller)
    if provider not in PROVIDERS:
        raise NotFoundError(f"unknown provider {provider!r}")
    state = query.get("state", "")
    connection_id = state.split(".", 1)[0]
    conn = get_connection(connection_id) if connection_id else None
    if conn is None or conn.oauth_state is None or conn.provider != provider:
        raise InvalidRequest("no sign-in is in progress for this state")
    if not access.is_own(caller, conn.company_id, conn.user_id):
        raise NotFoundError("no sign-in of yours is in progress for this state")
    flow = ctx.wiring.vault.open_json(bytes(conn.oauth_state), sign_in_context(connection_id))
    if not secrets.compare_digest(str(flow.get("state", "")), state):
        raise InvalidRequest("the state parameter does not match the sign-in in progress")
    try:
        signed = ctx.wiring.finish_sign_in(provider, flow, query)
    except (ValueError, AuthExpired) as exc:
        raise InvalidRequest(f"the sign-in did not complete: {exc}") from exc
    except ProviderError as exc:
        raise UpstreamError(f"the provider did not answer: {exc.message}") from exc
    return _signed_in_as(ctx, conn, signed)


def _signed_in_as(ctx: AdminContext, conn: Connection, signed: SignedIn) -> dict[str, Any]:
    """Keep a finished sign-in: the same account keeps its links (and a connection waiting for
    it resumes with a full re-listing); another account starts clean."""
    connection_id, provider = conn.connection_id, conn.provider
    context = connection_context(connection_id)
    same_account = conn.provider_account_id in (None, signed.account_id)
    changes: dict[str, Any] = {
        "credentials": ctx.wiring.vault.seal_json(signed.secrets, context),
        "oauth_state": None,
        "provider_account_id": signed.account_id,
        "provider_account_email": signed.username,
    }
    if not same_account:
        # Another account: its contacts have nothing to do with the old links.
        if conn.state in RUNNING:
            unsubscribe(ctx, conn)
        forget_sync_state(connection_id)
        changes.update(
            folder_id=None,
            folder_name=None,
            state=transition(conn.state, ConnectionState.CONFIGURING),
            next_run_at=None,
        )
    elif conn.state == ConnectionState.NEEDS_REAUTH:
        changes.update(
            state=transition(conn.state, ConnectionState.ACTIVE),
            last_error=None,
            next_run_at=ctx.clock(),
        )
    if provider == "google" and not (same_account and conn.folder_id):
        changes.update(folder_id=GOOGLE_DEFAULT_GROUP[0], folder_name=GOOGLE_DEFAULT_GROUP[1])
    update_connection(connection_id, **changes)
    if conn.state == ConnectionState.NEEDS_REAUTH and same_account:
        # A full re-listing: CRM deletions announced while the sign-in was broken were skipped,
        # and only a full listing can find them again.
        ctx.queue_pass(connection_id, "resync", full=True)
    return {
        "connected": provider,
        "connection_id": connection_id,
        "account": signed.username,
        "same_account": same_account,
    }


# --- CardDAV -----------------------------------------------------------------------------------


def create_carddav(ctx: AdminContext, caller: Caller, login: CardDavLogin | None) -> dict[str, Any]:
    """A CardDAV connection, signed in at once; its only address book chosen if it has one."""
    from contactsync.providers.carddav import server_for  # noqa: PLC0415 - CardDAV on first use

    if login is None or not (login.server_url or login.email):
        raise InvalidRequest(
            "a CardDAV connection needs username, password and server_url (or email)",
            details={"example": CARDDAV_EXAMPLE},
        )
    signed = _carddav_sign_in(ctx, login.server_url or server_for(login.email), login)
    connection_id = uuid.uuid4().hex[:20]
    create_connection(
        connection_id=connection_id,
        company_id=caller.company_id,
        user_id=caller.user_id,
        provider="carddav",
    )
    _signed_in_as(ctx, access.connection_of(caller, connection_id), signed)
    with contextlib.suppress(ProviderError):
        books = ctx.wiring.carddav_books(signed.secrets)
        if len(books) == 1:  # the only address book is the one to sync
            update_connection(connection_id, folder_id=books[0][0], folder_name=books[0][1])
    return {"connection": connection_view(access.connection_of(caller, connection_id), ctx.clock())}


def reconnect_carddav(
    ctx: AdminContext, caller: Caller, conn: Connection, login: CardDavLogin | None
) -> dict[str, Any]:
    """Sign a CardDAV account in again with the new (app-specific) password given."""
    if login is None or not login.password:
        raise InvalidRequest(
            "send the new app-specific password to reconnect a CardDAV account",
            details={"example": {"password": "xxxx-xxxx-xxxx-xxxx"}},
        )
    old: dict[str, Any] = {}
    sealed = credentials_of(conn)
    if sealed is not None:
        old = ctx.wiring.vault.open_json(sealed, connection_context(conn.connection_id))
    server = login.server_url or str(old.get("principal_url") or "")
    if not server:
        raise InvalidRequest("send the server_url of the CardDAV account")
    username = login.username or str(old.get("username") or conn.provider_account_email or "")
    signed = _carddav_sign_in(ctx, server, replace(login, username=username))
    result = _signed_in_as(ctx, conn, signed)
    now = ctx.clock()
    return {
        "connection": connection_view(access.connection_of(caller, conn.connection_id), now),
        **result,
    }


def _carddav_sign_in(ctx: AdminContext, server_url: str, login: CardDavLogin) -> SignedIn:
    """The login checked against the server: what to fix when it does not work."""
    try:
        return ctx.wiring.carddav_sign_in(server_url, login.username, login.password)
    except ValueError as exc:
        raise InvalidRequest(str(exc), details={"field": "server_url"}) from exc
    except AuthExpired as exc:
        raise InvalidRequest(
            "the CardDAV server refused the username and password: sign in with an "
            "app-specific password (iCloud requires one), not the account's own password",
            details={"field": "password"},
        ) from exc
    except NotFound as exc:
        raise InvalidRequest(
            f"{exc.message}: check the server URL", details={"field": "server_url"}
        ) from exc
    except Transient as exc:
        if exc.status is None:  # never answered: a wrong host, most likely
            raise InvalidRequest(
                f"could not reach {server_url}: check the server URL",
                details={"field": "server_url"},
            ) from exc
        raise UpstreamError(f"the CardDAV server did not answer: {exc.message}") from exc
    except ProviderError as exc:
        raise UpstreamError(f"the CardDAV server did not answer: {exc.message}") from exc
