"""The CardDAV faults the chaos run switches on: the proxy in front of a real Radicale does to
each request what a real server's failure would, once, and passes everything else through."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from contactsync.providers.base import CursorExpired, Transient
from contactsync.providers.carddav import CardDavContacts, DavClient

from local.carddav import RunningCardDav, running_carddav
from local.carddav_faults import RunningDavFaults, start_carddav_faults
from tests.chaos.address_book import AddressBook, contact_card, with_property

USER, PASSWORD = "ada", "app-password-1"


@dataclass
class Server:
    radicale: RunningCardDav
    proxy: RunningDavFaults
    book: AddressBook  # straight on Radicale
    via_proxy: str  # the book's URL through the proxy

    def side(self) -> CardDavContacts:
        dav = DavClient(httpx.Client(timeout=10), lambda: (USER, PASSWORD))
        return CardDavContacts(dav=dav, folder_id=self.via_proxy)

    def ids(self, side: CardDavContacts) -> tuple[set[str], str]:
        page = side.read(None)
        found = {c.id for c in page.contacts}
        while not page.complete:
            page = side.read(page.position)
            found |= {c.id for c in page.contacts}
        return found, page.position


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with running_carddav("radicale", tmp_path, {USER: PASSWORD}) as radicale:
        url = radicale.make_address_book(USER, "Contacts")
        book = AddressBook(httpx.Client(auth=radicale.auth(USER), timeout=10), url)
        for i in range(6):
            card = contact_card(
                f"c{i}", "Ada", f"P{i}", f"ada.p{i}@x.example", "+1 415 555 0101", ""
            )
            book.create(card, f"c{i}")
        proxy = start_carddav_faults(radicale.url)
        try:
            yield Server(radicale, proxy, book, url.replace(radicale.url, proxy.url))
        finally:
            proxy.stop()


def test_throttling_answers_ask_to_wait_and_reach_nothing(server: Server) -> None:
    http = httpx.Client(auth=(USER, PASSWORD), timeout=10)
    card = f"{server.via_proxy}new.vcf"
    body = contact_card("new", "Bo", "Ng", "bo@x.example", "+1 415 555 0102", "").encode()
    for kind, status, retry_after in (
        ("429", 429, "1"),
        ("503", 503, "1"),
        ("503_bare", 503, None),
    ):
        server.proxy.faults.inject(kind)
        answer = http.put(card, content=body, headers={"If-None-Match": "*"})
        assert (answer.status_code, answer.headers.get("Retry-After")) == (status, retry_after)
    # Then nothing was written, and the next request goes through
    assert server.book.get(httpx.URL(card).path) is None
    assert http.put(card, content=body, headers={"If-None-Match": "*"}).status_code == 201
    assert server.proxy.faults.hits == {"429": 1, "503": 1, "503_bare": 1}


def test_a_reset_writes_nothing_and_a_lost_answer_writes(server: Server) -> None:
    http = httpx.Client(auth=(USER, PASSWORD), timeout=10)
    body = contact_card("lost", "Cy", "Park", "cy@x.example", "+1 415 555 0103", "").encode()
    card = f"{server.via_proxy}lost.vcf"
    server.proxy.faults.inject("reset")
    with pytest.raises(httpx.TransportError):
        http.put(card, content=body, headers={"If-None-Match": "*"})
    assert server.book.get(httpx.URL(card).path) is None
    server.proxy.faults.inject("lost_answer")
    with pytest.raises(httpx.TransportError):
        http.put(card, content=body, headers={"If-None-Match": "*"})
    stored = server.book.get(httpx.URL(card).path)
    assert stored is not None and stored.email == "cy@x.example"


def test_a_conditional_write_meets_a_concurrent_edit(server: Server) -> None:
    # Given a card read with its ETag, and another client about to save it again
    card = next(c for c in server.book.cards() if c.uid == "c1")
    server.proxy.faults.inject("precondition")
    # A write without a condition is not what the fault waits for
    http = httpx.Client(auth=(USER, PASSWORD), timeout=10)
    assert http.request("PROPFIND", server.via_proxy, headers={"Depth": "0"}).status_code == 207
    assert server.proxy.faults.waiting() == ["precondition"]
    # When the sync writes it back, If-Match the ETag it read
    answer = http.put(
        server.via_proxy.replace(httpx.URL(server.via_proxy).path, card.path),
        content=with_property(card.text, "TITLE", "Buyer").encode(),
        headers={"If-Match": card.etag},
    )
    # Then the server refuses it: the card changed (a new REV), the contact did not
    assert answer.status_code == 412
    now = server.book.get(card.path)
    assert now is not None and now.etag != card.etag
    assert now.value("REV") and now.value("TITLE") == "" and now.email == card.email
    assert server.proxy.faults.hits == {"precondition": 1}


def test_the_adapter_lists_the_same_book_through_a_truncated_answer(server: Server) -> None:
    side = server.side()
    everything, token = server.ids(side)
    assert len(everything) == 6
    # When the answer to the first listing is cut short with a 507 for the collection
    server.proxy.faults.inject("sync_truncated")
    again, _ = server.ids(server.side())
    # Then the adapter asks again from where it was, and finds every card once
    assert again == everything
    assert server.proxy.faults.hits["sync_truncated"] == 1
    # And an answer with nothing to truncate leaves the fault waiting
    server.proxy.faults.inject("sync_truncated")
    assert not server.side().read(token).contacts
    assert server.proxy.faults.waiting() == ["sync_truncated"]


def test_broken_answers_fail_the_read_and_a_forgotten_token_lists_again(server: Server) -> None:
    side = server.side()
    _, token = server.ids(side)
    for kind in ("multiget_partial", "cut_short"):
        server.proxy.faults.clear()
        server.proxy.faults.inject(kind)
        with pytest.raises(Transient):
            server.side().read(None)
        assert server.proxy.faults.hits[kind] == 1
    server.proxy.faults.inject("sync_token_invalid")
    with pytest.raises(CursorExpired):
        server.side().read(token)
    # And with the faults used up, the token still works
    assert server.side().read(token).complete
