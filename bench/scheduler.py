"""Table 6: the scheduler with 10,000 and with 100,000 scheduled connections, 1,000 due in each.

The real handler runs in process on DynamoDB Local and sends to the SQS emulator. Connections
are seeded straight into the table with batch writes: the due ones as real items (with their
sealed tokens, in the item of their own a real connection has), the ones scheduled later as
bare schedule entries (key, connection id, shard, next run: a due-index query never reads them,
and seeding 99,000 full items would take DynamoDB Local minutes). The same table grows from the
small size to the large one between the two measurements.
"""

from __future__ import annotations

import os
import random
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from contactsync.store.connections import due_shard, get_connection, set_next_run
from contactsync.store.keys import conn_pk
from contactsync.store.models import Connection, ConnectionTokens, iso

from bench.handlers import CountingQueue, context, handler_with_queue
from bench.meters import DynamoMeter
from bench.report import Table, num, scaled, verdict
from bench.world import World
from local.event_sources import scheduled_event

SIZES = (10_000, 100_000)
DUE = 1_000
SEED_THREADS = 4
LATER = (900.0, 7200.0)  # seconds ahead for connections not due (seeding never takes that long)
TOKEN_BLOB = 1_500  # bytes of sealed credentials a real connection item carries


def _connections(ids: list[str], now: datetime, *, due: bool, rng: random.Random) -> None:
    """Write connection items in batches of 25 (PynamoDB's batch writer)."""
    stamp = iso(now)
    blob = rng.randbytes(TOKEN_BLOB)
    with ConnectionTokens.batch_write() as tokens:
        for cid in ids if due else []:
            tokens.save(ConnectionTokens(conn_pk(cid), "TOKENS", sealed=blob, updated_at=stamp))
    with Connection.batch_write() as batch:
        for cid in ids:
            offset = -rng.uniform(1, 60) if due else rng.uniform(*LATER)
            batch.save(
                Connection(
                    conn_pk(cid),
                    "CONNECTION",
                    gsi1pk=f"COMPANY#{cid[:4]}",
                    gsi1sk=f"USER#{cid[4:8]}#CONN#{cid}",
                    due_shard=due_shard(cid),
                    next_run_at=iso(now + timedelta(seconds=offset)),
                    connection_id=cid,
                    company_id=cid[:4],
                    user_id=cid[4:8],
                    provider="microsoft",
                    state="active",
                    folder_id="folder",
                    created_at=stamp,
                    updated_at=stamp,
                    version=1,
                )
            )


def seed(n: int, now: datetime, *, due: bool, seed: int) -> list[str]:
    """``n`` scheduled connections (due or not), written by a few threads at once."""
    ids = [uuid.uuid4().hex for _ in range(n)]
    chunks = [ids[i::SEED_THREADS] for i in range(SEED_THREADS)]
    with ThreadPoolExecutor(SEED_THREADS) as pool:
        list(
            pool.map(
                lambda k: _connections(chunks[k], now, due=due, rng=random.Random(seed + k)),
                range(SEED_THREADS),
            )
        )
    return ids


def passes_ran(ids: list[str], now: datetime) -> None:
    """The claimed connections' passes ran and scheduled them later (a claim lasts until then:
    claimed connections stay due in DueIndex)."""
    with ThreadPoolExecutor(SEED_THREADS) as pool:
        list(pool.map(lambda cid: set_next_run(cid, now + timedelta(seconds=LATER[1])), ids))


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
    }


def run(world: World) -> Table:
    sizes = [scaled(s, minimum=50) for s in SIZES]
    due = scaled(DUE, minimum=10)
    table = Table(
        "scheduler",
        f"6. Scheduler: {sizes[0]:,} vs {sizes[1]:,} scheduled connections, {due:,} due",
        ["connections", "queries", "items read", "RRU", "WRU", "messages", "time", "target", "met"],
    )
    table_name = world.fresh_table("scheduler")
    os.environ["TABLE_NAME"] = table_name
    meter = DynamoMeter()
    rng = random.Random(3)
    try:
        now = datetime.now(UTC)
        seeded = 0
        results = []
        # a first round, not measured: DynamoDB Local and the clients warm up on it
        claimed = seed(due, datetime.now(UTC), due=True, seed=rng.randrange(10**6))
        tick(meter)
        passes_ran(claimed, now)
        seeded = due
        for size in sizes:
            seed(size - seeded - due, now, due=False, seed=rng.randrange(10**6))
            claimed = seed(due, datetime.now(UTC), due=True, seed=rng.randrange(10**6))
            seeded = size
            results.append(tick(meter))
            passes_ran(claimed, now)  # (not measured: the passes' own writes)
        small, large = results
        equal_reads = small["items_read"] == large["items_read"] == due
        ratio = large["seconds"] / max(small["seconds"], 1e-9)
        for size, r in zip(sizes, results, strict=True):
            last = size == sizes[-1]
            table.add(
                num(size),
                r["queries"],
                num(r["items_read"]),
                f"{r['read_units']:.1f}",
                f"{r['write_units']:.0f}",
                num(r["messages"]),
                f"{r['seconds']:.2f} s (DynamoDB {r['dynamo_seconds']:.2f} s)",
                "equal reads; time ratio ≤ 1.2" if last else "",
                verdict(equal_reads and ratio <= 1.2) if last else "",
            )
        claim = large["write_units"] / max(due, 1)
        target = "≤ 1 WRU per claim"
        table.add("per claim", "", "", "", f"{claim:.1f}", "", "", target, verdict(claim <= 1))
        table.note(
            f"time ratio {ratio:.2f}; SQS requests per tick {large['sqs_requests']} "
            "(SendMessageBatch, 10 messages each; counted, not sent); writes: one UpdateItem per "
            "due connection (its claim: claimed_until set in place on the connection item, which "
            "holds no tokens; no index key moves, and the indexes carry keys only)"
        )
        table.figures = {"small": small, "large": large, "due": due, "ratio": ratio}
    finally:
        world.drop_table(table_name)
    return table
