"""Admin API: the CRM settings page and support staff manage connections here.

Thin: the Powertools resolver (with validation, which also publishes the OpenAPI document)
parses and validates; the routers (one module an area) call one admin service each and shape
its answer. Domain errors become HTTP errors here, in one place, always as
``{"error": {"code", "message", "details"}}``.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError as RouteNotFound
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer, Tag
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2
from aws_lambda_powertools.utilities.typing import LambdaContext
from contactsync.admin.errors import AdminError
from contactsync.providers.base import AuthExpired, PermissionDenied, ProviderError
from contactsync.runtime.json_body import body_problem
from contactsync.runtime.observability import capture_lambda_handler, logger, metrics

from . import connections, pages, removal, status, support
from .context import Unauthorized
from .errors import error_response, status_of

TAGS = [
    Tag(name="Connections", description="Add an account, choose what syncs, start and stop."),
    Tag(name="Sign-in", description="Connect the CRM account; finish a provider's sign-in."),
    Tag(name="Troubleshooting", description="Preview a pass, explain a contact, duplicates."),
    Tag(name="Activity", description="What the sync changed and why; undo an update."),
    Tag(name="Held passes", description="A pass the mass-change guard held: confirm or discard."),
    Tag(name="Removal", description="Remove a connection, a user or a company for good."),
    Tag(name="Status", description="Provider health."),
]
OPENAPI: dict[str, Any] = {
    "title": "contactsync admin API",
    "version": "1.0.0",
    "description": "Connections between CRM persons and Microsoft 365 / Google / CardDAV contacts: "
    "set-up, status, troubleshooting and history.",
    "tags": TAGS,
    "security_schemes": {"bearer": HTTPBearer(bearerFormat="JWT")},
    "security": [{"bearer": []}],
}

app = APIGatewayHttpResolver(enable_validation=True)
app.enable_swagger(path="/docs", **OPENAPI)
for area in (connections, support, removal, status, pages):
    app.include_router(area.router)


# --- errors as HTTP: the one place ------------------------------------------------------------


@app.exception_handler(AdminError)  # type: ignore[untyped-decorator]  # unannotated in Powertools
def admin_error(exc: AdminError) -> Response[Any]:
    status_code, code = status_of(exc)
    return error_response(status_code, code, exc.message, exc.details)


@app.exception_handler(Unauthorized)  # type: ignore[untyped-decorator]  # unannotated in Powertools
def unauthorized(exc: Unauthorized) -> Response[Any]:
    return error_response(401, "unauthorized", str(exc))


@app.exception_handler(ProviderError)  # type: ignore[untyped-decorator]  # unannotated in Powertools
def provider_error(exc: ProviderError) -> Response[Any]:
    """A side failed where no service turned it into a domain error: never a bare 500."""
    if isinstance(exc, AuthExpired):
        return error_response(409, "conflict", f"sign in again: {exc.message}")
    if isinstance(exc, PermissionDenied):
        return error_response(403, "forbidden", exc.message, {"missing_permissions": exc.missing})
    return error_response(503, "provider_unavailable", f"a provider did not answer: {exc.message}")


@app.not_found
def route_not_found(exc: RouteNotFound) -> Response[Any]:
    return error_response(404, "not_found", "no such route")


@app.exception_handler(UnicodeDecodeError)  # type: ignore[untyped-decorator]  # unannotated in Powertools
def undecodable_body(exc: UnicodeDecodeError) -> Response[Any]:
    """A body that is not UTF-8 (API Gateway hands it over base64-encoded) is not JSON either."""
    return error_response(400, "invalid_request", "the request body must be UTF-8 encoded JSON")


@app.exception_handler(RequestValidationError)  # type: ignore[untyped-decorator]  # unannotated in Powertools
def invalid_request(exc: RequestValidationError) -> Response[Any]:
    problems = [
        {"where": ".".join(str(p) for p in e.get("loc", ())), "problem": e.get("msg", "")}
        for e in exc.errors()
    ]
    return error_response(
        422, "invalid_request", "the request is not valid", {"problems": problems}
    )


# --- the API's own description ----------------------------------------------------------------


@app.get("/openapi.json", include_in_schema=False)
def openapi_document() -> Response[Any]:
    return Response(status_code=200, content_type="application/json", body=openapi_json())


def openapi_json() -> str:
    """The API's OpenAPI document, generated from the routes and models of the routers."""
    return app.get_openapi_json_schema(**OPENAPI)


def _hostile_body(event: dict[str, Any]) -> dict[str, Any] | None:
    """A 400 for a body too large, too deep or with too long a number, before it is parsed."""
    request = APIGatewayProxyEventV2(event)
    body: str | bytes | None = request.body
    if request.is_base64_encoded and request.body is not None:
        try:
            body = base64.b64decode(request.body)
        except binascii.Error:
            body = None  # the resolver answers it as an undecodable body
    problem = body_problem(body)
    if problem is None:
        return None
    refusal = {"error": {"code": "invalid_request", "message": problem.message, "details": {}}}
    return {
        "statusCode": problem.status,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(refusal),
        "isBase64Encoded": False,
    }


@logger.inject_lambda_context(
    clear_state=True, correlation_id_path=correlation_paths.API_GATEWAY_HTTP
)
@metrics.log_metrics
@capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return _hostile_body(event) or app.resolve(event, context)
