"""Table 1: the initial sync of N provider contacts against N CRM persons, 30 % the same people.

The real reconciler (``run_pass`` with ``DynamoPassStore`` on DynamoDB Local) drives the real
adapters over HTTP against the sandboxes (30 ms per request, rate limits on) until a pass is
done, continuations and throttled retries included. The passes run in a child process, so its
peak RSS is the reconciler's memory alone; the parent serves the sandboxes and polls the
connection's progress the way the settings page does.
"""

from __future__ import annotations

import itertools
import math
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from contactsync.runtime.settings import Settings
from contactsync.store.connections import create_connection, get_connection

from bench.crm import CrmBench
from bench.meters import DynamoCounts
from bench.providers import ProviderBench, available, generated_contacts, not_available
from bench.reconciler_process import reconcile_until_done
from bench.report import Table, num, scaled, verdict
from bench.world import World

LATENCY_MS = 30
CONTACTS = 10_000
OVERLAP = 0.3
PROGRESS_EVERY = 0.5  # seconds between progress polls (a settings page polling)
STALL_TARGET = 30.0  # seconds without a visible progress change that still reads as "moving"


@dataclass
class ProgressWatch:
    """Polls the connection's progress while the passes run; what a user would have seen."""

    connection_id: str
    samples: list[tuple[float, tuple[Any, ...]]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> ProgressWatch:
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.wait(PROGRESS_EVERY):
            conn = get_connection(self.connection_id)
            if conn is None:
                continue
            p = conn.progress.as_dict() if conn.progress else {}
            seen = (conn.state, p.get("phase"), p.get("done"), p.get("total"))
            self.samples.append((time.monotonic() - started, seen))

    @property
    def changes(self) -> int:
        return len({s for _, s in self.samples})

    def longest_stall(self, wall: float) -> float:
        """The longest stretch (s) in which what the user sees did not change."""
        marks = [0.0]
        last: tuple[Any, ...] | None = None
        for at, seen in self.samples:
            if seen != last:
                marks.append(at)
                last = seen
        marks.append(max(wall, marks[-1]))
        return max(b - a for a, b in itertools.pairwise(marks))


def measure(world: World, table_name: str, provider: ProviderBench, n: int) -> dict[str, Any]:
    """Seed both sides, run the initial sync to the end, return every figure the table shows."""
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-initial-{provider.name}-"))
    crm = CrmBench.start(LATENCY_MS)
    provider.start(workdir, LATENCY_MS)
    try:
        crm_account = crm.add_user(f"{provider.name}-owner")
        account = provider.add_account(f"{provider.name}-owner")
        shared = round(n * OVERLAP)
        ids = crm.seed(crm_account, n, seed=1)
        provider.add_contacts(account, crm.as_contacts(ids[:shared]))
        provider.add_contacts(account, generated_contacts(n - shared, seed=2, tag=provider.name))
        conn = create_connection(
            company_id=str(crm_account["company_id"]),
            user_id=str(crm_account["user_id"]),
            provider=provider.name,
            state="syncing_initial",
            folder_id=account.get("folder") or account.get("group"),
        )
        orgs_listed = len({p.org_id for p in crm.owned(crm_account) if p.org_id})
        spec = {
            "table": table_name,
            "aws_env": world.aws.env(),
            "connection_id": conn.connection_id,
            "crm": crm_account,
            "provider": account,
        }
        watch = ProgressWatch(conn.connection_id).start()
        try:
            with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
                child = pool.submit(reconcile_until_done, spec).result()
        finally:
            watch.stop()
        crm_after, provider_after = len(crm.owned(crm_account)), provider.count_contacts(account)
        final = get_connection(conn.connection_id)
        mapped = int(final.counts.as_dict().get("mapped", 0)) if final and final.counts else 0
        crm_created, provider_created = crm_after - n, provider_after - n
        new_orgs = len({c.organization for c in generated_contacts(n - shared, seed=2, tag="x")})
        crm_calls, provider_calls = crm.calls(), provider.calls()
        crm_minimum = (
            math.ceil(n / 500)  # v2 persons pages
            + math.ceil(orgs_listed / 100)  # names of the organizations the persons point at
            + 2  # find or create our "contactsync id" person field
            + crm_created  # no batch create: one call per person
            + 2 * new_orgs  # search, then create, each organization new to the CRM
        )
        provider_minimum = math.ceil(n / provider.page_max) + math.ceil(
            provider_created / provider.create_batch_max
        )
        crm_bound = crm.rate_bound(crm_calls)
        provider_bound = provider.rate_bound(provider_calls, LATENCY_MS)
        return {
            "n": n,
            "shared": shared,
            "child": child,
            "dynamo": DynamoCounts.from_dict(child["dynamo"]),
            "crm_calls": crm_calls,
            "crm_minimum": crm_minimum,
            "crm_bound": crm_bound,
            "crm_limits": crm.limits_text(),
            "provider_calls": provider_calls,
            "provider_minimum": provider_minimum,
            "provider_bound": provider_bound,
            "provider_limits": provider.limits_text(),
            "crm_after": crm_after,
            "provider_after": provider_after,
            "mapped": mapped,
            "expected_each": 2 * n - shared,
            "progress_samples": len(watch.samples),
            "progress_changes": watch.changes,
            "longest_stall": watch.longest_stall(child["seconds"]),
        }
    finally:
        provider.stop()
        crm.stop()


def add_rows(table: Table, name: str, f: dict[str, Any]) -> None:
    child, dyn = f["child"], f["dynamo"]
    wall = child["seconds"]
    bound = max(f["crm_bound"], f["provider_bound"])
    statuses = child["statuses"]
    table.add(
        name,
        "wall time",
        f"{wall:,.0f} s ({len(statuses)} passes, {statuses.count('throttled')} throttled, "
        f"{child['waited']:.0f} s waiting)",
        f"≤ 1.25 x bound = {1.25 * bound:,.0f} s",
        verdict(wall <= 1.25 * bound),
    )
    table.add(
        name,
        "rate-limit bound",
        f"{bound:,.0f} s (CRM {f['crm_bound']:,.0f} s, {name} {f['provider_bound']:,.0f} s)",
        "",
        "",
    )
    for side, calls, minimum in (
        ("CRM", f["crm_calls"], f["crm_minimum"]),
        (name, f["provider_calls"].http, f["provider_minimum"]),
    ):
        table.add(
            name,
            f"{side} API calls",
            f"{calls:,} vs minimum {minimum:,} ({calls / max(minimum, 1):.2f} x)",
            "≤ 1.1 x minimum",
            verdict(calls <= 1.1 * minimum),
        )
    listed = 2 * f["n"]
    table.add(
        name,
        "DynamoDB per contact",
        f"{dyn.read_units / listed:.2f} RRU + {dyn.write_units / listed:.2f} WRU "
        f"({dyn.total_calls:,} calls for {listed:,} contacts)",
        "",
        "",
    )
    peak = child["rss_peak_mb"]
    table.add(
        name,
        "reconciler peak memory",
        f"{peak:,.0f} MB RSS ({peak - child['rss_before_mb']:,.0f} MB above its start)",
        "≤ 256 MB per pass",
        verdict(peak <= 256),
    )
    table.add(
        name,
        "progress visible",
        f"{f['progress_samples']} polls, {f['progress_changes']} distinct, "
        f"longest unchanged {f['longest_stall']:.0f} s",
        f"changes at least every {STALL_TARGET:.0f} s",
        verdict(f["longest_stall"] <= STALL_TARGET),
    )
    spent = child["spent"]
    other = wall - child["waited"] - sum(spent.values()) - dyn.seconds
    table.add(
        name,
        "where the time went",
        f"CRM calls {spent.get('crm', 0):,.0f} s, {name} calls {spent.get('provider', 0):,.0f} s, "
        f"DynamoDB {dyn.seconds:,.0f} s, waiting {child['waited']:,.0f} s, rest {other:,.0f} s",
        "",
        "",
    )
    expected = f["expected_each"]
    complete = f["crm_after"] == f["provider_after"] == f["mapped"] == expected
    table.add(
        name,
        "result",
        f"CRM {num(f['crm_after'])}, {name} {num(f['provider_after'])}, linked {num(f['mapped'])}",
        f"{num(expected)} on each side, all linked",
        verdict(complete),
    )


def run(world: World) -> Table:
    n = scaled(CONTACTS, minimum=20)
    table = Table(
        "initial",
        f"1. Initial sync: {n:,} provider contacts vs {n:,} CRM persons, "
        f"{OVERLAP:.0%} the same people",
        ["provider", "measure", "value", "target", "met"],
    )
    providers = available()
    ready = [(name, factory) for name, factory in providers if factory is not None]
    table_name = world.fresh_table("initial")
    try:
        # Every provider at once (its own CRM user and sandboxes; one table, one DynamoDB
        # Local): the whole benchmark has 20 minutes and each sync is bound by the CRM's limit.
        with ThreadPoolExecutor(max_workers=max(1, len(ready))) as pool:
            running = {
                name: pool.submit(measure, world, table_name, factory(), n)
                for name, factory in ready
            }
            measured = {name: future.result() for name, future in running.items()}
    finally:
        world.drop_table(table_name)
    for name, factory in providers:
        if factory is None:
            table.add(not_available(name))
            continue
        figures = measured[name]
        table.figures[name] = figures
        add_rows(table, name, figures)
        table.note(f"{name}: limits {figures['crm_limits']}; {figures['provider_limits']}")
        calls = figures["dynamo"].calls
        table.note(
            f"{name}: DynamoDB calls "
            + ", ".join(f"{op} {count:,}" for op, count in calls.most_common())
        )
    if len(ready) > 1:
        table.note(f"{', '.join(measured)} ran at the same time, sharing this machine")
    table.note(
        "minimum calls (PROVIDERS.md): CRM = ⌈N/500⌉ pages + ⌈orgs/100⌉ organization names + 2 "
        "for the tag field + 1 per created person + 2 per new organization; provider = "
        "⌈N/page max⌉ + ⌈creates/batch max⌉. Passes run with the production budget "
        f"({Settings().pass_budget_seconds:.0f} s); sandboxes answer in {LATENCY_MS} ms."
    )
    return table
