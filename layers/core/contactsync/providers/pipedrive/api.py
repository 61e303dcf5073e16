"""Calling Pipedrive: one request through the transport under Pipedrive's rules, paced below the
user's burst limit (requests per user per rolling 2 s, shared with the user's other connections
and their own use of the CRM)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

import httpx

from contactsync.providers.base import NotFound, Transient
from contactsync.providers.pipedrive.errors import BURST_WINDOW_S, error_of
from contactsync.providers.pipedrive.mapping import JSON
from contactsync.providers.transport import Bearer, Rules, Transport

# When the user's burst window has this few requests left (other connections of the user, and
# the user's own CRM use, spend it too), the next request waits for the window to reset.
BURST_RESERVE = 2


class PipedriveApi:
    """Requests to one Pipedrive company as one user."""

    def __init__(
        self,
        *,
        base_url: str,
        token: Callable[[bool], str],
        client: httpx.Client,
        rules: Rules,
        burst_limit: int,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._http = Transport(
            client, rules, Bearer(token), pace=self._pace, observe=self._read_limit
        )
        self._burst_limit = burst_limit
        self._hold_until = 0.0  # the user's burst window is spent until then (monotonic)
        self._sent: deque[float] = deque()

    def call(
        self,
        method: str,
        path: str,
        *,
        params: JSON | None = None,
        json_body: JSON | None = None,
        retry: bool = True,
    ) -> JSON:
        """One API request through the transport (``retry=False`` for a create): an error
        answer raises, a success comes back as its JSON object."""
        response = self._http.send(
            method, self._base + path, params=params, json=json_body, retry=retry
        )
        if response.status_code >= 400:
            raise error_of(method, path, response)
        try:
            body = response.json() if response.content else {}
        except ValueError:
            # Never read a cut-short answer as "no persons": fail the pass and try again.
            raise Transient(
                f"{method} {path}: the CRM sent a malformed answer ({len(response.content)} bytes)"
            ) from None
        return body if isinstance(body, dict) else {"data": body}

    def _read_limit(self, response: httpx.Response) -> None:
        """The burst window is the user's, shared with their other connections and their own
        use of the CRM: when an answer says it is (nearly) spent, wait for its reset before the
        next request rather than run into a 429."""
        remaining = response.headers.get("x-ratelimit-remaining", "")
        reset = response.headers.get("x-ratelimit-reset", "")
        if remaining.isdigit() and int(remaining) <= BURST_RESERVE and reset.isdigit():
            self._hold_until = time.monotonic() + min(int(reset), BURST_WINDOW_S)

    def _pace(self) -> None:
        """Stay under the burst limit (requests per user per rolling 2 s) instead of running into
        it: a pass that spends its 429s learns nothing and waits longer."""
        if self._burst_limit <= 0:
            return
        now = time.monotonic()
        if now < self._hold_until:
            time.sleep(self._hold_until - now)
            now = time.monotonic()
        while self._sent and now - self._sent[0] >= BURST_WINDOW_S:
            self._sent.popleft()
        if len(self._sent) >= self._burst_limit:
            time.sleep(max(0.0, BURST_WINDOW_S - (now - self._sent[0])))
            self._sent.popleft()
        self._sent.append(time.monotonic())


def person_path(person_id: str) -> str:
    if not person_id.isdigit():
        raise NotFound(f"no Pipedrive person {person_id!r}", status=404)
    return f"/api/v2/persons/{person_id}"
