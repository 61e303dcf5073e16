"""One pass, step by step: finish pending writes, read both sides, plan, save the plan as pending
writes (cursors last), apply them, and say how it went."""

from __future__ import annotations

from typing import Any

from contactsync.engine.plan import Outcome
from contactsync.providers.base import ProviderError
from contactsync.runtime.messages import Reason
from contactsync.store.pass_interface import AuditEntry
from contactsync.store.pending import CURSOR_OP_ID, PendingOp
from contactsync.sync.connection_states import ConnectionState, transition
from contactsync.sync.reconcile.chunks import Applier
from contactsync.sync.reconcile.context import PassScope
from contactsync.sync.reconcile.engine_input import Planned, plan_changes
from contactsync.sync.reconcile.feeds import SideChanges, lists_in_full, read_side
from contactsync.sync.reconcile.findings import record_clusters, record_findings
from contactsync.sync.reconcile.hints import Hints, keep_hints
from contactsync.sync.reconcile.mass_changes import Settling
from contactsync.sync.reconcile.status import (
    PassEnd,
    PassResult,
    Status,
    closing,
    error_status,
    hold,
    was_active,
)


class SyncPass:
    """One pass over one connection, in the order that makes a crash at any point safe."""

    def __init__(self, scope: PassScope) -> None:
        self.scope = scope
        self.state = scope.conn.state  # as the pass leaves it: a confirmed pass moves it on
        self.counts: dict[str, int] = {}
        self.hints = Hints(scope)
        self.settling = Settling(scope)
        self.applier = Applier(scope, self.counts, self.hints)
        self.listed_in_full = False
        self.closing: dict[str, Any] = {}  # the connection's changes as the pass ends

    def run(self) -> PassResult:
        store, conn = self.scope.store, self.scope.conn
        pending = store.pending(self.scope.cid)
        if pending and conn.plan_open:
            pending = self._drop_unsent(pending)
        if pending:
            if not self._apply(pending, recovering=set(conn.inflight_ops)):
                return self.result("continue", "work left over for the next pass")
            if self.scope.out_of_time():
                return self.result("continue", "pending writes finished; changes not read yet")

        crm, provider = self._read(lists_in_full(self.scope))
        planned = plan_changes(
            self.scope, crm, provider, mapped=self.applier.mapped, counts=self.counts
        )
        self.applier.mapped = planned.mapped
        record_findings(
            self.scope,
            planned.plan,
            full_listing=self.listed_in_full,
            found_ids=planned.found_ids,
            counts=self.counts,
        )
        if crm.full:
            record_clusters(self.scope, crm)
        if planned.plan.held is not None:
            return hold(self.scope, planned.plan)

        now_or_later = [o for o in planned.plan.outcomes if planned.worth_saving(o)]
        outcomes = self.settling.settle(now_or_later, planned.pass_input, self.counts)
        ops = planned.pending_ops(outcomes)
        clock = self.scope.ctx.clock
        cursors = {"crm": crm.cursor_dict(clock()), "provider": provider.cursor_dict(clock())}
        ops.append(PendingOp(op_id=CURSOR_OP_ID, cursors=cursors))
        if self.scope.stopped():  # stopped (or signed out) while this pass read: write nothing
            return PassResult("skipped", "the connection stopped during the pass")
        self._open_plan(planned, outcomes, work=len(ops) - 1)
        if len(ops) == 1:  # nothing to write: no plan is stored, the cursors advance now
            self.applier.advance_cursors(ops[0], stored=False)
            return self.result("done", "pass complete")
        store.save_pending(self.scope.cid, ops)
        self.scope.ctx.crash_point("after_pending")
        if not self._apply(ops, recovering=set()):
            return self.result("continue", "work left over for the next pass")
        return self.result("done", "pass complete")

    def fail(self, exc: ProviderError, *, counted: bool = True) -> int:
        """Say in status why the pass stopped; returns the failed passes in a row."""
        store, conn = self.scope.store, self.scope.conn
        keep_hints(store, conn, self.scope.message)
        failures = conn.failures + 1 if counted else conn.failures
        error = error_status(exc, failures, self.scope.ctx.clock())
        store.update_connection(self.scope.cid, last_error=error)
        store.audit(self.scope.cid, [AuditEntry(kind="error", message=exc.message)])
        return failures

    def _apply(self, ops: list[PendingOp], *, recovering: set[str]) -> bool:
        initial = self.state == ConnectionState.SYNCING_INITIAL
        return self.applier.apply(ops, recovering=recovering, initial=initial)

    def _drop_unsent(self, pending: list[PendingOp]) -> list[PendingOp]:
        """The pass that planned these died. What it may have sent is finished (receipts, tags);
        the rest, its cursors too, is dropped and planned again from fresh reads: a plan made
        before the crash may no longer fit (another sync may have made the same contact)."""
        inflight = set(self.scope.conn.inflight_ops)
        unsent = [o for o in pending if o.op_id not in inflight and not o.receipts]
        if unsent:
            self.scope.store.drop_pending(self.scope.cid, [o.op_id for o in unsent])
        return [o for o in pending if o.op_id in inflight or o.receipts]

    def _read(self, full: bool) -> tuple[SideChanges, SideChanges]:
        """Both sides' changes, with the contacts the connection asked to re-read by id."""
        crm = read_side(self.scope, "crm", full)
        self.counts["crm_read"] = crm.read
        provider = read_side(self.scope, "provider", full)
        self.counts["provider_read"] = provider.read
        self.listed_in_full = crm.full and provider.full
        crm_ids, provider_ids = self.hints.to_read()
        sides = self.scope.sides
        crm.add_fetched(sides.crm.fetch(crm_ids) if crm_ids else {})
        provider.add_fetched(sides.provider.fetch(provider_ids) if provider_ids else {})
        return crm, provider

    def _open_plan(self, planned: Planned, outcomes: list[Outcome], *, work: int) -> None:
        """Mark the connection's plan open (written before the plan: a crash may follow), with
        what waits, the change window, and for a confirmed pass the state it goes back to."""
        # (a plan of nothing but the cursors is never stored: nothing of it can be left open)
        opened: dict[str, Any] = {"plan_open": True} if work else {}
        opened["inflight_ops"] = []  # none of this plan's ids is in flight yet
        opened.update(
            self.settling.wait_and_count(
                outcomes, planned.pass_input, listed_in_full=self.listed_in_full, hints=self.hints
            )
        )
        if self.state == ConnectionState.NEEDS_ATTENTION:
            # Confirmed: the user waits on nothing now, and the passes that finish this plan
            # (continuations) must not be turned away as if it were still held.
            was = str((self.scope.conn.held or {}).get("was") or ConnectionState.ACTIVE)
            self.state = transition(self.state, was)
            opened.update(state=self.state, held=None)
        if self.state == ConnectionState.SYNCING_INITIAL:
            self.applier.progress = {
                "phase": "writing",
                "done": 0,
                "total": work,
                "started_at": self.scope.ctx.clock().isoformat(),
            }
            opened["progress"] = self.applier.progress
        self.scope.store.update_connection(self.scope.cid, **opened)

    def result(self, status: Status, message: str) -> PassResult:
        """Forget the hints read, and say in status how the pass ended."""
        scope, sides = self.scope, self.scope.sides
        self.hints.finish(self.settling.waiting)
        if status == "continue":
            # handed to the next pass
            scope.store.update_connection(
                scope.cid, plan_open=False, inflight_ops=[], mapped_count=self.applier.mapped
            )
            waits = scope.confirmed and self.state == ConnectionState.NEEDS_ATTENTION
            going_on: Reason = "confirm" if waits else "continuation"
            return PassResult(status, message, counts=self.counts, continue_as=going_on)
        now = scope.ctx.clock()
        interval = scope.ctx.polling.next_interval(
            scope.conn.provider, scope.conn.poll_seconds, was_active(self.counts)
        )
        crm_limits, provider_limits = sides.crm.limits, sides.provider.limits
        limits = None
        if crm_limits is not None and provider_limits is not None:  # both known this pass
            limits = [*crm_limits, *provider_limits]
        end = PassEnd(
            now=now,
            state=self.state,
            counts=self.counts,
            interval=interval,
            mapped=self.applier.mapped,
            limits=limits,
            listed_in_full=self.listed_in_full,
            refusals=self.applier.refusals,
            settle_until=self.settling.until if self.settling.anything_waits() else "",
            unclaimed=bool(self.applier.look.unclaimed),
        )
        # Written as the lease is given back (one write): see ``run_pass``.
        self.closing, answer = closing(status, message, end)
        return answer
