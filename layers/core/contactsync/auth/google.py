"""Google sign-in over plain httpx: the authorization-code flow with PKCE, and token refresh.

No google-auth library in the Lambda: the flow is three small HTTP steps. ``start_sign_in`` builds
the consent URL (``access_type=offline`` + ``prompt=consent`` so Google always hands out a refresh
token, PKCE S256 so a stolen code is useless without our verifier) and a *flow* the caller seals
(encrypts) until the user comes back; ``finish_sign_in`` checks the state and redeems the code;
``refresh`` trades the refresh token for a new access token. Google sends the client credentials
in the form body (``client_secret_post``) and keeps the same refresh token on refresh, so we keep
the old one when the answer carries none.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx

from contactsync.providers.base import AuthExpired, PermissionDenied, ProviderError, Transient
from contactsync.providers.transport import json_or_empty

CONTACTS_SCOPE = "https://www.googleapis.com/auth/contacts"
SIGN_IN_AGAIN = "Google no longer accepts this sign-in: sign in again"


@dataclass(frozen=True)
class GoogleOAuthConfig:
    client_id: str
    client_secret: str = field(repr=False)
    authorize_url: str = "https://accounts.google.com/o/oauth2/v2/auth"
    token_url: str = "https://oauth2.googleapis.com/token"  # noqa: S105 (a URL)
    scopes: tuple[str, ...] = (CONTACTS_SCOPE, "openid", "email")


@dataclass(frozen=True)
class GoogleGrant:
    """What a connection stores (encrypted) to call Google as the user."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: datetime

    def expires_soon(self, now: datetime | None = None, margin_s: int = 60) -> bool:
        moment = now or datetime.now(UTC)
        return moment >= self.expires_at - timedelta(seconds=margin_s)


def start_sign_in(
    cfg: GoogleOAuthConfig, redirect_uri: str, state: str
) -> tuple[str, dict[str, str]]:
    """The consent URL to send the user to, and the flow to seal until they come back.

    ``state`` must be unguessable; the flow holds the PKCE verifier, so it is a secret."""
    verifier = secrets.token_urlsafe(64)  # 86 characters, inside PKCE's 43..128
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    challenge = base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")
    query = urlencode(
        {
            "client_id": cfg.client_id,
            "redirect_uri": redirect_uri,
            "response_type": "code",
            "scope": " ".join(cfg.scopes),
            "state": state,
            "access_type": "offline",
            "prompt": "consent",
            "include_granted_scopes": "true",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    flow = {"state": state, "code_verifier": verifier, "redirect_uri": redirect_uri}
    return f"{cfg.authorize_url}?{query}", flow


def finish_sign_in(
    cfg: GoogleOAuthConfig,
    flow: dict[str, str],
    query: dict[str, str],
    *,
    client: httpx.Client,
) -> GoogleGrant:
    """Redeem the code the user came back with.

    ValueError for a state that is not ours, a refused consent or a missing code; AuthExpired
    when Google refuses the code (used, expired, wrong verifier); PermissionDenied when the user
    unticked the contacts permission on the consent screen."""
    if not secrets.compare_digest(
        query.get("state", "").encode("utf-8"), flow.get("state", "").encode("utf-8")
    ):
        raise ValueError("the sign-in state does not match: start the sign-in again")
    if "error" in query:
        raise ValueError(f"sign-in refused: {query.get('error_description') or query['error']}")
    code = query.get("code", "")
    if not code:
        raise ValueError("the sign-in answer carries no code")
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": flow["redirect_uri"],
        "code_verifier": flow["code_verifier"],
    }
    body = _post_token(cfg, form, client, refused=AuthExpired)
    granted = str(body.get("scope", "")).split()
    if granted and CONTACTS_SCOPE not in granted:
        raise PermissionDenied(
            "the contacts permission was not granted: sign in again and allow it",
            missing=[CONTACTS_SCOPE],
        )
    if not body.get("refresh_token"):
        raise AuthExpired("Google returned no refresh token: sign in again")
    return _grant_from(body, previous_refresh="")


def refresh(cfg: GoogleOAuthConfig, grant: GoogleGrant, *, client: httpx.Client) -> GoogleGrant:
    """A fresh access token. ``invalid_grant`` (revoked, expired, password changed) raises
    AuthExpired; the refresh token is kept when Google does not send a new one."""
    form = {"grant_type": "refresh_token", "refresh_token": grant.refresh_token}
    body = _post_token(cfg, form, client, refused=ProviderError)
    return _grant_from(body, previous_refresh=grant.refresh_token)


def revoke(cfg: GoogleOAuthConfig, refresh_token: str, *, client: httpx.Client) -> None:
    """End the user's grant (``POST /revoke`` next to the token endpoint). A token already
    revoked answers 400: the goal is reached."""
    url = cfg.token_url.rsplit("/", 1)[0] + "/revoke"
    try:
        response = client.post(url, data={"token": refresh_token})
    except httpx.HTTPError as exc:
        raise Transient(f"Google revoke endpoint unreachable: {type(exc).__name__}") from exc
    if response.status_code >= 500:
        raise Transient("Google did not revoke the grant", status=response.status_code)


def grant_to_dict(grant: GoogleGrant) -> dict[str, str]:
    """A JSON-ready form of the grant (the caller encrypts it before storing)."""
    return {
        "access_token": grant.access_token,
        "refresh_token": grant.refresh_token,
        "expires_at": grant.expires_at.astimezone(UTC).isoformat(),
    }


def grant_from_dict(data: dict[str, str]) -> GoogleGrant:
    expires_at = datetime.fromisoformat(data["expires_at"])
    if expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)
    return GoogleGrant(
        access_token=data["access_token"],
        refresh_token=data["refresh_token"],
        expires_at=expires_at,
    )


# --- the token endpoint ------------------------------------------------------------------------


def _post_token(
    cfg: GoogleOAuthConfig,
    form: dict[str, str],
    client: httpx.Client,
    *,
    refused: type[ProviderError],
) -> dict[str, Any]:
    """POST to the token endpoint. ``invalid_grant`` is always AuthExpired; other refusals are
    ``refused`` (a code exchange: the user must start over; a refresh: our configuration)."""
    sent = {**form, "client_id": cfg.client_id, "client_secret": cfg.client_secret}
    try:
        response = client.post(cfg.token_url, data=sent, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise Transient(f"Google token endpoint unreachable: {type(exc).__name__}") from exc
    body = json_or_empty(response)
    status = response.status_code
    if status >= 500 or status == 429:
        raise Transient("Google token endpoint failed", status=status)
    if status != 200:
        error = str(body.get("error", "unknown_error"))
        if error == "invalid_grant":
            raise AuthExpired(SIGN_IN_AGAIN, status=status)
        raise refused(f"Google refused the token request: {error}", status=status)
    if not body.get("access_token"):
        raise Transient("Google token answer carries no access token", status=status)
    return body


def _grant_from(body: dict[str, Any], *, previous_refresh: str) -> GoogleGrant:
    expires_in = int(body.get("expires_in", 3599))
    return GoogleGrant(
        access_token=str(body["access_token"]),
        refresh_token=str(body.get("refresh_token") or previous_refresh),
        expires_at=datetime.now(UTC) + timedelta(seconds=expires_in),
    )
