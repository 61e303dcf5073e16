"""A connection's sealed provider tokens (``ConnectionTokens``): an item of their own, so that
the connection item that passes and the scheduler write stays small."""

from __future__ import annotations

from datetime import datetime

from contactsync.store.keys import conn_pk
from contactsync.store.models import Connection, ConnectionTokens, iso, utcnow

TOKENS_SK = "TOKENS"


def credentials_of(conn: Connection) -> bytes | None:
    """The connection's sealed tokens (None before its provider account is signed in)."""
    try:
        item = ConnectionTokens.get(conn.pk, TOKENS_SK, consistent_read=True)
    except ConnectionTokens.DoesNotExist:
        legacy = conn.legacy_credentials
        return bytes(legacy) if legacy is not None else None
    return bytes(item.sealed)


def put_credentials(connection_id: str, sealed: bytes, *, now: datetime | None = None) -> None:
    """Keep newly sealed tokens; the connection item no longer carries any (one that did from
    before the tokens had an item of their own loses them here)."""
    ConnectionTokens(
        conn_pk(connection_id), TOKENS_SK, sealed=sealed, updated_at=iso(now or utcnow())
    ).save()
    if _carries_legacy(connection_id):  # (a read costs less than a write that may not apply)
        Connection._get_connection().update_item(
            conn_pk(connection_id),
            "CONNECTION",
            actions=[Connection.legacy_credentials.remove()],
            condition=Connection.pk.exists(),
        )


def _carries_legacy(connection_id: str) -> bool:
    try:
        conn = Connection.get(
            conn_pk(connection_id), "CONNECTION", attributes_to_get=["PK", "SK", "credentials"]
        )
    except Connection.DoesNotExist:
        return False
    return conn.legacy_credentials is not None


def delete_credentials(connection_id: str) -> None:
    ConnectionTokens(conn_pk(connection_id), TOKENS_SK).delete()
