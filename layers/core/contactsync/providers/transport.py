"""The one HTTP transport every adapter sends its requests through.

It owns the rules that are the same for every API we call, each written once:

- the credentials go with every request: an OAuth access token (asked for once, kept) or a
  login (HTTP Basic, opened on first use);
- a 401 refreshes the access token once and sends the request again; a second 401, or a 401 to
  a login, is AuthExpired;
- a throttled answer (429, or what the API says is one) is RateLimited with its ``Retry-After``;
  one that asks for a wait no longer than ``Rules.wait_out`` is waited out here, once;
- a 5xx, a timeout, a reset or a cut-short answer is sent again after a short jittered pause, up
  to ``Rules.attempts`` sends, then Transient;
- a request that is not safe to send twice (a create: ``retry=False``) is sent again only when it
  never left (the connection was refused); its 5xx and timeouts are Transient at once.

What an answer means beyond that (a 404, a 412, a per-item error) is the adapter's to read: other
statuses come back as they are. Each API's differences are data, in its ``Rules``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx

from contactsync.providers.base import AuthExpired, ProviderError, RateLimited, Transient

T = TypeVar("T")

TokenSource = Callable[[bool], str]  # True: refresh first (the access token was refused)
Login = Callable[[], tuple[str, str]]  # username and password, opened on first use


@dataclass(frozen=True)
class Backoff:
    """The pause before the n-th send again: ``first`` doubled each time, at most ``most``,
    times a random factor in ``spread`` (so many clients do not come back at once)."""

    first: float = 0.2
    most: float = 1.0
    spread: tuple[float, float] = (0.5, 1.0)

    def seconds(self, retry: int) -> float:
        low, high = self.spread
        jitter = random.uniform(low, high)  # noqa: S311 - jitter, not a secret
        return float(min(self.most, self.first * 2 ** (retry - 1)) * jitter)


def _status_429(resp: httpx.Response) -> bool:
    return resp.status_code == 429


def _status_5xx(status: int) -> bool:
    return status >= 500


@dataclass(frozen=True)
class Rules:
    """How one API is called: what in its answers means throttled or worth sending again."""

    unreachable: str  # the start of a Transient's message when no answer came ("Graph unreachable")
    message: Callable[[httpx.Response], str]  # an error answer in words
    throttled: Callable[[httpx.Response], bool] = _status_429
    transient: Callable[[int], bool] = _status_5xx  # statuses worth sending again
    retry_after: float = 1.0  # seconds to wait when a throttled answer does not say
    retry_after_headers: tuple[str, ...] = ("Retry-After",)  # read in this order
    attempts: int = 3  # sends of one request at most (a refresh after a 401 not counted)
    backoff: Backoff = field(default_factory=Backoff)
    wait_out: float = 0.0  # a throttle asking for at most this many seconds is waited out once


class Bearer(httpx.Auth):
    """An OAuth access token from a token source: asked for on the first request, kept, and
    asked for again (refreshed) when the API refused it."""

    def __init__(self, token: TokenSource) -> None:
        self._token = token
        self._current: str | None = None

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._current is None:
            self._current = self._token(False)
        request.headers["Authorization"] = f"Bearer {self._current}"
        yield request

    def refresh(self) -> bool:
        self._current = self._token(True)
        return True


class Basic(httpx.Auth):
    """A username and password (HTTP Basic), opened on the first request. A refused login
    cannot be refreshed: the user must give a new one."""

    def __init__(self, login: Login) -> None:
        self._login = login
        self._auth: httpx.BasicAuth | None = None

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._auth is None:
            self._auth = httpx.BasicAuth(*self._login())
        yield from self._auth.auth_flow(request)

    def refresh(self) -> bool:
        return False


class Transport:
    """Requests to one API as one account, under that API's ``Rules``."""

    def __init__(
        self,
        client: httpx.Client,
        rules: Rules,
        credentials: Bearer | Basic,
        *,
        pace: Callable[[], None] | None = None,
        observe: Callable[[httpx.Response], None] | None = None,
    ) -> None:
        self._http = client
        self._rules = rules
        self._credentials = credentials
        self._pace = pace  # called before every send (a client-side rate limit)
        self._observe = observe  # called with every answer (the API's rate-limit headers)

    def send(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        content: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        retry: bool = True,
        follow_redirects: bool = False,
    ) -> httpx.Response:
        """One request under the rules above. ``retry=False`` for a request that must not be
        sent twice (a create). Raises AuthExpired, RateLimited or Transient; every other
        answer comes back to the caller."""
        rules = self._rules
        refreshed = waited = False
        attempt = 0
        while True:
            attempt += 1
            if self._pace is not None:
                self._pace()
            try:
                resp = self._http.request(
                    method,
                    url,
                    params=params,
                    json=json,
                    content=content,
                    headers=headers,
                    auth=self._credentials,
                    follow_redirects=follow_redirects,
                )
            except httpx.TransportError as exc:  # timeouts, resets, cut-short answers, refusals
                never_left = isinstance(exc, httpx.ConnectError)
                if attempt < rules.attempts and (retry or never_left):
                    time.sleep(rules.backoff.seconds(attempt))
                    continue
                raise Transient(f"{rules.unreachable}: {type(exc).__name__}") from exc
            if self._observe is not None:
                self._observe(resp)
            status = resp.status_code
            if status == 401:
                if refreshed or not self._credentials.refresh():
                    raise AuthExpired(rules.message(resp), status=401)
                refreshed = True
                attempt -= 1  # a refresh is not a failed attempt
                continue
            if rules.throttled(resp):
                wait = retry_after(resp.headers, rules.retry_after, rules.retry_after_headers)
                if not waited and wait <= rules.wait_out:  # a throttled request made nothing
                    waited = True
                    time.sleep(wait)
                    continue
                raise RateLimited(rules.message(resp), retry_after=wait, status=status)
            if rules.transient(status):
                if retry and attempt < rules.attempts:
                    time.sleep(rules.backoff.seconds(attempt))
                    continue
                raise Transient(rules.message(resp), status=status)
            return resp


