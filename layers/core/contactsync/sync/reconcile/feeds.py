"""Reading a side's changes: its change feed from the cursor (or a full listing), an expired
cursor answered by listing in full, contacts read under a new id, and the mapped contacts a full
listing left out (deleted, or out of scope)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from contactsync.providers.base import ChangePage, CursorExpired, RemoteContact
from contactsync.store.pass_interface import AuditEntry
from contactsync.sync.reconcile.context import PassScope

FULL_LISTING_REASONS = ("start", "resync", "confirm")


@dataclass
class SideChanges:
    """What a pass read of one side: changed contacts by id, deleted ids, where it got to."""

    contacts: dict[str, RemoteContact] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    position: str = ""
    full: bool = False

    @property
    def read(self) -> int:
        return len(self.contacts) + len(self.deleted)

    def add_fetched(self, fetched: dict[str, RemoteContact | None]) -> None:
        """Contacts re-read by id (pushed, or to re-check): None means deleted; an id the
        answer left out is not here at all (unknown)."""
        for contact_id, remote in fetched.items():
            if remote is None:
                self.contacts.pop(contact_id, None)
                self.deleted.add(contact_id)
            else:
                self.contacts[contact_id] = remote
                self.deleted.discard(contact_id)

    def add(self, page: ChangePage) -> None:
        for remote in page.contacts:
            self.contacts[remote.id] = remote
            self.deleted.discard(remote.id)
        for contact_id in page.deleted:
            self.contacts.pop(contact_id, None)
            self.deleted.add(contact_id)
        self.position = page.position
        self.full = self.full or page.full

    def cursor_dict(self, taken_at: datetime) -> dict[str, Any]:
        return {
            "position": self.position,
            "complete": True,
            "full": self.full,
            "taken_at": taken_at.isoformat(),
        }


def lists_in_full(scope: PassScope) -> bool:
    """Whether this pass lists both sides in full. A confirmed pass does: what it confirms must
    be seen whole, and the held pass advanced no cursor."""
    conn, message = scope.conn, scope.message
    return (
        message.full
        or message.reason in FULL_LISTING_REASONS
        or conn.list_in_full
        or _full_listing_due(scope)
    )


def _full_listing_due(scope: PassScope) -> bool:
    last = scope.conn.last_full_at
    if not last:
        return False  # unknown: every connection starts with a full listing anyway
    return datetime.fromisoformat(last) <= scope.ctx.clock() - scope.ctx.full_listing_every


def read_side(scope: PassScope, name: str, full: bool) -> SideChanges:
    """A side's changes since its cursor, or all of it (``full``, or its cursor expired)."""
    side = scope.sides.of(name)
    cursor = scope.store.cursor(scope.cid, name)
    position: str | None = None
    if cursor is not None and cursor.position and not full:
        position = cursor.position
    changes = SideChanges()
    expired_once = False
    while True:
        try:
            page: ChangePage = side.read(position)
        except CursorExpired:
            if expired_once:
                raise
            expired_once = True
            scope.store.audit(
                scope.cid,
                [
                    AuditEntry(
                        kind="pass",
                        side=name,
                        message=f"the {name} sync cursor expired: full re-listing, "
                        "re-matched against existing links",
                    )
                ],
            )
            changes = SideChanges()
            position = None
            continue
        changes.add(page)
        position = page.position
        if page.complete:
            break
    if changes.full:
        _find_missing(scope, name, changes)
    _follow_renames(scope, name, changes)
    return changes


def _follow_renames(scope: PassScope, name: str, changes: SideChanges) -> None:
    """A contact read under a new id (it names the ids it had, or a read by its old id
    answered with the new one): its link moves to the new id, so it is neither a new
    contact to copy nor its old id a delete."""
    store, cid = scope.store, scope.cid
    for key, remote in list(changes.contacts.items()):
        old_ids = {*remote.previous_ids, key} - {remote.id}
        if not old_ids:
            continue
        if key != remote.id:
            del changes.contacts[key]
            changes.contacts[remote.id] = remote
        if store.mapping_for(cid, name, remote.id) is not None:
            continue
        for old in old_ids:
            mapping = store.mapping_for(cid, name, old)
            if mapping is None:
                continue
            if name == "crm":
                moved = replace(mapping, crm_id=remote.id)
            else:
                moved = replace(mapping, provider_id=remote.id)
            store.save_mapping(cid, moved)
            changes.deleted.discard(old)
            break


def _find_missing(scope: PassScope, name: str, changes: SideChanges) -> None:
    """A full listing omits contacts that were deleted or left scope: ask for each mapped one
    we did not see, so a missed delete is caught (and a missed scope change too)."""
    missing = []
    for mapping in scope.store.mappings(scope.cid):
        contact_id = mapping.crm_id if name == "crm" else mapping.provider_id
        if contact_id and contact_id not in changes.contacts:
            missing.append(contact_id)
    if not missing:
        return
    found = scope.sides.of(name).fetch(missing)
    for contact_id in missing:
        if contact_id not in found:  # the answer left it out: unknown, never deleted
            continue
        remote = found[contact_id]
        if remote is None:
            changes.deleted.add(contact_id)
        else:
            changes.contacts[contact_id] = remote
