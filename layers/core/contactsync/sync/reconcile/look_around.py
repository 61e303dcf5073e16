"""Looking around before creating, so a contact is linked rather than made twice.

While planning, the contacts a plan would copy are looked up in the other side's whole book. Just
before CRM persons are made, the CRM's changes since the pass read it are read again (the user's
other connection, or a hand, may have made the person meanwhile), and each new person's keys are
claimed among the user's connections (two syncs may make the same person within milliseconds).
"""

from __future__ import annotations

from collections.abc import Sequence

from contactsync.contacts.model import Contact
from contactsync.engine.matching import MATCH_KEYS, email_keys
from contactsync.engine.plan import Plan, Write
from contactsync.providers.base import CursorExpired, RemoteContact
from contactsync.store.pass_interface import SIDES
from contactsync.store.pending import PendingOp
from contactsync.sync.reconcile.context import PassScope

# A person about to be made in the CRM claims its normalised keys among the user's connections for
# this long: well past a pass, so the other connection's next look-up finds the person instead.
CLAIM_SECONDS = 300

Creates = list[tuple[PendingOp, Write]]


def claim_keys(contact: Contact, region: str) -> list[str]:
    """What a new person is claimed by: its emails, else its phones, else its name."""
    for keys_of in MATCH_KEYS:
        keys = keys_of(contact, region)
        if keys:
            return sorted(keys)
    return []


def look_up_copies(
    scope: PassScope,
    plan: Plan,
    unmapped: dict[str, list[RemoteContact]],
    listed: dict[str, list[RemoteContact] | None],
    *,
    counts: dict[str, int],
) -> tuple[dict[str, list[RemoteContact]], set[tuple[str, str]]]:
    """The contacts this plan would copy, looked up in the other side's whole book: what a
    pass reads is what changed, so a contact that exists there unchanged (or, in the CRM,
    owned by another user) is only seen this way. One search per contact to copy, never a
    listing. Contacts the pass read already are left out: the plan has them. A side whose
    linked contacts were all ``listed`` (read in full this pass) is not searched: those are what
    it finds. Returns what was found per side, and the (side, id) of what the searches found."""
    by_id = {(name, r.id): r for name in SIDES for r in unmapped[name]}
    known = {name: {r.id for r in unmapped[name]} for name in SIDES}
    wanted: dict[str, list[Contact]] = {"crm": [], "provider": []}
    for outcome in plan.outcomes:
        if outcome.kind != "create":
            continue
        (write,) = outcome.writes
        source = "provider" if write.side == "crm" else "crm"
        remote = by_id.get((source, outcome.crm_id or outcome.provider_id))
        if remote is not None:
            wanted[write.side].append(remote.contact)
    found: dict[str, list[RemoteContact]] = {"crm": [], "provider": []}
    found_ids: set[tuple[str, str]] = set()
    for name, contacts in wanted.items():
        if not contacts:
            continue
        linked_here = listed.get(name)
        if linked_here is not None:
            found[name] = linked_here
            continue
        hits = scope.sides.of(name).lookup(contacts)
        counts["lookups"] = counts.get("lookups", 0) + len(contacts)
        found[name] = [r for r in hits if r.id not in known[name]]
        found_ids |= {(name, r.id) for r in found[name]}
    return found, found_ids


