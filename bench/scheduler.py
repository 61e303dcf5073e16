"""Table 6: the scheduler at 10,000, 100,000 and 1,000,000 scheduled connections.

The real handler runs in process on DynamoDB Local, with a queue that counts what it would send.
Connections are generated into the table with batch writes (``bench.schedule_seed``: copies of
the items the store's own functions write for one connection). The connections not due are
spread over an hour two hours ahead, as if each ran once an hour (Microsoft's safety poll); the
due ones carry a sealed token blob, as real items do, so reads and claims cost what they would.
The same table grows from one size to the next between measurements:

- at each size, one tick with ``DUE`` connections due: reads and time must not grow with size;
- at the largest size, one minute of that hour's schedule (size / 60 due at once), drained the
  way the scheduler drains it, a tick after another (``enqueue_due`` with the clock at the end of
  that minute): how many ticks, reads, claims and how long, against the minute the scheduler has.
"""

from __future__ import annotations

import os
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from contactsync.store.connections import get_connection, set_next_run
from contactsync.sync.schedule import enqueue_due

from bench.handlers import CountingQueue, context, handler_with_queue
from bench.meters import DynamoMeter
from bench.report import Table, num, scaled, verdict
from bench.schedule_seed import Generator
from bench.world import World
from local.event_sources import scheduled_event

SIZES = (10_000, 100_000, 1_000_000)
DUE = 1_000
AHEAD = timedelta(hours=2)  # the not-due connections start this far ahead (seeding is shorter)
CYCLE = timedelta(hours=1)  # ... and spread over this: each connection runs once per cycle
TICK_EVERY = 60.0  # seconds: EventBridge runs the scheduler every minute


def seed(n: int, now: datetime, *, due: bool, seed: int) -> None:
    """``n`` connections due now (in the last minute) or two to three hours ahead. The first call
    in a table makes the templates there, so the table must be empty then."""
    generator = _generators.get(os.environ["TABLE_NAME"])
    if generator is None:
        generator = _generators[os.environ["TABLE_NAME"]] = Generator()
    rng = random.Random(seed)
    if due:
        generator.scheduled(
            n, start=now - timedelta(seconds=60), spread=timedelta(seconds=59), tokens=True, rng=rng
        )
    else:
        generator.scheduled(n, start=now + AHEAD, spread=CYCLE, tokens=False, rng=rng)


_generators: dict[str, Generator] = {}


def tick(meter: DynamoMeter) -> dict[str, Any]:
    """One warm scheduler invocation through its handler, with a queue that counts the SQS
    requests it would make (the SQS emulator's own slowness would swamp the figure):
    DynamoDB use, time, messages."""
    queue = CountingQueue()
    with handler_with_queue("functions.scheduler.app", queue) as app:
        from contactsync.runtime import wiring

        wiring.bind_store()
        get_connection("warm-up")  # the client is made and connected before the clock
        meter.attach()
        before = meter.snapshot()
        started = time.perf_counter()
        answer = app.lambda_handler(scheduled_event(), context("SchedulerFunction"))
        seconds = time.perf_counter() - started
        used = meter.snapshot().minus(before)
    reads = sum(n for op, n in used.calls.items() if op in ("Query", "GetItem"))
    return {
        "messages": int(answer["enqueued"]),
        "seconds": seconds,
        "queries": reads,
        "items_read": used.items_read,
        "read_units": used.read_units,
        "write_units": used.write_units,
        "writes": used.calls.get("UpdateItem", 0),
        "dynamo_seconds": used.seconds,
        "sqs_requests": queue.requests,
        "claimed": [m.connection_id for m in queue.messages],
    }


def drain(meter: DynamoMeter, at: datetime) -> dict[str, Any]:
    """Every connection due at ``at``, enqueued a tick after another (``enqueue_due`` with its
    clock at ``at``) until a tick finds none: ticks, DynamoDB use, time of the ticks that sent.
    The passes a tick queued run before the next tick (they schedule their connections anew,
    which ends the claims; their writes are not counted): a claim leaves the connection in
    DueIndex, so a tick finds those still being passed first."""
    meter.attach()
    before = meter.snapshot()
    ticks, messages, seconds, slowest = 0, 0, 0.0, 0.0
    left_out = []  # the last tick, which found none, and the passes run between ticks
    while True:
        queue = CountingQueue()
        mark = meter.snapshot()
        started = time.perf_counter()
        sent = enqueue_due(queue, clock=lambda: at)
        took = time.perf_counter() - started
        if not sent:
            left_out.append(meter.snapshot().minus(mark))
            break
        ticks, messages, seconds = ticks + 1, messages + sent, seconds + took
        slowest = max(slowest, took)
        mark = meter.snapshot()
        _out_of_the_way([m.connection_id for m in queue.messages], at)
        left_out.append(meter.snapshot().minus(mark))
    used = meter.snapshot().minus(before)
    for part in left_out:
        used = used.minus(part)
    return {
        "ticks": ticks,
        "messages": messages,
        "seconds": seconds,
        "slowest": slowest,
        "queries": sum(n for op, n in used.calls.items() if op in ("Query", "GetItem")),
        "items_read": used.items_read,
        "read_units": used.read_units,
        "write_units": used.write_units,
        "dynamo_seconds": used.seconds,
    }


