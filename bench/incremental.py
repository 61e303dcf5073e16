"""Table 2: what one edit costs with 1,000 and with 100,000 linked contacts.

The pass is the production one (``run_pass`` with ``DynamoPassStore`` on DynamoDB Local, context
from ``PassRunner``). Mappings, cursors and the connection are seeded straight into the table
with batch writes; the two sides are the in-memory ``ContactSide`` fakes of
``tests/fakes.py`` (seeding 100,000 contacts per side into the HTTP sandboxes would
take longer than the whole benchmark may), so "provider calls" counts calls on our interface.

Three passes are measured at each size: the edit's pass (an Outlook change pushed to the CRM),
the echo pass (our own CRM write coming back through the change feed: merges to nothing), and
an idle pass (a safety poll that finds nothing: the connection was due, and claimed by the
scheduler, so the pass schedules the next one).
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta
from typing import Any

from contactsync.contacts.model import Contact, Email, Phone
from contactsync.runtime.messages import SyncMessage
from contactsync.store.connections import (
    claim_due,
    create_connection,
    get_connection,
    set_next_run,
)
from contactsync.store.credentials import put_credentials
from contactsync.store.cursors import put_cursor
from contactsync.store.keys import conn_pk
from contactsync.store.mappings import mapping_by_provider_id
from contactsync.store.models import Mapping, iso, utcnow
from contactsync.store.pass_store import DynamoPassStore
from contactsync.store.pending_items import list_pending
from contactsync.sync.reconcile import Sides, run_pass
from contactsync.sync.schedule import CLAIM

from bench.meters import DynamoMeter
from bench.passes import production_context
from bench.report import Table, median, ms, num, scaled, verdict
from bench.world import World
from tests.fakes import InMemorySide

SIZES = (1_000, 100_000)
REPEATS = 5  # edits per size; the pass time is their median
SEED_THREADS = 4
KINDS = ("edit", "echo", "idle")
WRU_TARGETS = {"edit": 12.0, "echo": 6.0, "idle": 2.0}  # write units per pass
TOKEN_BLOB = 1_500  # bytes of sealed tokens a signed-in connection holds


def _person(i: int, rng: random.Random) -> Contact:
    return Contact(
        given_name=f"Given{i}",
        family_name=rng.choice(("Moss", "Park", "Ruiz", "Silva", "Lee")),
        emails=(Email(f"person{i}@bench.example", "work", True),),
        phones=(Phone(f"+1 202 555 {i % 10_000:04d}", "work", True),),
        organization=rng.choice(("Contoso", "Fabrikam", "Northwind")),
        job_title="Engineer",
    )


def _write_mappings(cid: str, rows: list[tuple[str, str, str, Contact, str, str]]) -> None:
    stamp = iso(utcnow())
    with Mapping.batch_write() as batch:
        for mapping_id, crm_id, provider_id, base, crm_version, provider_version in rows:
            batch.save(
                Mapping(
                    conn_pk(cid),
                    f"MAP#{mapping_id}",
                    gsi1pk=f"CONN#{cid}#CRM#{crm_id}",
                    gsi2pk=f"CONN#{cid}#PRV#{provider_id}",
                    mapping_id=mapping_id,
                    connection_id=cid,
                    crm_id=crm_id,
                    provider_id=provider_id,
                    base=json.dumps(base.to_dict(), sort_keys=True),
                    crm_version=crm_version,
                    provider_version=provider_version,
                    created_at=stamp,
                    updated_at=stamp,
                )
            )


def linked_connection(n: int, seed: int) -> tuple[str, InMemorySide, InMemorySide]:
    """An active connection with ``n`` linked pairs, both cursors at the sides' latest change."""
    rng = random.Random(seed)
    crm, provider = InMemorySide(name="crm"), InMemorySide(name="provider")
    conn = create_connection(
        company_id="1", user_id=str(seed), provider="microsoft", state="active", folder_id="f"
    )
    cid = conn.connection_id
    put_credentials(cid, random.Random(seed).randbytes(TOKEN_BLOB))  # as a signed-in one holds
    rows = []
    for i in range(n):
        person = _person(i, rng)
        c, p = crm.put(person, contact_id=f"{i}"), provider.put(person, contact_id=f"AAMk{i}")
        rows.append((uuid.uuid4().hex, c.id, p.id, person, c.version, p.version))
    chunks = [rows[k::SEED_THREADS] for k in range(SEED_THREADS)]
    with ThreadPoolExecutor(SEED_THREADS) as pool:
        list(pool.map(lambda chunk: _write_mappings(cid, chunk), chunks))
    for side_name, side in (("crm", crm), ("provider", provider)):
        mark = side.read("since:0").position  # the latest change: nothing new to read
        put_cursor(cid, side_name, mark, True, False)
    DynamoPassStore().update_connection(cid, mapped_count=n)
    return cid, crm, provider


