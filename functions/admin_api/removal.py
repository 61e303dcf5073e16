"""Routes: removing a connection, a user or a company for good."""

from __future__ import annotations

from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from contactsync.admin import erasure

from .answers import Removed
from .bodies import ConnectionId, OwnerId
from .context import caller, service
from .errors import answers

router = APIGatewayHttpRouter()
REMOVAL = ["Removal"]


@router.delete(
    "/connections/<connection_id>",
    tags=REMOVAL,
    summary="Remove a connection",
    description="Remove the connection for good: its sync stops, the provider's grant is "
    "revoked where the provider allows it, and its tokens, links, history and activity log "
    "are erased.",
    responses=answers("What was removed", 404),
)
def remove_connection(connection_id: ConnectionId) -> Removed:
    return Removed.model_validate(
        erasure.remove_connection(service(), caller(router), connection_id)
    )


@router.delete(
    "/users/<user_id>",
    tags=REMOVAL,
    summary="Remove a user",
    description="Remove a user of the caller's company for good (admins; or the user "
    "themself): every connection as above, and the CRM grant (revoked, erased).",
    responses=answers("What was removed", 403, 404),
)
def remove_user(user_id: OwnerId) -> Removed:
    return Removed.model_validate(erasure.remove_user(service(), caller(router), user_id))


@router.delete(
    "/companies/<company_id>",
    tags=REMOVAL,
    summary="Remove a company",
    description="Remove everything stored for the caller's company (admins only).",
    responses=answers("What was removed", 403, 404),
)
def remove_company(company_id: OwnerId) -> Removed:
    return Removed.model_validate(erasure.remove_company(service(), caller(router), company_id))
