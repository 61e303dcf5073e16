"""What goes wrong serving an admin request: plain exceptions, mapped to HTTP once, in the handler.

Each message says what to fix; ``details`` carries what a client can act on (the allowed values,
an example, the missing permissions).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from contactsync.providers.base import AuthExpired, PermissionDenied, ProviderError


class AdminError(Exception):
    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class InvalidRequest(AdminError):
    """The request cannot be served as sent: the message says what to change."""


class NotFoundError(AdminError):
    """No such thing for this caller (another tenant's things are not found either)."""


class ConflictError(AdminError):
    """Not in the connection's present state: the message says what to do first."""


class ForbiddenError(AdminError):
    """The caller may not do this (or the CRM does not let them)."""


class UpstreamError(AdminError):
    """A provider failed us while serving the request; trying again later can help."""


@contextmanager
def provider_errors(what: str) -> Iterator[None]:
    """Turn a side's failure while serving a request into the admin errors."""
    try:
        yield
    except AuthExpired as exc:
        raise ConflictError(f"sign in again to {what}: {exc.message}") from exc
    except PermissionDenied as exc:
        raise ForbiddenError(
            f"{what} refused: {exc.message}", details={"missing_permissions": exc.missing}
        ) from exc
    except ProviderError as exc:
        raise UpstreamError(f"{what} did not answer: {exc.message}") from exc
