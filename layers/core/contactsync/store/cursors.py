"""Cursor items (``CursorItem``): where each side's change feed continues from."""

from __future__ import annotations

from datetime import datetime

from contactsync.store.keys import conn_pk
from contactsync.store.models import CursorItem, iso, utcnow


def get_cursor(connection_id: str, side: str) -> CursorItem | None:
    try:
        return CursorItem.get(conn_pk(connection_id), f"CURSOR#{side}", consistent_read=True)
    except CursorItem.DoesNotExist:
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
) -> CursorItem:
    """Store where ``side``'s change feed continues from (``taken_at`` defaults to now)."""
    moment = now or utcnow()
    cursor = CursorItem(
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
    CursorItem(conn_pk(connection_id), f"CURSOR#{side}").delete()


def delete_cursors(connection_id: str) -> None:
    """Forget both sides' cursors (a batch write)."""
    pk = conn_pk(connection_id)
    with CursorItem.batch_write() as cursors:
        for cursor in CursorItem.query(pk, CursorItem.sk.startswith("CURSOR#")):
            cursors.delete(cursor)
