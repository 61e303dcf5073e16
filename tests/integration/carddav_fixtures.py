"""Real CardDAV servers for the tests: Radicale (with authentication) and xandikos, each started on
a free loopback port in a temporary directory and stopped after the module."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from contactsync.providers.carddav import CardDavContacts, DavClient

from local.carddav import RunningCardDav, running_carddav

USER, PASSWORD = "dana", "app-specific-1"
SERVERS = ("radicale", "xandikos")


@dataclass
class Book:
    """A fresh address book on a running server, and a side over it."""

    server: RunningCardDav
    url: str
    http: httpx.Client

    def side(self, folder_id: str | None = None, password: str = PASSWORD) -> CardDavContacts:
        dav = DavClient(self.http, lambda: (USER, password))
        return CardDavContacts(dav=dav, folder_id=folder_id or self.url)

    def put(self, name: str, text: str) -> str:
        """Another client stores a card (no conditions); its ETag."""
        return self.server.put_card(self.url, name, text, USER)

    def get(self, name: str) -> str:
        resp = self.http.get(f"{self.url}{name}", auth=self.server.auth(USER))
        resp.raise_for_status()
        return resp.text


@pytest.fixture(scope="module", params=SERVERS)
def carddav_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningCardDav]:
    kind = str(request.param)
    with running_carddav(kind, tmp_path_factory.mktemp(kind), {USER: PASSWORD}) as server:
        yield server


@pytest.fixture
def book(carddav_server: RunningCardDav) -> Iterator[Book]:
    slug = f"book-{uuid.uuid4().hex[:8]}"
    url = carddav_server.make_address_book(USER, "Contacts", slug)
    with httpx.Client(timeout=20) as http:
        yield Book(carddav_server, url, http)
