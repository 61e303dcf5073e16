"""What Pipedrive's answers mean, as ``providers.base`` errors, and how Pipedrive is called.

401 refreshes the token once; 429 is RateLimited with ``Retry-After`` (or
``X-RateLimit-Reset``; the 2 s burst window when neither says), and a short one may be waited
out once (``Rules.wait_out``, set per adapter); 5xx and timeouts are sent again with jittered
back-off (creates only when they never left), then Transient. 403 is PermissionDenied, 404
NotFound, 400/422 InvalidContact.
"""

from __future__ import annotations

import math

import httpx

from contactsync.providers.base import (
    AuthExpired,
    InvalidContact,
    NotFound,
    PermissionDenied,
    ProviderError,
    RateLimited,
    Transient,
)
from contactsync.providers.transport import Backoff, Rules, retry_after

BURST_WINDOW_S = 2.0  # Pipedrive's burst limit counts requests per rolling 2 seconds
RETRY_AFTER_HEADERS = ("retry-after", "x-ratelimit-reset")


def message(method: str, path: str, response: httpx.Response) -> str:
    try:
        detail = str(response.json().get("error") or "")
    except (ValueError, AttributeError):
        detail = ""
    return f"{method} {path}: {response.status_code} {detail}".strip()


def error_of(method: str, path: str, response: httpx.Response) -> ProviderError:
    status = response.status_code
    text = message(method, path, response)
    if status == 401:
        return AuthExpired(text, status=status)
    if status == 429:
        wait = retry_after(response.headers, BURST_WINDOW_S, RETRY_AFTER_HEADERS)
        return RateLimited(text, retry_after=wait)
    if status == 403:
        return PermissionDenied(text, status=status)
    if status == 404:
        return NotFound(text, status=status)
    if status in (400, 422):
        return InvalidContact(text, status=status)
    if status >= 500:
        return Transient(text, status=status)
    return ProviderError(text, status=status)


def _answer_message(response: httpx.Response) -> str:
    return message(response.request.method, response.request.url.path, response)


# The adapter sets the attempts, the first pause and the wait it sits out (its arguments).
PIPEDRIVE = Rules(
    unreachable="the CRM is unreachable",
    message=_answer_message,
    retry_after=BURST_WINDOW_S,
    retry_after_headers=RETRY_AFTER_HEADERS,
    backoff=Backoff(first=0.2, most=math.inf, spread=(0.5, 1.5)),
)
