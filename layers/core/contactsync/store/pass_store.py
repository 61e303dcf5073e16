"""The DynamoDB implementation of ``contactsync.store.pass_interface.PassStore``."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from contactsync.engine.plan import MappingState
from contactsync.store import (
    audit,
    connections,
    cursors,
    duplicates,
    key_claims,
    mappings,
    pending_items,
)
from contactsync.store.keys import pending_pk
from contactsync.store.models import (
    Mapping,
    PendingOpItem,
    iso,
    utcnow,
)
from contactsync.store.pass_connection import ReadConnections, attribute_values
from contactsync.store.pass_interface import AuditEntry, ConnectionView, Cursor
from contactsync.store.pending import PendingOp


def _mapping_state(item: Mapping) -> MappingState:
    return MappingState(
        mapping_id=item.mapping_id,
        crm_id=item.crm_id,
        provider_id=item.provider_id,
        base=item.base_contact,
        crm_version=item.crm_version,
        provider_version=item.provider_version,
        detached=item.detached or "",
        holds=item.held_contacts,
        refusals=int(item.refusals or 0),
    )


class DynamoPassStore:
    """One pass's store (a new one per pass): it remembers the connection item and the cursors
    as the pass read them, so that it writes only what the pass changes."""

    def __init__(self) -> None:
        self._read = ReadConnections()
        self._cursors: dict[tuple[str, str], Cursor] = {}

    def load_connection(self, connection_id: str) -> ConnectionView | None:
        return self._read.remember(connections.get_connection(connection_id))

    def answer_ring(self, connection_id: str) -> ConnectionView | None:
        """The lease this store took answered the ring already (``acquire_lease``)."""
        return self._read.remember(connections.get_connection(connection_id))

    def add_hints(
        self, connection_id: str, crm_ids: Sequence[str], provider_ids: Sequence[str] = ()
    ) -> None:
        connections.add_hints(connection_id, crm_ids, "crm")
        connections.add_hints(connection_id, provider_ids, "provider")

    def drop_hints(
        self,
        connection_id: str,
        crm_ids: Sequence[str],
        provider_ids: Sequence[str] = (),
        *,
        added: int = 0,
    ) -> None:
        connections.drop_hints(connection_id, {"crm": crm_ids, "provider": provider_ids}, added)

    def update_connection(self, connection_id: str, **changes: Any) -> None:
        values = self._read.changed(connection_id, attribute_values(changes))
        if not values:
            return
        if not connections.set_attributes(connection_id, **values):
            raise LookupError(f"connection {connection_id} not found")
        self._read.written(connection_id, values)

    def acquire_lease(self, connection_id: str, owner: str, now: datetime, seconds: int) -> bool:
        """Taking the lease answers the ring too (one write): see ``answer_ring``."""
        return connections.acquire_lease(connection_id, owner, seconds, now, answer_ring=True)

    def release_lease(self, connection_id: str, owner: str, **changes: Any) -> None:
        values = self._read.changed(connection_id, attribute_values(changes))
        connections.release_lease(connection_id, owner, **values)
        self._read.written(connection_id, values)

    def cursor(self, connection_id: str, side: str) -> Cursor | None:
        item = cursors.get_cursor(connection_id, side)
        if item is None:
            return None
        cursor = Cursor(
            position=item.position,
            complete=item.complete,
            full=item.full,
            taken_at=item.taken_at or "",
        )
        self._cursors[(connection_id, side)] = cursor
        return cursor

    def save_cursor(self, connection_id: str, side: str, cursor: Cursor) -> None:
        """Written only when it moved: a pass that found nothing new leaves it (and its
        ``taken_at``: the connection's ``last_success_at`` says when it was last read)."""
        read = self._cursors.get((connection_id, side))
        if read is not None and (read.position, read.complete, read.full) == (
            cursor.position,
            cursor.complete,
            cursor.full,
        ):
            return
        self._cursors[(connection_id, side)] = cursor
        taken = datetime.fromisoformat(cursor.taken_at) if cursor.taken_at else None
        cursors.put_cursor(
            connection_id, side, cursor.position, cursor.complete, cursor.full, taken_at=taken
        )

    def mapping_for(self, connection_id: str, side: str, contact_id: str) -> MappingState | None:
        if side == "crm":
            item = mappings.mapping_by_crm_id(connection_id, contact_id)
        else:
            item = mappings.mapping_by_provider_id(connection_id, contact_id)
        return _mapping_state(item) if item is not None else None

    def mappings(self, connection_id: str) -> Iterator[MappingState]:
        return (_mapping_state(m) for m in mappings.iter_mappings(connection_id))

    def count_mappings(self, connection_id: str) -> int:
        return mappings.count_mappings(connection_id)

    def save_mapping(self, connection_id: str, mapping: MappingState) -> None:
        mappings.put_mapping(
            connection_id,
            mapping_id=mapping.mapping_id,
            crm_id=mapping.crm_id,
            provider_id=mapping.provider_id,
            base=mapping.base,
            crm_version=mapping.crm_version,
            provider_version=mapping.provider_version,
            detached=mapping.detached,
            holds=mapping.holds,
            refusals=mapping.refusals,
        )

    def claim_key(
        self,
        company_id: str,
        user_id: str,
        key: str,
        *,
        owner: str,
        now: datetime,
        seconds: float,
        replacing: str = "",
    ) -> bool:
        return key_claims.claim_key(
            company_id, user_id, key, owner=owner, seconds=seconds, now=now, replacing=replacing
        )

    def settle_key(self, company_id: str, user_id: str, key: str, *, owner: str, made: str) -> None:
        key_claims.settle_key(company_id, user_id, key, owner=owner, made=made)

    def claimed_person(self, company_id: str, user_id: str, key: str) -> str:
        return key_claims.claimed_person(company_id, user_id, key)

    def review_holds(self, connection_id: str, side: str, contact_ids: Sequence[str]) -> set[str]:
        return duplicates.review_holds(connection_id, side, contact_ids) if contact_ids else set()

    def replace_review_holds(
        self, connection_id: str, holds: Sequence[tuple[str, str, str]]
    ) -> None:
        duplicates.replace_review_holds(connection_id, holds)

    def replace_duplicate_clusters(
        self, connection_id: str, clusters: Sequence[tuple[Sequence[str], Sequence[str]]]
    ) -> None:
        duplicates.replace_duplicate_clusters(connection_id, clusters)

    def drop_mapping(self, connection_id: str, mapping_id: str) -> None:
        mappings.delete_mapping(connection_id, mapping_id)

    def pending(self, connection_id: str) -> list[PendingOp]:
        ops = [
            PendingOp.from_json(item.payload) for item in pending_items.list_pending(connection_id)
        ]
        return sorted(ops, key=lambda op: op.op_id)

    def save_pending(self, connection_id: str, ops: Sequence[PendingOp]) -> None:
        """Stored in batches of 25: a plan of thousands of writes costs one round trip per 25."""
        stamp = iso(utcnow())
        with PendingOpItem.batch_write() as batch:
            for op in ops:
                first = op.writes[0] if op.writes else None
                batch.save(
                    PendingOpItem(
                        pending_pk(connection_id),
                        f"OP#{op.op_id}",
                        op_id=op.op_id,
                        side=first.side if first else "",
                        kind=first.kind if first else op.kind,
                        mapping_id=op.mapping_id,
                        target_id=first.target_id if first else "",
                        payload=op.to_json(),
                        created_at=stamp,
                    )
                )

    def drop_pending(self, connection_id: str, op_ids: Sequence[str]) -> None:
        pending_items.delete_pending_many(connection_id, op_ids)

    def audit(self, connection_id: str, entries: Sequence[AuditEntry]) -> None:
        for entry in entries:
            audit.add_audit(
                connection_id,
                entry.kind,
                entry.message,
                side=entry.side or None,
                crm_id=entry.crm_id or None,
                provider_id=entry.provider_id or None,
                mapping_id=entry.mapping_id or None,
                before=entry.before,
                after=entry.after,
                details=json.loads(json.dumps(entry.details, default=str))
                if entry.details
                else None,
            )


@dataclass
class DynamoDoorbell:
    """The push side of coalesced pass requests (``contactsync.sync.push.Doorbell``).

    A request that waited longer than ``stale_after`` (longer than the reconciler's longest
    back-off, e.g. parked in the dead-letter queue) no longer holds pushes back.
    """

    stale_after: timedelta = timedelta(minutes=15)
    clock: Callable[[], datetime] = utcnow

    def ring(self, connection_id: str, crm_ids: Sequence[str]) -> bool:
        remembered = connections.add_hints(connection_id, crm_ids)
        queued = connections.ring(connection_id, self.clock(), self.stale_after)
        return queued or not remembered