def retry_after(
    headers: Mapping[str, str], default: float, names: Sequence[str] = ("Retry-After",)
) -> float:
    """Seconds to wait, from the first of ``names`` that holds seconds or an HTTP date (any
    case, as in a ``$batch`` sub-response's plain headers); ``default`` when none does."""
    lowered = {str(key).lower(): str(value) for key, value in headers.items()}
    for name in names:
        value = lowered.get(name.lower(), "").strip()
        if not value:
            continue
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            continue
        if moment.tzinfo is None:  # "-0000": a time in UTC
            moment = moment.replace(tzinfo=UTC)
        return max(0.0, (moment - datetime.now(UTC)).total_seconds())
    return default


MALFORMED = "~malformed"  # marks an answer body that was not JSON


def answer_body(resp: httpx.Response) -> Any:
    """An answer's JSON; one that is not JSON comes back as an error marked ``MALFORMED``, so
    a cut-short success is never read as an empty one."""
    if not resp.content:
        return {}
    try:
        return resp.json()
    except ValueError:
        return {"error": {"message": resp.text[:200]}, MALFORMED: True}


def answer_object(
    resp: httpx.Response, *, api: str, error: Callable[[int, Any], ProviderError]
) -> dict[str, Any]:
    """A successful answer's JSON object. An error answer raises ``error(status, body)``; a
    success that is not a JSON object is Transient: a cut-short answer is never read as "no
    contacts", the pass fails and tries again."""
    body = answer_body(resp)
    if resp.status_code >= 400:
        raise error(resp.status_code, body)
    if not isinstance(body, dict) or body.get(MALFORMED) is True:
        raise Transient(f"{api} sent a malformed answer ({len(resp.content)} bytes)")
    return body


def json_or_empty(resp: httpx.Response) -> dict[str, Any]:
    """An answer's JSON object, or ``{}`` when it holds none (an OAuth endpoint's error page)."""
    try:
        body = resp.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def chunks(items: Sequence[T], size: int) -> Iterator[list[T]]:
    """``items`` in lists of at most ``size``, in order (an API's batch or ``ids=`` limit)."""
    for start in range(0, len(items), size):
        yield list(items[start : start + size])
