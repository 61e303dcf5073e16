"""Calling the People API: one request under Google's rules (``errors.GOOGLE``), and reading its
answer as a JSON object (an error answer raises; a cut-short one is Transient)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import httpx

from contactsync.providers.google.errors import GOOGLE, error_of
from contactsync.providers.transport import Bearer, Transport, answer_object


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
        return answer_object(
            resp, api="Google", error=lambda status, body: error_of(status, body, cursor=cursor)
        )
