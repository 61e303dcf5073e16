"""Why one contact is, or is not, syncing, in plain words; and finding the CRM person to ask
about. Answered from the store, the contact's own audit entries (one Query of AuditIndex, however
big the book) and one look at the contact's side."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from contactsync.admin import access
from contactsync.admin.access import Caller
from contactsync.admin.context import AdminContext
from contactsync.admin.errors import InvalidRequest, provider_errors
from contactsync.admin.views import HISTORY_READ, SIDE_NAMES, audit_view
from contactsync.contacts.model import ALL_FIELDS, Contact
from contactsync.providers.base import AuthExpired, ProviderError, RemoteContact
from contactsync.store.audit import about_contact, audit_about, audit_entries
from contactsync.store.credentials import credentials_of
from contactsync.store.mappings import mapping_by_crm_id, mapping_by_provider_id
from contactsync.store.models import Connection, Mapping
from contactsync.sync.connection_states import ConnectionState

HISTORY_SHOWN = 20
STATE_REASONS: dict[str, str] = {
    ConnectionState.CONFIGURING: (
        "the connection is not started yet: nothing syncs until it is started"
    ),
    ConnectionState.STOPPED: "sync is stopped for this connection: start it again to sync",
    ConnectionState.NEEDS_REAUTH: (
        "the provider sign-in has expired: reconnect the account to resume syncing"
    ),
    ConnectionState.NEEDS_ATTENTION: (
        "a pass is held by the mass-change guard and waits for a decision"
    ),
}


def _contact_summary(side: str, contact_id: str, remote: RemoteContact | None) -> dict[str, Any]:
    """Enough to recognise the contact: its name and which fields hold something."""
    if remote is None:
        return {"side": side, "id": contact_id, "exists": False}
    empty = Contact()
    return {
        "side": side,
        "id": contact_id,
        "exists": True,
        "name": remote.contact.full_name,
        "in_scope": remote.in_scope,
        "out_of_scope_because": remote.scope_reason or None,
        "fields": [f for f in ALL_FIELDS if getattr(remote.contact, f) != getattr(empty, f)],
        "created_by_sync": bool(remote.tag),
    }


def _mapping_view(mapping: Mapping | None) -> dict[str, Any] | None:
    if mapping is None:
        return None
    return {
        "id": mapping.mapping_id,
        "crm_id": mapping.crm_id,
        "provider_id": mapping.provider_id,
        "linked_since": mapping.created_at,
        "detached": mapping.detached or None,
        "updated_at": mapping.updated_at,
    }


def explain(
    ctx: AdminContext,
    caller: Caller,
    connection_id: str,
    *,
    crm_person_id: str | None = None,
    provider_contact_id: str | None = None,
) -> dict[str, Any]:
    """Why one contact is, or is not, syncing, in plain words."""
    if (crm_person_id is None) == (provider_contact_id is None):
        raise InvalidRequest("give exactly one of crm_person_id and provider_contact_id")
    conn = access.connection_of(caller, connection_id)
    side = "crm" if crm_person_id is not None else "provider"
    contact_id = crm_person_id or provider_contact_id or ""
    if side == "crm":
        mapping = mapping_by_crm_id(connection_id, contact_id)
    else:
        mapping = mapping_by_provider_id(connection_id, contact_id)
    remote, unreadable = _look_up(ctx, conn, side, contact_id)
    # A pair's entries are all under its CRM person: one Query, whichever id was asked by.
    asked = ("crm", mapping.crm_id) if mapping is not None else (side, contact_id)
    rows = audit_about(about_contact(connection_id, *asked), limit=HISTORY_READ)
    errors = [r for r in rows if r.kind == "error"]
    duplicates = [r for r in rows if r.kind == "duplicate"]

    reasons = _state_reasons(conn)
    if unreadable:
        reasons.append(unreadable)
    elif remote is None:
        reasons.append(
            f"it does not exist in {SIDE_NAMES[side]} (deleted, merged away, or a wrong id)"
        )
    elif not remote.in_scope:
        scope = "the user's persons" if side == "crm" else "the chosen folder or group"
        why = remote.scope_reason or "out of scope"
        reasons.append(f"it is outside the sync scope ({why}): only {scope} sync")
    if mapping is not None:
        other = mapping.provider_id if side == "crm" else mapping.crm_id
        other_side = "provider" if side == "crm" else "crm"
        if mapping.detached:
            away = "it" if mapping.detached == side else f"its partner, contact {other},"
            reasons.append(
                f"it is unlinked: {away} left the sync scope in "
                f"{SIDE_NAMES[mapping.detached]}; both are left alone until it comes back"
            )
        else:
            reasons.append(f"it is linked to {SIDE_NAMES[other_side]} contact {other}")
        if mapping.refusals:
            reasons.append(
                f"its last {mapping.refusals} write(s) were refused because the contact "
                "changed while it was written: both sides are read again and the write is "
                "retried automatically"
            )
    blocked_by_direction = (side == "crm" and conn.direction == "to_crm") or (
        side == "provider" and conn.direction == "to_provider"
    )
    if blocked_by_direction:
        target = "provider" if side == "crm" else "CRM"
        reasons.append(
            f"the direction is {conn.direction}: contacts from {SIDE_NAMES[side]} are never "
            f"sent to the {target}" + ("" if mapping is None else ", only received")
        )
    if mapping is None and duplicates:
        reasons.append(f"it is a possible duplicate, left for a person: {duplicates[0].message}")
    if mapping is None and not rows and remote is not None and remote.in_scope:
        reasons.append(
            "no sync pass has seen it yet: it is picked up by the next pass that reads it"
        )
    reasons.extend(_waiting_reasons(ctx, conn, side, contact_id, mapping))
    if errors:
        reasons.append(f"the last error for it ({errors[0].at}): {errors[0].message}")
    syncing = (
        mapping is not None
        and not mapping.detached
        and conn.state in (ConnectionState.ACTIVE, ConnectionState.SYNCING_INITIAL)
        and remote is not None
        and remote.in_scope
    )
    return {
        "syncing": syncing,
        "reasons": reasons,
        "mapping": _mapping_view(mapping),
        "contact": _contact_summary(side, contact_id, remote),
        "last_error": (
            {"at": errors[0].at, "side": errors[0].side, "message": errors[0].message}
            if errors
            else None
        ),
        "history": [audit_view(e) for e in audit_entries(rows[:HISTORY_SHOWN])],
    }


def _waiting_reasons(
    ctx: AdminContext, conn: Connection, side: str, contact_id: str, mapping: Mapping | None
) -> list[str]:
    """A create, delete or move out of scope of this contact that waits: for the rest of
    its burst (settling), or for the user (held by the mass-change guard)."""
    ids = {("crm", i) for i in conn.pending_crm_ids or ()}
    ids |= {("provider", i) for i in conn.pending_provider_ids or ()}
    mine = {(side, contact_id)}
    if mapping is not None:
        mine |= {("crm", mapping.crm_id), ("provider", mapping.provider_id)}
    if not ids & mine:
        return []
    if conn.state == ConnectionState.NEEDS_ATTENTION:
        return [
            "a change to it (a create, a delete or a move out of scope) is part of the pass "
            "held by the mass-change guard: it waits for confirm or discard"
        ]
    until = conn.settle_until
    if until and datetime.fromisoformat(until) > ctx.clock():
        return [
            "a change to it (a create, a delete or a move out of scope) waits until "
            f"{until[11:19]} UTC for the rest of its burst, so that a mass change is "
            "judged whole"
        ]
    return []


def _state_reasons(conn: Connection) -> list[str]:
    words = STATE_REASONS.get(conn.state)
    if words is None:
        return []
    if conn.state == ConnectionState.NEEDS_ATTENTION and conn.held_plan:
        words += f" ({conn.held_plan.get('message', '')}): confirm or discard it"
    if conn.state == ConnectionState.NEEDS_REAUTH and conn.last_error is not None:
        words += f" ({conn.last_error.message})"
    return [words]


def _look_up(
    ctx: AdminContext, conn: Connection, side: str, contact_id: str
) -> tuple[RemoteContact | None, str]:
    """The contact as its side holds it now, or why it could not be read."""
    if side == "provider" and (not conn.folder_id or credentials_of(conn) is None):
        return None, "the provider account is not signed in or no folder is chosen yet"
    try:
        found = ctx.sides(conn).of(side).fetch([contact_id])
    except AuthExpired as exc:
        return None, f"{SIDE_NAMES[side]} could not be read: sign in again ({exc.message})"
    except ProviderError as exc:
        return None, f"{SIDE_NAMES[side]} could not be read right now: {exc.message}"
    if contact_id not in found:
        return None, f"{SIDE_NAMES[side]} left it out of its answer: try again"
    return found[contact_id], ""


def find(ctx: AdminContext, caller: Caller, connection_id: str, term: str) -> dict[str, Any]:
    """CRM persons whose name or email contains ``term``, owned by the user or not, each
    with whether it is linked: what the settings page lists before explaining one."""
    conn = access.connection_of(caller, connection_id)
    if len(term.strip()) < 2:
        raise InvalidRequest("type at least two characters of a name or an email")
    with provider_errors("the CRM"):
        hits = ctx.wiring.crm_side(conn.company_id, conn.user_id).search(term)
    found = []
    for remote in hits:
        mapping = mapping_by_crm_id(connection_id, remote.id)
        found.append(
            {
                "crm_person_id": remote.id,
                "name": remote.contact.full_name,
                "emails": [e.value for e in remote.contact.emails],
                "in_scope": remote.in_scope,
                "scope_reason": remote.scope_reason,
                "linked_to": mapping.provider_id if mapping and not mapping.detached else None,
            }
        )
    return {"persons": found}
