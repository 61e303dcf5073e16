"""Applying pending writes in order, a chunk (one store round trip) at a time, within the pass's
time budget; the cursors advance last, once everything before them is applied."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from contactsync.providers.base import (
    AuthExpired,
    PermissionDenied,
    ProviderError,
    RateLimited,
    WriteResult,
)
from contactsync.store.pass_interface import SIDES, AuditEntry, Cursor
from contactsync.store.pending import PendingOp
from contactsync.sync.reconcile.context import PassScope
from contactsync.sync.reconcile.hints import Hints
from contactsync.sync.reconcile.look_around import CrmLookAround
from contactsync.sync.reconcile.recording import (
    deleted_copy_entry,
    prior_to_read,
    record,
    unclaimed_entry,
)
from contactsync.sync.reconcile.sending import Sender, Sent

# Pending writes applied per round trip to the store; adapters batch within it, so it is a
# multiple of the providers' batch maxima (Google 200, Graph 20).
CHUNK = 200
# The CRM has no batch writes: each is a request, paced by the user's burst limit (about 20 a
# second). A chunk holds at most this many, so the pass looks at its deadline every few seconds.
CRM_WRITES_PER_CHUNK = 40


def chunks(work: Sequence[PendingOp]) -> Iterator[list[PendingOp]]:
    """The ops to apply, a store round trip at a time: at most CHUNK of them, holding at most
    CRM_WRITES_PER_CHUNK CRM writes."""
    chunk: list[PendingOp] = []
    crm_writes = 0
    for op in work:
        writes = sum(1 for w in op.writes if w.side == "crm")
        if chunk and (len(chunk) == CHUNK or crm_writes + writes > CRM_WRITES_PER_CHUNK):
            yield chunk
            chunk, crm_writes = [], 0
        chunk.append(op)
        crm_writes += writes
    if chunk:
        yield chunk


class Applier:
    """Applies one pass's pending writes, keeping the connection's progress and its count of
    linked pairs as it goes."""

    def __init__(self, scope: PassScope, counts: dict[str, int], hints: Hints) -> None:
        self.scope = scope
        self.counts = counts
        self.hints = hints
        self.look = CrmLookAround(scope, counts)
        self.sender = Sender(scope, counts, self.look)
        self.progress = dict(scope.conn.progress)
        # Counting mappings reads every one of them: only a full listing (O(contacts) anyway)
        # pays for that; other passes adjust the stored count by what they link and unlink.
        self.mapped = scope.conn.mapped_count
        self.refusals = 0  # the most writes in a row refused as stale, of the pairs refused now

    def apply(self, ops: Sequence[PendingOp], *, recovering: set[str], initial: bool) -> bool:
        """Apply pending writes in order, a chunk at a time. False when time ran out.
        ``recovering``: the ops a dead pass may have sent; ``initial``: the initial sync (its
        progress is shown)."""
        store, cid = self.scope.store, self.scope.cid
        ordered = sorted(ops, key=lambda o: o.op_id)
        work = [o for o in ordered if not o.is_cursor_op]
        cursor_ops = [o for o in ordered if o.is_cursor_op]
        self.look.begin(work, cursor_ops)
        self.sender.lost.begin(work)
        start = 0
        planned = list(chunks(work))
        for n, chunk in enumerate(planned, 1):
            if self.scope.out_of_time():
                return False
            if start > 0 and self.scope.stopped():
                # Stopped meanwhile: the writes not sent yet are dropped; a restart re-lists in
                # full and plans them again from the bases, which they never changed.
                store.drop_pending(cid, [o.op_id for o in work[start:] + cursor_ops])
                return False
            start += len(chunk)
            self.sender.too_soon_to_tell(chunk, recovering)
            store.update_connection(
                cid,
                inflight_ops=[o.op_id for o in chunk],
                inflight_at=self.scope.ctx.clock().isoformat(),
            )
            self._apply_chunk(chunk, recovering)
            if initial:
                done = int(self.progress.get("done", 0)) + len(chunk)
                total = max(int(self.progress.get("total", 0)), done)
                self.progress = {**self.progress, "phase": "writing", "done": done, "total": total}
                store.update_connection(
                    cid, inflight_ops=[], progress=self.progress, mapped_count=self.mapped
                )
            elif n < len(planned) or not cursor_ops:
                store.update_connection(cid, inflight_ops=[], mapped_count=self.mapped)
            # (else the pass's closing write clears them, with the count, once the cursors have
            # advanced: nothing is sent in between, and a plan made after a crash there clears
            # them first)
        for op in cursor_ops:
            self.advance_cursors(op, stored=True)
        return True

    def advance_cursors(self, op: PendingOp, *, stored: bool) -> None:
        """Save the cursors a plan's last op carries, then drop the op (``stored``: it was
        saved as a pending op)."""
        store, cid = self.scope.store, self.scope.cid
        self.scope.ctx.crash_point("before_cursor_advance")
        for side_name, fields in op.cursors.items():
            store.save_cursor(cid, side_name, Cursor(**fields))
        if stored:
            store.drop_pending(cid, [op.op_id])

    def _apply_chunk(self, chunk: Sequence[PendingOp], recovering: set[str]) -> None:
        sent = Sent()
        retry_error: ProviderError | None = None
        try:
            for side_name in SIDES:
                try:
                    self.sender.send(side_name, chunk, recovering, sent)
                except (RateLimited, AuthExpired) as exc:
                    retry_error = exc
                    break
        finally:
            self.sender.write_receipts(chunk, sent)
        self.scope.ctx.crash_point("after_provider_call")
        finished: list[str] = []
        audit: list[AuditEntry] = []
        for op in chunk:
            if op.op_id in self.look.unclaimed:
                finished.append(op.op_id)  # nothing sent: planned again from a fresh read
                audit.append(unclaimed_entry(op))
                continue
            op_results = [sent.results.get((op.op_id, w.side)) for w in op.writes]
            if any(r is None for r in op_results):
                continue  # not sent (the side stopped us): stays pending
            outcome = [r for r in op_results if r is not None]
            if any(_stops_the_side(r.error) for r in outcome):
                if retry_error is None and (err := _first_error(outcome)) is not None:
                    retry_error = err
                continue
            self.scope.ctx.crash_point("before_mapping_write")
            audit.extend(self._record(op, outcome, sent))
            if op.op_id in self.sender.lost.proved:
                audit.append(deleted_copy_entry(op))
            finished.append(op.op_id)
        store, cid = self.scope.store, self.scope.cid
        if audit:
            store.audit(cid, audit)
        if sent.recheck:
            self.hints.read_again(sent.recheck)
        if finished:
            store.drop_pending(cid, finished)
        if retry_error is not None:
            raise retry_error

    def _record(
        self, op: PendingOp, results: Sequence[WriteResult], sent: Sent
    ) -> tuple[AuditEntry, ...]:
        """Record what a pending write achieved: ids, versions, the new base, the audit."""
        store, cid = self.scope.store, self.scope.cid
        linked_instead = op.op_id in self.look.linked_instead
        wanted = prior_to_read(op, results, linked_instead=linked_instead)
        prior = store.mapping_for(cid, *wanted) if wanted is not None else None
        done = record(op, results, linked_instead=linked_instead, prior=prior)
        for person_id, person in done.made_in_crm:
            self.look.settle_claims(person_id, person)
        if done.mapping is not None:
            store.save_mapping(cid, done.mapping)
        elif done.drop:
            store.drop_mapping(cid, op.mapping_id)
        self.mapped += done.linked_change
        self.refusals = max(self.refusals, done.refusals)
        sent.recheck.extend(done.recheck)
        for tally, n in done.tallies.items():
            self.counts[tally] = self.counts.get(tally, 0) + n
        return done.audit


def _stops_the_side(error: ProviderError | None) -> bool:
    """Errors that are about the side, not the contact: the write stays pending (a missing
    permission too: the pass fails and says so in status until someone grants it)."""
    return error is not None and (
        error.retryable or isinstance(error, AuthExpired | PermissionDenied)
    )


def _first_error(results: Sequence[WriteResult]) -> ProviderError | None:
    for result in results:
        if _stops_the_side(result.error):
            return result.error
    return None
