"""CardDAV beside vdirsyncer 0.21, against the same Radicale on loopback, in the same run.

- Full listing and parsing of an address book of 2,000 contacts: ours (a fresh process that
  lists with ``sync-collection`` + ``addressbook-multiget`` and parses every card into the
  canonical contact) vs vdirsyncer's first sync into a folder. Wall time with the process start,
  and peak RSS (the process's VmHWM), for both.
- A pass with nothing changed: ours is a real pass (the engine, an in-memory store and CRM, the
  real CardDAV side) after the first sync; it must be one ``sync-collection`` request. vdirsyncer
  lists every ETag. Measured against Radicale and against xandikos (a second server, so no one
  server's speed is baked in), each beside the server's time to answer that one request alone.
- One edit among 200 vs among 2,000: the same pass after another client changed one card; it
  must cost the same whatever the size of the book.
- A look-up before creating 1 and 30 contacts (``addressbook-query``): requests in proportion to
  the contacts, not to the book, on both servers.

Targets (issue 19): listing ≤ vdirsyncer's time; no-op pass ≤ 50 ms and ≥ 10x faster than
vdirsyncer's; one edit among 2,000 costs what it costs among 200 (same requests, time within 2x
+ 5 ms). ``BENCH_SCALE`` shrinks the books. ``bench/carddav_listing.py`` is our listing
process.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from contactsync.contacts.model import Contact, Email, Phone
from contactsync.providers.carddav import CardDavContacts, DavClient
from contactsync.providers.carddav.dav import parse_multistatus, sync_collection_body
from contactsync.providers.carddav.lookup import QUERY
from contactsync.runtime.messages import SyncMessage
from contactsync.sync.reconcile import PassContext, Sides, run_pass
from dulwich import porcelain

from bench import carddav_listing
from bench.report import Table, ms, scaled, verdict
from bench.world import World
from local.carddav import RunningCardDav, start_radicale, start_xandikos
from tests.fakes import InMemorySide, InMemoryStore

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


def seed_xandikos(server: RunningCardDav, slug: str, n: int) -> str:
    """The same book on xandikos, which makes each PUT a git commit (about 70 ms a card here):
    the cards are written into the address book's git working tree and committed once, as any
    git client may do to a xandikos store."""
    book = server.make_address_book(USER, slug, slug)
    tree = server.collection_dir(USER, slug)
    names = [f"bench-{i}.vcf" for i in range(n)]
    for i, name in enumerate(names):
        (tree / name).write_bytes(_card(i).encode())
    author = b"bench <bench@example.invalid>"
    porcelain.add(str(tree), paths=[str(tree / name) for name in names])
    porcelain.commit(
        str(tree), message=b"seeded for the benchmark", author=author, committer=author
    )
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


@dataclass
class Quiet:
    """A pass with nothing changed on one server: ours (best of 5), the server's answer alone,
    vdirsyncer's no-op sync."""

    seconds: float
    cpu: float
    requests: int
    answer: float
    vdirsyncer: float


def quiet(passes: Passes, server: RunningCardDav, url: str, config: Path) -> Quiet:
    passes.sent.clear()
    seconds, cpu = min(passes.run() for _ in range(5))
    requests = len(passes.sent) // 5
    answer = server_answer(server, url)
    return Quiet(seconds, cpu, requests, answer, vdirsyncer(config, "sync").seconds)


def server_answer(server: RunningCardDav, url: str) -> float:
    """The server's time to answer one ``sync-collection`` with an unchanged token, alone (best
    of 5): what a pass with nothing changed cannot go below."""
    headers = {"Depth": "1", "Content-Type": "application/xml; charset=utf-8"}
    with httpx.Client(timeout=600, auth=server.auth(USER), headers=headers) as http:
        first = http.request("REPORT", url, content=sync_collection_body(""))
        first.raise_for_status()
        _, token = parse_multistatus(first.content, url)
        times = []
        for _ in range(5):
            started = time.perf_counter()
            http.request("REPORT", url, content=sync_collection_body(token)).raise_for_status()
            times.append(time.perf_counter() - started)
    return min(times)


@dataclass
class LookUp:
    """A look-up before creating some contacts: wall time, requests, cards found."""

    seconds: float
    requests: int
    found: int


