"""What Microsoft Graph's answers mean, as ``providers.base`` errors, and how Graph is called.

401 refreshes the token once, 429 is RateLimited (Graph sends ``Retry-After`` in seconds; 1 s
when it does not), 5xx and timeouts are sent again twice briefly (creates only when they never
left), then Transient; 410 or a sync-state code on delta is CursorExpired, 409/412 a
PreconditionFailed, 403 a PermissionDenied naming ``Contacts.ReadWrite``.
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
    Transient,
)
from contactsync.providers.transport import Rules, answer_body

SYNC_STATE_CODES = {"syncstatenotfound", "resyncrequired", "syncstateinvalid"}
DEFAULT_RETRY_AFTER = 1.0  # a 429 without Retry-After


def message(status: int, body: Any) -> str:
    error = (body or {}).get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return f"Graph {status} {error.get('code', '')}: {error.get('message', '')}".strip()
    return f"Graph {status}"


def error_of(
    status: int,
    body: Any,
    *,
    cursor: bool = False,
    default: type[ProviderError] = InvalidContact,
) -> ProviderError:
    """A Graph error answer (or $batch sub-response) as an error; ``cursor`` for a delta read,
    ``default`` for a 400/422 (a write's: the contact's data was refused)."""
    text = message(status, body)
    code = str(((body or {}).get("error") or {}).get("code", "")).lower()
    if cursor and (status == 410 or code in SYNC_STATE_CODES):
        return CursorExpired(text, status=status)
    if status == 404:
        return NotFound(text, status=404)
    if status in (409, 412):
        return PreconditionFailed(text, status=status)
    if status == 403:
        return PermissionDenied(text, missing=["Contacts.ReadWrite"])
    if status == 401:
        return AuthExpired(text, status=401)
    if status >= 500:
        return Transient(text, status=status)
    if status in (400, 422):
        return default(text, status=status)
    return ProviderError(text, status=status)


def _answer_message(resp: httpx.Response) -> str:
    return message(resp.status_code, answer_body(resp))


GRAPH = Rules(
    unreachable="Graph unreachable",
    message=_answer_message,
    retry_after=DEFAULT_RETRY_AFTER,
)
