"""A connection and an activity entry as the admin API shows them, and what the ids in its
paths look like (``*_PATTERN``: the store's, named here for the API)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from contactsync.store.audit import AUDIT_ENTRY_ID_PATTERN, audit_entry_id
from contactsync.store.cursors import get_cursor
from contactsync.store.keys import OWNER_ID_PATTERN
from contactsync.store.models import AuditEntryItem, Connection
from contactsync.store.subscriptions import subscriptions_of

__all__ = [
    "AUDIT_ENTRY_ID_PATTERN",
    "HISTORY_READ",
    "OWNER_ID_PATTERN",
    "SIDE_NAMES",
    "VISIBILITIES",
    "audit_view",
    "connection_view",
    "undoable",
]

# The CRM's visible_to for the persons a sync creates: owner only, the owner's visibility group,
# the entire company (Pipedrive's Professional / Enterprise values; the CRM refuses others).
VISIBILITIES = {"owner": 1, "group": 3, "company": 7}
SIDE_NAMES = {"crm": "the CRM", "provider": "the provider"}
# Newest AuditIndex rows read for one contact's history, or for a connection's duplicate
# findings (one Query: a row is about 200 bytes, so at most about 25 read units).
HISTORY_READ = 1000


def connection_view(conn: Connection, now: datetime) -> dict[str, Any]:
    """A connection as the settings page shows it, with its live status."""
    progress = dict(conn.progress.as_dict()) if conn.progress else {}
    eta = _eta_seconds(progress, now)
    if eta is not None:
        progress["eta_seconds"] = eta
    last_error = dict(conn.last_error.as_dict()) if conn.last_error else None
    taken = [c.taken_at for s in ("crm", "provider") if (c := get_cursor(
        conn.connection_id, s)) is not None and c.taken_at]  # fmt: skip
    expiries = [sub.expires_at_iso for sub in subscriptions_of(conn)]
    counts: Any = conn.counts  # a raw MapAttribute: name -> number
    return {
        "id": conn.connection_id,
        "user_id": conn.user_id,
        "provider": conn.provider,
        "account": conn.provider_account_email,
        "state": conn.state,
        "direction": conn.direction,
        "folder": {"id": conn.folder_id, "name": conn.folder_name} if conn.folder_id else None,
        "conflict_policy": conn.conflict_policy,
        "phone_region": conn.phone_region,
        "visibility": _visibility_name(conn.visible_to),
        "progress": progress,
        "last_success_at": conn.last_success_at,
        "last_error": last_error,
        "held": conn.held_plan,
        "counts": dict(counts.as_dict()) if counts else {},
        "limits": list(conn.limits or []),
        "cursor_age_seconds": _age_seconds(_changes_read_at(taken, conn), now) if taken else None,
        "subscription_expires_at": min(expiries) if expiries else None,
        "next_run_at": conn.next_run_at,
        "poll_seconds": int(conn.poll_seconds or 0),
        "created_at": conn.created_at,
        "updated_at": conn.updated_at,
    }


def audit_view(entry: AuditEntryItem) -> dict[str, Any]:
    """An audit entry as the API shows it."""
    return {
        "id": audit_entry_id(entry),
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
        "undoable": undoable(entry),
    }


def undoable(entry: AuditEntryItem) -> bool:
    """Only an update can be undone: it has both the values before and after it."""
    return entry.kind == "write" and entry.before is not None and entry.after is not None


def _changes_read_at(taken: list[str], conn: Connection) -> str:
    """When both sides' changes were last read: a pass that found nothing new leaves its
    cursors as they were (``taken_at`` is when they last moved) and says when it ended."""
    read = min(taken)
    last = conn.last_success_at
    return max(read, last, key=datetime.fromisoformat) if last else read


def _age_seconds(moment: str, now: datetime) -> int:
    return max(0, int((now - datetime.fromisoformat(moment)).total_seconds()))


def _eta_seconds(progress: dict[str, Any], now: datetime) -> int | None:
    """Time left in an initial sync, at the pace it has kept so far."""
    done, total = int(progress.get("done") or 0), int(progress.get("total") or 0)
    started = progress.get("started_at")
    if progress.get("phase") != "writing" or not started or done <= 0 or total <= done:
        return None
    per_item = _age_seconds(str(started), now) / done
    return round(per_item * (total - done))


def _visibility_name(visible_to: Any) -> str | None:
    """The setting's name for a stored ``visible_to`` (None: the CRM's default applies)."""
    if visible_to is None:
        return None
    return next((k for k, v in VISIBILITIES.items() if v == int(visible_to)), None)
