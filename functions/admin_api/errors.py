"""Errors as HTTP: the status and code of each domain error, the one shape of every error
answer (``{"error": {"code", "message", "details"}}``), and how routes document them."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from contactsync.admin.errors import (
    AdminError,
    ConflictError,
    ForbiddenError,
    InvalidRequest,
    NotFoundError,
    UpstreamError,
)

from .answers import ErrorAnswer

STATUS: dict[type[AdminError], tuple[int, str]] = {
    InvalidRequest: (422, "invalid_request"),
    NotFoundError: (404, "not_found"),
    ConflictError: (409, "conflict"),
    ForbiddenError: (403, "forbidden"),
    UpstreamError: (503, "provider_unavailable"),
}

MEANING = {
    403: "The caller, or the caller's CRM account, may not do this.",
    404: "No such connection (user, company, activity entry), or none the caller may reach: "
    "another tenant's is not found either.",
    409: "Not in the connection's present state: the message says what to do first.",
    422: "The request is not valid: the message and details say what to change.",
    503: "A provider did not answer; trying again later can help.",
}


def status_of(exc: AdminError) -> tuple[int, str]:
    """The HTTP status and error code of a domain error."""
    return next(
        (STATUS[kind] for kind in type(exc).__mro__ if kind in STATUS), (400, "bad_request")
    )


def error_response(status: int, code: str, message: str, details: Any = None) -> Response[Any]:
    return Response(
        status_code=status,
        content_type="application/json",
        body={"error": {"code": code, "message": message, "details": details or {}}},
    )


def answers(what: str, *statuses: int, ok: int = 200) -> dict[int, OpenAPIResponse]:
    """A route's answers for its OpenAPI document: the success answer, ``what`` it is (its
    schema comes from the route's return type), and the errors it can give; every route can
    answer 422 to a request that is not valid."""
    documented: dict[int, OpenAPIResponse] = {ok: {"description": what}}
    for status in sorted({*statuses, 422}):
        documented[status] = {
            "description": MEANING[status],
            "content": {"application/json": {"model": ErrorAnswer}},
        }
    if 404 in documented:
        # A path the gateway cannot route to the function (one with a line break in it) gets
        # the gateway's own 404, not ours: the 404 is described, its body not promised.
        documented[404] = {
            "description": MEANING[404] + " The body is an ErrorAnswer.",
            "content": {},
        }
    return documented
