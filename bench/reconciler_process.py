"""The reconciler in a process of its own, so its peak RSS is the reconciler's memory alone.

A child process runs pass after pass over one connection (``pass_until_done``) with the real
adapters and ``DynamoPassStore``, and reports what that cost: statuses, time in each side's
calls, DynamoDB calls and capacity, and peak RSS. It imports the core and the adapters only.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from contactsync.runtime.messages import SyncMessage
from contactsync.store.pass_interface import ConnectionView
from contactsync.sync.reconcile import Sides

from bench.meters import DynamoMeter, point_store_at
from bench.passes import pass_until_done, production_context
from bench.sides import TimedSide, build_crm_side, build_side


def memory_mb(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process from /proc, in MB. Unlike
    ``ru_maxrss``, the peak is this process's own: a spawned child does not inherit it."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024  # kB
    return 0.0


def reconcile_until_done(spec: dict[str, Any]) -> dict[str, Any]:
    """Passes over ``spec["connection_id"]`` from a start message until one is done."""
    point_store_at(spec["table"], spec["aws_env"])
    meter = DynamoMeter().attach()
    http = httpx.Client(timeout=20.0)
    spent: Counter[str] = Counter()

    def sides_for(_view: ConnectionView) -> Sides:  # new adapters per pass, as the wiring does
        return Sides(
            crm=TimedSide(build_crm_side(spec["crm"], http), "crm", spent),
            provider=TimedSide(build_side(spec["provider"], http), "provider", spent),
        )

    rss_before = memory_mb("VmRSS")
    cid = spec["connection_id"]
    log = pass_until_done(
        cid, SyncMessage(connection_id=cid, reason="start"), production_context(sides_for)
    )
    return {
        "statuses": log.statuses,
        "counts": dict(log.counts),
        "seconds": log.seconds,
        "waited": log.waited,
        "spent": dict(spent),
        "dynamo": meter.snapshot().as_dict(),
        "rss_before_mb": rss_before,
        "rss_peak_mb": memory_mb("VmHWM"),
    }
