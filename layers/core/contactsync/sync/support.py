"""What support staff and the settings page ask about a connection, and the fixes they can apply.

"Why is this contact missing?", "why do I have duplicates?", "what did the sync change?" are
answered from the store, the audit log and one look at each side; the fixes (merge duplicates,
undo a write, confirm or discard a held pass) change as little as they can and then queue a pass
so the sync carries on from there. Tenant rules are those of ``ConnectionService``: another
company's connection, or another user's for a non-admin, is simply not found.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from contactsync.contacts.model import ALL_FIELDS, Contact
from contactsync.contacts.normalize import field_key
from contactsync.engine.matching import duplicate_clusters
from contactsync.engine.plan import Plan, preview
from contactsync.providers.base import (
    AuthExpired,
    ContactDelete,
    ContactSide,
    ContactUpdate,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    ProviderError,
    RemoteContact,
)
from contactsync.providers.pipedrive import PipedrivePersons
from contactsync.runtime.messages import SyncMessage
from contactsync.runtime.queue import PassQueue
from contactsync.store import repository as repo
from contactsync.store.models import AuditEntry, Connection, Mapping, iso
from contactsync.store.pass_store import DynamoPassStore
from contactsync.sync.connections import Caller, ConnectionService
from contactsync.sync.errors import (
    ConflictError,
    ForbiddenError,
    InvalidRequest,
    NotFoundError,
    UpstreamError,
)
from contactsync.sync.ops import plain_value
from contactsync.sync.reconcile import Sides, preview_pass
from contactsync.sync.runner import PassRunner
from contactsync.sync.sides import Wiring

STATUS_PROVIDERS = ("microsoft", "google", "carddav", "pipedrive")
PROVIDER_NAMES = {
    "microsoft": "Microsoft 365",
    "google": "Google Contacts",
    "carddav": "CardDAV",
    "pipedrive": "CRM",
}
STATUS_WINDOW_MINUTES = 15
DEGRADED_SHARE = 0.20  # more than this share of passes in error ...
DEGRADED_MIN_PASSES = 5  # ... out of at least this many
HISTORY_READ = 1000  # newest audit entries looked through for one contact's history
HISTORY_SHOWN = 20
LEASE_SECONDS = 60  # how long a fix may hold the connection against passes
LEASE_WAIT_SECONDS = 8.0  # how long a fix waits for a running pass to let go
SIDE_NAMES = {"crm": "the CRM", "provider": "the provider"}
STATE_REASONS = {
    "configuring": "the connection is not started yet: nothing syncs until it is started",
    "stopped": "sync is stopped for this connection: start it again to sync",
    "paused": "sync is paused for this connection",
    "needs_reauth": "the provider sign-in has expired: reconnect the account to resume syncing",
    "needs_attention": "a pass is held by the mass-change guard and waits for a decision",
}


def connection_of(caller: Caller, connection_id: str) -> Connection:
    """The caller's connection; ``NotFoundError`` across companies or, for a non-admin, users."""
    conn = repo.get_connection(connection_id)
    if conn is None or conn.company_id != caller.company_id:
        raise NotFoundError(f"no connection {connection_id!r}")
    if not caller.is_admin and conn.user_id != caller.user_id:
        raise NotFoundError(f"no connection {connection_id!r}")
    return conn


@contextmanager
def provider_errors(what: str) -> Iterator[None]:
    """Turn a side's failure while serving a request into the admin API's errors."""
    try:
        yield
    except AuthExpired as exc:
        raise ConflictError(f"sign in again to {what}: {exc.message}") from exc
    except PermissionDenied as exc:
        raise ForbiddenError(
            f"{what} refused: {exc.message}", details={"missing_permissions": exc.missing}
        ) from exc
    except ProviderError as exc:
        raise UpstreamError(f"{what} did not answer: {exc.message}") from exc


def audit_view(entry: AuditEntry) -> dict[str, Any]:
    """An audit entry as the API shows it."""
    return {
        "id": repo.audit_entry_id(entry),
        "at": entry.at,
        "kind": entry.kind,
        "side": entry.side,
        "crm_id": entry.crm_id,
        "provider_id": entry.provider_id,
        "mapping_id": entry.mapping_id,
        "message": entry.message,
        "before": entry.before,
        "after": entry.after,
        "details": entry.details,
        "undoable": _undoable(entry),
    }


