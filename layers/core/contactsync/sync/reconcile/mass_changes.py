"""Mass changes: the settle period and the change window.

Pushes of one burst of deletes arrive over several passes, each under the guard's limit. So
creates, deletes and unlinks seen by a pass settle first: they wait a few seconds (their contacts
are kept as ids to re-read, so the cursors still advance) while updates go through, and the pass
after the settle period plans them all at once. What passes apply is added to the connection's
change window, which the guard judges with every new plan until the connection has been quiet
for a while or the user confirms a held pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from contactsync.engine.guard import counted, structural
from contactsync.engine.plan import ChangeWindow, Outcome, PassInput
from contactsync.store.pass_interface import ConnectionView
from contactsync.sync.connection_states import ConnectionState
from contactsync.sync.reconcile.context import PassScope
from contactsync.sync.reconcile.hints import Hints, too_many_to_keep

# The change window closes after this long without a create, delete or unlink.
WINDOW_QUIET = timedelta(hours=1)


def open_window(conn: ConnectionView, now: datetime) -> ChangeWindow | None:
    """The change window, unless the connection has been quiet long enough to close it."""
    raw = conn.change_window
    if not raw or conn.state == ConnectionState.SYNCING_INITIAL:
        return None
    if datetime.fromisoformat(str(raw["last"])) <= now - WINDOW_QUIET:
        return None
    return ChangeWindow(
        reference=int(raw.get("reference", 0)),
        creates=int(raw.get("creates", 0)),
        deletes=int(raw.get("deletes", 0)),
        unlinks=int(raw.get("unlinks", 0)),
    )


class Settling:
    """What one pass leaves for the pass after the settle period, and until when."""

    def __init__(self, scope: PassScope) -> None:
        self.scope = scope
        # The ids, per side, of the contacts whose creates, deletes and unlinks wait: re-read by
        # the pass after the settle period.
        self.waiting: dict[str, set[str]] = {"crm": set(), "provider": set()}
        self.until = self._still_settling()  # the settle period's end ("": none)

    def _still_settling(self) -> str:
        """The end of the current settle period if it has not passed ("" otherwise)."""
        until = self.scope.conn.settle_until
        if until and datetime.fromisoformat(until) > self.scope.ctx.clock():
            return until
        return ""

    def anything_waits(self) -> bool:
        return any(self.waiting.values())

    def settle(
        self, outcomes: list[Outcome], pass_input: PassInput, counts: dict[str, int]
    ) -> list[Outcome]:
        """What to apply now. Creates, deletes and unlinks wait until the settle period that
        the first of them opened has passed (a confirmed pass and the initial sync never wait),
        so the pass after it sees the whole burst and the guard judges it at once."""
        conn, ctx = self.scope.conn, self.scope.ctx
        if (
            ctx.settle_seconds <= 0
            or self.scope.confirmed
            or conn.state == ConnectionState.SYNCING_INITIAL
        ):
            self.until = ""
            return outcomes
        if conn.settle_until and not self.until:
            return outcomes  # the settle period is over: everything that waited goes now
        waiting = [o for o in outcomes if structural(o)]
        if not waiting:
            return outcomes
        if not self.until:
            self.until = (ctx.clock() + timedelta(seconds=ctx.settle_seconds)).isoformat()
        # Both contacts of a pair are read again, whatever the outcome names: a pair whose CRM
        # person was deleted and is to be made again names no CRM id, and the next pass must
        # still learn that it is gone (else it would plan an update of it).
        linked = {p.mapping.mapping_id: p.mapping for p in pass_input.pairs}
        for outcome in waiting:
            mapping = linked.get(outcome.mapping_id)
            ids = [("crm", outcome.crm_id), ("provider", outcome.provider_id)]
            if mapping is not None:
                ids += [("crm", mapping.crm_id), ("provider", mapping.provider_id)]
            for side, contact_id in ids:
                if contact_id:
                    self.waiting[side].add(contact_id)
        counts["waiting"] = len(waiting)
        return [o for o in outcomes if not structural(o)]

    def wait_and_count(
        self,
        outcomes: Sequence[Outcome],
        pass_input: PassInput,
        *,
        listed_in_full: bool,
        hints: Hints,
    ) -> dict[str, Any]:
        """Remember what waits (before the cursors can advance past it) and add what this pass
        applies to the change window. Returns the connection's changes."""
        conn = self.scope.conn
        changes: dict[str, Any] = {"settle_until": self.until}
        if too_many_to_keep(self.waiting, conn):
            changes["list_in_full"] = True  # too many to re-read by id: list both sides
        elif self.anything_waits():
            hints.add(sorted(self.waiting["crm"]), sorted(self.waiting["provider"]))
        if listed_in_full and "list_in_full" not in changes:
            changes["list_in_full"] = False
        if self.scope.confirmed or conn.state == ConnectionState.SYNCING_INITIAL:
            changes["change_window"] = None  # confirmed whole, or an initial sync: start afresh
            return changes
        now = self.scope.ctx.clock().isoformat()
        added = counted(pass_input, outcomes)
        if not (added.creates or added.deletes or added.unlinks):
            if pass_input.window is None and conn.change_window is not None:
                changes["change_window"] = None  # quiet long enough: closed
            return changes
        raw = dict(conn.change_window or {}) if pass_input.window is not None else {}
        if not raw:
            raw = {"since": now, "reference": added.reference}
        for name in ("creates", "deletes", "unlinks"):
            raw[name] = int(raw.get(name, 0)) + getattr(added, name)
        raw["last"] = now
        changes["change_window"] = raw
        return changes
