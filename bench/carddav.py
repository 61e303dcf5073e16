"""CardDAV beside vdirsyncer 0.21, against the same Radicale on loopback, in the same run.

- Full listing and parsing of an address book of 2,000 contacts: ours (a fresh process that
  lists with ``sync-collection`` + ``addressbook-multiget`` and parses every card into the
  canonical contact) vs vdirsyncer's first sync into a folder. Wall time with the process start,
  and peak RSS (the process's VmHWM), for both.
- A pass with nothing changed: ours is a real pass (the engine, an in-memory store and CRM, the
  real CardDAV side) after the first sync; it must be one ``sync-collection`` request. vdirsyncer
  lists every ETag.
- One edit among 200 vs among 2,000: the same pass after another client changed one card; it
  must cost the same whatever the size of the book.

Targets (issue 19): listing ≤ vdirsyncer's time; no-op pass ≤ 50 ms and ≥ 10x faster than
vdirsyncer's; one edit among 2,000 costs what it costs among 200 (same requests, time within 2x
+ 5 ms). ``BENCH_SCALE`` shrinks the books. ``bench/carddav_listing.py`` is our listing
process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from contactsync.providers.carddav import CardDavContacts, DavClient
from contactsync.runtime.messages import SyncMessage
from contactsync.sync.memory import InMemorySide, InMemoryStore
from contactsync.sync.reconcile import PassContext, Sides, run_pass

from bench import carddav_listing
from bench.report import Table, ms, scaled, verdict
from bench.world import World
from local.carddav import RunningCardDav, start_radicale

USER, PASSWORD = "bench", "bench-app-password"
CID = "bench-carddav"
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Run:
    """One process run: wall seconds (start included), peak RSS, what it printed."""

    seconds: float
    rss_mb: float
    out: str


def measured(argv: list[str], env: dict[str, str] | None = None) -> Run:
    """Run a process to its end: its wall time, and its peak RSS (``VmHWM`` of the process
    after its exec, read every 10 ms: a fork's ``ru_maxrss`` would count the parent's memory)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        proc = subprocess.Popen(  # noqa: S603 - our interpreter and vdirsyncer, fixed arguments
            argv,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=ROOT,
        )
        peak_kb = 0
        while proc.poll() is None:
            peak_kb = max(peak_kb, _high_water_kb(proc.pid))
            time.sleep(0.01)
        seconds = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            problem = err.read().decode()[-500:]
            raise RuntimeError(f"{argv[0]} failed ({proc.returncode}): {problem}")
        return Run(seconds, peak_kb / 1024, out.read().decode())


