"""Pipedrive OAuth 2.0: the authorization-code flow and token refresh, over httpx.

Pipedrive authenticates the client with HTTP Basic (``client_id:client_secret``) on
``POST /oauth/token``; the token answer carries ``api_domain``, the base URL for API calls of that
company. A refresh answer may rotate the refresh token; we keep the old one if it does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx

from contactsync.providers.base import AuthExpired, Transient
from contactsync.providers.transport import json_or_empty

DEFAULT_TIMEOUT = 10.0


@dataclass(frozen=True)
class PipedriveOAuthConfig:
    client_id: str
    client_secret: str
    authorize_url: str = "https://oauth.pipedrive.com/oauth/authorize"
    token_url: str = "https://oauth.pipedrive.com/oauth/token"  # noqa: S105 (a URL)


@dataclass(frozen=True)
class PipedriveGrant:
    """What a connection stores (encrypted) to call Pipedrive as the user."""

    access_token: str
    refresh_token: str
    expires_at: datetime
    api_domain: str | None = None

    def expires_soon(self, now: datetime | None = None, margin_s: int = 60) -> bool:
        moment = now or datetime.now(UTC)
        return moment >= self.expires_at - timedelta(seconds=margin_s)


def authorization_url(cfg: PipedriveOAuthConfig, redirect_uri: str, state: str) -> str:
    """Where to send the user's browser to approve the app."""
    query = urlencode({"client_id": cfg.client_id, "redirect_uri": redirect_uri, "state": state})
    return f"{cfg.authorize_url}?{query}"


def exchange_code(
    cfg: PipedriveOAuthConfig,
    code: str,
    redirect_uri: str,
    *,
    client: httpx.Client | None = None,
) -> PipedriveGrant:
    """Trade the authorization code from the redirect for tokens."""
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
    return _grant_from(_post_token(cfg, form, client), previous_refresh=None)


def refresh(
    cfg: PipedriveOAuthConfig,
    grant: PipedriveGrant,
    *,
    client: httpx.Client | None = None,
) -> PipedriveGrant:
    """A fresh access token. ``invalid_grant`` (revoked, uninstalled) raises AuthExpired."""
    form = {"grant_type": "refresh_token", "refresh_token": grant.refresh_token}
    fresh = _grant_from(_post_token(cfg, form, client), previous_refresh=grant.refresh_token)
    if fresh.api_domain is None and grant.api_domain is not None:
        fresh = PipedriveGrant(
            fresh.access_token, fresh.refresh_token, fresh.expires_at, grant.api_domain
        )
    return fresh


def revoke(
    cfg: PipedriveOAuthConfig, refresh_token: str, *, client: httpx.Client | None = None
) -> None:
    """Uninstall for this user: the refresh token (and with it the grant) stops working. A grant
    already gone is the goal reached."""
    url = cfg.token_url.rsplit("/", 1)[0] + "/revoke"
    form = {"token": refresh_token, "token_type_hint": "refresh_token"}
    auth = httpx.BasicAuth(cfg.client_id, cfg.client_secret)
    try:
        if client is not None:
            response = client.post(url, data=form, auth=auth)
        else:
            with httpx.Client(timeout=DEFAULT_TIMEOUT) as own:
                response = own.post(url, data=form, auth=auth)
    except httpx.HTTPError as exc:
        raise Transient(f"Pipedrive revoke endpoint unreachable: {type(exc).__name__}") from exc
    if response.status_code >= 500 or response.status_code == 401:
        raise Transient("Pipedrive did not revoke the grant", status=response.status_code)


def _post_token(
    cfg: PipedriveOAuthConfig, form: dict[str, str], client: httpx.Client | None
) -> dict[str, Any]:
    auth = httpx.BasicAuth(cfg.client_id, cfg.client_secret)
    try:
        if client is not None:
            response = client.post(cfg.token_url, data=form, auth=auth)
        else:
            with httpx.Client(timeout=DEFAULT_TIMEOUT) as own:
                response = own.post(cfg.token_url, data=form, auth=auth)
    except httpx.HTTPError as exc:
        raise Transient(f"Pipedrive token endpoint unreachable: {type(exc).__name__}") from exc
    body = json_or_empty(response)
    if response.status_code >= 500:
        raise Transient("Pipedrive token endpoint failed", status=response.status_code)
    if response.status_code != 200:
        error = str(body.get("error", "unknown_error"))
        # invalid_grant: revoked/expired/unknown; invalid_client: our credentials are wrong.
        # Either way the stored grant cannot be used: the user has to reconnect.
        raise AuthExpired(f"Pipedrive refused the grant: {error}", status=response.status_code)
    if "access_token" not in body or "refresh_token" not in body:
        raise Transient("Pipedrive token answer is missing tokens", status=response.status_code)
    return body


def _grant_from(body: dict[str, Any], *, previous_refresh: str | None) -> PipedriveGrant:
    expires_in = int(body.get("expires_in", 3599))
    return PipedriveGrant(
        access_token=str(body["access_token"]),
        refresh_token=str(body.get("refresh_token") or previous_refresh or ""),
        expires_at=datetime.now(UTC) + timedelta(seconds=expires_in),
        api_domain=str(body["api_domain"]) if body.get("api_domain") else None,
    )
