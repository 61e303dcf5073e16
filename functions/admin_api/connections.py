"""Routes: a connection's set-up and lifecycle, and signing its accounts in."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from contactsync.admin import choices, connections, sign_in

from .answers import (
    ConnectionAnswer,
    ConnectionList,
    ConnectionView,
    Group,
    GroupList,
    SignedIn,
    SignInLink,
)
from .bodies import (
    ConnectionId,
    ConnectionSettings,
    NewConnection,
    NewGroup,
    NewPassword,
    ProviderName,
)
from .context import caller, service
from .errors import answers

router = APIGatewayHttpRouter()
CONNECTIONS = ["Connections"]
SIGN_IN = ["Sign-in"]


@router.post(
    "/crm/connect",
    tags=SIGN_IN,
    summary="Connect the CRM account",
    description="Where to send the user to let the sync act on their CRM persons (the CRM's "
    "sign-in page; it comes back to the OAuth callback).",
    responses=answers("The CRM's sign-in URL"),
)
def connect_crm() -> SignInLink:
    return SignInLink.model_validate(sign_in.crm_authorization(service(), caller(router)))


@router.post(
    "/oauth/<provider>/callback",
    tags=SIGN_IN,
    summary="Finish a sign-in",
    description="Attach the account the provider signed in to the connection whose sign-in "
    "this is (``pipedrive``: the CRM account). Only the user who started the sign-in can "
    "finish it, with their bearer token; anyone else's completion attaches nothing.",
    responses=answers("The account signed in", 403, 404, 503),
)
def oauth_callback(
    provider: ProviderName,
    state: Annotated[str, Query(min_length=1, max_length=512)],
    code: Annotated[str | None, Query(max_length=4096)] = None,
    error: Annotated[str | None, Query(max_length=512)] = None,
) -> SignedIn:
    query = dict(router.current_event.query_string_parameters or {})
    return SignedIn.model_validate(
        sign_in.finish_authorization(service(), provider, query, caller(router))
    )


@router.post(
    "/connections",
    status_code=201,
    tags=CONNECTIONS,
    summary="Add an account",
    description="A new connection. ``microsoft`` and ``google`` answer with the provider's "
    "sign-in URL; ``carddav`` signs in at once with the login given (and chooses the address "
    "book if the account has only one).",
    responses=answers("The new connection", 503, ok=201),
)
def create_connection(body: NewConnection) -> ConnectionAnswer:
    created = connections.create(service(), caller(router), body.provider, body.login())
    return ConnectionAnswer.model_validate(created)


@router.get(
    "/connections",
    tags=CONNECTIONS,
    summary="List connections",
    description="The caller's connections (a company admin: the company's), with live status.",
    responses=answers("The connections"),
)
def list_connections() -> ConnectionList:
    return ConnectionList.model_validate(
        {"connections": connections.list_for(service(), caller(router))}
    )


@router.get(
    "/connections/<connection_id>",
    tags=CONNECTIONS,
    summary="Look at a connection",
    description="The connection's settings and live status: state, progress, last error, the "
    "pass held by the mass-change guard, cursor age, subscription expiry.",
    responses=answers("The connection", 404),
)
def get_connection(connection_id: ConnectionId) -> ConnectionView:
    return ConnectionView.model_validate(connections.get(service(), caller(router), connection_id))


@router.get(
    "/connections/<connection_id>/groups",
    tags=CONNECTIONS,
    summary="List folders or groups",
    description="The account's contact folders (Outlook), contact groups (Google) or address "
    "books (CardDAV): what the connection can sync.",
    responses=answers("The folders or groups", 404, 409, 503),
)
def list_groups(connection_id: ConnectionId) -> GroupList:
    return GroupList.model_validate(
        {"groups": choices.groups(service(), caller(router), connection_id)}
    )


@router.post(
    "/connections/<connection_id>/groups",
    status_code=201,
    tags=CONNECTIONS,
    summary="Make a folder or group",
    description="A new folder (Outlook) or contact group (Google) made for the sync, to "
    "choose next.",
    responses=answers("The new folder or group", 404, 409, 503, ok=201),
)
def create_group(connection_id: ConnectionId, body: NewGroup) -> Group:
    return Group.model_validate(
        choices.create_group(service(), caller(router), connection_id, body.name)
    )


@router.patch(
    "/connections/<connection_id>",
    tags=CONNECTIONS,
    summary="Change settings",
    description="The folder or group (only while the sync is stopped), direction, conflict "
    "policy, phone region, and who sees the CRM persons the sync creates.",
    responses=answers("The connection", 404, 409, 503),
)
def update_connection(connection_id: ConnectionId, body: ConnectionSettings) -> ConnectionView:
    changes = body.model_dump(exclude_none=True)
    updated = choices.update_settings(service(), caller(router), connection_id, changes)
    return ConnectionView.model_validate(updated)


@router.post(
    "/connections/<connection_id>/start",
    tags=CONNECTIONS,
    summary="Start syncing",
    description="Subscribe to both sides' changes and queue the initial sync (needs the CRM "
    "account connected and a folder or group chosen).",
    responses=answers("The connection", 403, 404, 409, 503),
)
def start(connection_id: ConnectionId) -> ConnectionView:
    return ConnectionView.model_validate(
        connections.start(service(), caller(router), connection_id)
    )


@router.post(
    "/connections/<connection_id>/stop",
    tags=CONNECTIONS,
    summary="Stop syncing",
    description="Once this answers, nothing more is written to either side.",
    responses=answers("The connection", 404),
)
def stop(connection_id: ConnectionId) -> ConnectionView:
    return ConnectionView.model_validate(connections.stop(service(), caller(router), connection_id))


@router.post(
    "/connections/<connection_id>/reconnect",
    tags=CONNECTIONS,
    summary="Sign in again",
    description="After an expired or revoked sign-in. The same account keeps its links; another "
    "account starts clean. OAuth providers answer with a sign-in URL; CardDAV signs in again "
    "at once with the new app-specific password given.",
    responses=answers("The connection", 404, 503),
)
def reconnect(
    connection_id: ConnectionId, body: Annotated[NewPassword | None, Body()] = None
) -> ConnectionAnswer:
    login = body.login() if body is not None else None
    answer = connections.reconnect(service(), caller(router), connection_id, login)
    return ConnectionAnswer.model_validate(answer)


@router.post(
    "/connections/<connection_id>/resync",
    tags=CONNECTIONS,
    summary="Re-list both sides",
    description="Re-list both sides in full and re-match: heals anything a missed change left "
    "behind, and never duplicates (existing links are kept, new matches are linked).",
    responses=answers("The connection", 404, 409),
)
def resync(connection_id: ConnectionId) -> ConnectionView:
    return ConnectionView.model_validate(
        connections.resync(service(), caller(router), connection_id)
    )
