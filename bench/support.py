"""Table 9: the support questions (explain, duplicates) with 1,000 and 100,000 linked contacts.

The admin services run in process on DynamoDB Local, as the admin API calls them. Each size is
a connection seeded straight into the table with batch writes, as a first sync and its passes
would have left it: a mapping and an audit entry ("create on provider") per linked pair, one a
millisecond apart; the contact asked about linked first and edited twice a second later (so at
100,000 its entries are far older than the newest 1,000); and ``TWINS`` pairs of CRM persons
sharing an email, with their duplicate findings and the clusters a full listing keeps. The two
sides are the in-memory ``ContactSide`` fakes (as in table 2), so "side calls" counts calls on
our interface; the CRM is never listed.

For comparison, what explain read before AuditIndex: the connection's newest 1,000 audit entries
(one Query), in which an old contact's entries are not found at all.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from contactsync.admin import duplicates as duplicate_pages
from contactsync.admin import explain as explanations
from contactsync.admin.access import Caller
from contactsync.admin.context import AdminContext
from contactsync.admin.views import HISTORY_READ
from contactsync.contacts.model import Contact, Email
from contactsync.store.audit import add_audit, audit_items, list_audit
from contactsync.store.connections import create_connection, update_connection
from contactsync.store.duplicates import replace_duplicate_clusters
from contactsync.store.keys import conn_pk
from contactsync.store.models import AuditEntryItem, AuditMention, Mapping, iso
from contactsync.sync.reconcile import Sides

from bench.meters import DynamoMeter
from bench.passes import BenchWiring
from bench.report import Table, median, ms, num, scaled, verdict
from bench.world import World
from tests.fakes import InMemorySide

SIZES = (1_000, 100_000)
TWINS = 20  # pairs of CRM persons that look like one person
REPEATS = 15  # calls per question and size; the time is their median (calls of 20 ms are noisy)
SEED_THREADS = 4
CRM_PAGE = 500  # Pipedrive's largest page of persons: what listing the book would take
# The cost is the target (the same calls and units at both sizes); the time only has to show
# no growth beyond the noise of a shared machine (duplicates makes 40-odd calls in a row).
TIME_RATIO = 1.5
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def _person(i: int) -> Contact:
    return Contact(
        given_name=f"Given{i}",
        family_name="Moss",
        emails=(Email(f"person{i}@bench.example", "work", True),),
        organization="Contoso",
        job_title="Engineer",
    )


def _write(items: list[Any]) -> None:
    """Write mappings, audit entries and mentions in batches of 25."""
    for model in (Mapping, AuditEntryItem, AuditMention):
        with model.batch_write() as batch:
            for item in items:
                if isinstance(item, model):
                    batch.save(item)


def _pair(cid: str, i: int, crm: InMemorySide, provider: InMemorySide) -> list[Any]:
    """A linked pair as a first sync leaves it: its mapping and its audit entry."""
    person = _person(i)
    c, p = crm.put(person, contact_id=str(i)), provider.put(person, contact_id=f"AAMk{i}")
    mapping_id = uuid.uuid4().hex
    stamp = iso(START)
    mapping = Mapping(
        conn_pk(cid),
        f"MAP#{mapping_id}",
        gsi1pk=f"CONN#{cid}#CRM#{c.id}",
        gsi2pk=f"CONN#{cid}#PRV#{p.id}",
        mapping_id=mapping_id,
        connection_id=cid,
        crm_id=c.id,
        provider_id=p.id,
        base=json.dumps(person.to_dict(), sort_keys=True),
        crm_version=c.version,
        provider_version=p.version,
        created_at=stamp,
        updated_at=stamp,
    )
    entry, _ = audit_items(
        cid,
        "write",
        "create on provider",
        side="provider",
        crm_id=c.id,
        provider_id=p.id,
        mapping_id=mapping_id,
        after=person.to_dict(),
        now=START + timedelta(milliseconds=i),
    )
    return [mapping, entry]


def _twin(k: int, j: int) -> Contact:
    return Contact(
        given_name=f"Twin{k}",
        family_name=("Able", "Abel")[j],
        emails=(Email(f"twin{k}@bench.example", "work", True),),
    )


def seed(n: int, seed: int) -> tuple[str, str, Sides]:
    """An active connection with ``n`` linked pairs and ``TWINS`` pairs of CRM twins: its id,
    its user's id and its two sides."""
    crm, provider = InMemorySide(name="crm"), InMemorySide(name="provider")
    user_id = f"support{seed}"
    conn = create_connection(company_id="1", user_id=user_id, provider="microsoft", state="active")
    cid = conn.connection_id
    update_connection(cid, credentials=b"sealed", folder_id="f")
    items = [item for i in range(n) for item in _pair(cid, i, crm, provider)]
    for edit in (1, 2):  # the contact asked about, edited since
        entry, _ = audit_items(
            cid,
            "write",
            "update on crm",
            side="crm",
            crm_id="0",
            provider_id="AAMk0",
            before={"job_title": "Engineer"},
            after={"job_title": f"Director {edit}"},
            now=START + timedelta(seconds=edit),
        )
        items.append(entry)
    clusters = []
    for k in range(TWINS):
        ids = [crm.put(_twin(k, j), contact_id=str(n + 2 * k + j)).id for j in (0, 1)]
        key = f"email:twin{k}@bench.example"
        clusters.append((ids, [key]))
        entry, mentions = audit_items(
            cid,
            "duplicate",
            f"2 CRM contacts share {key}: none is copied until they are merged",
            details={"crm_ids": ids, "provider_ids": [], "key": key},
            now=START + timedelta(minutes=1, seconds=k),
        )
        items += [entry, *mentions]
    with ThreadPoolExecutor(SEED_THREADS) as pool:
        list(pool.map(_write, [items[k::SEED_THREADS] for k in range(SEED_THREADS)]))
    replace_duplicate_clusters(cid, clusters)
    return cid, user_id, Sides(crm=crm, provider=provider)


