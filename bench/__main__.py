"""``python -m bench`` runs every table; ``python -m bench initial webhook ...`` runs some.

Tables: initial, incremental, latency, webhook, coldstart, layer, scheduler, cost, carddav, support,
batch.
``BENCH_SCALE`` (default 1.0) shrinks every size for a quick run.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from collections.abc import Callable

from bench.report import Table, scale
from bench.world import World

TABLES = (
    "initial",
    "incremental",
    "latency",
    "webhook",
    "coldstart",
    "layer",
    "scheduler",
    "cost",
    "carddav",
    "support",
    "batch",
)


def runner(name: str) -> Callable[[World], Table]:
    module = importlib.import_module(f"bench.{name}")
    return module.run  # type: ignore[no-any-return]


def run_tables(names: list[str], world: World) -> list[Table]:
    done = []
    for name in names:
        started = time.monotonic()
        print(f"-- running {name} (BENCH_SCALE={scale()}) ...", flush=True)
        table = runner(name)(world)
        world.results[name] = table
        print(table.render(), flush=True)
        print(f"   ({time.monotonic() - started:,.0f} s)\n", flush=True)
        done.append(table)
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("tables", nargs="*", help=f"any of {', '.join(TABLES)} (default: all)")
    args = parser.parse_args(argv)
    unknown = [t for t in args.tables if t not in TABLES]
    if unknown:
        parser.error(f"unknown table(s) {', '.join(unknown)}; choose from {', '.join(TABLES)}")
    names = list(args.tables) or list(TABLES)
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")  # handlers log quietly, as deployed
    started = time.monotonic()
    world = World()
    try:
        tables = run_tables(names, world)
    finally:
        world.close()
    short = [(t.title, r) for t in tables for r in t.shortfalls]
    print(f"bench finished in {time.monotonic() - started:,.0f} s; {len(short)} target(s) not met")
    for title, row in short:
        print(f"  NOT MET  {title.split(':')[0]}: {' | '.join(c for c in row[:3] if c)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
