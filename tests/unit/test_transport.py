"""The one HTTP transport: refresh once on 401, retries of reads, creates never sent twice,
429 as RateLimited with its Retry-After — against httpx's own in-process transport seam."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from contactsync.providers.base import AuthExpired, RateLimited, Transient
from contactsync.providers.carddav.dav import DAV_RULES, REAUTH
from contactsync.providers.google.errors import GOOGLE
from contactsync.providers.microsoft.errors import GRAPH
from contactsync.providers.pipedrive.errors import PIPEDRIVE
from contactsync.providers.transport import (
    Backoff,
    Basic,
    Bearer,
    Rules,
    Transport,
    chunks,
    retry_after,
)

NO_PAUSE = Backoff(first=0.0)
RULES = replace(GRAPH, backoff=NO_PAUSE)
URL = "https://api.example.test/items"

Answer = httpx.Response | Exception


class Server:
    """Answers requests in the order given (the last one again when they run out) and keeps
    every request it was sent."""

    def __init__(self, *answers: Answer) -> None:
        self._answers: Iterator[Answer] = iter(answers)
        self._last: Answer = answers[-1]
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = next(self._answers, self._last)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self))

    @property
    def bearers(self) -> list[str]:
        return [r.headers.get("Authorization", "") for r in self.requests]


class Tokens:
    """A token source that hands out a new token on every refresh, and says when it did."""

    def __init__(self) -> None:
        self.asked: list[bool] = []

    def __call__(self, refresh: bool) -> str:
        self.asked.append(refresh)
        return f"token-{sum(self.asked)}"


def transport(server: Server, tokens: Callable[[bool], str], rules: Rules = RULES) -> Transport:
    return Transport(server.client(), rules, Bearer(tokens))


def ok() -> httpx.Response:
    return httpx.Response(200, json={"value": []})


# --- 401 ------------------------------------------------------------------------------------------


def test_a_401_refreshes_the_token_once_and_sends_the_request_again() -> None:
    # Given an API that refuses the first token
    server, tokens = Server(httpx.Response(401), ok()), Tokens()
    # When a request is sent
    resp = transport(server, tokens).send("GET", URL)
    # Then the token was refreshed once and the request went again with the new one
    assert resp.status_code == 200
    assert tokens.asked == [False, True]
    assert server.bearers == ["Bearer token-0", "Bearer token-1"]


def test_a_second_401_is_auth_expired_without_another_refresh() -> None:
    server, tokens = Server(httpx.Response(401)), Tokens()
    with pytest.raises(AuthExpired) as raised:
        transport(server, tokens).send("GET", URL)
    assert raised.value.status == 401
    assert tokens.asked == [False, True]
    assert len(server.requests) == 2


def test_the_token_is_asked_for_once_and_kept_for_later_requests() -> None:
    server, tokens = Server(ok()), Tokens()
    sender = transport(server, tokens)
    for _ in range(3):
        sender.send("GET", URL)
    assert tokens.asked == [False]


def test_a_refresh_is_not_counted_as_an_attempt() -> None:
    # Given a refused token, then a server error on every later try
    server = Server(httpx.Response(401), httpx.Response(503))
    # When a read is sent
    with pytest.raises(Transient):
        transport(server, Tokens()).send("GET", URL)
    # Then it was tried three times after the refresh
    assert len(server.requests) == 1 + RULES.attempts


def test_a_token_source_that_cannot_give_a_token_stops_the_request_before_it_is_sent() -> None:
    # Given a connection whose sign-in is gone
    def no_sign_in(_refresh: bool) -> str:
        raise AuthExpired("the connection has no Google sign-in")

    server = Server(ok())
    # When a request is sent, Then its AuthExpired reaches the caller as it is, and nothing went
    with pytest.raises(AuthExpired, match="no Google sign-in"):
        transport(server, no_sign_in).send("GET", URL)
    assert server.requests == []


def test_a_refused_login_is_auth_expired_at_once_and_the_login_opened_once() -> None:
    server = Server(httpx.Response(401))
    opened: list[int] = []

    def login() -> tuple[str, str]:
        opened.append(1)
        return "ada", "app-password"

    sender = Transport(server.client(), replace(DAV_RULES, backoff=NO_PAUSE), Basic(login))
    for _ in range(2):
        with pytest.raises(AuthExpired) as raised:
            sender.send("PROPFIND", URL)
        assert raised.value.message == REAUTH
    assert len(server.requests) == 2 and len(opened) == 1
    assert server.requests[0].headers["Authorization"].startswith("Basic ")


# --- 5xx, timeouts, resets ------------------------------------------------------------------------


def test_a_read_is_sent_again_after_a_5xx() -> None:
    server = Server(httpx.Response(502), httpx.Response(503), ok())
    assert transport(server, Tokens()).send("GET", URL).status_code == 200
    assert len(server.requests) == 3


def test_a_read_failing_every_time_is_transient_after_its_attempts() -> None:
    server = Server(httpx.Response(500))
    with pytest.raises(Transient) as raised:
        transport(server, Tokens()).send("GET", URL)
    assert raised.value.status == 500
    assert len(server.requests) == RULES.attempts


@pytest.mark.parametrize(
    "broken",
    [
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("peer closed connection without sending complete message body"),
        httpx.ReadError("connection reset by peer"),
    ],
)
def test_a_read_cut_short_is_sent_again(broken: Exception) -> None:
    server = Server(broken, ok())
    assert transport(server, Tokens()).send("GET", URL).status_code == 200
    assert len(server.requests) == 2


def test_a_create_answered_5xx_is_not_sent_again() -> None:
    # Given a server that fails the create (it may have made the contact all the same)
    server = Server(httpx.Response(500), ok())
    # When it is sent as a create
    with pytest.raises(Transient):
        transport(server, Tokens()).send("POST", URL, json={"name": "Ada"}, retry=False)
    # Then it went once
    assert len(server.requests) == 1


def test_a_create_whose_answer_was_lost_is_not_sent_again() -> None:
    server = Server(httpx.ReadTimeout("slow"), ok())
    with pytest.raises(Transient):
        transport(server, Tokens()).send("POST", URL, json={"name": "Ada"}, retry=False)
    assert len(server.requests) == 1


def test_a_create_that_never_left_is_sent_again() -> None:
    server = Server(httpx.ConnectError("connection refused"), httpx.Response(201, json={}))
    resp = transport(server, Tokens()).send("POST", URL, json={"name": "Ada"}, retry=False)
    assert resp.status_code == 201 and len(server.requests) == 2


def test_other_statuses_come_back_to_the_adapter() -> None:
    for status in (400, 404, 409, 412):
        server = Server(httpx.Response(status))
        assert transport(server, Tokens()).send("GET", URL).status_code == status
        assert len(server.requests) == 1


# --- 429 ------------------------------------------------------------------------------------------


def test_a_429_is_rate_limited_with_its_retry_after_and_not_sent_again() -> None:
    server = Server(httpx.Response(429, headers={"Retry-After": "17"}), ok())
    with pytest.raises(RateLimited) as raised:
        transport(server, Tokens()).send("GET", URL)
    assert raised.value.retry_after == 17.0 and raised.value.status == 429
    assert len(server.requests) == 1


def test_a_429_without_retry_after_waits_the_apis_default() -> None:
    for rules, default in ((RULES, 1.0), (GOOGLE, 30.0), (PIPEDRIVE, 2.0)):
        server = Server(httpx.Response(429))
        with pytest.raises(RateLimited) as raised:
            transport(server, Tokens(), rules).send("GET", URL)
        assert raised.value.retry_after == default


def test_a_short_429_is_waited_out_once_even_for_a_create() -> None:
    # Given rules that sit out a throttle of up to 2 s, and a server throttling twice
    rules = replace(PIPEDRIVE, backoff=NO_PAUSE, wait_out=2.0)
    throttled = httpx.Response(429, headers={"Retry-After": "0"})
    server = Server(throttled, throttled, ok())
    # When a create is sent
    with pytest.raises(RateLimited):
        transport(server, Tokens(), rules).send("POST", URL, json={}, retry=False)
    # Then the first throttle was waited out, the second is for the caller
    assert len(server.requests) == 2


def test_google_quota_errors_are_rate_limited_whatever_their_status() -> None:
    body = {"error": {"code": 403, "status": "RESOURCE_EXHAUSTED", "message": "Quota exceeded"}}
    server = Server(httpx.Response(403, json=body))
    with pytest.raises(RateLimited) as raised:
        transport(server, Tokens(), GOOGLE).send("GET", URL)
    assert raised.value.retry_after == 30.0 and raised.value.status == 403


def test_a_carddav_503_with_retry_after_is_rate_limited_and_501_507_are_left_to_the_adapter() -> (
    None
):
    rules = replace(DAV_RULES, backoff=NO_PAUSE)
    busy = Server(httpx.Response(503, headers={"Retry-After": "5"}))
    with pytest.raises(RateLimited) as raised:
        Transport(busy.client(), rules, Basic(lambda: ("a", "b"))).send("REPORT", URL)
    assert raised.value.retry_after == 5.0
    full = Server(httpx.Response(507))
    resp = Transport(full.client(), rules, Basic(lambda: ("a", "b"))).send("PUT", URL)
    assert resp.status_code == 507 and len(full.requests) == 1
    lacking = Server(httpx.Response(501))
    resp = Transport(lacking.client(), rules, Basic(lambda: ("a", "b"))).send("REPORT", URL)
    assert resp.status_code == 501 and len(lacking.requests) == 1


# --- Retry-After, chunks -------------------------------------------------------------------------


def test_retry_after_reads_seconds_a_date_or_a_later_header_in_any_case() -> None:
    assert retry_after({"retry-after": "3"}, 1.0) == 3.0
    assert retry_after({"Retry-After": "-4"}, 1.0) == 0.0
    assert retry_after({"Retry-After": "soon"}, 1.0) == 1.0
    assert retry_after({}, 30.0) == 30.0
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True)
    assert 50 < retry_after({"Retry-After": later}, 1.0) <= 60
    headers = {"X-RateLimit-Reset": "9"}
    assert retry_after(headers, 2.0, ("retry-after", "x-ratelimit-reset")) == 9.0


def test_chunks_keep_order_and_size() -> None:
    assert list(chunks(list(range(5)), 2)) == [[0, 1], [2, 3], [4]]
    assert list(chunks([], 3)) == []
