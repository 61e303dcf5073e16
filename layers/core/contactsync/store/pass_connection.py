"""What one pass read of its connection item, so that it writes only what the pass changes: the
item as a ``ConnectionView``, and a pass's changes as item attributes, without those that
already hold their value."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pynamodb.attributes import MapAttribute

from contactsync.store.models import Connection, LastError, Progress, iso, utcnow
from contactsync.store.pass_interface import ConnectionView


def _mapped_count(counts: Any) -> int:
    """The pass-kept number of mappings from the connection's free-form ``counts`` map."""
    values: dict[str, Any] = counts.as_dict() if counts else {}
    return int(values.get("mapped", 0))


def _view(conn: Connection | None) -> ConnectionView | None:
    if conn is None:
        return None
    return ConnectionView(
        connection_id=conn.connection_id,
        company_id=conn.company_id,
        user_id=conn.user_id,
        provider=conn.provider,
        state=conn.state,
        direction=conn.direction,
        conflict_policy=conn.conflict_policy,
        phone_region=conn.phone_region,
        visible_to=int(conn.visible_to) if conn.visible_to is not None else None,
        folder_id=conn.folder_id or "",
        inflight_ops=tuple(str(op) for op in conn.inflight_ops or ()),
        inflight_at=conn.inflight_at or "",
        plan_open=bool(conn.plan_open),
        held=conn.held_plan,
        progress=dict(conn.progress.as_dict()) if conn.progress else {},
        mapped_count=_mapped_count(conn.counts),
        poll_seconds=int(conn.poll_seconds or 0),
        last_full_at=conn.last_full_at or "",
        pending_crm_ids=tuple(sorted(conn.pending_crm_ids or ())),
        pending_provider_ids=tuple(sorted(conn.pending_provider_ids or ())),
        hints_added=int(conn.hints_added or 0),
        failures=int(conn.last_error.repeats or 0) if conn.last_error else 0,
        change_window=conn.change_window,
        settle_until=conn.settle_until or "",
        list_in_full=bool(conn.list_in_full),
    )


# What only passes write (under the lease): a change to the value the pass read is skipped. The
# rest (state, held, ...) the user changes too, so a pass always writes what it sets.
_PASS_OWNED = frozenset(
    {
        "last_error",
        "poll_seconds",
        "plan_open",
        "counts",
        "limits",
        "inflight_ops",
        "inflight_at",
        "progress",
        "change_window",
        "settle_until",
        "list_in_full",
        "last_full_at",
    }
)


def attribute_values(changes: dict[str, Any]) -> dict[str, Any]:
    """A pass's connection changes as item attributes."""
    values: dict[str, Any] = {}
    for name, value in changes.items():
        if name == "held":
            values["held_plan"] = value
        elif name == "progress":
            values["progress"] = Progress(**value) if value is not None else None
        elif name == "last_error":
            values["last_error"] = LastError(**value) if value is not None else None
        elif name == "mapped_count":
            values.setdefault("counts", {})["mapped"] = value
        elif name == "settle_until":
            values["settle_until"] = value or None
        else:
            values[name] = value
    return values


def _same(attribute: Any, stored: Any, value: Any) -> bool:
    def plain(v: Any) -> Any:
        if v is None:
            return None
        if isinstance(v, dict) and isinstance(attribute, MapAttribute):
            v = type(attribute)(**v) if type(attribute) is not MapAttribute else v
        try:
            return attribute.serialize(v)
        except (AttributeError, TypeError, ValueError):
            return v

    empty: tuple[Any, ...] = (None, [], {}, "")
    if stored in empty and value in empty:
        return True
    return bool(plain(stored) == plain(value))


def _schedule_stands(item: Connection, wanted: Any) -> bool:
    """A pass asks for its connection's next pass no later than ``wanted``. A schedule still
    to come that is no later than that stands: moving it would cost a DueIndex key move (two
    index writes) to make a pass come later. So a pushed pass between two safety polls leaves
    the next poll where it is; a pass that was due (the schedule is past) always moves it."""
    if not isinstance(wanted, datetime) or not item.next_run_at or item.claimed_until:
        return False  # unscheduling, not scheduled, or a scheduler's claim to end
    stands = datetime.fromisoformat(item.next_run_at)
    return utcnow() < stands <= wanted


class ReadConnections:
    """The connection items as one pass read them (a new one per pass)."""

    def __init__(self) -> None:
        self._items: dict[str, Connection] = {}

    def remember(self, conn: Connection | None) -> ConnectionView | None:
        if conn is not None:
            self._items[conn.connection_id] = conn
        return _view(conn)

    def changed(self, connection_id: str, values: dict[str, Any]) -> dict[str, Any]:
        """``values`` without the pass-owned attributes that already hold them, and without a
        next run when the schedule stands (``_schedule_stands``)."""
        item = self._items.get(connection_id)
        if item is None:
            return values
        attributes = Connection.get_attributes()
        return {
            name: value
            for name, value in values.items()
            if not (
                (name == "next_run_at" and _schedule_stands(item, value))
                or (name in _PASS_OWNED and _same(attributes[name], getattr(item, name), value))
            )
        }

    def written(self, connection_id: str, values: dict[str, Any]) -> None:
        item = self._items.get(connection_id)
        if item is not None:
            for name, value in values.items():
                if name == "next_run_at":
                    item.next_run_at = iso(value) if isinstance(value, datetime) else value
                    item.claimed_until = None
                else:
                    setattr(item, name, value)
