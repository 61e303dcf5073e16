"""One sync pass over one connection: read both sides' changes, plan, save the plan, apply it.

The order is what makes a pass safe to crash at any point (see ARCHITECTURE.md):
lease → finish pending writes → read changes → plan (pure engine) → guard → save pending writes
(cursors last) → apply in chunks within the time budget → release. Work left when the budget runs
out stays pending and the caller queues a continuation.

Mass changes. Pushes of one burst of deletes arrive over several passes, each under the guard's
limit. So creates, deletes and unlinks seen by a pass settle first: they wait a few seconds (their
contacts are kept as ids to re-read, so the cursors still advance) while updates go through, and
the pass after the settle period plans them all at once. What passes apply is added to the
connection's change window, which the guard judges with every new plan until the connection has
been quiet for a while or the user confirms a held pass.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from contactsync.contacts.model import ALL_FIELDS, Contact
from contactsync.engine.matching import MATCH_KEYS, duplicate_clusters, email_keys
from contactsync.engine.plan import (
    UNCHANGED,
    ChangeWindow,
    MappingState,
    Outcome,
    PairInput,
    PassInput,
    Plan,
    SyncSettings,
    Unchanged,
    Write,
    counted,
    held_changes,
    plan_pass,
    structural,
)
from contactsync.providers.base import (
    AuthExpired,
    ChangePage,
    ContactDelete,
    ContactSide,
    ContactUpdate,
    CursorExpired,
    NewContact,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    ProviderError,
    RateLimited,
    RemoteContact,
    WriteResult,
)
from contactsync.runtime.messages import Reason, SyncMessage
from contactsync.sync.connection_states import RUNNING, ConnectionState, transition
from contactsync.sync.ops import CURSOR_OP_ID, PendingOp, plain_value
from contactsync.sync.polling import PollPolicy
from contactsync.sync.ports import SIDES, AuditEntry, ConnectionView, Cursor, PassStore

# Pending writes applied per round trip to the store; adapters batch within it, so it is a
# multiple of the providers' batch maxima (Google 200, Graph 20).
CHUNK = 200
# The CRM has no batch writes: each is a request, paced by the user's burst limit (about 20 a
# second). A chunk holds at most this many, so the pass looks at its deadline every few seconds.
CRM_WRITES_PER_CHUNK = 40
MAX_HINTS = 1000  # CRM persons one pass re-reads by id (more: the daily full listing)
# Deletions in the CRM are only pushed (webhooks); a full listing once a day finds any whose
# webhook never came, and anything else a change feed missed.
FULL_LISTING_EVERY = timedelta(hours=24)
# The change window closes after this long without a create, delete or unlink.
WINDOW_QUIET = timedelta(hours=1)

Status = Literal[
    "done",
    "continue",
    "recheck",
    "settling",  # done, but creates, deletes or unlinks wait: run again after retry_after
    "busy",
    "skipped",
    "held",
    "throttled",
    "needs_reauth",
    "failed",
]
# A failed pass (an outage, a malformed answer) is tried again after 10 s, doubling with each
# failure in a row up to 2 minutes. Throttles do not count: they wait what the provider asks.
# The cap is short because the retry holds the connection's FIFO group: a user's resync or
# confirm waits behind it, and after an outage every connection should be back within minutes.
RETRY_FIRST_SECONDS = 10.0
# A person about to be made in the CRM claims its normalised keys among the user's connections for
# this long: well past a pass, so the other connection's next look-up finds the person instead.
CLAIM_SECONDS = 300
# A pass that could not claim a key plans that contact again this soon (and finds the person).
CLAIM_RETRY_SECONDS = 5
RETRY_MAX_SECONDS = 120.0


def retry_delay(failures: int) -> float:
    """How long a connection waits after its ``failures``-th failed pass in a row."""
    return min(RETRY_FIRST_SECONDS * 2.0 ** max(failures - 1, 0), RETRY_MAX_SECONDS)


# A write refused as stale (the contact changed while it was written) is planned again from both
# contacts read afresh by a pass a few seconds later: 2 s, doubling with each refusal of the same
# pair in a row. After RECHECK_TRIES the pair waits for the connection's next pass (and says so
# in status and explain) rather than hold the connection's queue.
RECHECK_FIRST_SECONDS = 2.0
RECHECK_TRIES = 5


def recheck_delay(refusals: int) -> float:
    """How long a pair waits to be planned again after its ``refusals``-th refusal in a row."""
    return RECHECK_FIRST_SECONDS * 2.0 ** max(refusals - 1, 0)


@dataclass(frozen=True)
class Sides:
    crm: ContactSide
    provider: ContactSide

    def of(self, name: str) -> ContactSide:
        return self.crm if name == "crm" else self.provider


@dataclass
class PassResult:
    status: Status
    message: str = ""
    retry_after: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    # For "continue": the reason of the pass that goes on. A confirmed pass that ran out of time
    # before its plan (finishing earlier pending writes) goes on confirmed: the connection still
    # waits for it, and would turn a plain continuation away.
    continue_as: Reason = "continuation"


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


class TooSoonToTell(Exception):
    """A create of the pass before was sent and its answer lost, and the side's listings may
    not show the copy yet: the pass waits this long before it looks for it."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"a contact made as its answer was lost: looked for in {retry_after:.0f}s")
        self.retry_after = retry_after


def run_pass(connection_id: str, message: SyncMessage, ctx: PassContext) -> PassResult:
    store = ctx.store
    conn = store.load_connection(connection_id)
    if conn is None or conn.state not in RUNNING:
        if conn is not None and conn.state == "needs_reauth":
            _keep_hints(store, conn, message)
        return PassResult("skipped", f"connection is {conn.state if conn else 'gone'}")
    if conn.state == "needs_attention" and message.reason != "confirm":
        _keep_hints(store, conn, message)
        return PassResult("skipped", "waiting for the user to confirm a held pass")
    now = ctx.clock()
    if not store.acquire_lease(connection_id, ctx.owner, now, ctx.lease_seconds):
        return PassResult("busy", "another pass holds the lease")
    try:
        # From here on a push queues another pass; what was pushed before, this one reads.
        conn = store.answer_ring(connection_id) or conn
        runner = _Pass(conn, message, ctx, time.monotonic() + ctx.budget_seconds)
    except Exception:
        store.release_lease(connection_id, ctx.owner)
        raise
    try:
        return runner.run()
    except TooSoonToTell as exc:
        _keep_hints(store, conn, message)
        wake = ctx.clock() + timedelta(seconds=exc.retry_after)
        store.update_connection(connection_id, next_run_at=wake, plan_open=False)
        return PassResult("recheck", str(exc), retry_after=exc.retry_after)
    except RateLimited as exc:
        runner.fail(exc, counted=False)
        wake = ctx.clock() + timedelta(seconds=max(exc.retry_after, 1.0))
        # An orderly stop: what is left of the plan is handed to the pass after the wait.
        store.update_connection(connection_id, next_run_at=wake, plan_open=False)
        return PassResult("throttled", exc.message, retry_after=exc.retry_after)
    except AuthExpired as exc:
        runner.fail(exc)
        signed_out = transition(runner.conn.state, ConnectionState.NEEDS_REAUTH)
        store.update_connection(connection_id, state=signed_out, next_run_at=None)
        return PassResult("needs_reauth", exc.message)
    except ProviderError as exc:
        # Said in status; the message comes back after the delay (the queue's retry).
        failures = runner.fail(exc)
        return PassResult("failed", exc.message, retry_after=retry_delay(failures))
    except Exception as exc:
        # Said in status without its text (it may quote contact data); the queue retries it.
        runner.fail(ProviderError(f"an unexpected {type(exc).__name__}; retrying automatically"))
        raise
    finally:
        store.release_lease(connection_id, ctx.owner)


