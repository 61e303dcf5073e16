"""Building the two sides of a connection, with tokens opened from the vault and refreshed.

A handler makes one ``Wiring`` per cold start; passes and admin calls ask it for sides. Tokens are
opened only when a side makes its first request, kept in memory for that side's lifetime, and
sealed again whenever a refresh changed them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx

from contactsync.auth import microsoft as microsoft_auth
from contactsync.auth import pipedrive as pipedrive_auth
from contactsync.auth.vault import TokenVault
from contactsync.providers.base import AuthExpired, ContactSide
from contactsync.providers.microsoft import MicrosoftContacts
from contactsync.providers.pipedrive import PipedrivePersons
from contactsync.runtime.settings import Settings
from contactsync.store import repository as repo
from contactsync.sync.ports import ConnectionView
from contactsync.sync.reconcile import Sides

TokenSource = Callable[[bool], str]


def connection_context(connection_id: str) -> dict[str, str]:
    return {"purpose": "provider-token", "connection_id": connection_id}


def crm_context(company_id: str, user_id: str) -> dict[str, str]:
    return {"purpose": "crm-token", "company_id": company_id, "user_id": user_id}


@dataclass
class Wiring:
    settings: Settings
    vault: TokenVault
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=20.0))
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    # --- configuration -----------------------------------------------------------------------

    @property
    def microsoft(self) -> microsoft_auth.MicrosoftOAuthConfig:
        s = self.settings
        return microsoft_auth.MicrosoftOAuthConfig(
            client_id=s.microsoft_client_id,
            client_secret=s.microsoft_client_secret,
            authority=s.microsoft_authority,
            ca_bundle=s.microsoft_ca_bundle,
        )

    @property
    def pipedrive(self) -> pipedrive_auth.PipedriveOAuthConfig:
        s = self.settings
        return pipedrive_auth.PipedriveOAuthConfig(
            client_id=s.pipedrive_client_id,
            client_secret=s.pipedrive_client_secret,
            authorize_url=f"{s.pipedrive_oauth_url}/oauth/authorize",
            token_url=f"{s.pipedrive_oauth_url}/oauth/token",
        )

    def redirect_uri(self, provider: str) -> str:
        return f"{self.settings.public_base_url}/oauth/{provider}/callback"

    # --- sides ---------------------------------------------------------------------------------

    def crm_side(self, company_id: str, user_id: str) -> PipedrivePersons:
        return PipedrivePersons(
            base_url=self.settings.pipedrive_base_url,
            token=self._crm_token(company_id, user_id),
            owner_id=int(user_id),
            client=self.http,
            burst_wait_s=2.5,  # one short burst-window wait; longer limits re-queue the pass
        )

    def provider_side(self, connection_id: str, provider: str, folder_id: str) -> ContactSide:
        if provider == "microsoft":
            return MicrosoftContacts(
                base_url=self.settings.graph_base_url,
                token=self._microsoft_token(connection_id),
                folder_id=folder_id,
                client=self.http,
            )
        raise ValueError(f"unknown provider {provider!r}")

    def microsoft_account(self, connection_id: str, folder_id: str = "") -> MicrosoftContacts:
        side = self.provider_side(connection_id, "microsoft", folder_id)
        assert isinstance(side, MicrosoftContacts)
        return side

    def sides_for(self, view: ConnectionView) -> Sides:
        return Sides(
            crm=self.crm_side(view.company_id, view.user_id),
            provider=self.provider_side(view.connection_id, view.provider, view.folder_id),
        )

    # --- tokens --------------------------------------------------------------------------------

    def _microsoft_token(self, connection_id: str) -> TokenSource:
        def load(force_refresh: bool) -> str:
            conn = repo.get_connection(connection_id)
            if conn is None or conn.credentials is None:
                raise AuthExpired("the connection has no Microsoft sign-in")
            context = connection_context(connection_id)
            secrets = self.vault.open_json(bytes(conn.credentials), context)
            access, cache = microsoft_auth.access_token(
                self.microsoft, secrets["token_cache"], force_refresh=force_refresh
            )
            if cache != secrets["token_cache"]:
                secrets["token_cache"] = cache
                repo.update_connection(
                    connection_id, credentials=self.vault.seal_json(secrets, context)
                )
            return access

        return _remembered(load)

    def _crm_token(self, company_id: str, user_id: str) -> TokenSource:
        def load(force_refresh: bool) -> str:
            grant_item = repo.get_crm_grant(company_id, user_id)
            if grant_item is None:
                raise AuthExpired("the CRM account is not connected")
            data = self.vault.open_json(bytes(grant_item.tokens), crm_context(company_id, user_id))
            grant = pipedrive_auth.PipedriveGrant(
                access_token=data["access_token"],
                refresh_token=data["refresh_token"],
                expires_at=datetime.fromisoformat(data["expires_at"]),
            )
            if force_refresh or grant.expires_at <= self.clock() + timedelta(seconds=60):
                grant = pipedrive_auth.refresh(self.pipedrive, grant, client=self.http)
                self.save_crm_grant(company_id, user_id, grant)
            return grant.access_token

        return _remembered(load)

    def save_crm_grant(
        self, company_id: str, user_id: str, grant: pipedrive_auth.PipedriveGrant
    ) -> None:
        data = {
            "access_token": grant.access_token,
            "refresh_token": grant.refresh_token,
            "expires_at": grant.expires_at.isoformat(),
        }
        sealed = self.vault.seal_json(data, crm_context(company_id, user_id))
        repo.put_crm_grant(company_id, user_id, sealed)


def _remembered(load: TokenSource) -> TokenSource:
    """A token source that opens the vault once per side and again only when asked to refresh."""
    lock = threading.Lock()
    memo: dict[str, str] = {}

    def token(force_refresh: bool) -> str:
        with lock:
            if force_refresh or "token" not in memo:
                memo["token"] = load(force_refresh)
            return memo["token"]

    return token
