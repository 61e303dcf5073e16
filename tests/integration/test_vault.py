"""The token vault against moto's KMS, and what actually lands in DynamoDB Local."""

from __future__ import annotations

import json
from typing import Any

import pytest
from contactsync.auth.vault import TokenVault, VaultError
from contactsync.store.connections import create_connection, get_connection, update_connection
from contactsync.store.credentials import credentials_of
from contactsync.store.crm_grants import put_crm_grant

from local.aws import LocalAws

CONTEXT = {"purpose": "provider-token", "connection_id": "conn-1"}
TOKENS = {
    "access_token": "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.access-token-value-123",
    "refresh_token": "M.R3_BAY.refresh-token-value-456",
    "expires_at": "2025-03-01T13:00:00+00:00",
}


@pytest.fixture
def vault(local_aws: LocalAws) -> TokenVault:
    return TokenVault(local_aws.client("kms"), local_aws.key_id)


def test_sealed_bytes_open_with_the_same_context(vault: TokenVault) -> None:
    # Given a secret sealed under a context
    blob = vault.seal(b"top secret", CONTEXT)
    # Then the blob is versioned, does not contain the secret, and opens again
    assert blob[0] == 1
    assert b"top secret" not in blob
    assert vault.open(blob, dict(reversed(CONTEXT.items()))) == b"top secret"


def test_two_seals_of_one_secret_differ(vault: TokenVault) -> None:
    # Fresh data key and nonce every time: equal secrets are not recognisable in the table
    assert vault.seal(b"same", CONTEXT) != vault.seal(b"same", CONTEXT)


def test_json_round_trip(vault: TokenVault) -> None:
    assert vault.open_json(vault.seal_json(TOKENS, CONTEXT), CONTEXT) == TOKENS


@pytest.mark.parametrize(
    "other_context",
    [
        {"purpose": "provider-token", "connection_id": "conn-2"},
        {"purpose": "crm-token", "connection_id": "conn-1"},
        {},
    ],
)
def test_a_wrong_context_does_not_open(vault: TokenVault, other_context: dict[str, str]) -> None:
    # Given a blob sealed for connection 1
    blob = vault.seal(b"secret", CONTEXT)
    # When it is opened as if it belonged elsewhere, then it is refused
    with pytest.raises(VaultError):
        vault.open(blob, other_context)


def test_a_tampered_or_truncated_blob_does_not_open(vault: TokenVault) -> None:
    blob = vault.seal(b"secret", CONTEXT)
    flipped = blob[:-1] + bytes([blob[-1] ^ 1])
    for bad in (flipped, blob[:20], b"", b"\x02" + blob[1:]):
        with pytest.raises(VaultError):
            vault.open(bad, CONTEXT)


def test_another_key_cannot_open_it(local_aws: LocalAws, vault: TokenVault) -> None:
    kms = local_aws.client("kms")
    other_key = kms.create_key(Description="another key")["KeyMetadata"]["KeyId"]
    blob = vault.seal(b"secret", CONTEXT)
    with pytest.raises(VaultError):
        TokenVault(kms, other_key).open(blob, CONTEXT)


def _all_items(local_aws: LocalAws, table_name: str) -> list[dict[str, Any]]:
    """Every item of the test table, raw (a test may scan)."""
    dynamodb = local_aws.client("dynamodb")
    items: list[dict[str, Any]] = []
    for page in dynamodb.get_paginator("scan").paginate(TableName=table_name):
        items.extend(page["Items"])
    return items


def test_no_token_is_stored_in_plain_text(
    local_aws: LocalAws, table: str, vault: TokenVault
) -> None:
    # Given a connection holding sealed provider tokens, and a sealed CRM grant
    conn = create_connection(company_id="c1", user_id="u1", provider="microsoft")
    context = {"purpose": "provider-token", "connection_id": conn.connection_id}
    update_connection(conn.connection_id, credentials=vault.seal_json(TOKENS, context))
    crm_context = {"purpose": "crm-token", "company_id": "c1", "user_id": "u1"}
    put_crm_grant("c1", "u1", vault.seal_json(TOKENS, crm_context))
    # When every item of the table is read raw
    items = _all_items(local_aws, table)
    dump = json.dumps(items, default=repr)
    # Then no token (nor a recognisable piece of one) appears anywhere
    assert len(items) == 3  # the connection, its tokens, the grant
    for secret in (TOKENS["access_token"], TOKENS["refresh_token"]):
        assert secret not in dump
        assert secret[-12:] not in dump
    for item in items:
        for value in item.values():
            raw = value.get("B", b"")
            assert TOKENS["access_token"].encode() not in raw
    # And the tokens still open from what is stored
    stored = get_connection(conn.connection_id)
    assert stored is not None
    sealed = credentials_of(stored)
    assert sealed is not None and vault.open_json(sealed, context) == TOKENS


def test_sign_in_state_and_credentials_never_open_with_each_others_context(
    vault: TokenVault,
) -> None:
    from contactsync.auth.tokens import (
        connection_context,
        crm_context,
        crm_sign_in_context,
        sign_in_context,
    )

    # Given each kind of sealed secret under its own context
    pairs = [
        (sign_in_context("c1"), connection_context("c1")),
        (crm_sign_in_context("co", "u1"), crm_context("co", "u1")),
    ]
    for flow_context, credentials_context in pairs:
        flow = vault.seal_json({"state": "s"}, flow_context)
        credentials = vault.seal_json(TOKENS, credentials_context)
        # Then neither opens under the other's context, and each under its own
        with pytest.raises(VaultError):
            vault.open_json(flow, credentials_context)
        with pytest.raises(VaultError):
            vault.open_json(credentials, flow_context)
        assert vault.open_json(flow, flow_context) == {"state": "s"}
