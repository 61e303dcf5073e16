"""Each provider's OAuth client as the settings describe it."""

from __future__ import annotations

from contactsync.auth import google as google_auth
from contactsync.auth import microsoft as microsoft_auth
from contactsync.auth import pipedrive as pipedrive_auth
from contactsync.runtime.settings import Settings


def microsoft_config(s: Settings) -> microsoft_auth.MicrosoftOAuthConfig:
    return microsoft_auth.MicrosoftOAuthConfig(
        client_id=s.microsoft_client_id,
        client_secret=s.microsoft_client_secret,
        authority=s.microsoft_authority,
        ca_bundle=s.microsoft_ca_bundle,
    )


def pipedrive_config(s: Settings) -> pipedrive_auth.PipedriveOAuthConfig:
    return pipedrive_auth.PipedriveOAuthConfig(
        client_id=s.pipedrive_client_id,
        client_secret=s.pipedrive_client_secret,
        authorize_url=f"{s.pipedrive_oauth_url}/oauth/authorize",
        token_url=f"{s.pipedrive_oauth_url}/oauth/token",
    )


def google_config(s: Settings) -> google_auth.GoogleOAuthConfig:
    return google_auth.GoogleOAuthConfig(
        client_id=s.google_client_id,
        client_secret=s.google_client_secret,
        authorize_url=s.google_auth_url,
        token_url=s.google_token_url,
    )
