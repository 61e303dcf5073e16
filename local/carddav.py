"""Real CardDAV servers on loopback, for the local stack, the tests and the benchmark.

Radicale (with htpasswd authentication and owner-only rights) is the server the stack and the
integration tests use; xandikos is a second implementation the adapter's contract tests also run
against. Each runs as its own process on a free loopback port with its data in a directory we
are given, and is stopped (and waited for) by ``stop()``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from sandbox.server import HOST, free_port

MKCOL_ADDRESS_BOOK = """<?xml version="1.0" encoding="utf-8"?>
<d:mkcol xmlns:d="DAV:" xmlns:card="urn:ietf:params:xml:ns:carddav">
  <d:set><d:prop>
    <d:resourcetype><d:collection/><card:addressbook/></d:resourcetype>
    <d:displayname>{name}</d:displayname>
  </d:prop></d:set>
</d:mkcol>"""


@dataclass
class RunningCardDav:
    kind: str  # "radicale" | "xandikos"
    url: str  # "http://127.0.0.1:PORT"
    users: dict[str, str] = field(repr=False)  # username -> password ({} when no auth)
    process: subprocess.Popen[bytes] = field(repr=False)
    workdir: Path = field(repr=False)
    authenticates: bool = True

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def set_password(self, user: str, password: str) -> None:
        """A new (app-specific) password: the old one stops working at once (Radicale reads
        its htpasswd file on every login)."""
        self.users[user] = password
        _write_users(self.workdir, self.users)

    def collection_dir(self, user: str, slug: str) -> Path:
        """Where the server keeps an address book on disk: Radicale's folder (its sync-token
        cache is in it), xandikos's git working tree."""
        if self.kind == "xandikos":
            return self.workdir / "data" / user / "contacts" / slug
        return self.workdir / "collections" / "collection-root" / user / slug

    def auth(self, user: str) -> httpx.BasicAuth:
        return httpx.BasicAuth(user, self.users.get(user, ""))

    def home(self, user: str) -> str:
        """The address book home: Radicale keeps books in the principal, xandikos in
        ``contacts/`` under it."""
        return f"{self.url}/{user}/" + ("contacts/" if self.kind == "xandikos" else "")

    def make_address_book(self, user: str, name: str, slug: str = "contacts") -> str:
        """A new address book in ``user``'s home (extended MKCOL, RFC 5689); its URL."""
        url = f"{self.home(user)}{slug}/"
        with httpx.Client(auth=self.auth(user), timeout=20) as http:
            if self.kind == "xandikos":  # the principal and the home, made once
                http.request("MKCOL", f"{self.url}/{user}/")
                http.request("MKCOL", self.home(user))
            resp = http.request(
                "MKCOL",
                url,
                content=MKCOL_ADDRESS_BOOK.format(name=name).encode(),
                headers={"Content-Type": "application/xml; charset=utf-8"},
            )
        if resp.status_code not in (201, 405):
            raise RuntimeError(f"MKCOL {url} failed: {resp.status_code} {resp.text[:200]}")
        return url

    def put_card(self, book_url: str, name: str, vcard: str, user: str) -> str:
        """Store one card as another client would (no conditions); its ETag."""
        with httpx.Client(auth=self.auth(user), timeout=20) as http:
            resp = http.put(
                f"{book_url}{name}",
                content=vcard.encode(),
                headers={"Content-Type": "text/vcard; charset=utf-8"},
            )
        if resp.status_code not in (200, 201, 204):
            raise RuntimeError(f"PUT {name} failed: {resp.status_code} {resp.text[:200]}")
        return str(resp.headers.get("ETag", ""))


def start_radicale(
    workdir: Path, users: dict[str, str], *, port: int | None = None
) -> RunningCardDav:
    """Radicale with htpasswd authentication (plain entries: a throwaway local file)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    htpasswd = _write_users(workdir, users)
    config = workdir / "radicale.conf"
    config.write_text(
        "[server]\n"
        f"hosts = {HOST}:{port}\n"
        "[auth]\n"
        "type = htpasswd\n"
        f"htpasswd_filename = {htpasswd}\n"
        "htpasswd_encryption = plain\n"
        "delay = 0\n"
        "[rights]\n"
        "type = owner_only\n"
        "[storage]\n"
        f"filesystem_folder = {workdir / 'collections'}\n"
        # Radicale answers every sync-collection, even an unchanged token, by going through each
        # card of the book with its item cache: told to trust a card's size and mtime, it stats
        # the card instead of reading and hashing it (about 10% of that answer). We write cards
        # only through Radicale, which records their size and mtime as it writes them.
        "use_mtime_and_size_for_item_cache = True\n"
        "[web]\n"
        "type = none\n"
        "[logging]\n"
        "level = warning\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "radicale", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=(workdir / "radicale.log").open("wb"),
    )
    running = RunningCardDav("radicale", f"http://{HOST}:{port}", dict(users), process, workdir)
    _wait_until_up(running)
    return running


def start_xandikos(workdir: Path, user: str = "user", *, port: int | None = None) -> RunningCardDav:
    """xandikos serving ``/<user>/`` (it has no authentication of its own on plain http: the
    adapter's Basic credentials are sent and ignored)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "xandikos.__main__",
            "serve",
            "-d",
            str(workdir / "data"),
            "--state-dir",
            str(workdir / "state"),
            "--autocreate",
            "--current-user-principal",
            f"/{user}/",
            "-l",
            HOST,
            "-p",
            str(port),
            "--no-detect-systemd",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(workdir / "xandikos.log").open("wb"),
    )
    running = RunningCardDav(
        "xandikos", f"http://{HOST}:{port}", {user: ""}, process, workdir, authenticates=False
    )
    _wait_until_up(running)
    return running


@contextmanager
def running_carddav(kind: str, workdir: Path, users: dict[str, str]) -> Iterator[RunningCardDav]:
    if kind == "radicale":
        running = start_radicale(workdir, users)
    else:
        running = start_xandikos(workdir, next(iter(users)))
    try:
        yield running
    finally:
        running.stop()


def _write_users(workdir: Path, users: dict[str, str]) -> Path:
    htpasswd = workdir / "users"
    htpasswd.write_text("".join(f"{u}:{p}\n" for u, p in users.items()))
    return htpasswd


def _wait_until_up(running: RunningCardDav, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if running.process.poll() is not None:
            raise RuntimeError(f"{running.kind} exited with {running.process.returncode}")
        try:
            httpx.request("OPTIONS", running.url + "/", timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    running.stop()
    raise RuntimeError(f"{running.kind} did not start within {timeout} s")
