"""What a CardDAV server's answers mean, as ``providers.base`` errors."""

from __future__ import annotations

from contactsync.providers.base import (
    AuthExpired,
    InvalidContact,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    ProviderError,
    Transient,
)


def invalid_token(status: int, text: str) -> bool:
    """RFC 6578: an unknown token fails the DAV:valid-sync-token precondition (403); servers
    also answer 400, 409, 410 or 412 for it."""
    return "valid-sync-token" in text or status in (400, 409, 410, 412)


def error_of(status: int, doing: str, *, write: bool = False) -> ProviderError:
    message = f"the CardDAV server refused to {doing} ({status})"
    if status == 401:
        return AuthExpired(message, status=401)
    if status == 403:
        return PermissionDenied(message, missing=["write access to the address book"])
    if status in (404, 410):
        return NotFound(message, status=status)
    if status == 412:
        return PreconditionFailed(message, status=412)
    if status >= 500:
        return Transient(message, status=status)
    if write and 400 <= status < 500:
        return InvalidContact(message, status=status)
    return ProviderError(message, status=status)
