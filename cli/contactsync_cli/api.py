"""The admin API as the command line reaches it: where it is, who we are, and one call.

Where and who come from ``--api`` / ``--token``, else ``CONTACTSYNC_API`` / ``CONTACTSYNC_TOKEN``,
else (when neither is set) the ``.local/stack.json`` that ``make run`` writes: its API address and
the demo user's token, so ``contactsync status`` just works next to a running local stack.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

STACK_FILE = Path(".local") / "stack.json"
TIMEOUT_SECONDS = 30.0


class ApiError(Exception):
    """The API said no (or could not be reached); ``message`` is what to show the user."""

    def __init__(
        self, message: str, *, status: int = 0, code: str = "", details: Any = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.details = details


@dataclass(frozen=True)
class Target:
    """Which API to call and with which bearer token."""

    api: str
    token: str


def find_target(
    api: str | None,
    token: str | None,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Target:
    """Options first, then the environment, then the local stack's file when neither is set."""
    env = dict(os.environ) if env is None else env
    api = api or env.get("CONTACTSYNC_API") or None
    token = token or env.get("CONTACTSYNC_TOKEN") or None
    stack_file = (cwd or Path.cwd()) / STACK_FILE
    if api is None and token is None and stack_file.is_file():
        try:
            stack = json.loads(stack_file.read_text())
            api, token = str(stack["api"]), str(stack["tokens"]["demo_user"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ApiError(f"{stack_file} is not a stack description ({exc})") from exc
    if not api:
        raise ApiError(
            "no API address: pass --api URL or set CONTACTSYNC_API "
            "(next to `make run`, .local/stack.json is used)"
        )
    if not token:
        raise ApiError("no bearer token: pass --token JWT or set CONTACTSYNC_TOKEN")
    return Target(api=api.rstrip("/"), token=token)


def path_part(value: str) -> str:
    """An id as one path segment: it can never reach another route."""
    return quote(str(value), safe="")


class AdminApi:
    """One JSON call at a time; any 4xx/5xx or network failure becomes an ``ApiError``."""

    def __init__(self, target: Target, *, transport: httpx.BaseTransport | None = None) -> None:
        self.target = target
        self.http = httpx.Client(
            base_url=target.api,
            headers={"authorization": f"Bearer {target.token}", "accept": "application/json"},
            timeout=TIMEOUT_SECONDS,
            transport=transport,
        )

    def close(self) -> None:
        self.http.close()

    def call(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = self.http.request(method, path, json=body, params=query or None)
        except httpx.HTTPError as exc:
            raise ApiError(f"cannot reach the API at {self.target.api}: {exc}") from exc
        if response.status_code >= 400:
            raise _error_from(response)
        if not response.content:
            return {}
        try:
            return response.json()
        except ValueError as exc:
            raise ApiError(
                f"the API answered {method} {path} with something that is not JSON",
                status=response.status_code,
            ) from exc

    def get(self, path: str, **params: Any) -> Any:
        return self.call("GET", path, params=params)

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.call("POST", path, body=body)

    def patch(self, path: str, body: dict[str, Any]) -> Any:
        return self.call("PATCH", path, body=body)

    def delete(self, path: str) -> Any:
        return self.call("DELETE", path)


def _error_from(response: httpx.Response) -> ApiError:
    """``{"error": {"code", "message", "details"}}`` from our handlers, ``{"message"}`` from
    the gateway (401, unknown route), anything else as the status line."""
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return ApiError(
            str(error["message"]),
            status=response.status_code,
            code=str(error.get("code") or ""),
            details=error.get("details"),
        )
    if isinstance(body, dict) and body.get("message"):
        message = str(body["message"])
    else:
        message = f"{response.status_code} {response.reason_phrase}".strip()
    if response.status_code == 401:
        message += " (check --token or CONTACTSYNC_TOKEN)"
    if response.status_code in (404, 405):
        request = response.request
        message += f": this API has no route {request.method} {request.url.path}"
    return ApiError(message, status=response.status_code)
