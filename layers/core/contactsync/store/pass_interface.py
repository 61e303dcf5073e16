"""What a sync pass needs from storage, as an interface, and the plain values it passes.

The store owns this interface: the DynamoDB implementation is ``contactsync.store.pass_store``;
tests use the in-memory one in ``tests/fakes.py``. The pass itself never sees
PynamoDB: these values are not the table's items (``CursorItem``, ``AuditEntryItem`` of
``contactsync.store.models``), only what a pass reads and writes through ``PassStore``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from contactsync.engine.plan import MappingState
from contactsync.store.pending import PendingOp

SIDES = ("crm", "provider")


@dataclass(frozen=True)
class Cursor:
    """Where one side's change feed continues from, as a pass sees it (stored as a
    ``CursorItem``)."""

    position: str = ""
    complete: bool = True
    full: bool = False
    taken_at: str = ""


@dataclass(frozen=True)
class ConnectionView:
    """The settings and state a pass reads from the connection item."""

    connection_id: str
    company_id: str
    user_id: str
    provider: str
    state: str
    direction: str = "two_way"
    conflict_policy: str = "newest_wins"
    phone_region: str = "US"
    visible_to: int | None = None  # who sees the CRM persons the sync creates (None: default)
    folder_id: str = ""
    inflight_ops: tuple[str, ...] = ()
    inflight_at: str = ""  # ISO time the in-flight ops were sent
    plan_open: bool = False  # the last pass stored a plan and did not finish or hand it over
    held: dict[str, Any] | None = None
    progress: dict[str, Any] = field(default_factory=dict)
    mapped_count: int = 0  # linked pairs (detached ones apart): kept by the passes, recounted
    # exactly on every full listing
    poll_seconds: int = 0  # the polling interval the last pass chose
    last_full_at: str = ""  # ISO time of the last full listing ("" if unknown)
    pending_crm_ids: tuple[str, ...] = ()  # pushed CRM changes no pass has read yet
    pending_provider_ids: tuple[str, ...] = ()  # provider contacts to re-read (stale writes)
    hints_added: int = 0  # how many times hints were added (see ``drop_hints``)
    failures: int = 0  # passes in a row that failed (throttles not counted); 0 after a success
    # What passes applied lately, for the mass-change guard: {since, last, reference, creates,
    # deletes, unlinks} (None: closed).
    change_window: dict[str, Any] | None = None
    # ISO time until which creates, deletes and unlinks wait for the rest of a burst ("": none
    # wait).
    settle_until: str = ""
    list_in_full: bool = False  # the next pass lists both sides in full (too much to re-read)


@dataclass(frozen=True)
class AuditEntry:
    """One line of the activity log as a pass writes it (stored as an ``AuditEntryItem``)."""

    kind: str  # write, conflict, unlink, guard, error, duplicate, pass
    message: str
    side: str = ""
    crm_id: str = ""
    provider_id: str = ""
    mapping_id: str = ""
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    details: dict[str, Any] | None = None


class PassStore(Protocol):
    def load_connection(self, connection_id: str) -> ConnectionView | None: ...

    def update_connection(self, connection_id: str, **changes: Any) -> None:
        """Set attributes of the connection item (state, progress, last_error, counts, ...)."""
        ...

    def answer_ring(self, connection_id: str) -> ConnectionView | None:
        """A pass begins: pushes arriving from now on queue another pass. Returns the connection
        read after that, with every CRM hint pushed before."""
        ...

    def add_hints(
        self, connection_id: str, crm_ids: Sequence[str], provider_ids: Sequence[str] = ()
    ) -> None:
        """Remember contacts for the next pass to re-read by id."""
        ...

    def drop_hints(
        self,
        connection_id: str,
        crm_ids: Sequence[str],
        provider_ids: Sequence[str] = (),
        *,
        added: int = 0,
    ) -> None:
        """Forget hints a pass has read, unless hints were added since the pass read them
        (``added``: ``hints_added`` as the pass found it): the same id added again while the pass
        ran must stay for the next one, so then all stay (re-reading one costs little)."""
        ...

    def acquire_lease(
        self, connection_id: str, owner: str, now: datetime, seconds: int
    ) -> bool: ...

    def release_lease(self, connection_id: str, owner: str, **changes: Any) -> None:
        """Give the lease back, with ``changes`` to the connection (as ``update_connection``)
        in the same write: a pass's closing status costs no write of its own."""
        ...

    def cursor(self, connection_id: str, side: str) -> Cursor | None: ...

    def save_cursor(self, connection_id: str, side: str, cursor: Cursor) -> None: ...

    def mapping_for(
        self, connection_id: str, side: str, contact_id: str
    ) -> MappingState | None: ...

    def mappings(self, connection_id: str) -> Iterator[MappingState]: ...

    def count_mappings(self, connection_id: str) -> int:
        """Linked pairs: mappings not detached."""
        ...

    def save_mapping(self, connection_id: str, mapping: MappingState) -> None: ...

    def drop_mapping(self, connection_id: str, mapping_id: str) -> None: ...

    def pending(self, connection_id: str) -> list[PendingOp]: ...

    def save_pending(self, connection_id: str, ops: Sequence[PendingOp]) -> None: ...

    def drop_pending(self, connection_id: str, op_ids: Sequence[str]) -> None: ...

    def audit(self, connection_id: str, entries: Sequence[AuditEntry]) -> None: ...

    def claim_key(
        self,
        company_id: str,
        user_id: str,
        key: str,
        *,
        owner: str,
        now: datetime,
        seconds: float,
        replacing: str = "",
    ) -> bool:
        """Claim a normalised contact key among one user's connections for ``seconds`` (a
        conditional write): False while another connection holds it, unless the claim names
        the person ``replacing`` (made under it, and gone since)."""
        ...

    def settle_key(self, company_id: str, user_id: str, key: str, *, owner: str, made: str) -> None:
        """The person ``owner`` claimed a key for is made and recorded: the claim names it (the
        user's other connections find the person by it) until it lapses."""
        ...

    def claimed_person(self, company_id: str, user_id: str, key: str) -> str:
        """The CRM person a claim on the key names ("" while it is being made, or no claim)."""
        ...

    def review_holds(self, connection_id: str, side: str, contact_ids: Sequence[str]) -> set[str]:
        """Which of these unlinked contacts wait for a person's review (possible duplicates)."""
        ...

    def replace_review_holds(
        self, connection_id: str, holds: Sequence[tuple[str, str, str]]
    ) -> None:
        """(side, contact id, reason) for every possible duplicate a full listing found."""
        ...

    def replace_duplicate_clusters(
        self, connection_id: str, clusters: Sequence[tuple[Sequence[str], Sequence[str]]]
    ) -> None:
        """(CRM person ids, shared keys) of every group of the user's CRM persons that look
        like one person, as a full listing of the CRM found them (the duplicates page)."""
        ...
