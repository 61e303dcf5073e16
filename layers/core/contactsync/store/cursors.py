"""Cursor items: where each side's change feed continues from."""

from __future__ import annotations

from datetime import datetime

from contactsync.store.keys import conn_pk
from contactsync.store.models import Cursor, iso, utcnow


def get_cursor(connection_id: str, side: str) -> Cursor | None:
    try:
        return Cursor.get(conn_pk(connection_id), f"CURSOR#{side}", consistent_read=True)
    except Cursor.DoesNotExist:
        return None


def put_cursor(
    connection_id: str,
    side: str,
    position: str,
    complete: bool,
    full: bool,
    *,
    now: datetime | None = None,
    taken_at: datetime | None = None,
) -> Cursor:
    """Store where ``side``'s change feed continues from (``taken_at`` defaults to now)."""
    moment = now or utcnow()
    cursor = Cursor(
        conn_pk(connection_id),
        f"CURSOR#{side}",
        side=side,
        position=position,
        complete=complete,
        full=full,
        taken_at=iso(taken_at or moment),
        updated_at=iso(moment),
    )
    cursor.save()
    return cursor


def delete_cursor(connection_id: str, side: str) -> None:
    """Forget a side's cursor: its next read is a full listing."""
    Cursor(conn_pk(connection_id), f"CURSOR#{side}").delete()


def delete_cursors(connection_id: str) -> None:
    """Forget both sides' cursors (a batch write)."""
    with Cursor.batch_write() as cursors:
        for cursor in Cursor.query(conn_pk(connection_id), Cursor.sk.startswith("CURSOR#")):
            cursors.delete(cursor)