def _side_calls(sides: Sides) -> Counter[str]:
    return Counter(sides.crm.calls) + Counter(sides.provider.calls)  # type: ignore[attr-defined]


def measure(call: Callable[[], Any], sides: Sides, meter: DynamoMeter) -> dict[str, Any]:
    """What one call asks of DynamoDB and of the sides, and how long it takes."""
    sides_before, before = _side_calls(sides), meter.snapshot()
    started = time.perf_counter()
    answer = call()
    seconds = time.perf_counter() - started
    used = meter.snapshot().minus(before)
    return {
        "seconds": seconds,
        "calls": dict(used.calls),
        "read_units": used.read_units,
        "items_read": used.items_read,
        "side_calls": sum((_side_calls(sides) - sides_before).values()),
        "answer": answer,
    }


def questions(cid: str, user_id: str, sides: Sides) -> dict[str, Callable[[], Any]]:
    """Each question about the connection, as the admin API asks it."""
    admin = AdminContext(BenchWiring(lambda _view: sides), queue=None)  # type: ignore[arg-type]
    caller = Caller(user_id=user_id, company_id="1")
    return {
        "explain by CRM id": lambda: explanations.explain(admin, caller, cid, crm_person_id="0"),
        "explain by provider id": lambda: explanations.explain(
            admin, caller, cid, provider_contact_id="AAMk0"
        ),
        "duplicates": lambda: duplicate_pages.duplicates(admin, caller, cid),
        "before: newest 1,000 entries": lambda: list_audit(cid, limit=HISTORY_READ)[0],
    }


def measure_sizes(
    seeded: dict[int, tuple[str, str, Sides]], meter: DynamoMeter, repeats: int
) -> dict[int, dict[str, dict[str, Any]]]:
    """Every question at every size, taking turns (so a slower emulator later on hits all
    sizes); after one call each to warm up. The last call's counts, the median time."""
    asked = {n: questions(*seeded[n]) for n in seeded}
    runs: dict[int, dict[str, list[dict[str, Any]]]] = {n: {} for n in seeded}
    for round_ in range(repeats + 1):
        for n, calls in asked.items():
            for name, call in calls.items():
                figures = measure(call, seeded[n][2], meter)
                if round_:
                    runs[n].setdefault(name, []).append(figures)
    return {
        n: {
            name: {**figures[-1], "seconds": median([f["seconds"] for f in figures])}
            for name, figures in by_name.items()
        }
        for n, by_name in runs.items()
    }


def found(name: str, answer: Any) -> str:
    """What the answer holds: the asked contact's history, or the clusters and findings."""
    if name.startswith("explain"):
        return f"{len(answer['history'])} history entries"
    if name == "duplicates":
        clusters, findings = answer["clusters"], answer["ambiguous_matches"]
        return f"{len(clusters)} clusters, {len(findings)} findings"
    mine = [e for e in answer if e.crm_id == "0"]
    return f"{len(mine)} of the contact's entries"