def _chunks(work: Sequence[PendingOp]) -> Iterator[list[PendingOp]]:
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


def _keep_hints(store: PassStore, conn: ConnectionView, message: SyncMessage) -> None:
    """Remember the CRM persons this message asked to re-read, for the pass that runs next
    (those already remembered on the connection stay there until a pass has read them)."""
    if message.crm_ids:
        store.add_hints(conn.connection_id, message.crm_ids[:MAX_HINTS])


def preview_pass(connection_id: str, ctx: PassContext) -> Plan:
    """What a full pass would do right now, computed without writing anything.

    Both sides are listed in full and planned exactly as a resync would; no lease is taken, no
    cursor, mapping or audit entry is written, so it is safe before the first sync and at any
    time after.
    """
    conn = ctx.store.load_connection(connection_id)
    if conn is None:
        raise LookupError(f"no connection {connection_id!r}")
    message = SyncMessage(connection_id=connection_id, reason="resync", full=True)
    runner = _Pass(conn, message, ctx, deadline=float("inf"))
    crm = runner.read_side("crm", True)
    provider = runner.read_side("provider", True)
    plan, _ = runner.plan(crm, provider)
    return plan


class _Pass:
    def __init__(
        self, conn: ConnectionView, message: SyncMessage, ctx: PassContext, deadline: float
    ) -> None:
        self.conn = conn
        self.message = message
        self.ctx = ctx
        self.store = ctx.store
        self.deadline = deadline
        self.sides = ctx.sides_for(conn)
        self.counts: dict[str, int] = {}
        self.moved_versions: set[str] = set()
        self.listed_in_full = False
        self.hints_read = False  # the CRM persons pushed to this pass have been re-read
        self.recheck: list[tuple[str, str]] = []  # pairs whose write was refused as stale
        self.refusals = 0  # the most writes in a row refused as stale, of the pairs refused now
        self.noted: set[tuple[str, str]] = set()  # (side, id) hints this pass added
        self.hint_adds = 0  # this pass's own additions of hints (see ``drop_hints``)
        # Where to look for CRM persons made since this pass (or the one that planned) read it.
        self.crm_mark = ""
        self.own_tags: set[str] = set()  # mapping ids of the pending writes
        self.linked_instead: set[str] = set()  # ops whose CRM create found its person made
        self.crm_made: dict[str, RemoteContact] = {}  # CRM persons made or changed meanwhile
        self.found_ids: set[tuple[str, str]] = set()  # what look-ups before creating found
        self.unclaimed: set[str] = set()  # ops whose CRM create another connection had claimed
        self.progress = dict(conn.progress)
        self.linked_before: set[str] = set()  # mapping ids of the pairs read that were linked
        self.pass_input: PassInput | None = None
        # Creates, deletes and unlinks this pass leaves for the pass after the settle period:
        # the ids of their contacts per side, re-read by then.
        self.waiting: dict[str, set[str]] = {"crm": set(), "provider": set()}
        self.settle_until = self.still_settling()
        # Counting mappings reads every one of them: only a full listing (O(contacts) anyway)
        # pays for that; other passes adjust the stored count by what they link and unlink.
        self.mapped = conn.mapped_count
        self.settings = SyncSettings(
            direction=conn.direction,  # type: ignore[arg-type]
            conflict_policy=conn.conflict_policy,  # type: ignore[arg-type]
            phone_region=conn.phone_region,
            crm_fields=self.sides.crm.carries,
            provider_fields=self.sides.provider.carries,
            deletes_in_scope_only=frozenset(
                name for name in SIDES if self.sides.of(name).deletes_in_scope_only
            ),
        )

    @property
    def cid(self) -> str:
        return self.conn.connection_id

    @property
    def confirmed(self) -> bool:
        return self.message.reason == "confirm"

    def still_settling(self) -> str:
        """The end of the current settle period if it has not passed ("" otherwise)."""
        until = self.conn.settle_until
        if until and datetime.fromisoformat(until) > self.ctx.clock():
            return until
        return ""

    def full_listing_due(self) -> bool:
        last = self.conn.last_full_at
        if not last:
            return False  # unknown: every connection starts with a full listing anyway
        return datetime.fromisoformat(last) <= self.ctx.clock() - self.ctx.full_listing_every

    def stopped(self) -> bool:
        current = self.store.load_connection(self.cid)
        return current is None or current.state not in RUNNING

    def add_hints(self, crm_ids: list[str], provider_ids: list[str]) -> None:
        """Remember contacts for the next pass to re-read, counting the additions (each side's
        is one) so that this pass's own do not keep it from forgetting what it read."""
        self.store.add_hints(self.cid, crm_ids, provider_ids)
        self.hint_adds += bool(crm_ids) + bool(provider_ids)

    def out_of_time(self) -> bool:
        return time.monotonic() > self.deadline

    def fail(self, exc: ProviderError, *, counted: bool = True) -> int:
        """Say in status why the pass stopped; returns the failed passes in a row."""
        _keep_hints(self.store, self.conn, self.message)
        failures = self.conn.failures + 1 if counted else self.conn.failures
        error = {
            "code": type(exc).__name__,
            "message": exc.message,
            "at": self.ctx.clock().isoformat(),
            "repeats": failures,
        }
        self.store.update_connection(self.cid, last_error=error)
        self.store.audit(self.cid, [AuditEntry(kind="error", message=exc.message)])
        return failures

    # --- the pass --------------------------------------------------------------------------

    def run(self) -> PassResult:
        pending = self.store.pending(self.cid)
        if pending and self.conn.plan_open:
            pending = self.drop_unsent(pending)
        if pending:
            if not self.apply(pending, recovering=set(self.conn.inflight_ops)):
                return self.result("continue", "work left over for the next pass")
            if self.out_of_time():
                return self.result("continue", "pending writes finished; changes not read yet")

        # A confirmed pass lists in full again: what it confirms must be seen whole, and the
        # held pass advanced no cursor.
        full = (
            self.message.full
            or self.message.reason in ("start", "resync", "confirm")
            or self.conn.list_in_full
            or self.full_listing_due()
        )
        crm = self.read_side("crm", full)
        provider = self.read_side("provider", full)
        self.listed_in_full = crm.full and provider.full
        hints = list(dict.fromkeys([*self.conn.pending_crm_ids, *self.message.crm_ids]))
        self.hints_read = True
        crm.add_fetched(self.sides.crm.fetch(hints) if hints else {})
        rechecks = list(self.conn.pending_provider_ids)
        provider.add_fetched(self.sides.provider.fetch(rechecks) if rechecks else {})

        plan, versions = self.plan(crm, provider)
        self.record_findings(plan, crm.full and provider.full)
        if crm.full:
            self.record_clusters(crm)
        if plan.held is not None:
            return self.hold(plan)

        now_or_later = [o for o in plan.outcomes if self.worth_saving(o)]
        outcomes = self.settle(now_or_later)
        ops = [
            PendingOp.from_outcome(
                seq,
                outcome,
                versions.get(outcome.mapping_id, ("", "")),
                was_linked=outcome.mapping_id in self.linked_before,
            )
            for seq, outcome in enumerate(outcomes)
        ]
        ops.append(
            PendingOp(
                op_id=CURSOR_OP_ID,
                cursors={
                    "crm": crm.cursor_dict(self.ctx.clock()),
                    "provider": provider.cursor_dict(self.ctx.clock()),
                },
            )
        )
        if self.stopped():  # stopped (or signed out) while this pass read: write nothing
            return PassResult("skipped", "the connection stopped during the pass")
        opened: dict[str, Any] = {"plan_open": True}  # written before the plan: a crash may follow
        opened.update(self.wait_and_count(outcomes))
        if self.conn.state == "needs_attention":
            # Confirmed: the user waits on nothing now, and the passes that finish this plan
            # (continuations) must not be turned away as if it were still held.
            was = str((self.conn.held or {}).get("was") or ConnectionState.ACTIVE)
            self.conn = replace(self.conn, state=transition(self.conn.state, was), held=None)
            opened.update(state=self.conn.state, held=None)
        if self.conn.state == "syncing_initial":
            self.progress = {
                "phase": "writing",
                "done": 0,
                "total": len(ops) - 1,
                "started_at": self.ctx.clock().isoformat(),
            }
            opened["progress"] = self.progress
        self.store.update_connection(self.cid, **opened)
        self.store.save_pending(self.cid, ops)
        self.ctx.crash_point("after_pending")
        if not self.apply(ops, recovering=set()):
            return self.result("continue", "work left over for the next pass")
        return self.result("done", "pass complete")

    def drop_unsent(self, pending: list[PendingOp]) -> list[PendingOp]:
        """The pass that planned these died. What it may have sent is finished (receipts, tags);
        the rest, its cursors too, is dropped and planned again from fresh reads: a plan made
        before the crash may no longer fit (another sync may have made the same contact)."""
        inflight = set(self.conn.inflight_ops)
        unsent = [o for o in pending if o.op_id not in inflight and not o.receipts]
        if unsent:
            self.store.drop_pending(self.cid, [o.op_id for o in unsent])
        return [o for o in pending if o.op_id in inflight or o.receipts]

    def settle(self, outcomes: list[Outcome]) -> list[Outcome]:
        """What to apply now. Creates, deletes and unlinks wait until the settle period that
        the first of them opened has passed (a confirmed pass and the initial sync never wait),
        so the pass after it sees the whole burst and the guard judges it at once."""
        if self.ctx.settle_seconds <= 0 or self.confirmed or self.conn.state == "syncing_initial":
            self.settle_until = ""
            return outcomes
        if self.conn.settle_until and not self.settle_until:
            return outcomes  # the settle period is over: everything that waited goes now
        waiting = [o for o in outcomes if structural(o)]
        if not waiting:
            return outcomes
        if not self.settle_until:
            until = self.ctx.clock() + timedelta(seconds=self.ctx.settle_seconds)
            self.settle_until = until.isoformat()
        # Both contacts of a pair are read again, whatever the outcome names: a pair whose CRM
        # person was deleted and is to be made again names no CRM id, and the next pass must
        # still learn that it is gone (else it would plan an update of it).
        pairs = self.pass_input.pairs if self.pass_input is not None else ()
        linked = {p.mapping.mapping_id: p.mapping for p in pairs}
        for outcome in waiting:
            mapping = linked.get(outcome.mapping_id)
            ids = [("crm", outcome.crm_id), ("provider", outcome.provider_id)]
            if mapping is not None:
                ids += [("crm", mapping.crm_id), ("provider", mapping.provider_id)]
            for side, contact_id in ids:
                if contact_id:
                    self.waiting[side].add(contact_id)
        self.counts["waiting"] = len(waiting)
        return [o for o in outcomes if not structural(o)]

    def wait_and_count(self, outcomes: Sequence[Outcome]) -> dict[str, Any]:
        """Remember what waits (before the cursors can advance past it) and add what this pass
        applies to the change window. Returns the connection's changes."""
        changes: dict[str, Any] = {"settle_until": self.settle_until}
        remembered = {"crm": self.conn.pending_crm_ids, "provider": self.conn.pending_provider_ids}
        if any(len(self.waiting[s] | set(remembered[s])) > MAX_HINTS for s in SIDES):
            changes["list_in_full"] = True  # too many to re-read by id: list both sides
        elif any(self.waiting.values()):
            self.add_hints(sorted(self.waiting["crm"]), sorted(self.waiting["provider"]))
        if self.listed_in_full and "list_in_full" not in changes:
            changes["list_in_full"] = False
        if self.confirmed or self.conn.state == "syncing_initial" or self.pass_input is None:
            changes["change_window"] = None  # confirmed whole, or an initial sync: start afresh
            return changes
        now = self.ctx.clock().isoformat()
        added = counted(self.pass_input, outcomes)
        window = self.pass_input.window
        if not (added.creates or added.deletes or added.unlinks):
            if window is None and self.conn.change_window is not None:
                changes["change_window"] = None  # quiet long enough: closed
            return changes
        raw = dict(self.conn.change_window or {}) if window is not None else {}
        if not raw:
            raw = {"since": now, "reference": added.reference}
        for name in ("creates", "deletes", "unlinks"):
            raw[name] = int(raw.get(name, 0)) + getattr(added, name)
        raw["last"] = now
        changes["change_window"] = raw
        return changes

    def open_window(self) -> ChangeWindow | None:
        """The change window, unless the connection has been quiet long enough to close it."""
        raw = self.conn.change_window
        if not raw or self.conn.state == "syncing_initial":
            return None
        if datetime.fromisoformat(str(raw["last"])) <= self.ctx.clock() - WINDOW_QUIET:
            return None
        return ChangeWindow(
            reference=int(raw.get("reference", 0)),
            creates=int(raw.get("creates", 0)),
            deletes=int(raw.get("deletes", 0)),
            unlinks=int(raw.get("unlinks", 0)),
        )

    def result(self, status: Status, message: str) -> PassResult:
        if self.hints_read:
            # Forget the hints this pass read, except those it noted again (refused again) and
            # those whose creates, deletes or unlinks wait for the pass after the settle period.
            self.store.drop_hints(
                self.cid,
                [
                    c
                    for c in self.conn.pending_crm_ids
                    if ("crm", c) not in self.noted and c not in self.waiting["crm"]
                ],
                [
                    p
                    for p in self.conn.pending_provider_ids
                    if ("provider", p) not in self.noted and p not in self.waiting["provider"]
                ],
                added=self.conn.hints_added + self.hint_adds,
            )
        else:
            _keep_hints(self.store, self.conn, self.message)  # for the continuation
        if status == "continue":
            self.store.update_connection(self.cid, plan_open=False)  # handed to the next pass
            waits = self.confirmed and self.conn.state == "needs_attention"
            going_on: Reason = "confirm" if waits else "continuation"
            return PassResult(status, message, counts=self.counts, continue_as=going_on)
        now = self.ctx.clock()
        active = any(self.counts.get(k) for k in ("crm_read", "provider_read", "crm_writes",
                                                   "provider_writes"))  # fmt: skip
        interval = self.ctx.polling.next_interval(
            self.conn.provider, self.conn.poll_seconds, active
        )
        changes: dict[str, Any] = {
            "last_success_at": now.isoformat(),
            "last_error": None,
            "next_run_at": now + timedelta(seconds=interval),
            "poll_seconds": interval,
            "plan_open": False,
        }
        if self.conn.state in (ConnectionState.SYNCING_INITIAL, ConnectionState.NEEDS_ATTENTION):
            changes["state"] = transition(self.conn.state, ConnectionState.ACTIVE)
            changes["held"] = None
            changes["progress"] = {"phase": "idle", "done": 0, "total": 0}
        changes["mapped_count"] = self.mapped
        crm_limits, provider_limits = self.sides.crm.limits, self.sides.provider.limits
        if crm_limits is not None and provider_limits is not None:  # both known this pass
            changes["limits"] = [*crm_limits, *provider_limits]
        if self.listed_in_full:
            changes["last_full_at"] = now.isoformat()
        if self.refusals > RECHECK_TRIES:
            changes["last_error"] = {
                "code": "WriteRefused",
                "message": f"a contact's write was refused {self.refusals} times in a row "
                "because it kept changing while it was written; it is read again and retried "
                "at every pass (explain names it)",
                "at": now.isoformat(),
                "repeats": 0,
            }
        wait = 0.0
        if self.settle_until and any(self.waiting.values()):
            until = datetime.fromisoformat(self.settle_until)
            wait = max((until - now).total_seconds(), 1.0)
            changes["next_run_at"] = min(changes["next_run_at"], until)
            status, message = "settling", "creates, deletes or unlinks wait for the rest of a burst"
        # Writes refused as stale, and persons another connection of the user claimed (its pass
        # makes them; the next look-up finds them), are planned again a few seconds later.
        soon = [recheck_delay(self.refusals)] if 0 < self.refusals <= RECHECK_TRIES else []
        if self.unclaimed:
            soon.append(CLAIM_RETRY_SECONDS)
            changes["next_run_at"] = min(
                changes["next_run_at"], now + timedelta(seconds=CLAIM_RETRY_SECONDS)
            )
        self.store.update_connection(self.cid, **changes)
        if soon and not 0 < wait < min(soon):
            # (what settles comes back sooner: that pass plans these again too)
            return PassResult(
                "recheck",
                "writes refused as stale or claimed by another sync are planned again shortly",
                retry_after=min(soon),
                counts=self.counts,
            )
        return PassResult(status, message, retry_after=wait, counts=self.counts)

    # --- reading ---------------------------------------------------------------------------

    def read_side(self, name: str, full: bool) -> _SideChanges:
        side = self.sides.of(name)
        cursor = self.store.cursor(self.cid, name)
        position: str | None = None
        if cursor is not None and cursor.position and not full:
            position = cursor.position
        changes = _SideChanges()
        expired_once = False
        while True:
            try:
                page: ChangePage = side.read(position)
            except CursorExpired:
                if expired_once:
                    raise
                expired_once = True
                self.store.audit(
                    self.cid,
                    [
                        AuditEntry(
                            kind="pass",
                            side=name,
                            message=f"the {name} sync cursor expired: full re-listing, "
                            "re-matched against existing links",
                        )
                    ],
                )
                changes = _SideChanges()
                position = None
                continue
            changes.add(page)
            position = page.position
            if page.complete:
                break
        if changes.full:
            self.find_missing(name, changes)
        self.follow_renames(name, changes)
        self.counts[f"{name}_read"] = len(changes.contacts) + len(changes.deleted)
        return changes

    def follow_renames(self, name: str, changes: _SideChanges) -> None:
        """A contact read under a new id (it names the ids it had, or a read by its old id
        answered with the new one): its link moves to the new id, so it is neither a new
        contact to copy nor its old id a delete."""
        for key, remote in list(changes.contacts.items()):
            old_ids = {*remote.previous_ids, key} - {remote.id}
            if not old_ids:
                continue
            if key != remote.id:
                del changes.contacts[key]
                changes.contacts[remote.id] = remote
            if self.store.mapping_for(self.cid, name, remote.id) is not None:
                continue
            for old in old_ids:
                mapping = self.store.mapping_for(self.cid, name, old)
                if mapping is None:
                    continue
                if name == "crm":
                    moved = replace(mapping, crm_id=remote.id)
                else:
                    moved = replace(mapping, provider_id=remote.id)
                self.store.save_mapping(self.cid, moved)
                changes.deleted.discard(old)
                break

    def find_missing(self, name: str, changes: _SideChanges) -> None:
        """A full listing omits contacts that were deleted or left scope: ask for each mapped one
        we did not see, so a missed delete is caught (and a missed scope change too)."""
        missing = []
        for mapping in self.store.mappings(self.cid):
            contact_id = mapping.crm_id if name == "crm" else mapping.provider_id
            if contact_id and contact_id not in changes.contacts:
                missing.append(contact_id)
        if not missing:
            return
        found = self.sides.of(name).fetch(missing)
        for contact_id in missing:
            if contact_id not in found:  # the answer left it out: unknown, never deleted
                continue
            remote = found[contact_id]
            if remote is None:
                changes.deleted.add(contact_id)
            else:
                changes.contacts[contact_id] = remote

    # --- planning --------------------------------------------------------------------------

    def plan(
        self, crm: _SideChanges, provider: _SideChanges
    ) -> tuple[Plan, dict[str, tuple[str, str]]]:
        pairs: dict[str, list[Any]] = {}
        unmapped: dict[str, list[RemoteContact]] = {"crm": [], "provider": []}
        for name, changes in (("crm", crm), ("provider", provider)):
            slot = 1 if name == "crm" else 2
            items: list[tuple[str, RemoteContact | None]] = [
                *changes.contacts.items(),
                *((d, None) for d in changes.deleted),
            ]
            for contact_id, remote in items:
                mapping = self.store.mapping_for(self.cid, name, contact_id)
                if mapping is None:
                    if remote is not None:
                        unmapped[name].append(remote)
                    continue
                entry = pairs.setdefault(mapping.mapping_id, [mapping, UNCHANGED, UNCHANGED])
                entry[slot] = remote
        self.read_partners_of_returns(pairs)
        self.linked_before = {m.mapping_id for m, _, _ in pairs.values() if not m.detached}
        pair_inputs = [PairInput(mapping=m, crm=c, provider=p) for m, c, p in pairs.values()]
        versions = {
            m.mapping_id: (_version(c, m.crm_version), _version(p, m.provider_version))
            for m, c, p in pairs.values()
        }
        self.moved_versions = {
            m.mapping_id
            for m, _, _ in pairs.values()
            if versions[m.mapping_id] != (m.crm_version, m.provider_version)
        }
        full = crm.full and provider.full
        if full:
            self.mapped = self.store.count_mappings(self.cid)
        mapped_total = self.mapped
        # A full listing decides afresh which contacts are possible duplicates; other passes
        # respect what the last one decided.
        on_hold: frozenset[tuple[str, str]] = frozenset()
        if not full:
            on_hold = frozenset(
                (name, contact_id)
                for name in ("crm", "provider")
                for contact_id in self.store.review_holds(
                    self.cid, name, [r.id for r in unmapped[name]]
                )
            )
        self.pass_input = PassInput(
            settings=self.settings,
            pairs=pair_inputs,
            unmapped_crm=unmapped["crm"],
            unmapped_provider=unmapped["provider"],
            mapped_total=mapped_total,
            full_listing=full,
            confirmed=self.confirmed,
            initial=self.conn.state == "syncing_initial",
            on_hold=on_hold,
            window=self.open_window(),
        )
        plan = plan_pass(self.pass_input, new_mapping_id=self.ctx.new_id)
        known = {name: {r.id for r in unmapped[name]} for name in SIDES}
        # A provider side listed in full this pass holds its whole scope already: what is not
        # unmapped there is linked (no look-up, which would cost a search per contact to copy
        # on an initial sync). The CRM lists only the user's persons: it is always searched.
        listed = {
            "provider": [
                entry[2]
                for entry in pairs.values()
                if isinstance(entry[2], RemoteContact) and entry[2].in_scope
            ]
            if provider.full
            else None
        }
        found = self.look_up_copies(plan, unmapped, known, listed)
        if any(found.values()):
            linked = frozenset(
                (name, r.id)
                for name in SIDES
                for r in found[name]
                if listed.get(name) is not None
                or self.store.mapping_for(self.cid, name, r.id) is not None
            )
            self.pass_input = replace(
                self.pass_input,
                found_crm=found["crm"],
                found_provider=found["provider"],
                found_linked=linked,
            )
            plan = plan_pass(self.pass_input, new_mapping_id=self.ctx.new_id)
        # Versions of contacts that are linked or created now: known from what was read.
        by_id = {(name, r.id): r for name in SIDES for r in (*found[name], *unmapped[name])}
        for outcome in plan.outcomes:
            if outcome.mapping_id not in versions:
                crm_remote = by_id.get(("crm", outcome.crm_id))
                prv_remote = by_id.get(("provider", outcome.provider_id))
                versions[outcome.mapping_id] = (
                    crm_remote.version if crm_remote else "",
                    prv_remote.version if prv_remote else "",
                )
        return plan, versions

    def look_up_copies(
        self,
        plan: Plan,
        unmapped: dict[str, list[RemoteContact]],
        known: dict[str, set[str]],
        listed: dict[str, list[RemoteContact] | None],
    ) -> dict[str, list[RemoteContact]]:
        """The contacts this plan would copy, looked up in the other side's whole book: what a
        pass reads is what changed, so a contact that exists there unchanged (or, in the CRM,
        owned by another user) is only seen this way. One search per contact to copy, never a
        listing. Contacts the pass read already are left out: the plan has them."""
        by_id = {(name, r.id): r for name in SIDES for r in unmapped[name]}
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
        for name, contacts in wanted.items():
            if not contacts:
                continue
            linked_here = listed.get(name)
            if linked_here is not None:
                found[name] = linked_here
                continue
            hits = self.sides.of(name).lookup(contacts)
            self.counts["lookups"] = self.counts.get("lookups", 0) + len(contacts)
            found[name] = [r for r in hits if r.id not in known[name]]
            self.found_ids |= {(name, r.id) for r in found[name]}
        return found

    def read_partners_of_returns(self, pairs: dict[str, list[Any]]) -> None:
        """A contact back in scope is merged with what its partner holds now. While they were
        apart the partner's edits were read but not agreed (the base stayed), so "unchanged
        since the last pass" does not mean "holds the base": read it again."""
        wanted: dict[str, list[list[Any]]] = {"crm": [], "provider": []}
        for entry in pairs.values():
            mapping, crm, provider = entry
            if not mapping.detached:
                continue
            away, stayed = (crm, provider) if mapping.detached == "crm" else (provider, crm)
            if isinstance(away, RemoteContact) and away.in_scope and stayed is UNCHANGED:
                wanted["provider" if mapping.detached == "crm" else "crm"].append(entry)
        for name, entries in wanted.items():
            if not entries:
                continue
            slot = 1 if name == "crm" else 2
            ids = [e[0].crm_id if name == "crm" else e[0].provider_id for e in entries]
            found = self.sides.of(name).fetch(ids)
            for entry, contact_id in zip(entries, ids, strict=True):
                if contact_id in found:  # left out of the answer: unknown, keep what we had
                    entry[slot] = found[contact_id]

    def worth_saving(self, outcome: Outcome) -> bool:
        """A no-op still updates the mapping when a side's version moved (a formatting-only
        edit), or the next conditional write would be refused as stale."""
        return (
            bool(outcome.writes)
            or outcome.kind != "noop"
            or outcome.mapping_id in self.moved_versions
        )

    def record_findings(self, plan: Plan, full_listing: bool) -> None:
        """Duplicate candidates and contacts left alone, in the audit log, so 'explain' can
        answer for them. Only on full listings (incremental passes would repeat them), and for
        what a look-up found: a new contact held because it exists on the other side."""
        duplicates = plan.duplicates
        if not full_listing:
            duplicates = tuple(
                d
                for d in plan.duplicates
                if self.found_ids & {*(("crm", i) for i in d.crm_ids),
                                     *(("provider", i) for i in d.provider_ids)}
            )  # fmt: skip
        entries = [
            AuditEntry(
                kind="duplicate",
                message=d.reason,
                details={
                    "crm_ids": list(d.crm_ids),
                    "provider_ids": list(d.provider_ids),
                    "key": d.key,
                },
            )
            for d in duplicates
        ]
        if not full_listing:
            if entries:
                self.store.audit(self.cid, entries)
            return
        self.counts["duplicates"] = len(plan.duplicates)
        self.counts["skipped"] = len(plan.skipped)
        if entries:
            self.store.audit(self.cid, entries)
        holds = [
            (side, contact_id, d.reason)
            for d in plan.duplicates
            for side, ids in (("crm", d.crm_ids), ("provider", d.provider_ids))
            for contact_id in ids
        ]
        self.store.replace_review_holds(self.cid, holds)

    def record_clusters(self, crm: _SideChanges) -> None:
        """The user's CRM persons that look like one person, from a full listing of the CRM:
        the duplicates page starts from these, and never lists the CRM itself."""
        persons = [r for r in crm.contacts.values() if r.in_scope]
        groups = duplicate_clusters(persons, self.settings.phone_region)
        self.store.replace_duplicate_clusters(self.cid, [(g.items, g.keys) for g in groups])

    def hold(self, plan: Plan) -> PassResult:
        assert plan.held is not None
        held = {
            "creates": plan.held.creates,
            "deletes": plan.held.deletes,
            "mapped_total": plan.held.mapped_total,
            "message": plan.held.message,
            "at": self.ctx.clock().isoformat(),
            "was": self.conn.state,  # the state a confirmed pass goes back to
            "changes": held_changes(plan),  # who, for the person asked to confirm
        }
        held_now = transition(self.conn.state, ConnectionState.NEEDS_ATTENTION)
        self.store.update_connection(self.cid, state=held_now, held=held, next_run_at=None)
        self.store.audit(self.cid, [AuditEntry(kind="guard", message=plan.held.message)])
        return PassResult("held", plan.held.message)

    # --- applying --------------------------------------------------------------------------

    def apply(self, ops: Sequence[PendingOp], *, recovering: set[str]) -> bool:
        """Apply pending writes in order, a chunk at a time. False when time ran out."""
        ordered = sorted(ops, key=lambda o: o.op_id)
        work = [o for o in ordered if not o.is_cursor_op]
        cursor_ops = [o for o in ordered if o.is_cursor_op]
        self.own_tags = {o.mapping_id for o in work}
        marks = [
            str(o.cursors["crm"].get("position") or "") for o in cursor_ops if "crm" in o.cursors
        ]
        stored = self.store.cursor(self.cid, "crm")
        self.crm_mark = (
            marks[0] if marks else (stored.position if stored and stored.complete else "")
        )
        start = 0
        for chunk in _chunks(work):
            if self.out_of_time():
                return False
            if start > 0 and self.stopped():
                # Stopped meanwhile: the writes not sent yet are dropped; a restart re-lists in
                # full and plans them again from the bases, which they never changed.
                self.store.drop_pending(self.cid, [o.op_id for o in work[start:] + cursor_ops])
                return False
            start += len(chunk)
            self.too_soon_to_tell(chunk, recovering)
            self.store.update_connection(
                self.cid,
                inflight_ops=[o.op_id for o in chunk],
                inflight_at=self.ctx.clock().isoformat(),
            )
            self.apply_chunk(chunk, recovering)
            if self.conn.state == "syncing_initial":
                done = int(self.progress.get("done", 0)) + len(chunk)
                total = max(int(self.progress.get("total", 0)), done)
                self.progress = {**self.progress, "phase": "writing", "done": done, "total": total}
                self.store.update_connection(
                    self.cid, inflight_ops=[], progress=self.progress, mapped_count=self.mapped
                )
            else:
                self.store.update_connection(self.cid, inflight_ops=[], mapped_count=self.mapped)
        for op in cursor_ops:
            self.ctx.crash_point("before_cursor_advance")
            for side_name, fields in op.cursors.items():
                self.store.save_cursor(self.cid, side_name, Cursor(**fields))
            self.store.drop_pending(self.cid, [op.op_id])
        return True

    def apply_chunk(self, chunk: Sequence[PendingOp], recovering: set[str]) -> None:
        results: dict[tuple[str, str], WriteResult] = {}
        retry_error: ProviderError | None = None
        try:
            for side_name in ("crm", "provider"):
                try:
                    self.send(side_name, chunk, recovering, results)
                except (RateLimited, AuthExpired) as exc:
                    retry_error = exc
                    break
        finally:
            self.write_receipts(chunk, results)
        self.ctx.crash_point("after_provider_call")
        finished: list[str] = []
        audit: list[AuditEntry] = []
        for op in chunk:
            if op.op_id in self.unclaimed:
                finished.append(op.op_id)  # nothing sent: planned again from a fresh read
                audit.append(
                    AuditEntry(
                        kind="pass",
                        side="crm",
                        provider_id=op.provider_id,
                        mapping_id=op.mapping_id,
                        message="another sync of this user is making the same person in the "
                        "CRM right now: not made here; planned again in a few seconds",
                    )
                )
                continue
            op_results = [results.get((op.op_id, w.side)) for w in op.writes]
            if any(r is None for r in op_results):
                continue  # not sent (the side stopped us): stays pending
            outcome = [r for r in op_results if r is not None]
            if any(_stops_the_side(r.error) for r in outcome):
                if retry_error is None and (err := _first_error(outcome)) is not None:
                    retry_error = err
                continue
            self.ctx.crash_point("before_mapping_write")
            audit.extend(self.finish(op, outcome))
            finished.append(op.op_id)
        if audit:
            self.store.audit(self.cid, audit)
        if self.recheck:
            crm_ids = [c for c, _ in self.recheck if c]
            provider_ids = [p for _, p in self.recheck if p]
            self.add_hints(crm_ids, provider_ids)
            self.noted.update(("crm", c) for c in crm_ids)
            self.noted.update(("provider", p) for p in provider_ids)
            self.recheck = []
        if finished:
            self.store.drop_pending(self.cid, finished)
        if retry_error is not None:
            raise retry_error

    def write_receipts(
        self, chunk: Sequence[PendingOp], results: dict[tuple[str, str], WriteResult]
    ) -> None:
        """Write down the ids our creates made, straight after the providers answered."""
        receipted = []
        for op in chunk:
            made: dict[str, str] = {
                str(w.side): r.remote.id
                for w in op.writes
                if w.kind == "create"
                and w.side not in op.receipts
                and op.op_id not in self.linked_instead  # nothing made: found again if need be
                and (r := results.get((op.op_id, w.side))) is not None
                and r.remote is not None
                and r.remote.id
            }
            if made:
                receipted.append(replace(op, receipts={**op.receipts, **made}))
        if receipted:
            self.store.save_pending(self.cid, receipted)

    def send(
        self,
        side_name: str,
        chunk: Sequence[PendingOp],
        recovering: set[str],
        out: dict[tuple[str, str], WriteResult],
    ) -> None:
        """Send the chunk's writes for one side, recording each result in ``out`` as soon as
        its call returns (so creates done before a later call fails still get receipts)."""
        side = self.sides.of(side_name)
        before = len(out)
        creates: list[tuple[PendingOp, Write]] = []
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
                    creates.append((op, write))
                elif write.kind == "update":
                    updates.append((op, write))
                else:
                    deletes.append((op, write))
        if creates and side_name == "crm":
            creates = self.claimed(self.made_meanwhile(creates, out))
            if creates:
                self.ctx.crash_point("before_create")
        if creates:
            made = side.create(
                [NewContact(tag=op.mapping_id, contact=w.after) for op, w in creates]
            )
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
        sent = len(out) - before
        self.counts[f"{side_name}_writes"] = self.counts.get(f"{side_name}_writes", 0) + sent

    def too_soon_to_tell(self, chunk: Sequence[PendingOp], recovering: set[str]) -> None:
        """Raise TooSoonToTell if this chunk finishes creates of the pass before whose answers
        were lost, sent more recently than their side's listings lag (Google's are minutes
        late): the look-up by our tag might not find the copy yet, and make it a second time."""
        if not self.conn.inflight_at:
            return
        lags = [
            self.sides.of(w.side).listing_lag
            for op in chunk
            if op.op_id in recovering
            for w in op.writes
            if w.kind == "create" and w.side not in op.receipts
        ]
        if not lags:
            return
        ready = datetime.fromisoformat(self.conn.inflight_at) + max(lags)
        if (now := self.ctx.clock()) < ready:
            raise TooSoonToTell(max((ready - now).total_seconds(), 1.0))

    def claimed(self, creates: list[tuple[PendingOp, Write]]) -> list[tuple[PendingOp, Write]]:
        """Claim the strongest keys of each new person among the user's connections (the
        user's Outlook and Google syncs may make the same person within milliseconds, too close
        for any look-around). A create whose key another connection holds is not sent: it is
        dropped and its contact planned again shortly, when the look-up finds that person."""
        region, now = self.settings.phone_region, self.ctx.clock()
        left: list[tuple[PendingOp, Write]] = []
        for op, write in creates:
            keys = _claim_keys(write.after, region) if op.kind == "create" else []
            if all(
                self.store.claim_key(
                    self.conn.company_id,
                    self.conn.user_id,
                    key,
                    owner=self.cid,
                    now=now,
                    seconds=CLAIM_SECONDS,
                )
                for key in keys
            ):
                left.append((op, write))
                continue
            self.unclaimed.add(op.op_id)
            self.recheck.append(("", op.provider_id))
        return left

    def made_meanwhile(
        self, creates: list[tuple[PendingOp, Write]], out: dict[tuple[str, str], WriteResult]
    ) -> list[tuple[PendingOp, Write]]:
        """A person this pass would make in the CRM may have been made there since the pass read
        it: by the user's other connection (one person new, or edited after a delete, in both
        address books) or by hand. Just before creating, read the CRM's changes since, and link
        to the one unmapped person with the same email instead of making a second. Its values
        and ours are merged by the next pass, which re-reads both. (A twin already in the pass's
        own read is linked by the plan: ``_made_again_elsewhere``, matching.) Returns what to
        create."""
        if not self.crm_mark:
            return creates
        position = self.crm_mark
        try:
            while True:
                page = self.sides.crm.read(position)
                # Our own creates are left out: they are mapped, or finished from their receipt.
                self.crm_made.update((r.id, r) for r in page.contacts if r.tag not in self.own_tags)
                position = page.position
                if page.complete:
                    break
        except CursorExpired:
            return creates  # nothing to compare with: made as planned
        self.crm_mark = position  # the next chunk reads only what is newer still
        self.counts["crm_lookups"] = self.counts.get("crm_lookups", 0) + 1

        wanted = set().union(*(email_keys(w.after) for _, w in creates))
        candidates = [
            r
            for r in self.crm_made.values()
            if r.in_scope
            and email_keys(r.contact) & wanted
            and self.store.mapping_for(self.cid, "crm", r.id) is None
        ]
        if candidates:
            held = self.store.review_holds(self.cid, "crm", [r.id for r in candidates])
            candidates = [r for r in candidates if r.id not in held]
        left: list[tuple[PendingOp, Write]] = []
        for op, write in creates:
            twins = [r for r in candidates if email_keys(write.after) & email_keys(r.contact)]
            if len(twins) != 1:
                left.append((op, write))  # none, or not clear which: made as planned
                continue
            candidates.remove(twins[0])
            out[(op.op_id, "crm")] = WriteResult(key=twins[0].id, remote=twins[0])
            self.linked_instead.add(op.op_id)
        return left

    def finish(self, op: PendingOp, results: Sequence[WriteResult]) -> list[AuditEntry]:
        """Record what a pending write achieved: ids, versions, the new base, the audit."""
        ids = {"crm": op.crm_id, "provider": op.provider_id}
        versions = {"crm": op.crm_version, "provider": op.provider_version}
        audit: list[AuditEntry] = []
        failed = refused = False
        for write, result in zip(op.writes, results, strict=True):
            gone = isinstance(result.error, NotFound) and write.kind == "update"
            if isinstance(result.error, PreconditionFailed) or gone:
                # Refused as stale, or the contact is gone: a pass soon reads both contacts
                # again and plans afresh (the edit this write carried is not lost, and a
                # contact deleted meanwhile is seen deleted, not updated again and again).
                self.recheck.append((op.crm_id, op.provider_id))
                refused = True
            if result.error is not None:
                failed = True
                audit.append(
                    AuditEntry(
                        kind="error",
                        side=write.side,
                        crm_id=ids["crm"],
                        provider_id=ids["provider"],
                        mapping_id=op.mapping_id,
                        message=f"{write.kind} on {write.side} failed: {result.error.message}",
                    )
                )
                continue
            if result.remote is not None:
                ids[write.side] = result.remote.id or ids[write.side]
                versions[write.side] = result.remote.version
            if op.op_id in self.linked_instead and write.side == "crm":
                audit.append(
                    AuditEntry(
                        kind="link",
                        side="crm",
                        crm_id=ids["crm"],
                        provider_id=ids["provider"],
                        mapping_id=op.mapping_id,
                        message="made in the CRM meanwhile (by another sync or by hand): linked "
                        "to it instead of creating it again"
                        + (f" ({op.reason})" if op.reason else ""),
                    )
                )
                continue
            if write.kind == "delete":
                ids[write.side] = ""
            if write.kind == "create" and write.side == "crm":
                # Made and recorded: the user's other connections find it among the CRM's
                # changes now. Held for minutes, the claim would keep them from making it again
                # after a user deleted it (their copy must come back, as an edit over a delete).
                for key in _claim_keys(write.after, self.settings.phone_region):
                    self.store.release_key(
                        self.conn.company_id, self.conn.user_id, key, owner=self.cid
                    )
            audit.append(
                AuditEntry(
                    kind="write",
                    side=write.side,
                    crm_id=ids["crm"],
                    provider_id=ids["provider"],
                    mapping_id=op.mapping_id,
                    message=f"{write.kind} on {write.side}"
                    + (f": {op.reason}" if op.reason else ""),
                    before=write.before.to_dict() if write.kind != "create" else None,
                    after=write.after.to_dict() if write.kind != "delete" else None,
                )
            )
            self.counts[f"{write.side}_{write.kind}s"] = (
                self.counts.get(f"{write.side}_{write.kind}s", 0) + 1
            )
        for conflict in op.conflicts:
            audit.append(
                AuditEntry(
                    kind="conflict",
                    mapping_id=op.mapping_id,
                    crm_id=ids["crm"],
                    provider_id=ids["provider"],
                    message=f"{conflict.field}: {conflict.reason}",
                    details={
                        "field": conflict.field,
                        "winner": conflict.winner,
                        "loser": conflict.loser,
                        "loser_value": plain_value(conflict.loser_value),
                        "winner_value": plain_value(conflict.winner_value),
                    },
                )
            )
        if op.kind == "unlink":
            audit.append(
                AuditEntry(
                    kind="unlink",
                    mapping_id=op.mapping_id,
                    crm_id=ids["crm"],
                    provider_id=ids["provider"],
                    message=op.reason or "left the sync scope",
                )
            )
        new_base, holds, refusals = op.new_base, op.holds, 0
        if op.op_id in self.linked_instead and not failed:
            # Both contacts hold edits the other lacks: keep the old agreement (none for a new
            # link) so the next pass, re-reading both, merges them as any two edits.
            prior = self.store.mapping_for(self.cid, "provider", op.provider_id)
            new_base = prior.base if prior is not None and op.provider_id else Contact()
            self.recheck.append((ids["crm"], ids["provider"]))
        if failed:
            # Keep the old agreement so the next pass tries the failed write again; a brand-new
            # link gets an empty base, which merges both sides afresh next time.
            prior = self.store.mapping_for(self.cid, "crm", op.crm_id) if op.crm_id else None
            new_base = prior.base if prior is not None else Contact()
            holds = dict(prior.holds) if prior is not None else {}
            for write, result in zip(op.writes, results, strict=True):
                if isinstance(result.error, NotFound) and write.kind == "update":
                    # Gone, perhaps after an earlier try of this write landed (its answer lost):
                    # it may have held what we sent, so an edit of those values on the other
                    # side does not undo its delete.
                    holds[write.side] = write.after
            refusals = (prior.refusals if prior is not None else 0) + refused
            self.refusals = max(self.refusals, refusals)
        linked = op.was_linked  # a mapping left untouched stays as it was
        if new_base is None or not ids["crm"] or not ids["provider"]:
            if op.crm_id and op.provider_id:
                self.store.drop_mapping(self.cid, op.mapping_id)
                linked = False
        else:
            linked = not op.detached
            self.store.save_mapping(
                self.cid,
                MappingState(
                    mapping_id=op.mapping_id,
                    crm_id=ids["crm"],
                    provider_id=ids["provider"],
                    base=new_base.only(set(ALL_FIELDS)),
                    crm_version=versions["crm"],
                    provider_version=versions["provider"],
                    detached=op.detached,
                    holds=holds,
                    refusals=refusals,
                ),
            )
        self.mapped += int(linked) - int(op.was_linked)
        return audit


