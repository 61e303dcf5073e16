"""Table 7: the AWS bill per 1,000 active connections per month, from measured counts.

Counts come from the other tables of this run when they ran (incremental: DynamoDB units and
time per pass; webhook: handler time and reads per request; scheduler: reads per tick and
writes per claim); whatever is missing is measured here at a small size (the counts do not
depend on size: table 2 shows it). Prices are public list prices, us-east-1, x86, on-demand
(checked 2025): they are constants below, so the arithmetic is on the page.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from contactsync.runtime.settings import Settings
from contactsync.sync.polling import PollPolicy

from bench import incremental, scheduler, webhook
from bench.meters import DynamoMeter
from bench.report import Table, verdict
from bench.world import World

# --- public list prices (USD) -------------------------------------------------------------------
LAMBDA_PER_REQUEST = 0.20 / 1_000_000
LAMBDA_PER_GB_SECOND = 0.0000166667
SQS_FIFO_PER_REQUEST = 0.50 / 1_000_000
DYNAMODB_PER_RRU = 0.125 / 1_000_000  # on-demand read request unit
DYNAMODB_PER_WRU = 0.625 / 1_000_000  # on-demand write request unit

# --- targets (USD per CONNECTIONS connections per month) ---------------------------------------
TARGETS = {"microsoft (push)": 40.0, "google (polling)": 80.0}

# --- assumptions ---------------------------------------------------------------------------------
CONNECTIONS = 1_000
DAYS = 30
EDITS_PER_DAY = 50  # per connection, half in the CRM, half in the address book
WORKDAY_HOURS = 8  # the edits fall evenly within one working day
PROVIDER_CALL_SECONDS = 0.15  # a provider request from Lambda (local passes used in-memory sides)
SQS_REQUESTS_PER_MESSAGE = 3  # send (batched per webhook), receive, delete
MEMORY_GB = {"reconciler": 1.0, "webhooks": 0.5, "scheduler": 0.5}  # template.yaml MemorySize
BILLED_MINIMUM = 0.001  # Lambda bills per 1 ms


@dataclass
class Measured:
    passes: dict[str, dict[str, Any]]  # edit / echo / idle -> seconds, read/write units, calls
    webhook_seconds: float
    webhook_rru: float
    webhook_wru: float  # the doorbell (and the hints of a CRM push): a write, met or refused
    tick_rru: float  # scheduler: read units per due connection found
    tick_queries: int  # scheduler: queries per tick (one per DueIndex shard)
    claim_wru: float  # scheduler: write units per connection claimed
    tick_seconds_per_due: float
    sources: list[str]


def _measured(world: World) -> Measured:
    sources = []
    inc = world.results.get("incremental")
    if inc is not None:
        passes = inc.figures["large"]
        sources.append("incremental table")
    else:
        name = world.fresh_table("cost")
        try:
            runs = incremental.measure_sizes([200], 3, DynamoMeter())[200]
        finally:
            world.drop_table(name)
        passes = {kind: incremental._summary(v) for kind, v in runs.items()}
        sources.append("a 200-contact pass measured here")
    hook = world.results.get("webhook")
    if hook is None:
        hook = webhook.run(world)
        sources.append("webhook measured here")
    else:
        sources.append("webhook table")
    crm = next(v for k, v in hook.figures.items() if k.startswith("CRM webhook"))
    graph = next(v for k, v in hook.figures.items() if k.startswith("Graph: 1 notification"))
    sched = world.results.get("scheduler")
    if sched is not None:
        tick = sched.figures["large"]
        due = sched.figures["due"]
        sources.append("scheduler table")
    else:
        tick, due = _small_tick(world)
        sources.append("a 20-connection scheduler tick measured here")
    return Measured(
        passes=passes,
        webhook_seconds=(crm["p50"] + graph["p50"]) / 2,
        webhook_rru=(crm["read_units"] + graph["read_units"]) / 2,
        webhook_wru=(crm["write_units"] + graph["write_units"]) / 2,
        tick_rru=tick["read_units"] / max(due, 1),
        tick_queries=int(tick["queries"]),
        claim_wru=tick["write_units"] / max(due, 1),
        tick_seconds_per_due=tick["seconds"] / max(due, 1),
        sources=sources,
    )


def _small_tick(world: World) -> tuple[dict[str, Any], int]:
    due = 20
    world.fresh_table("cost-scheduler")
    scheduler.seed(due, datetime.now(UTC), due=True, seed=random.randrange(10**6))
    return scheduler.tick(DynamoMeter()), due


def google_polls_per_day(policy: PollPolicy, edits: int) -> int:
    """Passes the adaptive poll makes in a day with ``edits`` spread over the working day."""
    day, start = 86_400.0, 9 * 3600.0
    gap = WORKDAY_HOURS * 3600 / max(edits, 1)
    edit_times = [start + i * gap for i in range(edits)]
    polls, t, interval, k = 0, 0.0, policy.max_seconds, 0
    while t < day:
        nxt = t + interval
        active = False
        while k < len(edit_times) and edit_times[k] <= nxt:
            active, k = True, k + 1
        t, polls = nxt, polls + 1
        interval = policy.next_interval("google", interval, active)
    return polls


@dataclass
class Month:
    """Monthly counts for CONNECTIONS connections."""

    passes: dict[str, float]  # kind -> passes
    webhooks: float
    messages: float
    claims: float


def _month(per_day: Month) -> Month:
    f = CONNECTIONS * DAYS
    return Month(
        {k: v * f for k, v in per_day.passes.items()},
        per_day.webhooks * f,
        per_day.messages * f,
        per_day.claims * f,
    )


def scenarios(settings: Settings) -> dict[str, Month]:
    half = EDITS_PER_DAY / 2
    safety = 86_400 / settings.safety_poll_seconds
    policy = PollPolicy(
        settings.poll_min_seconds,
        settings.poll_max_seconds,
        settings.safety_poll_seconds,
        settings.poll_floor_seconds,
    )
    polls = google_polls_per_day(policy, EDITS_PER_DAY)
    return {
        # Every edit is pushed; our write to the other side is pushed back (an echo pass).
        "microsoft (push)": Month(
            {"edit": EDITS_PER_DAY, "echo": EDITS_PER_DAY, "idle": safety},
            webhooks=2 * EDITS_PER_DAY,
            messages=2 * EDITS_PER_DAY + safety,
            claims=safety,
        ),
        # CRM edits and the echoes of our CRM writes arrive by webhook; Google edits (and our
        # writes' echoes) are found by the adaptive poll.
        "google (polling)": Month(
            {"edit": EDITS_PER_DAY, "echo": half, "idle": max(0.0, polls - half)},
            webhooks=EDITS_PER_DAY,
            messages=EDITS_PER_DAY + polls,
            claims=polls,
        ),
    }


def bill(m: Measured, month: Month) -> list[tuple[str, float, str, float]]:
    """(item, monthly quantity, unit, dollars) for one scenario."""
    passes = sum(month.passes.values())
    seconds = sum(
        n * (m.passes[k]["seconds"] + m.passes[k]["provider_calls"] * PROVIDER_CALL_SECONDS)
        for k, n in month.passes.items()
    )
    rru = sum(n * m.passes[k]["read_units"] for k, n in month.passes.items())
    wru = sum(n * m.passes[k]["write_units"] for k, n in month.passes.items())
    ticks = DAYS * 24 * 60
    hook_s = month.webhooks * max(m.webhook_seconds, BILLED_MINIMUM)
    tick_s = ticks * max(m.tick_seconds_per_due * month.claims / ticks, 0.02)
    per_tick = max(m.tick_queries * 0.5, m.tick_rru * month.claims / ticks)  # 0.5 RRU minimum
    rru += month.webhooks * m.webhook_rru + ticks * per_tick
    wru += month.claims * m.claim_wru + month.webhooks * m.webhook_wru
    gb_s = (
        seconds * MEMORY_GB["reconciler"]
        + hook_s * MEMORY_GB["webhooks"]
        + tick_s * MEMORY_GB["scheduler"]
    )
    requests = passes + month.webhooks + ticks
    sqs = month.messages * SQS_REQUESTS_PER_MESSAGE
    return [
        ("Lambda requests", requests, "requests", requests * LAMBDA_PER_REQUEST),
        ("Lambda compute", gb_s, "GB-s", gb_s * LAMBDA_PER_GB_SECOND),
        ("SQS FIFO requests", sqs, "requests", sqs * SQS_FIFO_PER_REQUEST),
        ("DynamoDB reads", rru, "RRU", rru * DYNAMODB_PER_RRU),
        ("DynamoDB writes", wru, "WRU", wru * DYNAMODB_PER_WRU),
    ]


def run(world: World) -> Table:
    m = _measured(world)
    settings = Settings()
    plans = scenarios(settings)
    names = list(plans)
    table = Table(
        "cost",
        f"7. Cost per {CONNECTIONS:,} active connections per month ({EDITS_PER_DAY} edits per "
        "connection per day)",
        ["item", *(f"{n} quantity" for n in names), *(f"{n} $" for n in names)],
    )
    bills = {n: bill(m, _month(plans[n])) for n in names}
    for i, (item, _, unit, _) in enumerate(bills[names[0]]):
        table.add(
            item,
            *(f"{bills[n][i][1]:,.0f} {unit}" for n in names),
            *(f"{bills[n][i][3]:,.2f}" for n in names),
        )
    totals = {n: sum(row[3] for row in bills[n]) for n in names}
    table.add("total", *("" for _ in names), *(f"{totals[n]:,.2f}" for n in names))
    table.add(
        "target",
        *("" for _ in names),
        *(f"≤ {TARGETS[n]:,.2f}: {verdict(totals[n] <= TARGETS[n])}" for n in names),
    )
    top = {n: max(bills[n], key=lambda row: row[3]) for n in names}
    table.add(
        "dominates",
        *("" for _ in names),
        *(f"{top[n][0]} ({top[n][3] / max(totals[n], 1e-9):.0%})" for n in names),
    )
    per_day = {n: plans[n] for n in names}
    table.note(
        "passes per connection per day: "
        + "; ".join(
            f"{n}: " + ", ".join(f"{k} {v:.0f}" for k, v in per_day[n].passes.items())
            for n in names
        )
        + f" (Google polls adapt: {settings.poll_min_seconds}-{settings.poll_max_seconds} s; "
        f"Microsoft safety poll every {settings.safety_poll_seconds} s)"
    )
    table.note(
        "per pass (measured): "
        + ", ".join(
            f"{k} {v['seconds'] * 1000:.0f} ms + {v['provider_calls']} provider calls x "
            f"{PROVIDER_CALL_SECONDS * 1000:.0f} ms, {v['read_units']:.1f} RRU, "
            f"{v['write_units']:.1f} WRU"
            for k, v in m.passes.items()
            if k in incremental.KINDS
        )
    )
    table.note(
        f"webhook request {m.webhook_seconds * 1000:.1f} ms, {m.webhook_rru:.1f} RRU, "
        f"{m.webhook_wru:.1f} WRU; scheduler "
        f"{m.claim_wru:.1f} WRU and {m.tick_rru:.2f} RRU per claimed connection, "
        f"{m.tick_queries} queries per tick, every minute; SQS: send + receive + delete per message"
    )
    table.note(
        "prices (us-east-1, on-demand, list): Lambda $0.20/M requests, $0.0000166667/GB-s "
        "(x86; reconciler 1 GB, others 512 MB); SQS FIFO $0.50/M; DynamoDB $0.125/M RRU, "
        "$0.625/M WRU. Not included: storage, free tiers, CloudWatch, KMS, data transfer. "
        f"Inputs from: {', '.join(m.sources)}"
    )
    table.figures = {"totals": totals}
    return table
