"""Pending-op items (``PendingOpItem``): a pass's ``PendingOp`` stored before its writes are
sent (``contactsync.store.pending`` holds the value and its JSON)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from contactsync.store.keys import pending_pk
from contactsync.store.models import PendingOpItem, iso, utcnow


def put_pending(
    connection_id: str,
    *,
    side: str,
    kind: str,
    mapping_id: str,
    payload: dict[str, Any],
    target_id: str = "",
    op_id: str | None = None,
    now: datetime | None = None,
) -> PendingOpItem:
    """Record a write before it is sent, so a crash can be recovered without a duplicate."""
    op_id = op_id or uuid.uuid4().hex
    pending = PendingOpItem(
        pending_pk(connection_id),
        f"OP#{op_id}",
        op_id=op_id,
        side=side,
        kind=kind,
        mapping_id=mapping_id,
        target_id=target_id,
        payload=json.dumps(payload, sort_keys=True),
        created_at=iso(now or utcnow()),
    )
    pending.save()
    return pending


def list_pending(connection_id: str) -> list[PendingOpItem]:
    """The connection's pending ops, oldest first."""
    pk = pending_pk(connection_id)
    items = list(PendingOpItem.query(pk, PendingOpItem.sk.startswith("OP#"), consistent_read=True))
    return sorted(items, key=lambda p: (p.created_at, p.op_id))


def delete_pending(connection_id: str, op_id: str) -> None:
    PendingOpItem(pending_pk(connection_id), f"OP#{op_id}").delete()


def delete_pending_many(connection_id: str, op_ids: Sequence[str]) -> None:
    """Delete several pending ops in batches of 25."""
    with PendingOpItem.batch_write() as batch:
        for op_id in op_ids:
            batch.delete(PendingOpItem(pending_pk(connection_id), f"OP#{op_id}"))


def delete_all_pending(connection_id: str) -> None:
    """Delete every pending op of a connection (batch writes)."""
    pk = pending_pk(connection_id)
    with PendingOpItem.batch_write() as pending:
        for op in PendingOpItem.query(pk, PendingOpItem.sk.startswith("OP#")):
            pending.delete(op)