def _out_of_the_way(claimed: list[str], now: datetime) -> None:
    """The connections a tick claimed wait a day, as their passes would schedule them later:
    a claim leaves them due in DueIndex, so no later measurement must find them there."""
    for cid in claimed:
        set_next_run(cid, now + timedelta(days=1))


def run(world: World) -> Table:
    sizes = [scaled(s, minimum=50) for s in SIZES]
    due = scaled(DUE, minimum=10)
    table = Table(
        "scheduler",
        f"6. Scheduler: {' / '.join(num(s) for s in sizes)} scheduled connections, {due:,} due; "
        f"one minute of the hourly schedule at {sizes[-1]:,}",
        [
            "connections",
            "due",
            "ticks",
            "queries",
            "items read",
            "RRU",
            "WRU",
            "messages",
            "time",
            "target",
            "met",
        ],
    )
    table_name = world.fresh_table("scheduler")
    meter = DynamoMeter()
    rng = random.Random(3)
    try:
        t0 = datetime.now(UTC)
        seeding = 0.0
        # a first round, not measured: DynamoDB Local and the clients warm up on it
        seed(due, datetime.now(UTC), due=True, seed=rng.randrange(10**6))
        _out_of_the_way(tick(meter)["claimed"], t0)
        seeded, results = 0, []
        for size in sizes:
            started = time.monotonic()
            seed(size - seeded - due, t0, due=False, seed=rng.randrange(10**6))
            seed(due, datetime.now(UTC), due=True, seed=rng.randrange(10**6))
            seeding += time.monotonic() - started
            seeded = size
            result = tick(meter)
            _out_of_the_way(result["claimed"], datetime.now(UTC))
            results.append(result)
        # one minute of the hourly schedule: the clock at the end of the cycle's first minute
        window = drain(meter, t0 + AHEAD + timedelta(seconds=TICK_EVERY))
        small, large = results[0], results[-1]
        equal_reads = all(r["items_read"] == due for r in results)
        ratio = large["seconds"] / max(small["seconds"], 1e-9)
        for size, r in zip(sizes, results, strict=True):
            last = size == sizes[-1]
            table.add(
                num(size),
                num(due),
                1,
                r["queries"],
                num(r["items_read"]),
                f"{r['read_units']:.1f}",
                f"{r['write_units']:.0f}",
                num(r["messages"]),
                f"{r['seconds']:.2f} s (DynamoDB {r['dynamo_seconds']:.2f} s)",
                f"equal reads; time ratio to {sizes[0]:,} ≤ 1.2" if last else "",
                verdict(equal_reads and ratio <= 1.2) if last else "",
            )
        table.add(
            f"{num(sizes[-1])}, a minute's due",
            num(window["messages"]),
            window["ticks"],
            window["queries"],
            num(window["items_read"]),
            f"{window['read_units']:.1f}",
            f"{window['write_units']:.0f}",
            num(window["messages"]),
            f"{window['seconds']:.2f} s (DynamoDB {window['dynamo_seconds']:.2f} s; "
            f"slowest tick {window['slowest']:.2f} s)",
            "a minute's due in one tick (ticks come a minute apart)",
            verdict(window["ticks"] <= 1),
        )
        claim = large["write_units"] / max(due, 1)
        table.add(
            "per claim", "", "", "", "", "", f"{claim:.1f}", "", "", "≤ 1 WRU", verdict(claim <= 1)
        )
        table.note(
            f"time ratio {ratio:.2f}; SQS requests per tick {large['sqs_requests']} "
            "(SendMessageBatch, 10 messages each; counted, not sent); writes: one UpdateItem per "
            "due connection (its claim: claimed_until set in place on the connection item, whose "
            "sealed tokens are an item of their own; no index key moves, and the indexes carry "
            "keys only)"
        )
        table.note(
            f"a minute's due: every connection runs once an hour, so {sizes[-1]:,} / 60 are due "
            f"each minute; a tick enqueues at most 1,000 and reads up to 1,000 per DueIndex "
            f"shard to pick them, and ticks come a minute apart, so that minute's connections "
            f"wait up to {window['ticks']} minutes "
            f"({window['write_units'] / max(window['messages'], 1):.1f} WRU a claim)"
        )
        table.note(
            f"seeded by BatchWriteItem copies of the store's own items (bench/schedule_seed.py): "
            f"{sizes[-1]:,} connections in {seeding:,.0f} s"
        )
        table.figures = {
            "small": small,
            "large": large,
            "due": due,
            "ratio": ratio,
            "window": window,
            "sizes": sizes,
        }
    finally:
        _generators.pop(table_name, None)
        world.drop_table(table_name)
    return table
