"""One CRM grant, two connections: the Pipedrive sandbox rotates refresh tokens (a refresh spends
the old one), so a refresh must never overwrite a newer grant, and a refresh refused because the
other connection spent the token first must use that connection's grant, not fail."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from contactsync.auth import pipedrive as pipedrive_auth
from contactsync.auth.vault import TokenVault
from contactsync.runtime.settings import Settings
from contactsync.runtime.sides import Wiring
from contactsync.store.crm_grants import get_crm_grant

from local.aws import LocalAws
from tests.integration.pipedrive_fixtures import PipedriveWorld, pipedrive  # noqa: F401

pytestmark = pytest.mark.usefixtures("table")


@pytest.fixture
def wiring(pipedrive: PipedriveWorld, local_aws: LocalAws) -> Iterator[Wiring]:  # noqa: F811
    running = pipedrive.running
    settings = Settings(
        pipedrive_base_url=running.url,
        pipedrive_oauth_url=running.url,
        pipedrive_client_id=running.client_id,
        pipedrive_client_secret=running.client_secret,
    )
    built = Wiring(settings=settings, vault=TokenVault(local_aws.client("kms"), local_aws.key_id))
    yield built
    built.http.close()


def expired_grant(wiring: Wiring, pipedrive: PipedriveWorld) -> pipedrive_auth.PipedriveGrant:  # noqa: F811
    """A fresh grant of the owner, stored as already expired (the next use refreshes it)."""
    cfg, redirect = wiring.pipedrive, "http://127.0.0.1:1/oauth/pipedrive/callback"
    pipedrive.sandbox.login_as(pipedrive.owner_id)
    answer = httpx.get(pipedrive_auth.authorization_url(cfg, redirect, "s"))
    code = parse_qs(urlparse(answer.headers["location"]).query)["code"][0]
    grant = pipedrive_auth.exchange_code(cfg, code, redirect)
    grant = replace(grant, expires_at=datetime.now(UTC) - timedelta(minutes=1))
    assert wiring.tokens.save_crm_grant(str(pipedrive.company_id), str(pipedrive.owner_id), grant)
    return grant


def test_a_connection_whose_refresh_token_was_spent_uses_the_grant_stored_next(
    wiring: Wiring,
    pipedrive: PipedriveWorld,  # noqa: F811
) -> None:
    company, user = str(pipedrive.company_id), str(pipedrive.owner_id)
    spent = expired_grant(wiring, pipedrive)
    stored = get_crm_grant(company, user)
    assert stored is not None
    # Given connection A has just refreshed the shared grant (spending its refresh token)
    fresh = pipedrive_auth.refresh(wiring.pipedrive, spent)
    # When connection B, which read the old grant, refreshes it before A has stored its answer
    answer: dict[str, object] = {}

    def connection_b() -> None:
        try:
            answer["token"] = wiring.tokens.crm_token(company, user)(False)
        except Exception as exc:
            answer["error"] = exc

    b = threading.Thread(target=connection_b)
    b.start()
    time.sleep(0.5)
    assert wiring.tokens.save_crm_grant(
        company, user, fresh, replacing=stored.updated_at
    )  # A stores
    b.join(10)
    # Then B uses A's grant instead of failing (which would ask the user to sign in again)
    assert answer == {"token": fresh.access_token}
    # And the stored grant is A's: its rotated refresh token works
    latest = get_crm_grant(company, user)
    assert latest is not None and latest.updated_at != stored.updated_at
    assert pipedrive_auth.refresh(wiring.pipedrive, fresh).access_token


def test_a_refresh_never_overwrites_a_newer_grant(
    wiring: Wiring,
    pipedrive: PipedriveWorld,  # noqa: F811
) -> None:
    company, user = str(pipedrive.company_id), str(pipedrive.owner_id)
    expired_grant(wiring, pipedrive)
    stored = get_crm_grant(company, user)
    assert stored is not None
    # When a connection refreshes the grant through the wiring, Then the new one is stored
    token = wiring.tokens.crm_token(company, user)(False)
    latest = get_crm_grant(company, user)
    assert latest is not None and latest.updated_at != stored.updated_at
    # And a write made from the grant it replaced is refused
    grant = pipedrive_auth.PipedriveGrant(token, "stale", datetime.now(UTC))
    assert not wiring.tokens.save_crm_grant(company, user, grant, replacing=stored.updated_at)