def measure_pass(
    cid: str, message: SyncMessage, sides: Sides, meter: DynamoMeter
) -> dict[str, Any]:
    calls_before = Counter(sides.crm.calls) + Counter(sides.provider.calls)  # type: ignore[attr-defined]
    context = production_context(lambda _view: sides)()
    before = meter.snapshot()
    started = time.perf_counter()
    result = run_pass(cid, message, context)
    seconds = time.perf_counter() - started
    used = meter.snapshot().minus(before)
    calls = Counter(sides.crm.calls) + Counter(sides.provider.calls)  # type: ignore[attr-defined]
    if result.status != "done":
        raise RuntimeError(f"pass ended {result.status}: {result.message}")
    return {
        "seconds": seconds,
        "reads": sum(n for op, n in used.calls.items() if op in ("GetItem", "Query")),
        "writes": used.total_calls
        - sum(n for op, n in used.calls.items() if op in ("GetItem", "Query")),
        "read_units": used.read_units,
        "write_units": used.write_units,
        "provider_calls": sum((calls - calls_before).values()),
        "dynamo_seconds": used.seconds,
        "dynamo_calls": dict(used.calls),
        "dynamo_op_ms": {op: round(t * 1000, 1) for op, t in used.op_seconds.items()},
    }


def probe_store(cid: str, meter: DynamoMeter) -> dict[str, Any]:
    """What DynamoDB Local itself takes, at this table size, for the pass's three kinds of
    read: a consistent GetItem of the connection, a GSI query for a mapping, and the query of
    the connection's pending writes (their own partition, apart from the mappings).
    Milliseconds per call, 20 calls each."""
    calls: dict[str, Any] = {
        "get": lambda k: get_connection(cid),
        "gsi": lambda k: mapping_by_provider_id(cid, f"AAMk{k}"),
        "pending": lambda k: list_pending(cid),
    }
    out: dict[str, Any] = {}
    for name, call in calls.items():
        started = time.perf_counter()
        for k in range(20):
            call(k)
        out[name] = (time.perf_counter() - started) / 20
    out["seconds"] = out["get"]
    out["dynamo_seconds"] = 0.0
    _ = meter
    return out


def one_round(
    cid: str, sides: Sides, meter: DynamoMeter, *, rng: random.Random, k: int, n: int
) -> dict[str, dict[str, Any]]:
    """An Outlook edit's pass, the echo of our CRM write, an idle poll, and a store probe."""
    provider = sides.provider
    assert isinstance(provider, InMemorySide)
    target = f"AAMk{rng.randrange(n)}"
    edited = replace(provider.contacts[target].contact, job_title=f"Director {k}")
    provider.put(edited, contact_id=target)
    reasons = {"edit": "provider_push", "echo": "crm_push", "idle": "schedule"}
    measured = {}
    for kind, reason in reasons.items():
        if kind == "idle":  # a safety poll: the scheduler found the connection due, claimed it
            now = utcnow()
            set_next_run(cid, now - timedelta(seconds=1))
            claim_due(cid, now, now + CLAIM)
        message = SyncMessage(connection_id=cid, reason=reason)
        measured[kind] = measure_pass(cid, message, sides, meter)
    return {**measured, "probe": probe_store(cid, meter)}


