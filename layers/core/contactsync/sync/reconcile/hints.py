"""Hints: contacts a pass re-reads by id besides its change feeds. CRM persons that pushes named,
contacts whose writes were refused as stale, and those whose creates, deletes or unlinks wait for
the settle period. The connection keeps them until a pass has read them."""

from __future__ import annotations

from collections.abc import Sequence

from contactsync.runtime.messages import SyncMessage
from contactsync.store.pass_interface import SIDES, ConnectionView, PassStore
from contactsync.sync.reconcile.context import PassScope

MAX_HINTS = 1000  # CRM persons one pass re-reads by id (more: the daily full listing)


def keep_hints(store: PassStore, conn: ConnectionView, message: SyncMessage) -> None:
    """Remember the CRM persons this message asked to re-read, for the pass that runs next
    (those already remembered on the connection stay there until a pass has read them)."""
    if message.crm_ids:
        store.add_hints(conn.connection_id, message.crm_ids[:MAX_HINTS])


def too_many_to_keep(waiting: dict[str, set[str]], conn: ConnectionView) -> bool:
    """Whether these contacts, with those the connection remembers already, are more than a
    pass re-reads by id (then the next pass lists both sides in full instead)."""
    remembered = {"crm": conn.pending_crm_ids, "provider": conn.pending_provider_ids}
    return any(len(waiting[s] | set(remembered[s])) > MAX_HINTS for s in SIDES)


class Hints:
    """One pass's dealings with the connection's hints."""

    def __init__(self, scope: PassScope) -> None:
        self.scope = scope
        self.read = False  # the CRM persons pushed to this pass have been re-read
        self.noted: set[tuple[str, str]] = set()  # (side, id) hints this pass added
        self.adds = 0  # this pass's own additions of hints (see ``PassStore.drop_hints``)

    def to_read(self) -> tuple[list[str], list[str]]:
        """The CRM persons and the provider contacts to re-read now (counted as read)."""
        conn, message = self.scope.conn, self.scope.message
        self.read = True
        crm_ids = list(dict.fromkeys([*conn.pending_crm_ids, *message.crm_ids]))
        return crm_ids, list(conn.pending_provider_ids)

    def add(self, crm_ids: Sequence[str], provider_ids: Sequence[str]) -> None:
        """Remember contacts for the next pass to re-read, counting the additions (each side's
        is one) so that this pass's own do not keep it from forgetting what it read."""
        self.scope.store.add_hints(self.scope.cid, crm_ids, provider_ids)
        self.adds += bool(crm_ids) + bool(provider_ids)

    def read_again(self, pairs: Sequence[tuple[str, str]]) -> None:
        """(CRM id, provider id) pairs a pass soon plans again from both contacts read afresh."""
        crm_ids = [c for c, _ in pairs if c]
        provider_ids = [p for _, p in pairs if p]
        self.add(crm_ids, provider_ids)
        self.noted.update(("crm", c) for c in crm_ids)
        self.noted.update(("provider", p) for p in provider_ids)

    def finish(self, waiting: dict[str, set[str]]) -> None:
        """As the pass ends: forget the hints it read, except those it noted again (refused
        again) and those whose creates, deletes or unlinks (``waiting``) wait for the pass after
        the settle period. A pass that read none keeps its message's for the one that goes on."""
        store, conn = self.scope.store, self.scope.conn
        if not self.read:
            keep_hints(store, conn, self.scope.message)
            return
        store.drop_hints(
            self.scope.cid,
            [
                c
                for c in conn.pending_crm_ids
                if ("crm", c) not in self.noted and c not in waiting["crm"]
            ],
            [
                p
                for p in conn.pending_provider_ids
                if ("provider", p) not in self.noted and p not in waiting["provider"]
            ],
            added=conn.hints_added + self.adds,
        )
