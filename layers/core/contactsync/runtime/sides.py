"""Building the two sides of a connection (the provider factory), and signing in to providers.

A handler makes one ``Wiring`` per cold start; passes and admin calls ask it for sides. Each side
gets the HTTP client and a token source (``auth.tokens``): tokens are opened only when a side
makes its first request, kept in memory for that side's lifetime, and sealed again whenever a
refresh changed them.

The adapters are imported where a side is built, not with this module: most admin requests build
none, and a pass needs only its own provider's (a Google pass never loads Graph's or CardDAV's).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from contactsync.auth import google as google_auth
from contactsync.auth import microsoft as microsoft_auth
from contactsync.auth import pipedrive as pipedrive_auth
from contactsync.auth.tokens import TokenSources
from contactsync.auth.vault import TokenVault
from contactsync.providers.base import ContactSide
from contactsync.runtime import oauth_configs
from contactsync.runtime.settings import Settings

if TYPE_CHECKING:
    from contactsync.providers import carddav
    from contactsync.providers.google import GoogleContacts
    from contactsync.providers.microsoft import MicrosoftContacts
    from contactsync.providers.pipedrive import PipedrivePersons
    from contactsync.store.pass_interface import ConnectionView
    from contactsync.sync.reconcile import Sides

PROVIDERS = ("microsoft", "google", "carddav")
OAUTH_PROVIDERS = ("microsoft", "google")  # CardDAV signs in with a username and password
# Google's system group every contact belongs to: the default scope until the user picks another.
GOOGLE_DEFAULT_GROUP = ("contactGroups/myContacts", "My Contacts")


@dataclass(frozen=True)
class SignedIn:
    """A finished provider sign-in: whose account it is, and the secrets to seal."""

    account_id: str
    username: str
    secrets: dict[str, Any] = field(repr=False)


@dataclass
class Wiring:
    settings: Settings
    vault: TokenVault
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=20.0))
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    # --- configuration -----------------------------------------------------------------------

    @property
    def microsoft(self) -> microsoft_auth.MicrosoftOAuthConfig:
        return oauth_configs.microsoft_config(self.settings)

    @property
    def pipedrive(self) -> pipedrive_auth.PipedriveOAuthConfig:
        return oauth_configs.pipedrive_config(self.settings)

    @property
    def google(self) -> google_auth.GoogleOAuthConfig:
        return oauth_configs.google_config(self.settings)

    @cached_property
    def tokens(self) -> TokenSources:
        return TokenSources(
            vault=self.vault,
            http=self.http,
            clock=self.clock,
            microsoft=self.microsoft,
            google=self.google,
            pipedrive=self.pipedrive,
        )

    def redirect_uri(self, provider: str) -> str:
        return f"{self.settings.public_base_url}/oauth/{provider}/callback"

    # --- signing in to a provider ------------------------------------------------------------

    def start_sign_in(self, provider: str, state: str) -> tuple[str, dict[str, Any]]:
        """The URL to send the user to, and the flow to keep sealed until the callback."""
        redirect = self.redirect_uri(provider)
        if provider == "microsoft":
            return microsoft_auth.start_sign_in(self.microsoft, redirect, state=state)
        if provider == "google":
            url, flow = google_auth.start_sign_in(self.google, redirect, state)
            return url, dict(flow)
        raise ValueError(f"unknown provider {provider!r}")

    def finish_sign_in(
        self, provider: str, flow: dict[str, Any], query: dict[str, str]
    ) -> SignedIn:
        """Redeem the callback. ValueError for a bad state or refusal; AuthExpired for a code the
        provider no longer accepts."""
        if provider == "microsoft":
            ms = microsoft_auth.finish_sign_in(self.microsoft, flow, query)
            return SignedIn(ms.account_id, ms.username, {"token_cache": ms.token_cache})
        if provider == "google":
            from contactsync.providers.google import GoogleContacts  # noqa: PLC0415 - on first use

            grant = google_auth.finish_sign_in(self.google, flow, query, client=self.http)
            people = GoogleContacts(
                base_url=self.settings.google_people_base_url,
                token=lambda _refresh: grant.access_token,
                group_id=GOOGLE_DEFAULT_GROUP[0],
                client=self.http,
            )
            account_id, email = people.whoami()
            return SignedIn(account_id, email, {"grant": google_auth.grant_to_dict(grant)})
        raise ValueError(f"unknown provider {provider!r}")

    def carddav_sign_in(self, server_url: str, username: str, password: str) -> SignedIn:
        """Check a CardDAV login by finding its address books. ValueError for a server URL we
        will not call; AuthExpired when the server refuses the password; NotFound when nothing
        there speaks CardDAV."""
        from contactsync.providers import carddav  # noqa: PLC0415 - on first use

        url = carddav_url(server_url, allow_http=self.settings.carddav_allow_http)
        dav = carddav.DavClient(self.http, lambda: (username, password))
        account = carddav.discover(dav, url)
        secrets = {
            "username": username,
            "password": password,
            "home_url": account.home_url,
            "principal_url": account.principal_url,
        }
        return SignedIn(account.principal_url, username, secrets)

    def carddav_books(self, secrets: dict[str, Any]) -> list[tuple[str, str]]:
        from contactsync.providers import carddav  # noqa: PLC0415 - on first use

        dav = carddav.DavClient(self.http, lambda: (secrets["username"], secrets["password"]))
        return carddav.address_books(dav, str(secrets["home_url"]))

    def list_groups(self, connection_id: str, provider: str) -> list[tuple[str, str]]:
        """The contact folders (Outlook) or contact groups (Google) the user can choose from;
        for CardDAV the address books, each followed by the groups in it."""
        if provider == "carddav":
            return self._carddav_groups(connection_id)
        if provider == "microsoft":
            return self.microsoft_account(connection_id).list_folders()
        if provider == "google":
            return self.google_account(connection_id).list_groups()
        raise ValueError(f"unknown provider {provider!r}")

    def create_group(self, connection_id: str, provider: str, name: str) -> tuple[str, str]:
        """A new contact folder (Outlook) or contact group (Google) to sync."""
        if provider == "microsoft":
            return self.microsoft_account(connection_id).create_folder(name)
        if provider == "google":
            return self.google_account(connection_id).create_group(name)
        raise ValueError(f"unknown provider {provider!r}")

    # --- sides ---------------------------------------------------------------------------------

    def crm_side(
        self, company_id: str, user_id: str, *, visible_to: int | None = None
    ) -> PipedrivePersons:
        from contactsync.providers.pipedrive import PipedrivePersons  # noqa: PLC0415 - on first use

        return PipedrivePersons(
            base_url=self.settings.pipedrive_base_url,
            token=self.tokens.crm_token(company_id, user_id),
            owner_id=int(user_id),
            client=self.http,
            burst_wait_s=2.5,  # one short burst-window wait; longer limits re-queue the pass
            visible_to=visible_to,
        )

    def crm_user(self, grant: pipedrive_auth.PipedriveGrant) -> dict[str, Any]:
        """Who approved a fresh CRM grant (``users/me``): ``id``, ``company_id``, …"""
        from contactsync.providers.pipedrive import PipedrivePersons  # noqa: PLC0415 - on first use

        persons = PipedrivePersons(
            base_url=self.settings.pipedrive_base_url,
            token=lambda _refresh: grant.access_token,
            owner_id=0,
            client=self.http,
        )
        return persons.whoami()

    def provider_side(self, connection_id: str, provider: str, folder_id: str) -> ContactSide:
        if provider == "microsoft":
            return self.microsoft_account(connection_id, folder_id)
        if provider == "google":
            return self.google_account(connection_id, folder_id)
        if provider == "carddav":
            return self.carddav_account(connection_id, folder_id)
        raise ValueError(f"unknown provider {provider!r}")

    def microsoft_account(self, connection_id: str, folder_id: str = "") -> MicrosoftContacts:
        from contactsync.providers.microsoft import MicrosoftContacts  # noqa: PLC0415 - on first use

        return MicrosoftContacts(
            base_url=self.settings.graph_base_url,
            token=self.tokens.microsoft_token(connection_id),
            folder_id=folder_id,
            client=self.http,
        )

    def google_account(self, connection_id: str, group_id: str = "") -> GoogleContacts:
        from contactsync.providers.google import GoogleContacts  # noqa: PLC0415 - on first use

        return GoogleContacts(
            base_url=self.settings.google_people_base_url,
            token=self.tokens.google_token(connection_id),
            group_id=group_id,
            client=self.http,
            listing_lag=timedelta(seconds=self.settings.google_listing_lag_seconds),
        )

    def carddav_account(self, connection_id: str, folder_id: str) -> carddav.CardDavContacts:
        from contactsync.providers import carddav  # noqa: PLC0415 - on first use

        return carddav.CardDavContacts(
            dav=carddav.DavClient(self.http, self.tokens.carddav_login(connection_id)),
            folder_id=folder_id,
        )

    def _carddav_groups(self, connection_id: str) -> list[tuple[str, str]]:
        secrets = self.tokens.carddav_secrets(connection_id)
        out: list[tuple[str, str]] = []
        for url, name in self.carddav_books(secrets):
            out.append((url, name))
            side = self.carddav_account(connection_id, url)
            out.extend((folder, f"{name} / {group}") for folder, group in side.list_groups())
        return out

    def sides_for(self, view: ConnectionView) -> Sides:
        from contactsync.sync.reconcile import Sides  # noqa: PLC0415 - brings the engine: on first use

        return Sides(
            crm=self.crm_side(view.company_id, view.user_id, visible_to=view.visible_to),
            provider=self.provider_side(view.connection_id, view.provider, view.folder_id),
        )


def carddav_url(url: str, *, allow_http: bool) -> str:
    """A CardDAV server URL we are willing to call: https (plain http only where the settings
    allow it, the local stack), a host name, no credentials in it."""
    parts = urlsplit(url.strip())
    if parts.scheme != "https" and not (allow_http and parts.scheme == "http"):
        raise ValueError("the CardDAV server URL must start with https://")
    if not parts.hostname or parts.username or parts.password:
        raise ValueError("the CardDAV server URL must name a host (and hold no password)")
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(
            parts.hostname
        )
    except ValueError:
        address = None  # a host name
    if address is not None and not allow_http and not address.is_global:
        raise ValueError("the CardDAV server URL must name a public server")
    return url.strip()