def _undoable(entry: AuditEntry) -> bool:
    """Only an update can be undone: it has both the values before and after it."""
    return entry.kind == "write" and entry.before is not None and entry.after is not None


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


def _names(entry: AuditEntry, side: str, contact_id: str, mapping: Mapping | None) -> bool:
    """Whether an audit entry is about this contact (or its link)."""
    if (entry.crm_id if side == "crm" else entry.provider_id) == contact_id:
        return True
    if mapping is not None and entry.mapping_id == mapping.mapping_id:
        return True
    details = entry.details if isinstance(entry.details, dict) else {}
    listed = details.get("crm_ids" if side == "crm" else "provider_ids") or []
    return contact_id in listed or (side == "crm" and contact_id == details.get("merged"))


@dataclass(frozen=True)
class ProviderHealth:
    provider: str
    passes: int
    errors: int
    error_codes: tuple[str, ...]

    @property
    def degraded(self) -> bool:
        return self.passes >= DEGRADED_MIN_PASSES and self.errors > DEGRADED_SHARE * self.passes

    def view(self) -> dict[str, Any]:
        share = self.errors / self.passes if self.passes else 0.0
        return {
            "provider": self.provider,
            "passes": self.passes,
            "errors": self.errors,
            "error_share": round(share, 3),
            "error_codes": list(self.error_codes),
            "degraded": self.degraded,
        }


def service_status(now: datetime) -> dict[str, Any]:
    """Per provider: passes and errors in the last 15 minutes, and whether it is degraded."""
    passes = dict.fromkeys(STATUS_PROVIDERS, 0)
    errors = dict.fromkeys(STATUS_PROVIDERS, 0)
    codes: dict[str, set[str]] = {p: set() for p in STATUS_PROVIDERS}
    for item in repo.pass_outcomes(STATUS_PROVIDERS, now, STATUS_WINDOW_MINUTES):
        passes[item.provider] += int(item.passes or 0)
        errors[item.provider] += int(item.errors or 0)
        codes[item.provider].update(item.error_codes or ())
    health = [
        ProviderHealth(p, passes[p], errors[p], tuple(sorted(codes[p]))) for p in STATUS_PROVIDERS
    ]
    return {
        "window_minutes": STATUS_WINDOW_MINUTES,
        "as_of": iso(now),
        "degraded": any(h.degraded for h in health),
        "providers": [h.view() for h in health],
    }


def public_status(now: datetime) -> dict[str, Any]:
    """What the public status page shows: per provider working or degraded, and when, from the
    same figures as :func:`service_status` but without counts or error codes."""
    full = service_status(now)
    return {
        "as_of": full["as_of"],
        "window_minutes": full["window_minutes"],
        "degraded": full["degraded"],
        "providers": [
            {
                "provider": p["provider"],
                "name": PROVIDER_NAMES.get(p["provider"], p["provider"]),
                "status": "degraded" if p["degraded"] else "working",
            }
            for p in full["providers"]
        ],
    }