def measure_sizes(
    sizes: list[int], repeats: int, meter: DynamoMeter
) -> dict[int, dict[str, list[Any]]]:
    """Seed every size first, then take turns (so a slower emulator later on hits all sizes)."""
    linked = {n: linked_connection(n, seed=i + 1) for i, n in enumerate(sizes)}
    meter.attach()
    runs: dict[int, dict[str, list[Any]]] = {n: {} for n in sizes}
    rng = random.Random(7)
    for k in range(repeats):
        for n, (cid, crm, provider) in linked.items():
            sides = Sides(crm=crm, provider=provider)
            measured = one_round(cid, sides, meter, rng=rng, k=k, n=n)
            for kind, figures in measured.items():
                runs[n].setdefault(kind, []).append(figures)
    return runs


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The last run's counts, with every timing the median of the runs."""
    timed = [k for k, v in runs[-1].items() if isinstance(v, float)]
    return {**runs[-1], **{k: median([r[k] for r in runs]) for k in timed}}


def run(world: World) -> Table:
    sizes = [scaled(s, minimum=100) for s in SIZES]
    repeats = max(2, scaled(REPEATS, minimum=2))
    table = Table(
        "incremental",
        f"2. Incremental cost of one edit: {sizes[0]:,} vs {sizes[1]:,} linked contacts",
        [
            *("pass", "linked", "DynamoDB reads", "writes", "RRU", "WRU", "provider calls"),
            *("time", "target", "met"),
        ],
    )
    table_name = world.fresh_table("incremental")
    meter = DynamoMeter()
    try:
        measured = {
            size: {kind: _summary(v) for kind, v in runs.items()}
            for size, runs in measure_sizes(sizes, repeats, meter).items()
        }
    finally:
        world.drop_table(table_name)
    small, large = (measured[s] for s in sizes)
    for kind in KINDS:
        a, b = small[kind], large[kind]
        same = all(a[key] == b[key] for key in ("reads", "writes", "provider_calls"))
        ratio = b["seconds"] / max(a["seconds"], 1e-9)
        for size, r in ((sizes[0], a), (sizes[1], b)):
            last = size == sizes[1]
            table.add(
                kind,
                num(size),
                r["reads"],
                r["writes"],
                f"{r['read_units']:.1f}",
                f"{r['write_units']:.1f}",
                r["provider_calls"],
                f"{ms(r['seconds'])} (DynamoDB {ms(r['dynamo_seconds'])})"
                + (f", ratio {ratio:.2f}" if last else ""),
                "same counts; time ratio ≤ 1.2" if last else "",
                verdict(same and ratio <= 1.2) if last else "",
            )
    for kind in KINDS:
        worst = max(small[kind]["write_units"], large[kind]["write_units"])
        table.add(
            f"{kind}: WRU",
            "both",
            "",
            "",
            "",
            f"{worst:.1f}",
            "",
            "",
            f"≤ {WRU_TARGETS[kind]:.0f} WRU per pass",
            verdict(worst <= WRU_TARGETS[kind]),
        )
    table.note(
        "DynamoDB Local alone, per call at "
        + " vs ".join(f"{n:,}" for n in sizes)
        + " linked: "
        + ", ".join(
            f"{label} {ms(small['probe'][key])} vs {ms(large['probe'][key])}"
            for key, label in (
                ("get", "GetItem"),
                ("gsi", "GSI Query"),
                ("pending", "pending-writes Query (same RRU, same items)"),
            )
        )
    )
    table.note(
        "sides: tests.fakes in-memory ContactSides (provider calls = calls on our "
        f"interface); time: median of {repeats} passes; edit = one Outlook job-title change"
    )
    by_op = {n: sorted(measured[n]["echo"]["dynamo_op_ms"].items()) for n in sizes}
    table.note(
        "DynamoDB ms by operation, echo pass: "
        + "; ".join(f"{n:,}: " + ", ".join(f"{op} {t}" for op, t in by_op[n]) for n in sizes)
    )
    table.note(
        "DynamoDB calls of the edit pass: "
        + ", ".join(f"{op} {n}" for op, n in sorted(large["edit"]["dynamo_calls"].items()))
    )
    table.figures = {"sizes": sizes, "small": small, "large": large}
    return table
