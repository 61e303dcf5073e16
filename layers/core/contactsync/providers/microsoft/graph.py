"""Calling Microsoft Graph: one request under Graph's rules (``errors.GRAPH``), asking for
immutable ids, and JSON ``$batch`` (20 sub-requests a batch) with the sub-requests a busy
mailbox answered 429 sent again after their short Retry-After."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from contactsync.providers.base import AuthExpired, ProviderError, RateLimited, Transient
from contactsync.providers.microsoft.errors import DEFAULT_RETRY_AFTER, GRAPH, error_of, message
from contactsync.providers.transport import (
    MALFORMED,
    Bearer,
    Transport,
    answer_body,
    answer_object,
    chunks,
    retry_after,
)

BATCH_SIZE = 20  # Graph's JSON batching limit
THROTTLED_ROUNDS = 3  # sends again of the sub-requests a batch answered 429 (a 429 made nothing)
SHORT_WAIT = 2.0  # longest Retry-After we wait out inline; a longer one ends the pass's writes
# Outlook gives an item a new id when it moves to another folder, unless the request asks for
# immutable ids; the header applies to that one request only, so every request (each $batch
# sub-request, the subscription that decides the ids of its notifications) carries it.
IMMUTABLE_IDS = 'IdType="ImmutableId"'


@dataclass(frozen=True)
class Answer:
    """One sub-request's outcome: Graph's answer, or the error that kept it from having one."""

    id: str
    status: int = 0
    body: Any = None
    error: ProviderError | None = None
    retry: float = DEFAULT_RETRY_AFTER  # Retry-After of a 429

    def failure(self) -> ProviderError:
        """What kept this sub-request from succeeding."""
        return self.error or error_of(self.status, self.body)


class GraphApi:
    """Requests to Microsoft Graph as one signed-in user."""

    def __init__(
        self, *, base_url: str, token: Callable[[bool], str], client: httpx.Client
    ) -> None:
        self._base = base_url.rstrip("/")
        self._http = Transport(client, GRAPH, Bearer(token))

    def send(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        retry: bool = True,
    ) -> httpx.Response:
        """One request, asking for immutable ids; ``retry=False`` for a create."""
        return self._http.send(
            method, url, json=json, params=params, headers=preferring(headers), retry=retry
        )

    def json(self, resp: httpx.Response, *, cursor: bool = False) -> dict[str, Any]:
        return answer_object(
            resp,
            api="Graph",
            error=lambda status, body: error_of(status, body, cursor=cursor, default=ProviderError),
        )

    def batch(
        self, requests: list[dict[str, Any]], *, writes: bool = False, retry: bool = True
    ) -> list[Answer]:
        """Run sub-requests 20 per ``$batch`` (a lone one goes directly); answers in order.

        Reads raise at the first throttle or failure. Writes keep what was already done: a
        throttled item, or a chunk that failed, becomes a per-item error, and the items not sent
        yet get the same error (so the caller records the rest and re-queues)."""
        answers: list[Answer] = []
        stop: ProviderError | None = None
        for chunk in chunks(requests, BATCH_SIZE):
            if stop is None:
                try:
                    got = self._run_settled(chunk, retry=retry)
                except (RateLimited, Transient) as exc:
                    if not writes:
                        raise
                    stop = exc
            if stop is not None:
                answers += [Answer(r["id"], error=stop) for r in chunk]
                continue
            for answer in got:
                if answer.error is not None:  # a send-again round that did not get through
                    if not writes:
                        raise answer.error
                    stop = answer.error
                if answer.status != 429:
                    answers.append(answer)
                    continue
                throttled = RateLimited(message(429, answer.body), retry_after=answer.retry)
                if not writes:
                    raise throttled
                stop = throttled
                answers.append(Answer(answer.id, error=throttled))
        return answers

    def _run_settled(self, chunk: list[dict[str, Any]], *, retry: bool) -> list[Answer]:
        """Run a chunk; its sub-requests answered 429 with a short Retry-After (Outlook runs at
        most four requests per mailbox at a time, and a batch's sub-requests beyond the free
        slots are refused) are sent again alone, after the wait. A 429 sub-response made
        nothing, so this holds for creates too. What a later round cannot settle keeps its 429
        (or the error that round ended with); what earlier rounds did is never lost."""
        answers: dict[str, Answer] = {}
        todo = chunk
        for round_ in range(THROTTLED_ROUNDS + 1):
            try:
                got = self._run_chunk(todo, retry=retry)
            except (RateLimited, Transient) as exc:
                if round_ == 0:
                    raise
                answers.update({r["id"]: Answer(r["id"], error=exc) for r in todo})
                break
            again = [a for a in got if a.status == 429 and a.retry <= SHORT_WAIT]
            answers.update({a.id: a for a in got})
            if not again or round_ == THROTTLED_ROUNDS:
                break
            time.sleep(max(a.retry for a in again))
            refused = {a.id for a in again}
            todo = [r for r in chunk if r["id"] in refused]
        return [answers[r["id"]] for r in chunk]

    def _run_chunk(self, chunk: list[dict[str, Any]], *, retry: bool) -> list[Answer]:
        if len(chunk) == 1:
            only = chunk[0]
            url, body, headers = self._base + only["url"], only.get("body"), only.get("headers")
            resp = self.send(only["method"], url, json=body, headers=headers, retry=retry)
            answer = answer_body(resp)
            if resp.status_code < 400 and isinstance(answer, dict) and malformed(resp, answer):
                # Done or not, we cannot tell: the caller treats it as an outage (a create
                # is then looked up by its tag before being sent again).
                raise Transient(f"Graph sent a malformed answer ({len(resp.content)} bytes)")
            return [Answer(only["id"], resp.status_code, answer)]
        sent = [{**r, "headers": preferring(r.get("headers"))} for r in chunk]
        resp = self.send("POST", f"{self._base}/$batch", json={"requests": sent}, retry=retry)
        answers = {str(r["id"]): r for r in self.json(resp).get("responses", [])}
        got = []
        for request in chunk:
            raw = answers.get(request["id"], {"status": 500, "body": {}})
            status, body = int(raw["status"]), raw.get("body") or {}
            if status == 401:  # the batch's token is the sub-requests' token
                raise AuthExpired(message(401, body), status=401)
            got.append(
                Answer(
                    request["id"],
                    status,
                    body,
                    retry=retry_after(raw.get("headers") or {}, DEFAULT_RETRY_AFTER),
                )
            )
        return got


def preferring(headers: dict[str, str] | None) -> dict[str, str]:
    """``headers`` with immutable ids added to its ``Prefer`` (one header, comma-separated)."""
    out = dict(headers or {})
    prefer = out.get("Prefer", "")
    out["Prefer"] = f"{prefer}, {IMMUTABLE_IDS}" if prefer else IMMUTABLE_IDS
    return out


def malformed(resp: httpx.Response, body: dict[str, Any]) -> bool:
    return bool(resp.content) and body.get(MALFORMED) is True
