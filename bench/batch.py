"""Table 11: what a reconciler batch costs in Lambda compute, its passes one at a time against
its passes at once.

A batch of ten connections (each with 200 linked pairs and one Outlook edit) goes through the
production ``PassBatch`` and ``PassRunner`` on DynamoDB Local, once with ``passes_at_once=1`` and
once at the setting's default. The sides are the in-memory ``ContactSide`` fakes of
``tests/fakes.py`` with each call taking what a provider request from Lambda takes in the cost
table (``cost.PROVIDER_CALL_SECONDS``), as a wait: that wait is what passes at once overlap. An
invocation is billed for its whole duration at the function's memory, so GB-seconds per pass is
the batch's wall time x 1 GB / its passes.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field, replace
from typing import Any

from contactsync.runtime.messages import SyncMessage
from contactsync.runtime.settings import Settings
from contactsync.store.pass_interface import ConnectionView
from contactsync.sync.batch import PassBatch
from contactsync.sync.reconcile import Sides
from contactsync.sync.runner import PassRunner

from bench.cost import MEMORY_GB, PROVIDER_CALL_SECONDS
from bench.incremental import linked_connection
from bench.passes import BenchWiring
from bench.report import Table, scaled, verdict
from bench.world import World
from tests.fakes import InMemorySide

CONNECTIONS = 10  # a FIFO batch's most messages
LINKED = 200


class SlowSide:
    """An in-memory side whose every call waits as long as a provider request would."""

    def __init__(self, inner: InMemorySide) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)
        if not callable(target):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            time.sleep(PROVIDER_CALL_SECONDS)
            return target(*args, **kwargs)

        return call


class BenchRunner(PassRunner):
    """The production runner, less Graph subscriptions (the connections have no Graph here)."""

    def keep_subscription(self, message: SyncMessage) -> None:
        return None


@dataclass
class Queue:
    """The batch's queue: messages sent back are counted, none is expected."""

    back: list[float] = field(default_factory=list)

    def retry_later(self, receipt_handle: str, delay: float) -> None:
        self.back.append(delay)

    def send(self, messages: list[SyncMessage]) -> None:
        raise AssertionError("a one-edit pass does not continue")


def _batch(
    linked: dict[str, tuple[InMemorySide, InMemorySide]], at_once: int, round_: int
) -> dict[str, Any]:
    """Edit one contact of each connection, then run the batch; its wall time and results."""
    rng = random.Random(round_)
    for _, provider in linked.values():
        target = rng.choice(sorted(provider.contacts))
        edited = replace(provider.contacts[target].contact, job_title=f"Director {round_}")
        provider.put(edited, contact_id=target)
    sides = {
        cid: Sides(crm=SlowSide(crm), provider=SlowSide(provider))
        for cid, (crm, provider) in linked.items()
    }

    def sides_for(view: ConnectionView) -> Sides:
        return sides[view.connection_id]

    queue = Queue()
    runner = BenchRunner(wiring=BenchWiring(sides_for), queue=queue)  # type: ignore[arg-type]
    messages = [SyncMessage(connection_id=cid, reason="provider_push") for cid in linked]
    batch = PassBatch(messages, runner, remaining_seconds=lambda: 120.0, passes_at_once=at_once)
    started = time.perf_counter()
    try:
        batch.start(messages)
        for message in messages:
            batch.handle(message, attempt=1, sent_ms=None)
    finally:
        batch.finish()
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "passes": len(messages), "sent_back": len(queue.back)}


def run(world: World) -> Table:
    n = scaled(LINKED, minimum=20)
    at_once = Settings().passes_at_once
    table = Table(
        "batch",
        f"11. Reconciler batch: {CONNECTIONS} connections' edit passes ({n:,} linked each), "
        "one at a time vs at once",
        ["passes", "batch wall time", "GB-s per pass", "target", "met"],
    )
    table_name = world.fresh_table("batch")
    try:
        linked = {}
        for i in range(CONNECTIONS):
            cid, crm, provider = linked_connection(n, seed=100 + i)
            linked[cid] = (crm, provider)
        serial = _batch(linked, 1, 1)
        together = _batch(linked, at_once, 2)
    finally:
        world.drop_table(table_name)
    gb = MEMORY_GB["reconciler"]
    per_pass = {k: r["seconds"] * gb / r["passes"] for k, r in (("1", serial), ("n", together))}
    table.add(
        "one at a time",
        f"{serial['seconds']:.2f} s",
        f"{per_pass['1']:.3f}",
        "",
        "",
    )
    table.add(
        f"{at_once} at once",
        f"{together['seconds']:.2f} s",
        f"{per_pass['n']:.3f} ({per_pass['1'] / max(per_pass['n'], 1e-9):.1f} x less)",
        "≤ 1/2 of one at a time",
        verdict(per_pass["n"] <= per_pass["1"] / 2 and together["sent_back"] == 0),
    )
    table.note(
        f"sides: tests.fakes in-memory ContactSides, each call waiting "
        f"{PROVIDER_CALL_SECONDS * 1000:.0f} ms (a provider request from Lambda, as in table 7); "
        f"store: DynamoDB Local; GB-s = batch wall time x {gb:g} GB (template MemorySize) / "
        "passes; messages sent back: "
        f"{serial['sent_back']} one at a time, {together['sent_back']} at once"
    )
    table.figures = {"one_at_a_time": serial, "at_once": together, "gb_s_per_pass": per_pass}
    return table
