"""Google sign-in against the sandbox's OAuth endpoints: code flow with PKCE, refresh, revoke."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from contactsync.auth.google import (
    CONTACTS_SCOPE,
    SIGN_IN_AGAIN,
    GoogleGrant,
    GoogleOAuthConfig,
    finish_sign_in,
    grant_from_dict,
    grant_to_dict,
    refresh,
    start_sign_in,
)
from contactsync.providers.base import AuthExpired, PermissionDenied
from contactsync.providers.google import GoogleContacts
from contactsync.providers.google.adapter import MY_CONTACTS

from sandbox.google import RunningGoogle, running_google_sandbox

REDIRECT = "http://127.0.0.1:9/oauth/google/callback"
EMAIL = "ada@example.com"


@pytest.fixture
def google() -> Iterator[RunningGoogle]:
    with running_google_sandbox() as running:
        running.sandbox.add_user(EMAIL, "Ada Lovelace")
        running.sandbox.signed_in = EMAIL
        yield running


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10.0) as client:
        yield client


def config(google: RunningGoogle, **changes: object) -> GoogleOAuthConfig:
    cfg = GoogleOAuthConfig(
        client_id=google.client_id,
        client_secret=google.client_secret,
        authorize_url=google.authorize_url,
        token_url=google.token_url,
    )
    return replace(cfg, **changes)  # type: ignore[arg-type]


def consent(http: httpx.Client, url: str) -> dict[str, str]:
    """The user's browser: follow the consent URL and return the redirect's query."""
    answer = http.get(url, follow_redirects=False)
    assert answer.status_code == 302
    location = answer.headers["location"]
    assert location.startswith(REDIRECT)
    return dict(parse_qsl(urlsplit(location).query))


def signed_in(google: RunningGoogle, http: httpx.Client) -> GoogleGrant:
    cfg = config(google)
    url, flow = start_sign_in(cfg, REDIRECT, "state-123")
    return finish_sign_in(cfg, flow, consent(http, url), client=http)


def whoami(google: RunningGoogle, http: httpx.Client, access_token: str) -> str:
    adapter = GoogleContacts(
        base_url=google.people_url,
        token=lambda _force: access_token,
        group_id=MY_CONTACTS,
        client=http,
    )
    return adapter.whoami()[1]


def test_the_consent_url_asks_for_offline_access_with_pkce(google: RunningGoogle) -> None:
    # When we start a sign-in
    url, flow = start_sign_in(config(google), REDIRECT, "state-123")
    # Then the URL asks for a refresh token, fresh consent and an S256 challenge of our verifier
    query = dict(parse_qsl(urlsplit(url).query))
    assert url.startswith(google.authorize_url)
    assert query["access_type"] == "offline" and query["prompt"] == "consent"
    assert query["include_granted_scopes"] == "true" and query["response_type"] == "code"
    assert CONTACTS_SCOPE in query["scope"].split()
    digest = hashlib.sha256(flow["code_verifier"].encode()).digest()
    assert query["code_challenge"] == base64.urlsafe_b64encode(digest).decode().rstrip("=")
    assert query["code_challenge_method"] == "S256"
    # And the flow keeps what the callback needs, the verifier never in the URL
    assert flow == {"state": "state-123", "code_verifier": flow["code_verifier"],
                    "redirect_uri": REDIRECT}  # fmt: skip
    assert flow["code_verifier"] not in url


def test_the_code_flow_gives_a_grant_that_calls_the_people_api(
    google: RunningGoogle, http: httpx.Client
) -> None:
    # When the user consents and comes back with a code
    grant = signed_in(google, http)
    # Then we hold both tokens, and the access token works
    assert grant.access_token and grant.refresh_token
    assert grant.expires_at > datetime.now(UTC)
    assert whoami(google, http, grant.access_token) == EMAIL
    # And the secrets stay out of the grant's repr
    assert grant.access_token not in repr(grant) and grant.refresh_token not in repr(grant)


def test_a_code_with_the_wrong_verifier_is_refused(
    google: RunningGoogle, http: httpx.Client
) -> None:
    # Given a code issued for our challenge, and a flow whose verifier was swapped
    cfg = config(google)
    url, flow = start_sign_in(cfg, REDIRECT, "s")
    query = consent(http, url)
    forged = {**flow, "code_verifier": "x" * 64}
    # When we redeem it, Then Google refuses and the user has to sign in again
    with pytest.raises(AuthExpired):
        finish_sign_in(cfg, forged, query, client=http)


@pytest.mark.parametrize(
    ("query", "why"),
    [
        ({"state": "other", "code": "c"}, "state"),
        ({"state": "s", "error": "access_denied"}, "refused"),
        ({"state": "s"}, "no code"),
    ],
)
def test_a_bad_callback_is_a_value_error(
    google: RunningGoogle, http: httpx.Client, query: dict[str, str], why: str
) -> None:
    _, flow = start_sign_in(config(google), REDIRECT, "s")
    with pytest.raises(ValueError, match=why):
        finish_sign_in(config(google), flow, query, client=http)


def test_a_sign_in_without_the_contacts_permission_is_refused(
    google: RunningGoogle, http: httpx.Client
) -> None:
    # Given a consent that granted only the sign-in scopes
    cfg = config(google, scopes=("openid", "email"))
    url, flow = start_sign_in(cfg, REDIRECT, "s")
    # When we redeem it, Then we say which permission is missing
    with pytest.raises(PermissionDenied) as caught:
        finish_sign_in(cfg, flow, consent(http, url), client=http)
    assert caught.value.missing == [CONTACTS_SCOPE]


def test_refresh_gives_a_new_access_token_and_keeps_the_refresh_token(
    google: RunningGoogle, http: httpx.Client
) -> None:
    # Given a grant whose access token has expired
    grant = signed_in(google, http)
    google.sandbox.expire_access_tokens()
    # When we refresh it
    fresh = refresh(config(google), grant, client=http)
    # Then the new access token works and the refresh token is the one we had
    assert fresh.access_token != grant.access_token
    assert fresh.refresh_token == grant.refresh_token
    assert whoami(google, http, fresh.access_token) == EMAIL


def test_a_revoked_grant_is_auth_expired(google: RunningGoogle, http: httpx.Client) -> None:
    # Given a grant the user then revoked
    grant = signed_in(google, http)
    google.sandbox.revoke(EMAIL)
    # When we refresh, Then the user is told to sign in again
    with pytest.raises(AuthExpired, match=SIGN_IN_AGAIN):
        refresh(config(google), grant, client=http)


def test_a_grant_survives_its_dict_form() -> None:
    grant = GoogleGrant("at", "rt", datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert grant_from_dict(grant_to_dict(grant)) == grant
    assert grant_to_dict(grant)["expires_at"] == "2030-01-02T03:04:05+00:00"
