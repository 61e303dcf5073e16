"""contactsync.auth.microsoft: MSAL's code flow and silent refresh against the identity sandbox."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from contactsync.auth.microsoft import (
    MicrosoftOAuthConfig,
    access_token,
    finish_sign_in,
    start_sign_in,
)
from contactsync.providers.base import AuthExpired

from sandbox.graph import RunningGraph
from tests.integration.graph_fixtures import graph

__all__ = ["graph"]  # fixture used by name below

REDIRECT = "http://127.0.0.1:8765/auth/microsoft/callback"


@pytest.fixture
def cfg(graph: RunningGraph, monkeypatch: pytest.MonkeyPatch) -> MicrosoftOAuthConfig:
    # The process-wide bundle does NOT include the sandbox CA: the config's ca_bundle must win.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    return MicrosoftOAuthConfig(
        client_id=graph.client_id,
        client_secret=graph.client_secret,
        authority=graph.authority,
        ca_bundle=graph.ca_file,
    )


def sign_in(graph: RunningGraph, cfg: MicrosoftOAuthConfig, email: str):
    """Start, let the sandbox approve at once, and finish: what the admin API does."""
    url, flow = start_sign_in(cfg, REDIRECT, login_hint=email)
    back = httpx.get(url, verify=graph.ca_file)
    assert back.status_code == 302 and back.headers["location"].startswith(REDIRECT)
    query = dict(parse_qsl(urlsplit(back.headers["location"]).query))
    return finish_sign_in(cfg, flow, query), flow, query


def test_sign_in_gives_a_grant_whose_cache_yields_working_tokens(
    graph: RunningGraph, cfg: MicrosoftOAuthConfig
) -> None:
    uid = graph.sandbox.add_user("ada@fabrikam.example", "Ada")
    # When the user signs in
    grant, _, _ = sign_in(graph, cfg, "ada@fabrikam.example")
    # Then the grant names the account, and keeps the token cache out of its repr
    assert grant.username == "ada@fabrikam.example"
    assert grant.account_id == f"{uid}.{graph.sandbox.tenant_id}"
    assert grant.token_cache not in repr(grant) and cfg.client_secret not in repr(cfg)
    # And the cache gives an access token Graph accepts, without a network refresh
    token, cache = access_token(cfg, grant.token_cache)
    me = httpx.get(f"{graph.graph_url}/me", headers={"Authorization": f"Bearer {token}"})
    assert me.json()["id"] == uid
    assert cache == grant.token_cache  # nothing changed: nothing new to store


def test_force_refresh_gets_a_new_token_and_an_updated_cache(
    graph: RunningGraph, cfg: MicrosoftOAuthConfig
) -> None:
    graph.sandbox.add_user("bob@fabrikam.example", "Bob")
    grant, _, _ = sign_in(graph, cfg, "bob@fabrikam.example")
    first, _ = access_token(cfg, grant.token_cache)
    # When Graph said 401 and we force a refresh
    second, cache = access_token(cfg, grant.token_cache, force_refresh=True)
    # Then a different token comes back, and the cache to store changed
    assert second != first and cache != grant.token_cache
    assert access_token(cfg, cache)[0] == second


def test_revoked_refresh_token_is_auth_expired(
    graph: RunningGraph, cfg: MicrosoftOAuthConfig
) -> None:
    uid = graph.sandbox.add_user("eve@fabrikam.example", "Eve")
    grant, _, _ = sign_in(graph, cfg, "eve@fabrikam.example")
    # Given the user's sessions were revoked
    graph.sandbox.revoke_refresh_tokens(uid)
    # When we need a fresh token, Then the user has to reconnect
    with pytest.raises(AuthExpired):
        access_token(cfg, grant.token_cache, force_refresh=True)


def test_an_empty_cache_is_auth_expired(cfg: MicrosoftOAuthConfig) -> None:
    with pytest.raises(AuthExpired):
        access_token(cfg, "{}")


def test_a_tampered_state_or_a_reused_code_is_refused(
    graph: RunningGraph, cfg: MicrosoftOAuthConfig
) -> None:
    graph.sandbox.add_user("mal@fabrikam.example", "Mal")
    # A state that does not match the flow
    url, flow = start_sign_in(cfg, REDIRECT, login_hint="mal@fabrikam.example")
    query = dict(
        parse_qsl(urlsplit(httpx.get(url, verify=graph.ca_file).headers["location"]).query)
    )
    with pytest.raises(ValueError):
        finish_sign_in(cfg, flow, {**query, "state": "forged"})
    # A code already redeemed
    _, flow, query = sign_in(graph, cfg, "mal@fabrikam.example")
    with pytest.raises(AuthExpired):
        finish_sign_in(cfg, flow, query)
    # The caller's own state comes back on the redirect, and is checked the same way
    url, flow = start_sign_in(cfg, REDIRECT, login_hint="mal@fabrikam.example", state="conn1.xyz")
    query = dict(
        parse_qsl(urlsplit(httpx.get(url, verify=graph.ca_file).headers["location"]).query)
    )
    assert query["state"] == "conn1.xyz"
    assert finish_sign_in(cfg, flow, query).username == "mal@fabrikam.example"
    # A refusal coming back from the authorize page
    with pytest.raises(ValueError):
        finish_sign_in(cfg, flow, {"error": "access_denied", "state": flow["state"]})