class CrmLookAround:
    """Just before a pass makes persons in the CRM: who made them meanwhile, who claims them."""

    def __init__(self, scope: PassScope, counts: dict[str, int]) -> None:
        self.scope = scope
        self.counts = counts
        # Where to look for CRM persons made since this pass (or the one that planned) read it.
        self.crm_mark = ""
        self.own_tags: set[str] = set()  # mapping ids of the pending writes
        self.crm_made: dict[str, RemoteContact] = {}  # CRM persons made or changed meanwhile
        self.linked_instead: set[str] = set()  # ops whose CRM create found its person made
        self.unclaimed: set[str] = set()  # ops whose CRM create another connection had claimed

    def begin(self, work: Sequence[PendingOp], cursor_ops: Sequence[PendingOp]) -> None:
        """Pending writes are about to be applied: what is ours, and where the CRM was read."""
        # Op ids restart with every plan: what an earlier apply of this pass (finishing a dead
        # pass's writes) found out about its ops says nothing about these with the same ids.
        self.linked_instead.clear()
        self.unclaimed.clear()
        self.own_tags = {o.mapping_id for o in work}
        marks = [
            str(o.cursors["crm"].get("position") or "") for o in cursor_ops if "crm" in o.cursors
        ]
        stored = self.scope.store.cursor(self.scope.cid, "crm")
        self.crm_mark = (
            marks[0] if marks else (stored.position if stored and stored.complete else "")
        )

    def made_meanwhile(self, creates: Creates) -> tuple[Creates, dict[str, RemoteContact]]:
        """A person this pass would make in the CRM may have been made there since the pass read
        it: by the user's other connection (one person new, or edited after a delete, in both
        address books) or by hand. Just before creating, read the CRM's changes since, and link
        to the one unmapped person with the same email instead of making a second. Its values
        and ours are merged by the next pass, which re-reads both. (A twin already in the pass's
        own read is linked by the plan: ``_made_again_elsewhere``, matching.) Returns what to
        create, and the person each op links to instead (by op id)."""
        if not self.crm_mark:
            return creates, {}
        store, cid = self.scope.store, self.scope.cid
        position = self.crm_mark
        try:
            while True:
                page = self.scope.sides.crm.read(position)
                # Our own creates are left out: they are mapped, or finished from their receipt.
                self.crm_made.update((r.id, r) for r in page.contacts if r.tag not in self.own_tags)
                position = page.position
                if page.complete:
                    break
        except CursorExpired:
            return creates, {}  # nothing to compare with: made as planned
        self.crm_mark = position  # the next chunk reads only what is newer still
        self.counts["crm_lookups"] = self.counts.get("crm_lookups", 0) + 1

        wanted = set().union(*(email_keys(w.after) for _, w in creates))
        candidates = [
            r
            for r in self.crm_made.values()
            if r.in_scope
            and email_keys(r.contact) & wanted
            and store.mapping_for(cid, "crm", r.id) is None
        ]
        if candidates:
            held = store.review_holds(cid, "crm", [r.id for r in candidates])
            candidates = [r for r in candidates if r.id not in held]
        left: Creates = []
        linked: dict[str, RemoteContact] = {}
        for op, write in creates:
            twins = [r for r in candidates if email_keys(write.after) & email_keys(r.contact)]
            if len(twins) != 1:
                left.append((op, write))  # none, or not clear which: made as planned
                continue
            candidates.remove(twins[0])
            linked[op.op_id] = twins[0]
            self.linked_instead.add(op.op_id)
        return left, linked

    def claimed(self, creates: Creates) -> tuple[Creates, list[tuple[str, str]]]:
        """Claim the strongest keys of each new person among the user's connections (the
        user's Outlook and Google syncs may make the same person within milliseconds, too close
        for any look-around). A create whose key another connection holds is not sent: it is
        dropped and its contact planned again shortly, when the look-up finds that person. A
        claim that names a person since deleted is taken over: that person has to be made
        again. Returns what to create, and the (CRM id, provider id) pairs to read again."""
        left: Creates = []
        again: list[tuple[str, str]] = []
        for op, write in creates:
            keys = claim_keys(write.after, self.scope.settings.phone_region)
            if op.kind != "create" or all(self._claim(key) for key in keys):
                left.append((op, write))
                continue
            self.unclaimed.add(op.op_id)
            again.append(("", op.provider_id))
        return left, again

    def _claim(self, key: str) -> bool:
        conn, store = self.scope.conn, self.scope.store

        def claim(replacing: str = "") -> bool:
            return store.claim_key(
                conn.company_id,
                conn.user_id,
                key,
                owner=self.scope.cid,
                now=self.scope.ctx.clock(),
                seconds=CLAIM_SECONDS,
                replacing=replacing,
            )

        if claim():
            return True
        made = store.claimed_person(conn.company_id, conn.user_id, key)
        if not made:
            return False  # being made right now
        gone = self.scope.sides.crm.fetch([made]).get(made, "unknown") is None
        return gone and claim(replacing=made)

    def settle_claims(self, person_id: str, made: Contact) -> None:
        """A person made and recorded: its claims name it until they lapse, so the user's other
        connections find it even if their read of the CRM's changes came too early or short
        (and, once it is deleted, may make it again)."""
        conn = self.scope.conn
        for key in claim_keys(made, self.scope.settings.phone_region):
            self.scope.store.settle_key(
                conn.company_id, conn.user_id, key, owner=self.scope.cid, made=person_id
            )
