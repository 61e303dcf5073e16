"""What a pass answers (its status, when to run again) and what the connection says after it:
the last success or error, when the next pass is due, a pass held by the guard."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from contactsync.engine.plan import Plan
from contactsync.engine.plan_summary import held_changes
from contactsync.providers.base import ProviderError
from contactsync.runtime.messages import Reason
from contactsync.store.pass_interface import AuditEntry
from contactsync.sync.connection_states import ConnectionState, transition
from contactsync.sync.reconcile.context import PassScope

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
RETRY_MAX_SECONDS = 120.0
# A write refused as stale (the contact changed while it was written) is planned again from both
# contacts read afresh by a pass a few seconds later: 2 s, doubling with each refusal of the same
# pair in a row. After RECHECK_TRIES the pair waits for the connection's next pass (and says so
# in status and explain) rather than hold the connection's queue.
RECHECK_FIRST_SECONDS = 2.0
RECHECK_TRIES = 5
# A pass that could not claim a key plans that contact again this soon (and finds the person).
CLAIM_RETRY_SECONDS = 5
# Counts that say a pass saw or did something (the polling interval starts over).
ACTIVITY = ("crm_read", "provider_read", "crm_writes", "provider_writes")


def retry_delay(failures: int) -> float:
    """How long a connection waits after its ``failures``-th failed pass in a row."""
    return min(RETRY_FIRST_SECONDS * 2.0 ** max(failures - 1, 0), RETRY_MAX_SECONDS)


def recheck_delay(refusals: int) -> float:
    """How long a pair waits to be planned again after its ``refusals``-th refusal in a row."""
    return RECHECK_FIRST_SECONDS * 2.0 ** max(refusals - 1, 0)


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


def error_status(exc: ProviderError, failures: int, now: datetime) -> dict[str, Any]:
    """The connection's ``last_error`` for a pass stopped by ``exc``."""
    return {
        "code": type(exc).__name__,
        "message": exc.message,
        "at": now.isoformat(),
        "repeats": failures,
    }


def hold(scope: PassScope, plan: Plan) -> PassResult:
    """The guard held the plan: nothing is written; the connection waits for the user."""
    assert plan.held is not None
    conn = scope.conn
    held = {
        "creates": plan.held.creates,
        "deletes": plan.held.deletes,
        "mapped_total": plan.held.mapped_total,
        "message": plan.held.message,
        "at": scope.ctx.clock().isoformat(),
        "was": conn.state,  # the state a confirmed pass goes back to
        "changes": held_changes(plan),  # who, for the person asked to confirm
    }
    scope.store.update_connection(
        scope.cid,
        state=transition(conn.state, ConnectionState.NEEDS_ATTENTION),
        held=held,
        next_run_at=None,
    )
    scope.store.audit(scope.cid, [AuditEntry(kind="guard", message=plan.held.message)])
    return PassResult("held", plan.held.message)


@dataclass(frozen=True)
class PassEnd:
    """What a pass that went to its end tells the connection."""

    now: datetime
    state: str  # the connection's state as the pass leaves it
    counts: dict[str, int]
    interval: int  # seconds to the next pass, as the polling policy has it
    mapped: int  # linked pairs
    limits: list[str] | None  # what the two sides cannot sync (None: not both known)
    listed_in_full: bool
    refusals: int  # the most writes in a row refused as stale, of the pairs refused now
    settle_until: str  # the end of the settle period, if anything waits for it ("" otherwise)
    unclaimed: bool  # CRM creates were left to another connection's claim


def was_active(counts: dict[str, int]) -> bool:
    return any(counts.get(k) for k in ACTIVITY)


def closing(status: Status, message: str, end: PassEnd) -> tuple[dict[str, Any], PassResult]:
    """The connection's changes after a pass that went to its end, and the pass's answer."""
    now = end.now
    changes: dict[str, Any] = {
        "last_success_at": now.isoformat(),
        "last_error": None,
        "next_run_at": now + timedelta(seconds=end.interval),
        "poll_seconds": end.interval,
        "plan_open": False,
        "inflight_ops": [],
    }
    if end.state in (ConnectionState.SYNCING_INITIAL, ConnectionState.NEEDS_ATTENTION):
        changes["state"] = transition(end.state, ConnectionState.ACTIVE)
        changes["held"] = None
        changes["progress"] = {"phase": "idle", "done": 0, "total": 0}
    changes["mapped_count"] = end.mapped
    if end.limits is not None:
        changes["limits"] = end.limits
    if end.listed_in_full:
        changes["last_full_at"] = now.isoformat()
    if end.refusals > RECHECK_TRIES:
        changes["last_error"] = {
            "code": "WriteRefused",
            "message": f"a contact's write was refused {end.refusals} times in a row "
            "because it kept changing while it was written; it is read again and retried "
            "at every pass (explain names it)",
            "at": now.isoformat(),
            "repeats": 0,
        }
    wait = 0.0
    if end.settle_until:
        until = datetime.fromisoformat(end.settle_until)
        wait = max((until - now).total_seconds(), 1.0)
        changes["next_run_at"] = min(changes["next_run_at"], until)
        status, message = "settling", "creates, deletes or unlinks wait for the rest of a burst"
    # Writes refused as stale, and persons another connection of the user claimed (its pass
    # makes them; the next look-up finds them), are planned again a few seconds later.
    soon = [recheck_delay(end.refusals)] if 0 < end.refusals <= RECHECK_TRIES else []
    if end.unclaimed:
        soon.append(CLAIM_RETRY_SECONDS)
        changes["next_run_at"] = min(
            changes["next_run_at"], now + timedelta(seconds=CLAIM_RETRY_SECONDS)
        )
    if soon and not 0 < wait < min(soon):
        # (what settles comes back sooner: that pass plans these again too)
        answer = PassResult(
            "recheck",
            "writes refused as stale or claimed by another sync are planned again shortly",
            retry_after=min(soon),
            counts=end.counts,
        )
        return changes, answer
    return changes, PassResult(status, message, retry_after=wait, counts=end.counts)