@dataclass
class _SideChanges:
    contacts: dict[str, RemoteContact] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    position: str = ""
    full: bool = False

    def add_fetched(self, fetched: dict[str, RemoteContact | None]) -> None:
        """Contacts re-read by id (pushed, or to re-check): None means deleted; an id the
        answer left out is not here at all (unknown)."""
        for contact_id, remote in fetched.items():
            if remote is None:
                self.contacts.pop(contact_id, None)
                self.deleted.add(contact_id)
            else:
                self.contacts[contact_id] = remote
                self.deleted.discard(contact_id)

    def add(self, page: ChangePage) -> None:
        for remote in page.contacts:
            self.contacts[remote.id] = remote
            self.deleted.discard(remote.id)
        for contact_id in page.deleted:
            self.contacts.pop(contact_id, None)
            self.deleted.add(contact_id)
        self.position = page.position
        self.full = self.full or page.full

    def cursor_dict(self, taken_at: datetime) -> dict[str, Any]:
        return {
            "position": self.position,
            "complete": True,
            "full": self.full,
            "taken_at": taken_at.isoformat(),
        }


def _claim_keys(contact: Contact, region: str) -> list[str]:
    """What a new person is claimed by: its emails, else its phones, else its name."""
    for keys_of in MATCH_KEYS:
        keys = keys_of(contact, region)
        if keys:
            return sorted(keys)
    return []


def _version(remote: RemoteContact | Unchanged | None, stored: str) -> str:
    return remote.version if isinstance(remote, RemoteContact) else stored


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
