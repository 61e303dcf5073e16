"""The connection's history (the activity log, a page at a time) and undoing one update.

Undo puts back the values one update replaced, on the side it wrote, and changes nothing else;
a pass then carries the restored values to the other side.
"""

from __future__ import annotations

from typing import Any

from contactsync.admin import access
from contactsync.admin.access import Caller
from contactsync.admin.context import AdminContext
from contactsync.admin.errors import ConflictError, InvalidRequest, NotFoundError, provider_errors
from contactsync.admin.lease import holding_lease
from contactsync.admin.views import SIDE_NAMES, audit_view, undoable
from contactsync.contacts.model import ALL_FIELDS, Contact
from contactsync.contacts.normalize import field_key
from contactsync.providers.base import ContactUpdate, NotFound, PreconditionFailed
from contactsync.store.audit import InvalidPageCursor, add_audit, get_audit_entry, list_audit_page
from contactsync.store.pending import plain_value


def activity(
    ctx: AdminContext,
    caller: Caller,
    connection_id: str,
    *,
    limit: int = 50,
    cursor: str | None = None,
    kind: str | None = None,
) -> dict[str, Any]:
    """A page of the connection's history, newest first."""
    access.connection_of(caller, connection_id)
    try:
        entries, next_cursor = list_audit_page(connection_id, limit=limit, cursor=cursor, kind=kind)
    except InvalidPageCursor as exc:
        raise InvalidRequest(f"cursor: {exc}") from exc
    return {"entries": [audit_view(e) for e in entries], "next_cursor": next_cursor}


def undo(ctx: AdminContext, caller: Caller, connection_id: str, entry_id: str) -> dict[str, Any]:
    """Put back the values one update replaced, on the side it wrote; a pass then carries
    the restored values to the other side."""
    conn = access.connection_of(caller, connection_id)
    entry = get_audit_entry(connection_id, entry_id)
    if entry is None:
        raise NotFoundError(f"no activity entry {entry_id!r}")
    if not undoable(entry) or entry.side not in ("crm", "provider"):
        raise ConflictError(f"only updates can be undone; this entry is a {entry.kind}")
    side_name = entry.side
    contact_id = entry.crm_id if side_name == "crm" else entry.provider_id
    if not contact_id:
        raise ConflictError("the entry does not name the contact it changed")
    before = Contact.from_dict(entry.before)
    after = Contact.from_dict(entry.after)
    region = conn.phone_region
    changed = [f for f in ALL_FIELDS if field_key(before, f, region) != field_key(after, f, region)]
    side = ctx.sides(conn).of(side_name)
    with holding_lease(connection_id, ctx.clock):
        with provider_errors(SIDE_NAMES[side_name]):
            current = side.fetch([contact_id]).get(contact_id)
        if current is None:
            raise ConflictError(f"the contact no longer exists in {SIDE_NAMES[side_name]}")
        carried = [f for f in changed if f in side.carries]
        held = current.contact.only(side.carries)
        restored = held.with_fields(**{f: getattr(before, f) for f in carried})
        with provider_errors(SIDE_NAMES[side_name]):
            result = side.update(
                [ContactUpdate(contact_id, current.version, before=held, after=restored)]
            )[0]
        if isinstance(result.error, PreconditionFailed | NotFound):
            raise ConflictError(
                f"the contact changed meanwhile; try again ({result.error.message})"
            )
        if result.error is not None:
            raise ConflictError(f"{SIDE_NAMES[side_name]} refused: {result.error.message}")
        undo_entry = add_audit(
            connection_id,
            "undo",
            f"undid the update of {', '.join(carried) or 'nothing'} on {side_name}",
            side=side_name,
            crm_id=entry.crm_id,
            provider_id=entry.provider_id,
            mapping_id=entry.mapping_id,
            before={f: plain_value(getattr(held, f)) for f in carried},
            after={f: plain_value(getattr(restored, f)) for f in carried},
            details={"undid": entry_id},
            now=ctx.clock(),
        )
    hint = [contact_id] if side_name == "crm" else []
    ctx.queue_pass(connection_id, "schedule", crm_ids=hint)
    return {"restored": carried, "entry": audit_view(undo_entry)}
