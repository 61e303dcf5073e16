"""Domain errors the admin API maps to HTTP responses in one place."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class InvalidRequest(ServiceError):
    status = 422
    code = "invalid_request"


class NotFoundError(ServiceError):
    status = 404
    code = "not_found"


class ConflictError(ServiceError):
    status = 409
    code = "conflict"


class ForbiddenError(ServiceError):
    status = 403
    code = "forbidden"


class UpstreamError(ServiceError):
    """A provider failed us while serving the request; trying again later can help."""

    status = 503
    code = "provider_unavailable"