def look_up(url: str, n: int) -> LookUp:
    """A look-up before creating ``n`` contacts (an email, a phone and a name each; the first
    shares its email with a card of the book, and every phone ends in the same four digits as
    some card's)."""
    contacts = [
        Contact(
            given_name="New",
            family_name=f"Person{i}",
            emails=(Email("bench.7@cards.example" if i == 0 else f"new.{i}@people.example"),),
            phones=(Phone(f"+1 646 555 {i:04d}"),),
        )
        for i in range(n)
    ]
    sent: list[httpx.Request] = []
    with httpx.Client(timeout=600, event_hooks={"request": [sent.append]}) as http:
        side = CardDavContacts(dav=DavClient(http, lambda: (USER, PASSWORD)), folder_id=url)
        started = time.perf_counter()
        found = side.lookup(contacts)
        return LookUp(time.perf_counter() - started, len(sent), len(found))


def add_quiet(table: Table, server: str, n: int, q: Quiet) -> None:
    table.add(
        f"a pass with nothing changed, {server} ({n:,} contacts)",
        f"{ms(q.seconds)} ({q.requests} request, our CPU {ms(q.cpu)}; "
        f"{server}'s answer alone {ms(q.answer)})",
        f"{q.vdirsyncer:,.2f} s",
        "≤ 50 ms, ≥ 10x faster",
        verdict(q.seconds <= 0.050 and q.seconds * 10 <= q.vdirsyncer),
    )


def add_look_ups(table: Table, server: str, n: int, one: LookUp, thirty: LookUp) -> None:
    queries = (math.ceil(4 / QUERY), math.ceil(4 * 30 / QUERY))  # 4 filters a contact
    table.add(
        f"look-up before creating 1 / 30 contacts, {server} ({n:,} contacts)",
        f"{ms(one.seconds)} / {ms(thirty.seconds)} ({one.requests} / {thirty.requests} requests, "
        f"{one.found} / {thirty.found} found)",
        "—",
        "requests per contacts, not per card",
        verdict((one.requests, thirty.requests) == queries and one.found == thirty.found == 1),
    )


def xandikos_figures(workdir: Path, n: int) -> tuple[Quiet, LookUp, LookUp]:
    """The pass with nothing changed and the look-ups, against xandikos."""
    server = start_xandikos(workdir / "xandikos", USER)
    try:
        book = seed_xandikos(server, "big", n)
        warm(server, book)
        config = vdirsyncer_config(workdir / "vds-xandikos", book)
        vdirsyncer(config, "discover")
        vdirsyncer(config, "sync")
        with httpx.Client(timeout=60) as http:
            figures = quiet(synced(book, http), server, book, config)
        return figures, look_up(book, 1), look_up(book, 30)
    finally:
        server.stop()


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
        f"CardDAV: ours vs vdirsyncer 0.21, same servers (Radicale, xandikos), {n:,} contacts",
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
                quiet_radicale = quiet(passes_big, server, big, big_cfg)
                add_quiet(table, "Radicale", n, quiet_radicale)
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
            one_radicale, thirty_radicale = look_up(big, 1), look_up(big, 30)
        finally:
            server.stop()
        quiet_xandikos, one_xandikos, thirty_xandikos = xandikos_figures(workdir, n)
    add_quiet(table, "xandikos", n, quiet_xandikos)
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
    add_look_ups(table, "Radicale", n, one_radicale, thirty_radicale)
    add_look_ups(table, "xandikos", n, one_xandikos, thirty_xandikos)
    table.note(
        "ours: a real pass (engine, in-memory store and CRM, the real CardDAV side), "
        "best of 5 (quiet) / 3 (edits); vdirsyncer: one `vdirsyncer sync` process"
    )
    table.note(
        "wall times include the server's answer: Radicale goes through every card of the book to "
        "answer a sync-collection even when nothing changed ('answer alone': that one request, "
        "best of 5); 'our CPU' is this process's own share"
    )
    table.note(
        "look-ups: one addressbook-query per 30 contacts, each sharing a phone's last four digits "
        "with some card and the first an email (1 found); the server reads its cards to answer "
        "(Radicale parses every card of the book for each query)"
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
        quiet={"radicale": vars(quiet_radicale), "xandikos": vars(quiet_xandikos)},
        look_ups={
            "radicale": (vars(one_radicale), vars(thirty_radicale)),
            "xandikos": (vars(one_xandikos), vars(thirty_xandikos)),
        },
        edit={"small": (t_small, r_small, c_small), "big": (t_big, r_big, c_big)},
    )
    return table
