"""In-memory fakes of our own interfaces (PassStore, ContactSide) for fast tests of a pass.

Test code, outside the deployed package: unit and integration tests and the benchmarks import it
(``tests.fakes``); nothing in ``contactsync`` may (an import-linter contract).

They behave like the real ones where a pass can tell: ids, versions, tags, paging positions,
deletions, scope. They are not mocks: they hold state and can be inspected.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from contactsync.contacts.model import ALL_FIELDS, Contact
from contactsync.contacts.normalize import field_key
from contactsync.engine.plan import MappingState
from contactsync.providers.base import (
    ChangePage,
    ContactDelete,
    ContactUpdate,
    NewContact,
    NotFound,
    PreconditionFailed,
    RemoteContact,
    Transient,
    WriteResult,
)
from contactsync.store.pass_interface import AuditEntry, ConnectionView, Cursor
from contactsync.store.pending import PendingOp


@dataclass
class InMemoryStore:
    connections: dict[str, dict[str, Any]] = field(default_factory=dict)
    cursors: dict[tuple[str, str], Cursor] = field(default_factory=dict)
    mapping_items: dict[str, dict[str, MappingState]] = field(default_factory=dict)
    ops: dict[str, dict[str, PendingOp]] = field(default_factory=dict)
    log: list[tuple[str, AuditEntry]] = field(default_factory=list)
    leases: dict[str, tuple[str, datetime]] = field(default_factory=dict)
    holds: dict[str, dict[tuple[str, str], str]] = field(default_factory=dict)
    clusters: dict[str, list[tuple[tuple[str, ...], tuple[str, ...]]]] = field(default_factory=dict)
    # (company, user, key) -> (owner, until, the person made under it)
    claims: dict[tuple[str, str, str], tuple[str, datetime, str]] = field(default_factory=dict)

    def add_connection(self, connection_id: str, **values: Any) -> None:
        base = {"company_id": "c1", "user_id": "u1", "provider": "microsoft", "state": "active"}
        self.connections[connection_id] = {**base, **values}

    def load_connection(self, connection_id: str) -> ConnectionView | None:
        raw = self.connections.get(connection_id)
        if raw is None:
            return None
        known = set(ConnectionView.__dataclass_fields__)
        values = {k: v for k, v in raw.items() if k in known}
        values["inflight_ops"] = tuple(raw.get("inflight_ops") or ())
        values["pending_crm_ids"] = tuple(raw.get("pending_crm_ids") or ())
        values["pending_provider_ids"] = tuple(raw.get("pending_provider_ids") or ())
        values["failures"] = int((raw.get("last_error") or {}).get("repeats", 0))
        return ConnectionView(connection_id=connection_id, **values)

    def update_connection(self, connection_id: str, **changes: Any) -> None:
        self.connections[connection_id].update(changes)

    def answer_ring(self, connection_id: str) -> ConnectionView | None:
        if connection_id in self.connections:
            self.connections[connection_id].pop("wake_queued_at", None)
        return self.load_connection(connection_id)

    def ring(self, connection_id: str, crm_ids: Sequence[str]) -> bool:
        """The push side (``contactsync.sync.push.Doorbell``): remember the hints; True when
        no pass request waits yet."""
        raw = self.connections.get(connection_id)
        if raw is None:
            return False
        self.add_hints(connection_id, crm_ids)
        if raw.get("wake_queued_at"):
            return False
        raw["wake_queued_at"] = "queued"
        return True

    def add_hints(
        self, connection_id: str, crm_ids: Sequence[str], provider_ids: Sequence[str] = ()
    ) -> None:
        raw = self.connections[connection_id]
        for name, ids in (("pending_crm_ids", crm_ids), ("pending_provider_ids", provider_ids)):
            if ids:
                raw[name] = sorted({*(raw.get(name) or ()), *ids})
                raw["hints_added"] = int(raw.get("hints_added") or 0) + 1

    def drop_hints(
        self,
        connection_id: str,
        crm_ids: Sequence[str],
        provider_ids: Sequence[str] = (),
        *,
        added: int = 0,
    ) -> None:
        raw = self.connections[connection_id]
        if int(raw.get("hints_added") or 0) != added:
            return  # hints were added since the pass read them: all stay for the next one
        for name, ids in (("pending_crm_ids", crm_ids), ("pending_provider_ids", provider_ids)):
            raw[name] = sorted(set(raw.get(name) or ()) - set(ids))

    def acquire_lease(self, connection_id: str, owner: str, now: datetime, seconds: int) -> bool:
        held = self.leases.get(connection_id)
        if held is not None and held[0] != owner and held[1] > now:
            return False
        self.leases[connection_id] = (owner, now + timedelta(seconds=seconds))
        return True

    def release_lease(self, connection_id: str, owner: str, **changes: Any) -> None:
        if changes:
            self.update_connection(connection_id, **changes)
        if self.leases.get(connection_id, ("",))[0] == owner:
            del self.leases[connection_id]

    def cursor(self, connection_id: str, side: str) -> Cursor | None:
        return self.cursors.get((connection_id, side))

    def save_cursor(self, connection_id: str, side: str, cursor: Cursor) -> None:
        self.cursors[(connection_id, side)] = cursor

    def mapping_for(self, connection_id: str, side: str, contact_id: str) -> MappingState | None:
        for mapping in self.mapping_items.get(connection_id, {}).values():
            if (mapping.crm_id if side == "crm" else mapping.provider_id) == contact_id:
                return mapping
        return None

    def mappings(self, connection_id: str) -> Iterator[MappingState]:
        return iter(list(self.mapping_items.get(connection_id, {}).values()))

    def count_mappings(self, connection_id: str) -> int:
        return sum(1 for m in self.mapping_items.get(connection_id, {}).values() if not m.detached)

    def save_mapping(self, connection_id: str, mapping: MappingState) -> None:
        self.mapping_items.setdefault(connection_id, {})[mapping.mapping_id] = mapping

    def drop_mapping(self, connection_id: str, mapping_id: str) -> None:
        self.mapping_items.get(connection_id, {}).pop(mapping_id, None)

    def pending(self, connection_id: str) -> list[PendingOp]:
        return sorted(self.ops.get(connection_id, {}).values(), key=lambda o: o.op_id)

    def save_pending(self, connection_id: str, ops: Sequence[PendingOp]) -> None:
        for op in ops:  # round-trip through JSON, as the real store does
            self.ops.setdefault(connection_id, {})[op.op_id] = PendingOp.from_json(op.to_json())

    def drop_pending(self, connection_id: str, op_ids: Sequence[str]) -> None:
        for op_id in op_ids:
            self.ops.get(connection_id, {}).pop(op_id, None)

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
        held = self.claims.get((company_id, user_id, key))
        taken = held is not None and held[0] != owner and held[1] > now
        if taken and not (replacing and held is not None and held[2] == replacing):
            return False
        self.claims[(company_id, user_id, key)] = (owner, now + timedelta(seconds=seconds), "")
        return True

    def settle_key(self, company_id: str, user_id: str, key: str, *, owner: str, made: str) -> None:
        held = self.claims.get((company_id, user_id, key))
        if held is not None and held[0] == owner:
            self.claims[(company_id, user_id, key)] = (owner, held[1], made)

    def claimed_person(self, company_id: str, user_id: str, key: str) -> str:
        held = self.claims.get((company_id, user_id, key))
        return held[2] if held is not None else ""

    def review_holds(self, connection_id: str, side: str, contact_ids: Sequence[str]) -> set[str]:
        held = self.holds.get(connection_id, {})
        return {c for c in contact_ids if (side, c) in held}

    def replace_review_holds(
        self, connection_id: str, holds: Sequence[tuple[str, str, str]]
    ) -> None:
        self.holds[connection_id] = {(side, c): reason for side, c, reason in holds}

    def replace_duplicate_clusters(
        self, connection_id: str, clusters: Sequence[tuple[Sequence[str], Sequence[str]]]
    ) -> None:
        self.clusters[connection_id] = [(tuple(ids), tuple(keys)) for ids, keys in clusters]

    def audit(self, connection_id: str, entries: Sequence[AuditEntry]) -> None:
        self.log.extend((connection_id, e) for e in entries)


@dataclass
class InMemorySide:
    """A side holding contacts in a dict, with a change log for ``read`` positions."""

    name: str = "memory"
    carries: frozenset[str] = frozenset(ALL_FIELDS)
    limits: tuple[str, ...] | None = ()
    deletes_in_scope_only: bool = False
    listing_lag: timedelta = timedelta(0)
    lost_copy_proof: str = ""  # "tag": ids are made from tags, as CardDAV's
    creates_per_request: int = 100  # one call makes them all
    contacts: dict[str, RemoteContact] = field(default_factory=dict)
    page_size: int = 100
    strict_before: bool = True  # refuse an update whose ``before`` is not what it holds
    # The next creates whose answers are lost: the contacts are made, the call fails.
    lose_answers: int = 0
    # The next create calls whose answers are lost as the real adapters report it: the contacts
    # are made, each item's result is a Transient error without a status (no answer came).
    lose_item_answers: int = 0
    # Look-ups by tag that fail (the side went down just after a lost answer).
    fail_find_tagged: int = 0
    calls: dict[str, int] = field(default_factory=dict)
    _log: list[tuple[int, str]] = field(default_factory=list)  # (sequence, id) of each change
    _seq: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    # --- what a user (or a test) does on this side -------------------------------------------

    def put(
        self, contact: Contact, *, contact_id: str = "", tag: str = "", in_scope: bool = True
    ) -> RemoteContact:
        contact_id = contact_id or f"{self.name}-{next(self._ids)}"
        seq = next(self._seq)
        remote = RemoteContact(
            id=contact_id,
            contact=contact.only(self.carries),
            version=f"v{seq}",
            modified_at=f"2026-01-01T00:00:{seq % 60:02d}Z",
            in_scope=in_scope,
            scope_reason="" if in_scope else "moved out of the folder",
            tag=tag or (self.contacts[contact_id].tag if contact_id in self.contacts else ""),
        )
        self.contacts[contact_id] = remote
        self._log.append((seq, contact_id))
        return remote

    def remove(self, contact_id: str) -> None:
        self.contacts.pop(contact_id, None)
        self._log.append((next(self._seq), contact_id))

    def _count(self, call: str) -> None:
        self.calls[call] = self.calls.get(call, 0) + 1

    # --- ContactSide -----------------------------------------------------------------------

    def read(self, position: str | None) -> ChangePage:
        self._count("read")
        if position is None or position.startswith("full:"):
            ids = sorted(self.contacts)
            offset = int(position.split(":")[1]) if position else 0
            page = ids[offset : offset + self.page_size]
            done = offset + self.page_size >= len(ids)
            mark = self._log[-1][0] if self._log else 0
            return ChangePage(
                contacts=[self.contacts[i] for i in page if self.contacts[i].in_scope],
                position=f"since:{mark}" if done else f"full:{offset + self.page_size}",
                complete=done,
                full=True,
            )
        since = int(position.split(":")[1])
        changed = list(dict.fromkeys(i for seq, i in self._log if seq > since))
        mark = self._log[-1][0] if self._log else since
        contacts = [self.contacts[i] for i in changed if i in self.contacts]
        deleted = [i for i in changed if i not in self.contacts]
        return ChangePage(contacts=contacts, deleted=deleted, position=f"since:{mark}")

    def fetch(self, ids: Sequence[str]) -> dict[str, RemoteContact | None]:
        self._count("fetch")
        return {i: self.contacts.get(i) for i in ids}

    def id_for_tag(self, tag: str) -> str:
        return f"{self.name}-{tag}" if self.lost_copy_proof == "tag" else ""

    def find_tagged(self, tag: str) -> RemoteContact | None:
        self._count("find_tagged")
        if self.fail_find_tagged > 0:
            self.fail_find_tagged -= 1
            raise Transient("503 Service Unavailable", status=503)
        return next((c for c in self.contacts.values() if c.tag == tag), None)

    def lookup(self, contacts: Sequence[Contact]) -> list[RemoteContact]:
        self._count("lookup")
        emails = {e.value.strip().casefold() for c in contacts for e in c.emails}
        phones = {_digits(p.value)[-7:] for c in contacts for p in c.phones}
        names = {c.full_name.casefold() for c in contacts if c.full_name}
        return [
            r
            for r in self.contacts.values()
            if emails & {e.value.strip().casefold() for e in r.contact.emails}
            or phones & {_digits(p.value)[-7:] for p in r.contact.phones}
            or (r.contact.full_name and r.contact.full_name.casefold() in names)
        ]

    def create(self, items: Sequence[NewContact]) -> list[WriteResult]:
        self._count("create")
        made = [
            WriteResult(
                key=i.tag,
                remote=self.put(i.contact, contact_id=self.id_for_tag(i.tag), tag=i.tag),
            )
            for i in items
        ]
        if self.lose_answers > 0:
            self.lose_answers -= 1
            raise Transient("the connection dropped before the answer came")
        if self.lose_item_answers > 0:
            self.lose_item_answers -= 1
            lost = Transient("the connection dropped before the answer came")
            return [WriteResult(key=i.tag, error=lost) for i in items]
        return made

    def update(self, items: Sequence[ContactUpdate]) -> list[WriteResult]:
        self._count("update")
        results = []
        for item in items:
            current = self.contacts.get(item.id)
            if current is None:
                results.append(WriteResult(key=item.id, error=NotFound("gone", status=404)))
            elif item.version and current.version != item.version:
                results.append(
                    WriteResult(key=item.id, error=PreconditionFailed("stale", status=412))
                )
            elif self.strict_before and not self._holds(current.contact, item.before):
                # As strict as the CRM's same-second check, always: a write computed from what
                # the contact does not hold (a wrong ``before``) would send the wrong fields.
                results.append(
                    WriteResult(key=item.id, error=PreconditionFailed("not as read", status=412))
                )
            else:
                merged = replace(
                    current.contact,
                    **{
                        f: getattr(item.after, f)
                        for f in ALL_FIELDS
                        if getattr(item.after, f) != getattr(item.before, f)
                    },
                )
                results.append(
                    WriteResult(key=item.id, remote=self.put(merged, contact_id=item.id))
                )
        return results

    def _holds(self, held: Contact, before: Contact) -> bool:
        return all(field_key(held, f, "US") == field_key(before, f, "US") for f in self.carries)

    def delete(self, items: Sequence[ContactDelete]) -> list[WriteResult]:
        self._count("delete")
        for item in items:
            self.remove(item.id)
        return [WriteResult(key=i.id) for i in items]


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())