def audit_write_units(meter: DynamoMeter) -> dict[str, float]:
    """Write units of one audit entry: an update about a pair, the same about no contact, and a
    duplicate finding naming two CRM persons and a provider contact."""
    before, after = _person(1).to_dict(), _person(1).with_fields(job_title="CTO").to_dict()
    pair = {"crm_id": "1", "provider_id": "AAMk1", "mapping_id": uuid.uuid4().hex}
    finding = {"crm_ids": ["7", "8"], "provider_ids": ["AAMk9"], "key": "email:x@bench.example"}
    kinds: dict[str, Callable[[], Any]] = {
        "update about a pair": lambda: add_audit(
            "wru", "write", "update on crm", side="crm", before=before, after=after, **pair
        ),
        "the same about no contact": lambda: add_audit(
            "wru", "write", "update on crm", side="crm", before=before, after=after
        ),
        "duplicate finding of 3 contacts": lambda: add_audit(
            "wru", "duplicate", "2 CRM and 1 provider contacts share x", details=finding
        ),
    }
    units = {}
    for name, write in kinds.items():
        start = meter.snapshot()
        write()
        units[name] = meter.snapshot().minus(start).write_units
    return units


def run(world: World) -> Table:
    sizes = [scaled(s, minimum=100) for s in SIZES]
    repeats = max(2, scaled(REPEATS, minimum=2))
    table = Table(
        "support",
        f"9. Support questions: {sizes[0]:,} vs {sizes[1]:,} linked contacts",
        [
            *("question", "linked", "DynamoDB calls", "RRU", "items read", "side calls"),
            *("found", "time", "target", "met"),
        ],
    )
    table_name = world.fresh_table("support")
    meter = DynamoMeter()
    try:
        seeded = {n: seed(n, seed=i + 1) for i, n in enumerate(sizes)}
        meter.attach()
        measured = measure_sizes(seeded, meter, repeats)
        units = audit_write_units(meter)
    finally:
        world.drop_table(table_name)
    small, large = (measured[n] for n in sizes)
    for name in small:
        a, b = small[name], large[name]
        same = all(a[k] == b[k] for k in ("calls", "read_units", "side_calls"))
        ratio = b["seconds"] / max(a["seconds"], 1e-9)
        for size, r in ((sizes[0], a), (sizes[1], b)):
            last = size == sizes[1]
            judged = last and not name.startswith("before")
            calls = ", ".join(f"{op} {k}" for op, k in sorted(r["calls"].items()))
            table.add(
                name,
                num(size),
                calls,
                f"{r['read_units']:.1f}",
                num(r["items_read"]),
                r["side_calls"],
                found(name, r["answer"]),
                ms(r["seconds"]) + (f", ratio {ratio:.2f}" if last else ""),
                f"same calls, RRU, side calls; time ratio ≤ {TIME_RATIO}" if judged else "",
                verdict(same and ratio <= TIME_RATIO) if judged else "",
            )
    table.note(
        "WRU per audit entry: "
        + "; ".join(f"{name} {wru:.1f}" for name, wru in units.items())
        + " (AuditIndex item: 1 WRU for an entry about a contact, 0 for one about none; each "
        "further contact a finding or a merge names: a mention item and its index item, 2 WRU)"
    )
    table.note(
        f"before: explain looked through the newest {HISTORY_READ:,} audit entries of the "
        "connection (the last row; an old contact's history is not among them), and duplicates "
        f"listed the whole CRM book: ⌈{sizes[1] + 2 * TWINS:,}/{CRM_PAGE}⌉ = "
        f"{-(-(sizes[1] + 2 * TWINS) // CRM_PAGE):,} Pipedrive pages per request at {sizes[1]:,}"
    )
    table.note(
        "DynamoDB Local counts no read units for a query that finds nothing, where DynamoDB "
        f"charges 0.5: the duplicates rows' look-ups of the twins' links ({2 * TWINS}, none "
        f"linked) cost about {TWINS} RRU more there, at any size"
    )
    table.note(
        f"seeded per size: a mapping and a 'create' entry per linked pair, {TWINS} pairs of CRM "
        f"twins with their findings and clusters; time: median of {repeats} calls; side calls are "
        "calls on our ContactSide interface (explain: one fetch of the contact; duplicates: one "
        "fetch of the clusters' persons by id)"
    )
    table.figures = {"sizes": sizes, "small": small, "large": large, "audit_wru": units}
    for figures in (small, large):
        for r in figures.values():
            r.pop("answer")
    return table
