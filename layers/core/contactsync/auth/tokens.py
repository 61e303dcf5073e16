"""Token sources: what a side's transport asks for the access token it sends.

Each source opens the connection's (or the CRM user's) sealed grant from the store on its side's
first request, keeps the token in memory for that side's lifetime, refreshes it when it is about
to expire or the API refused it, and seals the grant again whenever a refresh changed it. The
encryption contexts here bind each sealed blob to its item and purpose.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx

from contactsync.auth import google as google_auth
from contactsync.auth import microsoft as microsoft_auth
from contactsync.auth import pipedrive as pipedrive_auth
from contactsync.auth.vault import TokenVault
from contactsync.providers.base import AuthExpired
from contactsync.providers.transport import Login, TokenSource
from contactsync.store.connections import get_connection
from contactsync.store.credentials import credentials_of, put_credentials
from contactsync.store.crm_grants import get_crm_grant, put_crm_grant

CRM_GRANT_WAIT_SECONDS = 2.0  # how long a refresh refused as spent waits for the other's grant


def connection_context(connection_id: str) -> dict[str, str]:
    return {"purpose": "provider-token", "connection_id": connection_id}


def sign_in_context(connection_id: str) -> dict[str, str]:
    """A provider sign-in in flight: never opened with the credentials' context, nor they with
    this one."""
    return {"purpose": "provider-sign-in", "connection_id": connection_id}


def crm_context(company_id: str, user_id: str) -> dict[str, str]:
    return {"purpose": "crm-token", "company_id": company_id, "user_id": user_id}


def crm_sign_in_context(company_id: str, user_id: str) -> dict[str, str]:
    """A CRM sign-in in flight: never opened with a token's context, nor a token with this one."""
    return {"purpose": "crm-sign-in", "company_id": company_id, "user_id": user_id}


@dataclass
class TokenSources:
    """The token sources (and CardDAV logins) of connections, over the vault and the store."""

    vault: TokenVault
    http: httpx.Client  # for the token endpoints
    clock: Callable[[], datetime]
    microsoft: microsoft_auth.MicrosoftOAuthConfig
    google: google_auth.GoogleOAuthConfig
    pipedrive: pipedrive_auth.PipedriveOAuthConfig

    def microsoft_token(self, connection_id: str) -> TokenSource:
        def load(force_refresh: bool) -> str:
            secrets = self._open(connection_id, "the connection has no Microsoft sign-in")
            access, cache = microsoft_auth.access_token(
                self.microsoft, secrets["token_cache"], force_refresh=force_refresh
            )
            if cache != secrets["token_cache"]:
                self._seal(connection_id, {**secrets, "token_cache": cache})
            return access

        return remembered(load)

    def google_token(self, connection_id: str) -> TokenSource:
        def load(force_refresh: bool) -> str:
            secrets = self._open(connection_id, "the connection has no Google sign-in")
            grant = google_auth.grant_from_dict(secrets["grant"])
            if force_refresh or grant.expires_at <= self.clock() + timedelta(seconds=60):
                grant = google_auth.refresh(self.google, grant, client=self.http)
                self._seal(connection_id, {**secrets, "grant": google_auth.grant_to_dict(grant)})
            return grant.access_token

        return remembered(load)

    def carddav_secrets(self, connection_id: str) -> dict[str, Any]:
        return self._open(connection_id, "the connection has no CardDAV login")

    def carddav_login(self, connection_id: str) -> Login:
        def login() -> tuple[str, str]:
            secrets = self.carddav_secrets(connection_id)
            return str(secrets["username"]), str(secrets["password"])

        return login

    def crm_token(self, company_id: str, user_id: str) -> TokenSource:
        def load(force_refresh: bool) -> str:
            stored = get_crm_grant(company_id, user_id)
            if stored is None:
                raise AuthExpired("the CRM account is not connected")
            grant = self._open_crm_grant(company_id, user_id, stored)
            if not force_refresh and grant.expires_at > self.clock() + timedelta(seconds=60):
                return grant.access_token
            try:
                grant = pipedrive_auth.refresh(self.pipedrive, grant, client=self.http)
            except AuthExpired:
                # Another connection of the user may have refreshed first (and so spent the
                # rotated refresh token): its grant, stored a moment later, is the one to use.
                latest = _newer_crm_grant(company_id, user_id, stored.updated_at)
                if latest is None:
                    raise
                return self._open_crm_grant(company_id, user_id, latest).access_token
            # Stored only over the grant it was refreshed from: never over a newer one.
            self.save_crm_grant(company_id, user_id, grant, replacing=stored.updated_at)
            return grant.access_token

        return remembered(load)

    def save_crm_grant(
        self,
        company_id: str,
        user_id: str,
        grant: pipedrive_auth.PipedriveGrant,
        *,
        replacing: str | None = None,
    ) -> bool:
        data = {
            "access_token": grant.access_token,
            "refresh_token": grant.refresh_token,
            "expires_at": grant.expires_at.isoformat(),
        }
        sealed = self.vault.seal_json(data, crm_context(company_id, user_id))
        return put_crm_grant(company_id, user_id, sealed, replacing=replacing)

    def _open(self, connection_id: str, missing: str) -> dict[str, Any]:
        """The connection's sealed credentials, opened; AuthExpired(``missing``) without any."""
        conn = get_connection(connection_id)
        sealed = credentials_of(conn) if conn is not None else None
        if sealed is None:
            raise AuthExpired(missing)
        return self.vault.open_json(sealed, connection_context(connection_id))

    def _seal(self, connection_id: str, secrets: dict[str, Any]) -> None:
        sealed = self.vault.seal_json(secrets, connection_context(connection_id))
        put_credentials(connection_id, sealed)

    def _open_crm_grant(
        self, company_id: str, user_id: str, stored: Any
    ) -> pipedrive_auth.PipedriveGrant:
        data = self.vault.open_json(bytes(stored.tokens), crm_context(company_id, user_id))
        return pipedrive_auth.PipedriveGrant(
            access_token=data["access_token"],
            refresh_token=data["refresh_token"],
            expires_at=datetime.fromisoformat(data["expires_at"]),
        )


def _newer_crm_grant(company_id: str, user_id: str, than: str) -> Any:
    """The user's CRM grant if one newer than ``than`` is (or within a moment gets) stored."""
    deadline = time.monotonic() + CRM_GRANT_WAIT_SECONDS
    while True:
        latest = get_crm_grant(company_id, user_id)
        if latest is not None and latest.updated_at != than:
            return latest
        if latest is None or time.monotonic() >= deadline:
            return None
        time.sleep(0.2)


def remembered(load: TokenSource) -> TokenSource:
    """A token source that opens the vault once per side and again only when asked to refresh."""
    lock = threading.Lock()
    memo: dict[str, str] = {}

    def token(force_refresh: bool) -> str:
        with lock:
            if force_refresh or "token" not in memo:
                memo["token"] = load(force_refresh)
            return memo["token"]

    return token
