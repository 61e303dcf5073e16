"""A create whose answer was lost and whose copy our tag no longer finds: never made, or made and
deleted by the user before a pass recorded it? Made again, unless the side's change feed proves
the delete; then it is followed as any delete of a recorded copy would be.

The feed read is the one from the side's stored position: the plan that sent the create never
advanced it, so everything since, the create and the delete included, is in it.

- CardDAV (``"tag"``): our cards are made at ``<book>/<tag>.vcf``. The feed's removal of that
  path is proof: nobody else writes there.
- Outlook (``"unseen"``): the folder's delta reports only contacts that were in the folder, under
  ids that never change. A deletion of an id no pass has seen (no mapping, no re-read waiting,
  no review hold, not named by the writes being finished) while as many of our creates on it
  are unresolved is taken for those copies'. Only when the plan that sent them died in its first
  chunk with none of that chunk's writes finished: a delete the plan already recorded (its
  mapping gone) is read again from the old position, and must not be taken for a copy. What
  remains: a create that never reached Graph while the user made a contact in the folder and
  deleted it, unseen, within the same seconds, as many times as creates were lost.
- Google, the CRM (``""``): a deletion names no tag, may be of any group's contact, and resource
  names change: the copy is made again (nothing is lost; the user's delete is undone).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from contactsync.providers.base import CursorExpired
from contactsync.store.pending import PendingOp
from contactsync.sync.reconcile.context import PassScope

FIRST_OP = f"{0:09d}"  # a plan's first op id (``PendingOp.from_outcome``)


@dataclass(frozen=True)
class Unfound:
    """A create the last attempt may have made, whose tag found nothing."""

    op_id: str
    tag: str


def deleted_copies(
    proof: str,
    unfound: Sequence[Unfound],
    deleted: Collection[str],
    *,
    ids_for_tags: Mapping[str, str],
    unseen: Collection[str],
    first_chunk: bool,
) -> dict[str, str]:
    """The op ids, of ``unfound``, whose copies the feed proves made and deleted, each with the
    id the copy had. ``deleted``: what the feed reports deleted; ``unseen``: those of them no
    pass has seen; ``first_chunk``: the dead plan died in its first chunk, none of it finished
    (it recorded nothing a feed read again from the old position would report twice)."""
    if proof == "tag":
        return {
            u.op_id: copy_id
            for u in unfound
            if (copy_id := ids_for_tags.get(u.tag, "")) and copy_id in deleted
        }
    if proof == "unseen" and first_chunk and unfound and len(unseen) == len(unfound):
        ordered = sorted(unfound, key=lambda u: u.op_id)
        return {u.op_id: copy_id for u, copy_id in zip(ordered, sorted(unseen), strict=True)}
    return {}


class LostCopies:
    """Reads a side's feed (once a pass) to tell whether lost creates' copies were deleted."""

    def __init__(self, scope: PassScope) -> None:
        self.scope = scope
        self.named: set[str] = set()  # ids the writes being finished name
        self.pending: set[str] = set()  # their op ids
        self.proved: set[str] = set()  # op ids whose copies were made and deleted
        self._deleted: dict[str, set[str] | None] = {}  # side -> what its feed reports deleted

    def begin(self, work: Sequence[PendingOp]) -> None:
        self.pending = {op.op_id for op in work}
        self.named = {
            i
            for op in work
            for i in (op.crm_id, op.provider_id, *(w.target_id for w in op.writes))
            if i
        }

    def deleted_of(self, side_name: str, unfound: Sequence[Unfound]) -> dict[str, str]:
        """Of ``unfound`` (creates on ``side_name``), the ones made and deleted: op id -> id."""
        side = self.scope.sides.of(side_name)
        proof = side.lost_copy_proof if side_name == "provider" else ""
        if not unfound or not proof:
            return {}
        deleted = self._feed_deleted(side_name)
        if not deleted:
            return {}
        store, cid = self.scope.store, self.scope.cid
        unseen: set[str] = set()
        if proof == "unseen":
            waiting = set(self.scope.conn.pending_provider_ids)
            candidates = [
                i
                for i in sorted(deleted)
                if i not in self.named
                and i not in waiting
                and store.mapping_for(cid, side_name, i) is None
            ]
            held = store.review_holds(cid, side_name, candidates) if candidates else set()
            unseen = {i for i in candidates if i not in held}
        recovering = self.scope.conn.inflight_ops
        found = deleted_copies(
            proof,
            unfound,
            deleted,
            ids_for_tags={u.tag: side.id_for_tag(u.tag) for u in unfound},
            unseen=unseen,
            first_chunk=bool(recovering)
            and min(recovering) == FIRST_OP
            and set(recovering) <= self.pending,
        )
        self.proved.update(found)
        return found

    def _feed_deleted(self, side_name: str) -> set[str]:
        """What the side's feed reports deleted since the stored position (none stored, or
        one the side forgot: nothing, and nothing is proved)."""
        if side_name in self._deleted:
            return self._deleted[side_name] or set()
        cursor = self.scope.store.cursor(self.scope.cid, side_name)
        deleted: set[str] | None = None
        if cursor is not None and cursor.position:
            side, position, deleted = self.scope.sides.of(side_name), cursor.position, set()
            try:
                while True:
                    page = side.read(position)
                    deleted.difference_update(c.id for c in page.contacts)
                    deleted.update(page.deleted)
                    position = page.position
                    if page.complete:
                        break
            except CursorExpired:
                deleted = None
        self._deleted[side_name] = deleted
        return deleted or set()
