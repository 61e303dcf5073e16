"""Calling the People API: one request under Google's rules (``errors.GOOGLE``), and reading its
answer as a JSON object (an error answer raises; a cut-short one is Transient)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import httpx

from contactsync.providers.base import Transient
from contactsync.providers.google.errors import GOOGLE, error_of
from contactsync.providers.transport import MALFORMED, Bearer, Transport, answer_body


class PeopleApi:
    """Requests to the People API as one signed-in user."""

    def __init__(
        self, *, base_url: str, token: Callable[[bool], str], client: httpx.Client
    ) -> None:
        self._base = base_url.rstrip("/")
        self._http = Transport(client, GOOGLE, Bearer(token))

    def send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str | list[str]] | None = None,
        retry: bool = True,
    ) -> httpx.Response:
        """One request to ``path`` of the API; ``retry=False`` for a create."""
        return self._http.send(method, self._base + path, json=json, params=params, retry=retry)

    def json(self, resp: httpx.Response, *, cursor: bool = False) -> dict[str, Any]:
        body = answer_body(resp)
        if resp.status_code >= 400:
            raise error_of(resp.status_code, body, cursor=cursor)
        if not isinstance(body, dict) or body.get(MALFORMED) is True:
            # Never read a cut-short answer as "no contacts": fail the pass and try again.
            raise Transient(f"Google sent a malformed answer ({len(resp.content)} bytes)")
        return body