def _high_water_kb(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def seed(server: RunningCardDav, slug: str, n: int) -> str:
    """An address book of ``n`` contacts, uploaded in one PUT of the whole collection (Radicale
    makes the address book and files each card as ``<UID>.vcf``)."""
    book = f"{server.home(USER)}{slug}/"
    body = "".join(_card(i) for i in range(n)).encode()
    headers = {"Content-Type": "text/vcard; charset=utf-8"}
    resp = httpx.put(book, content=body, auth=server.auth(USER), headers=headers, timeout=600)
    if resp.status_code not in (200, 201, 204):
        raise RuntimeError(f"seeding {book} failed: {resp.status_code} {resp.text[:200]}")
    return book


def _card(i: int, title: str = "") -> str:
    lines = [
        "BEGIN:VCARD",
        "VERSION:3.0",
        f"UID:bench-{i}",
        f"N:Person{i};Bench;;;",
        f"FN:Bench Person{i}",
        f"EMAIL;TYPE=INTERNET,WORK:bench.{i}@cards.example",
        f"TEL;TYPE=CELL:+1 415 555 {i % 10000:04d}",
        f"ORG:Company {i % 50}",
        f"ADR;TYPE=WORK:;;{i} Market St;San Francisco;CA;94105;USA",
        "NOTE:seeded for the benchmark",
    ]
    if title:
        lines.append(f"TITLE:{title}")
    return "\r\n".join([*lines, "END:VCARD", ""])


# --- ours ------------------------------------------------------------------------------------


@dataclass
class Passes:
    """Our side of a book: the pass set up after its first sync, and the requests it sends."""

    store: InMemoryStore
    crm: InMemorySide
    side: CardDavContacts
    sent: list[httpx.Request]

    def run(self, reason: str = "schedule") -> tuple[float, float]:
        """Wall time of one pass, and the CPU time this process spent on it (the server's
        time to answer is in the first, not in the second)."""
        ctx = PassContext(store=self.store, sides_for=lambda _v: Sides(self.crm, self.side))
        started, cpu = time.perf_counter(), time.process_time()
        result = run_pass(CID, SyncMessage(connection_id=CID, reason=reason), ctx)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        if result.status != "done":
            raise RuntimeError(f"the pass ended {result.status}: {result.message}")
        return elapsed, cpu


def synced(url: str, http: httpx.Client) -> Passes:
    sent: list[httpx.Request] = []
    http.event_hooks["request"] = [sent.append]
    store = InMemoryStore()
    store.add_connection(CID, state="syncing_initial", provider="carddav")
    side = CardDavContacts(dav=DavClient(http, lambda: (USER, PASSWORD)), folder_id=url)
    passes = Passes(store, InMemorySide(name="crm"), side, sent)
    passes.run("start")  # the first sync: every card made a CRM person (in memory)
    passes.run()  # reads back the CRM side's echoes of those creates
    return passes


def one_edit(server: RunningCardDav, passes: Passes, url: str, i: int) -> tuple[float, float, int]:
    """A pass after another client changed one card: wall, our CPU, requests."""
    server.put_card(url, f"bench-{i}.vcf", _card(i, title=f"edited {time.time()}"), USER)
    passes.sent.clear()
    seconds, cpu = passes.run()
    return seconds, cpu, len(passes.sent)


def warm(server: RunningCardDav, url: str) -> None:
    """Let the server build its caches of a new book before anything is timed (Radicale parses
    every card on first use), so neither client pays for it."""
    with httpx.Client(timeout=600, auth=server.auth(USER)) as http:
        side = CardDavContacts(dav=DavClient(http, lambda: (USER, PASSWORD)), folder_id=url)
        side.read(None)


# --- vdirsyncer ------------------------------------------------------------------------------


def vdirsyncer_config(workdir: Path, url: str) -> Path:
    local = workdir / "local"
    local.mkdir(parents=True, exist_ok=True)
    config = workdir / "config"
    config.write_text(
        "[general]\n"
        f'status_path = "{workdir}/status/"\n\n'
        "[pair contacts]\n"
        'a = "local"\nb = "remote"\ncollections = null\nconflict_resolution = "b wins"\n\n'
        "[storage local]\n"
        f'type = "filesystem"\npath = "{local}/"\nfileext = ".vcf"\n\n'
        "[storage remote]\n"
        f'type = "carddav"\nurl = "{url}"\nusername = "{USER}"\npassword = "{PASSWORD}"\n'
    )
    return config


def vdirsyncer(config: Path, *command: str) -> Run:
    exe = str(Path(sys.executable).with_name("vdirsyncer"))
    return measured([exe, "-c", str(config), *command])


# --- the table -------------------------------------------------------------------------------


def run(world: World) -> Table:
    n, small = scaled(2000, 20), scaled(200, 10)
    table = Table(
        "carddav",
        f"CardDAV: ours vs vdirsyncer 0.21, same Radicale, {n:,} contacts",
        ["measure", "ours", "vdirsyncer", "target", "verdict"],
    )
    with tempfile.TemporaryDirectory(prefix="bench-carddav-") as tmp:
        workdir = Path(tmp)
        server = start_radicale(workdir / "radicale", {USER: PASSWORD})
        try:
            big, little = seed(server, "big", n), seed(server, "small", small)
            warm(server, big)
            warm(server, little)
            # Full listing: ours in a fresh process, then vdirsyncer's first sync.
            ours = measured(
                [sys.executable, "-m", "bench.carddav_listing", big, USER],
                env={
                    carddav_listing.PASSWORD_VARIABLE: PASSWORD,
                    "PYTHONPATH": f"{ROOT}:{ROOT / 'layers/core'}",
                },
            )
            inner = json.loads(ours.out)
            big_cfg = vdirsyncer_config(workdir / "vds-big", big)
            vdirsyncer(big_cfg, "discover")
            theirs = vdirsyncer(big_cfg, "sync")
            listed = len(list((workdir / "vds-big" / "local").iterdir()))
            table.add(
                f"full listing + parsing, {inner['contacts']:,} contacts (process start included)",
                f"{ours.seconds:,.2f} s (listing {ms(inner['seconds'])}, "
                f"our CPU {ms(inner['cpu_seconds'])})",
                f"{theirs.seconds:,.2f} s ({listed:,} files)",
                "≤ vdirsyncer",
                verdict(ours.seconds <= theirs.seconds),
            )
            table.add(
                "peak RSS of that process",
                f"{ours.rss_mb:,.0f} MB",
                f"{theirs.rss_mb:,.0f} MB",
                "—",
                "—",
            )
            # A pass with nothing changed.
            with httpx.Client(timeout=60) as http_big, httpx.Client(timeout=60) as http_small:
                passes_big = synced(big, http_big)
                passes_big.sent.clear()
                quiet, quiet_cpu = min(passes_big.run() for _ in range(5))
                quiet_requests = len(passes_big.sent) // 5
                their_quiet = vdirsyncer(big_cfg, "sync")
                table.add(
                    f"a pass with nothing changed ({n:,} contacts)",
                    f"{ms(quiet)} ({quiet_requests} request, our CPU {ms(quiet_cpu)})",
                    f"{their_quiet.seconds:,.2f} s",
                    "≤ 50 ms, ≥ 10x faster",
                    verdict(quiet <= 0.050 and quiet * 10 <= their_quiet.seconds),
                )
                # One edit among few and among many.
                passes_small = synced(little, http_small)
                small_cfg = vdirsyncer_config(workdir / "vds-small", little)
                vdirsyncer(small_cfg, "discover")
                vdirsyncer(small_cfg, "sync")
                edits_small = [one_edit(server, passes_small, little, i) for i in range(3)]
                edits_big = [one_edit(server, passes_big, big, i) for i in range(3)]
                server.put_card(little, "bench-5.vcf", _card(5, "theirs"), USER)
                their_small = vdirsyncer(small_cfg, "sync")
                server.put_card(big, "bench-5.vcf", _card(5, "theirs"), USER)
                their_big = vdirsyncer(big_cfg, "sync")
        finally:
            server.stop()
    t_small, c_small, r_small = min(edits_small)
    t_big, c_big, r_big = min(edits_big)
    table.add(
        f"one edit among {small:,}",
        f"{ms(t_small)} ({r_small} requests, our CPU {ms(c_small)})",
        f"{their_small.seconds:,.2f} s",
        "—",
        "—",
    )
    same = r_big == r_small and c_big <= 2 * c_small + 0.005
    table.add(
        f"one edit among {n:,}",
        f"{ms(t_big)} ({r_big} requests, our CPU {ms(c_big)})",
        f"{their_big.seconds:,.2f} s",
        f"requests and our CPU as among {small:,}",
        verdict(same),
    )
    table.note(
        "ours: a real pass (engine, in-memory store and CRM, the real CardDAV side), "
        "best of 5 (quiet) / 3 (edits); vdirsyncer: one `vdirsyncer sync` process"
    )
    table.note(
        "wall times include the server's answer, and Radicale's time to answer a sync-collection "
        "grows with the size of the book even when nothing changed (one request either way); "
        "'our CPU' is this process's own share"
    )
    table.note(
        "listing row: wall time of a fresh process each (imports included); peak RSS is the "
        "process's VmHWM, sampled every 10 ms"
    )
    table.figures.update(
        listing={
            "ours_s": ours.seconds,
            "ours_listing_s": inner["seconds"],
            "vdirsyncer_s": theirs.seconds,
            "ours_rss_mb": ours.rss_mb,
            "vdirsyncer_rss_mb": theirs.rss_mb,
            "contacts": inner["contacts"],
        },
        quiet={
            "ours_s": quiet,
            "ours_cpu_s": quiet_cpu,
            "requests": quiet_requests,
            "vdirsyncer_s": their_quiet.seconds,
        },
        edit={"small": (t_small, r_small, c_small), "big": (t_big, r_big, c_big)},
    )
    return table
