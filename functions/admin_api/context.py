"""What every route needs: the caller the JWT authorizer vouched for, and the admin services'
context (built once per cold start)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from contactsync.admin.access import Caller, caller_of
from contactsync.admin.context import AdminContext
from contactsync.runtime.wiring import build_queue, build_wiring


class Unauthorized(Exception):
    """The token names no user or company the API can act for."""


@lru_cache(maxsize=1)
def service() -> AdminContext:
    """Built on first use, once per cold start."""
    return AdminContext(build_wiring(), build_queue())


def caller_from(event: Any) -> Caller:
    """The caller as the JWT authorizer vouched for them (claims arrive as strings)."""
    claims = event.request_context.authorizer.jwt_claim or {}
    user_id = str(claims.get("sub") or "")
    company_id = str(claims.get("company_id") or "")
    try:
        return caller_of(user_id, company_id, is_admin=claims.get("role") == "admin")
    except ValueError as exc:
        raise Unauthorized(str(exc)) from exc


def caller(router: APIGatewayHttpRouter) -> Caller:
    """The caller of the request the router is serving."""
    return caller_from(router.current_event)
