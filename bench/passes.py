"""Running sync passes the way the reconciler does: its pass context and its message loop.

``pass_until_done`` follows one connection's messages as the queue would deliver them: a
continuation after ``continue``, the same message again after ``throttled`` (once the wait the
provider asked for is over) or ``busy``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from contactsync.runtime.messages import SyncMessage
from contactsync.runtime.settings import Settings
from contactsync.store.pass_interface import ConnectionView
from contactsync.sync.reconcile import PassContext, PassResult, Sides, run_pass
from contactsync.sync.runner import PassRunner

MAX_PASSES = 500


@dataclass
class BenchWiring:
    """What ``PassRunner`` reads from ``Wiring`` to build a pass context, with our own sides."""

    sides_for: Callable[[ConnectionView], Sides]
    settings: Settings = field(default_factory=Settings)
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)


def production_context(sides_for: Callable[[ConnectionView], Sides]) -> Callable[[], PassContext]:
    """Pass contexts exactly as the reconciler makes them (DynamoPassStore, budget, lease,
    polling from the settings), over the sides the benchmark builds."""
    runner = PassRunner(wiring=BenchWiring(sides_for), queue=_NoQueue())  # type: ignore[arg-type]
    return runner.context


class _NoQueue:
    """The runner's queue is not used: the pass loop below follows the messages itself."""

    def send(self, *_: Any, **__: Any) -> int:
        raise AssertionError("the benchmark's pass loop does not queue")


@dataclass
class PassLog:
    statuses: list[str] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    waited: float = 0.0  # seconds spent waiting as the queue would (throttled, busy, settling)
    seconds: float = 0.0

    @property
    def throttles(self) -> int:
        return self.statuses.count("throttled")


def pass_until_done(
    connection_id: str, first: SyncMessage, context: Callable[[], PassContext]
) -> PassLog:
    """Run passes until one is ``done``, as the queue would redeliver and continue them."""
    log = PassLog()
    message = first
    started = time.perf_counter()
    while len(log.statuses) < MAX_PASSES:
        result: PassResult = run_pass(connection_id, message, context())
        log.statuses.append(result.status)
        log.counts.update(result.counts)
        if result.status == "done":
            break
        if result.status == "continue":
            message = SyncMessage(connection_id=connection_id, reason="continuation")
        elif result.status in ("throttled", "recheck", "busy", "settling"):
            wait = result.retry_after if result.status != "busy" else 10.0
            log.waited += wait
            time.sleep(wait)
        else:
            raise RuntimeError(f"pass ended {result.status}: {result.message}")
    else:
        raise RuntimeError(f"no pass finished after {MAX_PASSES} passes")
    log.seconds = time.perf_counter() - started
    return log
