"""One reconciler invocation's batch of pass requests: coalesced per connection, each pass run
within the invocation's time left, each failure given the delay after which it comes back.

Messages of one connection share a FIFO message group, so passes over a connection never
overlap; the passes of different connections in one batch run at once, each on a thread of its
own (they wait on the providers), each within the invocation's time left. A batch's messages for
the same connection are coalesced (``coalesce``, the one rule the webhooks use too) into one
pass. A connection whose pass could not finish in the time left is not started and goes back on
the queue at once, so the function never times out with finished passes in its batch.
Everything here belongs to one invocation: concurrent invocations in one process (the local
stack runs several, as Lambda runs several containers) share nothing."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from contactsync.runtime.messages import SyncMessage
from contactsync.runtime.observability import (
    PASS_METRICS,
    PASSES_NOT_STARTED,
    PROPAGATION_DELAY,
    count,
    logger,
    milliseconds,
)
from contactsync.runtime.queue import coalesce
from contactsync.sync.reconcile import PassResult
from contactsync.sync.reconcile.status import RETRY_MAX_SECONDS
from contactsync.sync.runner import PassRunner

# Pass results whose message comes back after the result's own delay: a throttled or failed pass
# is tried again, writes refused as stale are planned again from fresh reads (not left to the next
# poll), and a burst's creates, deletes and unlinks that waited are applied once it settled.
COME_BACK = ("throttled", "failed", "recheck", "settling")
BUSY_RETRY_SECONDS = 3.0
UNKNOWN_FAILURE_SECONDS = 30.0


class NotStarted(Exception):
    """Too little of the invocation is left for a pass: its message goes back at once."""


class PassNotDone(Exception):
    """The pass asks to run again later (throttled, failed, refused writes, settling, busy)."""


@dataclass
class PassBatch:
    """The pass requests of one invocation. ``start`` runs the coalesced passes of the batch's
    connections at once; ``handle`` is the record handler: the first time one of a connection's
    messages comes it waits for that connection's pass (runs it, if not started), and raises for
    a message that must come back; ``send_back`` makes those messages visible after their
    delay; ``finish`` waits for every pass started."""

    messages: Sequence[SyncMessage]
    passes: PassRunner
    remaining_seconds: Callable[[], float]
    coalesced: dict[str, SyncMessage] = field(init=False)
    passes_at_once: int = 1
    done: set[str] = field(default_factory=set)
    delays: dict[str, float] = field(default_factory=dict)  # connection id -> seconds
    _running: dict[str, Future[PassResult]] = field(default_factory=dict)
    _pool: ThreadPoolExecutor | None = None

    def __post_init__(self) -> None:
        self.coalesced = {m.connection_id: m for m in coalesce(self.messages)}

    def delay(self, connection_id: str) -> float:
        return self.delays.get(connection_id, UNKNOWN_FAILURE_SECONDS)

    def send_back(self, failed: Iterable[tuple[str, str]]) -> None:
        """The failed messages, as (receipt handle, connection id), come back when their
        connection can go on, not after the queue's long visibility timeout: FIFO queues have no
        per-message delay, so this is how a throttled pass waits without sleeping."""
        for receipt_handle, connection_id in failed:
            self.passes.queue.retry_later(receipt_handle, self.delay(connection_id))

    def start(self, first: Iterable[SyncMessage]) -> None:
        """Start the passes of these connections at once (``first``: the first pass request of
        each connection whose records will be handled), each with the budget the time left
        allows when it starts: they spend most of their time waiting on the providers. At most
        ``passes_at_once`` run together, one per connection; ``handle`` then waits for each."""
        wanted = list(dict.fromkeys(m.connection_id for m in first))
        if not wanted:
            return
        width = max(1, min(self.passes_at_once, len(wanted)))
        self._pool = ThreadPoolExecutor(max_workers=width, thread_name_prefix="pass")
        for cid in wanted:
            self._running[cid] = self._pool.submit(self._run, self.coalesced[cid])

    def finish(self) -> None:
        """Wait for every pass started (one whose records were never handled too): nothing of
        this invocation runs on after it returns."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def handle(self, message: SyncMessage, *, attempt: int, sent_ms: float | None) -> None:
        cid = message.connection_id
        if cid in self.done:
            return  # a pass over this connection already ran in this batch with this request in it
        self.done.add(cid)
        running = self._running.pop(cid, None)
        try:
            result = running.result() if running is not None else self._run(message)
        except NotStarted:
            # Started now, it could outlive the invocation: Lambda would cut it off and the whole
            # batch, finished passes included, would come back. Returned at once instead.
            self.delays[cid] = 0
            count(PASSES_NOT_STARTED)
            logger.info("pass not started: too little time left", extra={"connection_id": cid})
            raise
        except Exception:
            # A fault of ours, not the providers': back off exponentially; SQS redrive parks a
            # message that keeps failing in the DLQ.
            self.delays[cid] = min(5 * 2**attempt, RETRY_MAX_SECONDS)
            raise
        if sent_ms and attempt == 1:
            milliseconds(PROPAGATION_DELAY, max(0.0, time.time() * 1000 - sent_ms))
        if result.status in PASS_METRICS:
            count(PASS_METRICS[result.status])
        said = {} if result.status == "done" else {"detail": result.message}
        logger.info(
            "pass finished",
            extra={"connection_id": cid, "status": result.status, **said, **result.counts},
        )
        if result.status in COME_BACK:
            self.delays[cid] = result.retry_after
            raise PassNotDone(f"{result.status}: retry in {result.retry_after:.0f} s")
        if result.status == "busy":
            self.delays[cid] = BUSY_RETRY_SECONDS
            raise PassNotDone("another pass holds this connection; retry later")

    def _run(self, message: SyncMessage) -> PassResult:
        """The connection's coalesced pass, if it fits the invocation's time left."""
        budget = self.passes.budget(self.remaining_seconds())
        if budget is None:
            raise NotStarted("too little time left in this invocation")
        coalesced = self.coalesced.get(message.connection_id, message)
        return self.passes.run(coalesced, budget_seconds=budget)
