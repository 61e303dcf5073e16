"""What a pass is handed (its context and the connection's two sides), and the scope every part
of one pass works in: the connection as the pass found it, the message that asked for it, the
engine's settings and the pass's deadline."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from contactsync.engine.merge import SyncSettings
from contactsync.providers.base import ContactSide
from contactsync.runtime.messages import SyncMessage
from contactsync.store.pass_interface import SIDES, ConnectionView, PassStore
from contactsync.sync.connection_states import RUNNING
from contactsync.sync.polling import PollPolicy

# Deletions in the CRM are only pushed (webhooks); a full listing once a day finds any whose
# webhook never came, and anything else a change feed missed.
FULL_LISTING_EVERY = timedelta(hours=24)


@dataclass(frozen=True)
class Sides:
    crm: ContactSide
    provider: ContactSide

    def of(self, name: str) -> ContactSide:
        return self.crm if name == "crm" else self.provider


@dataclass
class PassContext:
    """Everything a pass depends on, handed in: no globals, no clock of its own."""

    store: PassStore
    sides_for: Callable[[ConnectionView], Sides]
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    budget_seconds: float = 60.0
    lease_seconds: int = 150
    full_listing_every: timedelta = FULL_LISTING_EVERY
    # How long creates, deletes and unlinks wait for the rest of a burst (0: they never wait).
    settle_seconds: float = 0.0
    polling: PollPolicy = field(default_factory=PollPolicy)
    new_id: Callable[[], str] = lambda: uuid.uuid4().hex
    owner: str = field(default_factory=lambda: uuid.uuid4().hex)
    # Test hook: called with a point name before each step that can crash ("after_pending",
    # "before_create" (CRM creates, after the look-around and claims), "after_provider_call",
    # "before_mapping_write", "before_cursor_advance").
    crash_point: Callable[[str], None] = lambda _point: None


@dataclass(frozen=True)
class PassScope:
    """What stays fixed through one pass. ``conn`` is the connection as the pass found it (a
    confirmed pass moves its state on; the pass keeps track of that itself)."""

    conn: ConnectionView
    message: SyncMessage
    ctx: PassContext
    sides: Sides
    settings: SyncSettings
    deadline: float  # time.monotonic() at which the pass's budget is spent

    @classmethod
    def begin(
        cls, conn: ConnectionView, message: SyncMessage, ctx: PassContext, deadline: float
    ) -> PassScope:
        sides = ctx.sides_for(conn)
        settings = SyncSettings(
            direction=conn.direction,  # type: ignore[arg-type]
            conflict_policy=conn.conflict_policy,  # type: ignore[arg-type]
            phone_region=conn.phone_region,
            crm_fields=sides.crm.carries,
            provider_fields=sides.provider.carries,
            deletes_in_scope_only=frozenset(
                name for name in SIDES if sides.of(name).deletes_in_scope_only
            ),
        )
        return cls(conn, message, ctx, sides, settings, deadline)

    @property
    def cid(self) -> str:
        return self.conn.connection_id

    @property
    def store(self) -> PassStore:
        return self.ctx.store

    @property
    def confirmed(self) -> bool:
        return self.message.reason == "confirm"

    def out_of_time(self) -> bool:
        return time.monotonic() > self.deadline

    def stopped(self) -> bool:
        """The connection was stopped (or signed out) since the pass began."""
        current = self.store.load_connection(self.cid)
        return current is None or current.state not in RUNNING
