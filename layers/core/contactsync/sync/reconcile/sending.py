"""Sending a chunk's writes to one side, and never making a contact twice: the id a create made
is written down (a receipt) as soon as the side answered; a create whose answer was lost is looked
for by our tag at once, and by the pass after before it is sent again (once the side's listings
can show it), and not sent again when the side's feed proves the copy made and deleted by the
user since (``lost_copies``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from contactsync.engine.plan import Write
from contactsync.providers.base import (
    ContactDelete,
    ContactSide,
    ContactUpdate,
    NewContact,
    ProviderError,
    RemoteContact,
    Transient,
    WriteResult,
)
from contactsync.store.pending import PendingOp
from contactsync.sync.reconcile.context import PassScope
from contactsync.sync.reconcile.look_around import CrmLookAround
from contactsync.sync.reconcile.lost_copies import LostCopies, Unfound


class TooSoonToTell(Exception):
    """A create of the pass before was sent and its answer lost, and the side's listings may
    not show the copy yet: the pass waits this long before it looks for it."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"a contact made as its answer was lost: looked for in {retry_after:.0f}s")
        self.retry_after = retry_after


@dataclass
class Sent:
    """What sending a chunk produced, kept as each call returns (a later call may fail)."""

    results: dict[tuple[str, str], WriteResult] = field(default_factory=dict)  # (op id, side)
    recheck: list[tuple[str, str]] = field(default_factory=list)  # (CRM id, provider id)


class Sender:
    def __init__(self, scope: PassScope, counts: dict[str, int], look: CrmLookAround) -> None:
        self.scope = scope
        self.counts = counts
        self.look = look
        self.lost = LostCopies(scope)

    def too_soon_to_tell(self, chunk: Sequence[PendingOp], recovering: set[str]) -> None:
        """Raise TooSoonToTell if this chunk finishes creates of the pass before whose answers
        were lost, sent more recently than their side's listings lag (Google's are minutes
        late): the look-up by our tag might not find the copy yet, and make it a second time."""
        sent_at = self.scope.conn.inflight_at
        if not sent_at:
            return
        lags = [
            self.scope.sides.of(w.side).listing_lag
            for op in chunk
            if op.op_id in recovering
            for w in op.writes
            if w.kind == "create" and w.side not in op.receipts
        ]
        if not lags:
            return
        ready = datetime.fromisoformat(sent_at) + max(lags)
        if (now := self.scope.ctx.clock()) < ready:
            raise TooSoonToTell(max((ready - now).total_seconds(), 1.0))

    def send(
        self, side_name: str, chunk: Sequence[PendingOp], recovering: set[str], sent: Sent
    ) -> None:
        """Send the chunk's writes for one side, recording each result in ``sent`` as soon as
        its call returns (so creates done before a later call fails still get receipts)."""
        side = self.scope.sides.of(side_name)
        out = sent.results
        before = len(out)
        creates: list[tuple[PendingOp, Write]] = []
        unfound: list[Unfound] = []
        updates: list[tuple[PendingOp, Write]] = []
        deletes: list[tuple[PendingOp, Write]] = []
        for op in chunk:
            for write in op.writes:
                if write.side != side_name:
                    continue
                if write.kind == "create":
                    receipt = op.receipts.get(side_name)
                    if receipt:
                        # Made before the last attempt died: finished from its receipt. The
                        # next read shows it (changed, or deleted by the user meanwhile).
                        remote = RemoteContact(receipt, write.after)
                        out[(op.op_id, side_name)] = WriteResult(key=receipt, remote=remote)
                        continue
                    if op.op_id in recovering:
                        # The last attempt may have created it before crashing: look for our tag.
                        found = side.find_tagged(op.mapping_id)
                        if found is not None:
                            out[(op.op_id, side_name)] = WriteResult(key=found.id, remote=found)
                            continue
                        unfound.append(Unfound(op.op_id, op.mapping_id))
                    creates.append((op, write))
                elif write.kind == "update":
                    updates.append((op, write))
                else:
                    deletes.append((op, write))
        if unfound:
            # Made, then deleted by the user before a pass recorded it: recorded now under the
            # id it had, as a receipt would; the pass reads its delete next and follows it.
            made_and_deleted = self.lost.deleted_of(side_name, unfound)
            kept = []
            for op, write in creates:
                if (copy_id := made_and_deleted.get(op.op_id)) is not None:
                    remote = RemoteContact(copy_id, write.after)
                    out[(op.op_id, side_name)] = WriteResult(key=copy_id, remote=remote)
                else:
                    kept.append((op, write))
            creates = kept
        if creates and side_name == "crm":
            creates, linked = self.look.made_meanwhile(creates)
            for op_id, remote in linked.items():
                out[(op_id, "crm")] = WriteResult(key=remote.id, remote=remote)
            creates, again = self.look.claimed(creates)
            sent.recheck.extend(again)
            if creates:
                self.scope.ctx.crash_point("before_create")
        if creates:
            made = side.create(
                [NewContact(tag=op.mapping_id, contact=w.after) for op, w in creates]
            )
            made = self._found_where_lost(side, [op for op, _ in creates], made)
            for (op, _), result in zip(creates, made, strict=True):
                out[(op.op_id, side_name)] = result
        if updates:
            changed = side.update(
                [
                    ContactUpdate(id=w.target_id, version=w.version, before=w.before, after=w.after)
                    for _, w in updates
                ]
            )
            for (op, _), result in zip(updates, changed, strict=True):
                out[(op.op_id, side_name)] = result
        if deletes:
            gone = side.delete(
                [ContactDelete(id=w.target_id, version=w.version) for _, w in deletes]
            )
            for (op, _), result in zip(deletes, gone, strict=True):
                out[(op.op_id, side_name)] = result
        key = f"{side_name}_writes"
        self.counts[key] = self.counts.get(key, 0) + len(out) - before

    def _found_where_lost(
        self, side: ContactSide, ops: Sequence[PendingOp], made: Sequence[WriteResult]
    ) -> list[WriteResult]:
        """A create whose answer was lost (none came, or one that could not be read) may have
        made its contact: it is looked for by our tag at once, before the user has had time to
        delete it (then the pass after could prove that delete only in some cases, see
        ``lost_copies``). One answer is lost at a time: the first request's worth of creates
        after the last answer that came (the side's ``creates_per_request``; the later ones
        share its error, never sent); until a look-up fails (the side went down), when the pass
        after looks for the rest. Not on a side whose listings show a new contact only later."""
        if side.listing_lag:
            return list(made)
        out: list[WriteResult] = []
        left = side.creates_per_request
        for op, result in zip(ops, made, strict=True):
            found = None
            if left > 0 and isinstance(result.error, Transient) and result.error.status is None:
                left -= 1
                try:
                    found = side.find_tagged(op.mapping_id)
                except ProviderError:
                    left = 0
            out.append(result if found is None else WriteResult(key=found.id, remote=found))
        return out

    def write_receipts(self, chunk: Sequence[PendingOp], sent: Sent) -> None:
        """Write down the ids our creates made, straight after the providers answered."""
        receipted = []
        for op in chunk:
            made: dict[str, str] = {
                str(w.side): r.remote.id
                for w in op.writes
                if w.kind == "create"
                and w.side not in op.receipts
                and op.op_id not in self.look.linked_instead  # nothing made: found again if need be
                and (r := sent.results.get((op.op_id, w.side))) is not None
                and r.remote is not None
                and r.remote.id
            }
            if made:
                receipted.append(replace(op, receipts={**op.receipts, **made}))
        if receipted:
            self.scope.store.save_pending(self.scope.cid, receipted)
