"""What the People API's answers mean, as ``providers.base`` errors, and how Google is called.

401 refreshes the token once; 429 or RESOURCE_EXHAUSTED is RateLimited (``Retry-After`` or
30 s: Google sends none, and it is never slept here); 5xx and timeouts are sent again twice
briefly (creates only when they never left), then Transient. An expired sync token (400
FAILED_PRECONDITION, ErrorInfo reason EXPIRED_SYNC_TOKEN) is CursorExpired, 403 a
PermissionDenied naming the contacts scope. A batch names the contacts at fault with a
``google.rpc.Status`` each: ``status_error`` reads one.
"""

from __future__ import annotations

from typing import Any

import httpx

from contactsync.providers.base import (
    AuthExpired,
    CursorExpired,
    InvalidContact,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    ProviderError,
    RateLimited,
    Transient,
)
from contactsync.providers.transport import Rules, answer_body

CONTACTS_SCOPE = "https://www.googleapis.com/auth/contacts"
DEFAULT_RETRY_AFTER = 30.0  # Google sends no Retry-After with its 429s
# gRPC status names (the ``status`` of an error) and codes (a per-contact Status's ``code``).
GRPC_NAMES = {
    3: "INVALID_ARGUMENT",
    5: "NOT_FOUND",
    7: "PERMISSION_DENIED",
    8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION",
    10: "ABORTED",
    13: "INTERNAL",
    14: "UNAVAILABLE",
    16: "UNAUTHENTICATED",
}


def error_of(status: int, body: Any, *, cursor: bool = False, write: bool = False) -> ProviderError:
    """An error answer as an error; ``cursor`` for a listing from a sync token, ``write`` for a
    write (a 400 then means the contact's data was refused)."""
    text = message(status, body)
    grpc = grpc_status(body)
    if cursor and "EXPIRED_SYNC_TOKEN" in _reasons(body):
        return CursorExpired(text, status=status)
    if cursor and status == 400 and "sync token" in text.lower():
        # A token Google no longer knows at all ("Sync token is invalid"): the same cure.
        return CursorExpired(text, status=status)
    if status == 401:
        return AuthExpired(text, status=401)
    if status == 403:
        return PermissionDenied(text, missing=[CONTACTS_SCOPE])
    if status == 404:
        return NotFound(text, status=404)
    if grpc in ("FAILED_PRECONDITION", "ABORTED") or status in (409, 412):
        return PreconditionFailed(text, status=status)
    if status >= 500:
        return Transient(text, status=status)
    if status == 400 and write:
        return InvalidContact(text, status=status)
    return ProviderError(text, status=status)


def status_error(status: dict[str, Any]) -> ProviderError:
    """A per-contact google.rpc.Status (or a bare HTTP status code) as an error."""
    code = status.get("code")
    name = str(status.get("status") or GRPC_NAMES.get(int(code or 0), ""))
    http = int(status.get("httpStatusCode") or 0)
    text = f"Google {name or http}: {status.get('message', '')}".strip()
    if name == "NOT_FOUND" or http == 404:
        return NotFound(text, status=404)
    if name in ("FAILED_PRECONDITION", "ABORTED") or http in (409, 412):
        return PreconditionFailed(text, status=400)
    if name == "RESOURCE_EXHAUSTED" or http == 429:
        return RateLimited(text, retry_after=DEFAULT_RETRY_AFTER)
    if name == "PERMISSION_DENIED" or http == 403:
        return PermissionDenied(text, missing=[CONTACTS_SCOPE])
    if name in ("INTERNAL", "UNAVAILABLE") or http >= 500:
        return Transient(text, status=http or 503)
    return InvalidContact(text, status=http or 400)


def error_body(body: Any) -> dict[str, Any]:
    """The ``error`` object of an answer ({} when it has none)."""
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def grpc_status(body: Any) -> str:
    return str(error_body(body).get("status") or "")


def _reasons(body: Any) -> set[str]:
    return {str(d.get("reason")) for d in error_body(body).get("details") or [] if "reason" in d}


def message(status: int, body: Any) -> str:
    error = error_body(body)
    if error:
        return f"Google {status} {error.get('status', '')}: {error.get('message', '')}".strip()
    return f"Google {status}"


def _answer_message(resp: httpx.Response) -> str:
    return message(resp.status_code, answer_body(resp))


def _throttled(resp: httpx.Response) -> bool:
    return resp.status_code == 429 or grpc_status(answer_body(resp)) == "RESOURCE_EXHAUSTED"


GOOGLE = Rules(
    unreachable="Google unreachable",
    message=_answer_message,
    throttled=_throttled,
    retry_after=DEFAULT_RETRY_AFTER,
)


def contact_errors(resp: httpx.Response, keys: list[str]) -> dict[str, ProviderError]:
    """The contacts a failed batch names (``contactErrors``: index or resource name ->
    Status), or, when it names none, every key with the batch's own error. AuthExpired and
    PermissionDenied are about the whole connection and are raised."""
    body = answer_body(resp)
    named: dict[str, ProviderError] = {}
    for detail in error_body(body).get("details") or []:
        for key, status in (detail.get("contactErrors") or {}).items():
            if str(key) in keys:
                named[str(key)] = status_error(status)
    if named:
        return named
    return dict.fromkeys(keys, batch_error(resp))


def batch_error(resp: httpx.Response) -> ProviderError:
    """A failed batch's own error. AuthExpired and PermissionDenied concern the whole
    connection, not these contacts: they are raised."""
    error = error_of(resp.status_code, answer_body(resp), write=True)
    if isinstance(error, AuthExpired | PermissionDenied):
        raise error
    return error
