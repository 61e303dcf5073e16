"""Routes: provider health, for signed-in callers and for everyone."""

from __future__ import annotations

from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from contactsync.admin import health

from .answers import PublicStatus, ServiceStatus
from .context import caller, service
from .errors import answers

router = APIGatewayHttpRouter()
STATUS = ["Status"]


@router.get(
    "/status",
    tags=STATUS,
    summary="Provider health",
    description="Per provider: passes and errors in the last 15 minutes, the error codes, "
    "and whether it is degraded. Any signed-in caller may look.",
    responses=answers("The health of each provider"),
)
def status() -> ServiceStatus:
    caller(router)  # any signed-in caller may look
    return ServiceStatus.model_validate(health.service_status(service().clock()))


@router.get(
    "/public/status",
    tags=STATUS,
    summary="Public status",
    description="The public status page's data: per provider working or degraded, nothing of "
    "any tenant (no sign-in needed).",
    responses=answers("Whether each provider is working"),
)
def status_for_everyone() -> PublicStatus:
    return PublicStatus.model_validate(health.public_status(service().clock()))