class SupportService:
    """Preview, explain, duplicates, activity and undo, held passes: the support side of a
    connection. Pure orchestration over the store, the connection's two sides and the engine."""

    def __init__(self, wiring: Wiring, queue: PassQueue) -> None:
        self.wiring = wiring
        self.queue = queue
        self.connections = ConnectionService(wiring, queue)

    @property
    def clock(self) -> Callable[[], datetime]:
        return self.wiring.clock

    # --- preview -----------------------------------------------------------------------------

    def preview(self, caller: Caller, connection_id: str) -> dict[str, Any]:
        """What a full pass would do right now, computed without writing anything."""
        conn = self._signed_in(caller, connection_id)
        if not conn.folder_id:
            raise ConflictError("choose a contact folder or group before previewing the sync")
        context = PassRunner(self.wiring, self.queue).context()
        with provider_errors("the CRM or the provider"):
            plan: Plan = preview_pass(connection_id, context)
        counts = preview(plan)
        left_out = counts.pop("skipped")
        return {
            **counts,
            "left_out": left_out,
            "duplicate_candidates": [
                {
                    "crm_ids": list(d.crm_ids),
                    "provider_ids": list(d.provider_ids),
                    "key": d.key,
                    "reason": d.reason,
                }
                for d in plan.duplicates
            ],
        }

    # --- explain -----------------------------------------------------------------------------

    def explain(
        self,
        caller: Caller,
        connection_id: str,
        *,
        crm_person_id: str | None = None,
        provider_contact_id: str | None = None,
    ) -> dict[str, Any]:
        """Why one contact is, or is not, syncing, in plain words."""
        if (crm_person_id is None) == (provider_contact_id is None):
            raise InvalidRequest("give exactly one of crm_person_id and provider_contact_id")
        conn = connection_of(caller, connection_id)
        side = "crm" if crm_person_id is not None else "provider"
        contact_id = crm_person_id or provider_contact_id or ""
        if side == "crm":
            mapping = repo.mapping_by_crm_id(connection_id, contact_id)
        else:
            mapping = repo.mapping_by_provider_id(connection_id, contact_id)
        remote, unreadable = self._look_up(conn, side, contact_id)
        entries, _ = repo.list_audit(connection_id, limit=HISTORY_READ)
        history = [e for e in entries if _names(e, side, contact_id, mapping)]
        errors = [e for e in history if e.kind == "error"]
        duplicates = [e for e in history if e.kind == "duplicate"]

        reasons = self._state_reasons(conn)
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
            reasons.append(
                f"it is a possible duplicate, left for a person: {duplicates[0].message}"
            )
        if mapping is None and not history and remote is not None and remote.in_scope:
            reasons.append(
                "no sync pass has seen it yet: it is picked up by the next pass that reads it"
            )
        reasons.extend(self._waiting_reasons(conn, side, contact_id, mapping))
        if errors:
            reasons.append(f"the last error for it ({errors[0].at}): {errors[0].message}")
        syncing = (
            mapping is not None
            and not mapping.detached
            and conn.state in ("active", "syncing_initial")
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
            "history": [audit_view(e) for e in history[:HISTORY_SHOWN]],
        }

    def _waiting_reasons(
        self, conn: Connection, side: str, contact_id: str, mapping: Mapping | None
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
        if conn.state == "needs_attention":
            return [
                "a change to it (a create, a delete or a move out of scope) is part of the pass "
                "held by the mass-change guard: it waits for confirm or discard"
            ]
        until = conn.settle_until
        if until and datetime.fromisoformat(until) > self.clock():
            return [
                "a change to it (a create, a delete or a move out of scope) waits until "
                f"{until[11:19]} UTC for the rest of its burst, so that a mass change is "
                "judged whole"
            ]
        return []

    def _state_reasons(self, conn: Connection) -> list[str]:
        words = STATE_REASONS.get(conn.state)
        if words is None:
            return []
        if conn.state == "needs_attention" and conn.held_plan:
            words += f" ({conn.held_plan.get('message', '')}): confirm or discard it"
        if conn.state == "needs_reauth" and conn.last_error is not None:
            words += f" ({conn.last_error.message})"
        return [words]

    def _look_up(
        self, conn: Connection, side: str, contact_id: str
    ) -> tuple[RemoteContact | None, str]:
        """The contact as its side holds it now, or why it could not be read."""
        if side == "provider" and (conn.credentials is None or not conn.folder_id):
            return None, "the provider account is not signed in or no folder is chosen yet"
        try:
            found = self._sides(conn).of(side).fetch([contact_id])
        except AuthExpired as exc:
            return None, f"{SIDE_NAMES[side]} could not be read: sign in again ({exc.message})"
        except ProviderError as exc:
            return None, f"{SIDE_NAMES[side]} could not be read right now: {exc.message}"
        if contact_id not in found:
            return None, f"{SIDE_NAMES[side]} left it out of its answer: try again"
        return found[contact_id], ""

    # --- finding a contact to explain ----------------------------------------------------------

    def find(self, caller: Caller, connection_id: str, term: str) -> dict[str, Any]:
        """CRM persons whose name or email contains ``term``, owned by the user or not, each
        with whether it is linked: what the settings page lists before explaining one."""
        conn = connection_of(caller, connection_id)
        if len(term.strip()) < 2:
            raise InvalidRequest("type at least two characters of a name or an email")
        with provider_errors("the CRM"):
            hits = self.wiring.crm_side(conn.company_id, conn.user_id).search(term)
        found = []
        for remote in hits:
            mapping = repo.mapping_by_crm_id(connection_id, remote.id)
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

    # --- duplicates --------------------------------------------------------------------------

    def duplicates(self, caller: Caller, connection_id: str) -> dict[str, Any]:
        """Clusters of the user's CRM persons that look like one person, and the ambiguous
        matches passes recorded (left unlinked until someone decides)."""
        conn = connection_of(caller, connection_id)
        crm = self._sides(conn).crm
        with provider_errors("the CRM"):
            persons = [p for p in _full_listing(crm) if p.in_scope]
        by_id = {p.id: p for p in persons}
        clusters = []
        for group in duplicate_clusters(persons, conn.phone_region):
            members = [by_id[i] for i in sorted(group.items, key=_numeric_first)]
            listed = []
            for person in members:
                mapping = repo.mapping_by_crm_id(connection_id, person.id)
                listed.append(
                    {
                        "id": person.id,
                        "name": person.contact.full_name,
                        "linked_to": mapping.provider_id if mapping else None,
                    }
                )
            keep = next((m["id"] for m in listed if m["linked_to"]), listed[0]["id"])
            clusters.append(
                {
                    "crm_ids": [m["id"] for m in listed],
                    "keys": sorted(group.keys),
                    "persons": listed,
                    "suggested_keep": keep,
                }
            )
        entries, _ = repo.list_audit(connection_id, limit=HISTORY_READ)
        ambiguous: dict[str, dict[str, Any]] = {}
        for entry in entries:
            if entry.kind != "duplicate" or not isinstance(entry.details, dict):
                continue
            key = str(entry.details.get("key", ""))
            ambiguous.setdefault(
                key,
                {
                    "key": key,
                    "crm_ids": list(entry.details.get("crm_ids") or []),
                    "provider_ids": list(entry.details.get("provider_ids") or []),
                    "message": entry.message,
                    "seen_at": entry.at,
                },
            )
        return {"clusters": clusters, "ambiguous_matches": list(ambiguous.values())}

    def merge_duplicates(
        self, caller: Caller, connection_id: str, keep: str, merge: Sequence[str]
    ) -> dict[str, Any]:
        """Merge CRM persons into ``keep`` with the CRM's own merge, then fix the links so the
        provider side never brings a merged-away person back."""
        losers = list(dict.fromkeys(merge))
        if not losers or keep in losers:
            raise InvalidRequest("name the person to keep and at least one other to merge into it")
        conn = connection_of(caller, connection_id)
        sides = self._sides(conn)
        crm = sides.crm
        if not isinstance(crm, PipedrivePersons):
            raise ConflictError("this CRM cannot merge persons")
        results: list[dict[str, str]] = []
        with self._lease(connection_id):
            with provider_errors("the CRM"):
                found = crm.fetch([keep, *losers])
            for person_id in (keep, *losers):
                person = found.get(person_id)
                if person is None:
                    raise NotFoundError(f"no CRM person {person_id!r}")
                if not person.in_scope:
                    raise InvalidRequest(
                        f"CRM person {person_id} is not in this sync ({person.scope_reason})"
                    )
            keeper_link = repo.mapping_by_crm_id(connection_id, keep)
            for loser in losers:
                with provider_errors("the CRM"):
                    crm.merge_persons(keep, loser)
                keeper_link, link = self._relink(conn, sides, keeper_link, keep, loser)
                repo.add_audit(
                    connection_id,
                    "merge",
                    f"CRM person {loser} merged into {keep}: {link}",
                    side="crm",
                    crm_id=keep,
                    details={"kept": keep, "merged": loser, "link": link},
                    now=self.clock(),
                )
                results.append({"crm_id": loser, "link": link})
            if keeper_link is None:
                settled = self._settle_ambiguous(conn, sides, keep, {keep, *losers})
                if settled:
                    repo.add_audit(
                        connection_id,
                        "merge",
                        f"CRM person {keep} linked to provider contact {settled}: "
                        "the ambiguous match is settled",
                        side="crm",
                        crm_id=keep,
                        provider_id=settled,
                        now=self.clock(),
                    )
        self.queue.send(
            [SyncMessage(connection_id=connection_id, reason="schedule", crm_ids=[keep, *losers])]
        )
        return {"kept": keep, "merged": results}

    def _relink(
        self, conn: Connection, sides: Sides, keeper_link: Mapping | None, keep: str, loser: str
    ) -> tuple[Mapping | None, str]:
        """After a merge: a linked loser either hands its link to an unlinked keeper, or (the
        keeper being linked already) is unlinked and its provider contact deleted."""
        cid = conn.connection_id
        loser_link = repo.mapping_by_crm_id(cid, loser)
        if loser_link is None:
            return keeper_link, "it was not linked"
        if keeper_link is None:
            moved = repo.put_mapping(
                cid,
                mapping_id=loser_link.mapping_id,
                crm_id=keep,
                provider_id=loser_link.provider_id,
                base=loser_link.base_contact,
                crm_version="",  # the kept person changed: the next pass merges it afresh
                provider_version=loser_link.provider_version,
                now=self.clock(),
            )
            return moved, f"its link to provider contact {loser_link.provider_id} moved to {keep}"
        repo.delete_mapping(cid, loser_link.mapping_id)
        with provider_errors("the provider"):
            _delete_now(sides.provider, loser_link.provider_id)
        return keeper_link, f"unlinked; provider contact {loser_link.provider_id} deleted"

    def _settle_ambiguous(
        self, conn: Connection, sides: Sides, keep: str, merged: set[str]
    ) -> str | None:
        """Link the kept person to the one provider contact a pass found ambiguous because of
        the persons now merged into it. Left to the next pass, it would not be matched (only
        the changed person is read) but copied: a duplicate in the address book."""
        cid = conn.connection_id
        entries, _ = repo.list_audit(cid, limit=HISTORY_READ)
        for entry in entries:
            details = entry.details if isinstance(entry.details, dict) else {}
            if entry.kind != "duplicate":
                continue
            crm_ids = {str(i) for i in details.get("crm_ids") or []}
            provider_ids = [str(i) for i in details.get("provider_ids") or []]
            if keep not in crm_ids or not crm_ids <= merged or len(provider_ids) != 1:
                continue
            provider_id = provider_ids[0]
            if repo.mapping_by_provider_id(cid, provider_id) is not None:
                continue
            with provider_errors("the provider"):
                remote = sides.provider.fetch([provider_id]).get(provider_id)
            if remote is None or not remote.in_scope:
                continue
            repo.put_mapping(
                cid,
                crm_id=keep,
                provider_id=provider_id,
                base=remote.contact,  # the kept person's values win on the next pass
                crm_version="",
                provider_version=remote.version,
                now=self.clock(),
            )
            return provider_id
        return None

    # --- activity ----------------------------------------------------------------------------

    def activity(
        self,
        caller: Caller,
        connection_id: str,
        *,
        limit: int = 50,
        cursor: str | None = None,
        kind: str | None = None,
    ) -> dict[str, Any]:
        """A page of the connection's history, newest first."""
        connection_of(caller, connection_id)
        try:
            entries, next_cursor = repo.list_audit_page(
                connection_id, limit=limit, cursor=cursor, kind=kind
            )
        except repo.InvalidPageCursor as exc:
            raise InvalidRequest(f"cursor: {exc}") from exc
        return {"entries": [audit_view(e) for e in entries], "next_cursor": next_cursor}

    def undo(self, caller: Caller, connection_id: str, entry_id: str) -> dict[str, Any]:
        """Put back the values one update replaced, on the side it wrote; a pass then carries
        the restored values to the other side."""
        conn = connection_of(caller, connection_id)
        entry = repo.get_audit_entry(connection_id, entry_id)
        if entry is None:
            raise NotFoundError(f"no activity entry {entry_id!r}")
        if not _undoable(entry) or entry.side not in ("crm", "provider"):
            raise ConflictError(f"only updates can be undone; this entry is a {entry.kind}")
        side_name = entry.side
        contact_id = entry.crm_id if side_name == "crm" else entry.provider_id
        if not contact_id:
            raise ConflictError("the entry does not name the contact it changed")
        before = Contact.from_dict(entry.before)
        after = Contact.from_dict(entry.after)
        region = conn.phone_region
        changed = [
            f for f in ALL_FIELDS if field_key(before, f, region) != field_key(after, f, region)
        ]
        side = self._sides(conn).of(side_name)
        with self._lease(connection_id):
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
            undo_entry = repo.add_audit(
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
                now=self.clock(),
            )
        hint = [contact_id] if side_name == "crm" else []
        self.queue.send([SyncMessage(connection_id=connection_id, reason="schedule", crm_ids=hint)])
        return {"restored": carried, "entry": audit_view(undo_entry)}

    # --- a pass held by the mass-change guard ------------------------------------------------

    def confirm(self, caller: Caller, connection_id: str) -> dict[str, Any]:
        """Let the held pass go ahead: the reconciler runs it again, confirmed."""
        conn = connection_of(caller, connection_id)
        if conn.state != "needs_attention":
            raise ConflictError(f"no pass is waiting for confirmation (the sync is {conn.state})")
        repo.add_audit(
            connection_id,
            "confirm",
            "the held pass was confirmed and runs now",
            details=conn.held_plan,
            now=self.clock(),
        )
        self.queue.send([SyncMessage(connection_id=connection_id, reason="confirm")])
        return {"queued": True, "connection": self.connections.view(conn)}

    def discard(self, caller: Caller, connection_id: str) -> dict[str, Any]:
        """Drop the held pass. Nothing it planned is written; if its cause is still there the
        next pass will be held again, so the user is asked to fix the cause first."""
        conn = connection_of(caller, connection_id)
        if conn.state != "needs_attention" or conn.held_plan is None:
            raise ConflictError(f"no pass is held (the sync is {conn.state})")
        poll = timedelta(seconds=self.wiring.settings.safety_poll_seconds)
        was = str(dict(conn.held_plan).get("was") or "active")  # an initial sync stays one
        repo.update_connection(
            connection_id, state=was, held_plan=None, next_run_at=self.clock() + poll
        )
        repo.add_audit(
            connection_id,
            "discard",
            "the held pass was discarded: nothing it planned was written",
            details=conn.held_plan,
            now=self.clock(),
        )
        return {
            "discarded": True,
            "message": "fix what caused the mass change; the next pass checks again",
            "connection": self.connections.view(connection_of(caller, connection_id)),
        }

    # --- shared ------------------------------------------------------------------------------

    def _signed_in(self, caller: Caller, connection_id: str) -> Connection:
        conn = connection_of(caller, connection_id)
        if conn.credentials is None:
            raise ConflictError("finish signing in to the provider first")
        return conn

    def _sides(self, conn: Connection) -> Sides:
        view = DynamoPassStore().load_connection(conn.connection_id)
        if view is None:
            raise NotFoundError(f"no connection {conn.connection_id!r}")
        return self.wiring.sides_for(view)

    @contextmanager
    def _lease(self, connection_id: str) -> Iterator[None]:
        """Hold the connection's lease while a fix changes links and contacts, so no pass
        works from what it read before the fix."""
        owner = f"support-{uuid.uuid4().hex}"
        deadline = time.monotonic() + LEASE_WAIT_SECONDS
        while not repo.acquire_lease(connection_id, owner, LEASE_SECONDS, self.clock()):
            if time.monotonic() > deadline:
                raise ConflictError("a sync pass is working on this connection; try again shortly")
            time.sleep(0.25)
        try:
            yield
        finally:
            repo.release_lease(connection_id, owner)


def _full_listing(side: ContactSide) -> list[RemoteContact]:
    """Every contact a side lists (a full listing, page by page)."""
    contacts: dict[str, RemoteContact] = {}
    position: str | None = None
    while True:
        page = side.read(position)
        contacts.update((c.id, c) for c in page.contacts)
        position = page.position
        if page.complete:
            return list(contacts.values())


def _delete_now(side: ContactSide, contact_id: str) -> None:
    """Delete a contact at its current version (it may have changed since it was linked)."""
    current = side.fetch([contact_id]).get(contact_id)
    if current is None:
        return
    result = side.delete([ContactDelete(contact_id, current.version)])[0]
    if result.error is not None and not isinstance(result.error, NotFound):
        raise result.error


def _numeric_first(contact_id: str) -> tuple[int, str]:
    return (int(contact_id), "") if contact_id.isdigit() else (0, contact_id)
