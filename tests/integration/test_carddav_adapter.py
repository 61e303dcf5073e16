"""CardDavContacts against real CardDAV servers on loopback: every test runs against Radicale and
against xandikos, so no single server's quirks are baked in. Listing and changes (sync-collection),
bodies (addressbook-multiget), conditional writes, our mapping id, groups, discovery, auth."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest
from contactsync.contacts.model import Address, Contact, Email, Phone
from contactsync.providers.base import (
    AuthExpired,
    ContactDelete,
    ContactUpdate,
    CursorExpired,
    NewContact,
    PreconditionFailed,
    Transient,
)
from contactsync.providers.carddav import REAUTH, DavClient, address_books, discover, server_for
from contactsync.providers.carddav import side as side_module
from contactsync.providers.carddav.vcard import TAG_PROPERTY

if TYPE_CHECKING:
    from tests.integration.carddav_fixtures import Book

pytest_plugins = ["tests.integration.carddav_fixtures"]
USER, PASSWORD = "dana", "app-specific-1"  # the fixtures' account


def card(uid: str, *lines: str, version: str = "3.0") -> str:
    """A vCard as another client would store it."""
    body = "\r\n".join(("BEGIN:VCARD", f"VERSION:{version}", f"UID:{uid}", *lines, "END:VCARD"))
    return body + "\r\n"


PERSON = Contact(
    given_name="Ada",
    family_name="Lovelace",
    emails=(Email("ada@analytical.example", "work", True),),
    phones=(Phone("+44 20 7946 0000", "mobile"),),
    organization="Analytical Engines",
    job_title="Programmer",
    addresses=(Address("12 St James's Square", "London", "", "SW1Y 4JH", "UK", "work"),),
    birthday="--12-10",
    notes="First programmer.",
    websites=("https://analytical.example",),
)


def read_all(side: side_module.CardDavContacts, position: str | None = None) -> list[object]:
    pages = [side.read(position)]
    while not pages[-1].complete:
        pages.append(side.read(pages[-1].position))
    return pages


# --- reading ----------------------------------------------------------------------------------


def test_full_listing_then_only_the_changes(book: Book) -> None:
    # Given three cards another client stored
    for n in range(3):
        book.put(f"c{n}.vcf", card(f"u{n}", f"FN:Person {n}", f"N:{n};Person;;;"))
    side = book.side()
    # When we list from no position
    first = side.read(None)
    # Then all three came back as a complete full listing, with a sync token as the cursor
    assert first.full and first.complete and first.position
    assert sorted(r.contact.family_name for r in first.contacts) == ["0", "1", "2"]
    ids = {r.contact.family_name: r.id for r in first.contacts}
    # When one is edited, one added and one deleted
    book.put("c0.vcf", card("u0", "FN:Person 0", "N:0;Person;;;", "ORG:Edited"))
    book.put("c9.vcf", card("u9", "FN:New One", "N:One;New;;;"))
    book.http.delete(f"{book.url}c2.vcf", auth=book.server.auth(USER)).raise_for_status()
    changes = side.read(first.position)
    # Then only those come back, incrementally
    assert not changes.full and changes.complete
    assert sorted(r.contact.family_name for r in changes.contacts) == ["0", "One"]
    assert changes.deleted == [ids["2"]]
    # And nothing changed reads as nothing, in one request
    again = side.read(changes.position)
    assert again.contacts == [] and again.deleted == []


def test_lookup_finds_cards_sharing_an_email_a_phone_or_a_name(book: Book) -> None:
    # Given cards sharing an email (other case), a phone (other formatting), a name, and one not
    book.put("e.vcf", card("ue", "FN:Ann Lee", "N:Lee;Ann;;;", "EMAIL:ANN@Lee.test"))
    book.put("p.vcf", card("up", "FN:Bo Chen", "N:Chen;Bo;;;", "TEL:(415) 555-0100"))
    book.put("n.vcf", card("un", "FN:Cy  Park", "N:Park;Cy;;;"))
    book.put("x.vcf", card("ux", "FN:Di Other", "N:Other;Di;;;", "EMAIL:di@other.test"))
    wanted = [
        Contact(given_name="A", emails=(Email("ann@lee.test"),)),
        Contact(given_name="B", phones=(Phone("+1 415 555 0100"),)),
        Contact(given_name="Cy", family_name="Park"),
    ]
    # When they are looked up
    found = book.side().lookup(wanted)
    # Then the three that may be one of them come back, and the other does not
    assert sorted(r.contact.family_name for r in found) == ["Chen", "Lee", "Park"]


def new_person(n: int) -> Contact:
    """A contact about to be created: an email, a phone and a name (four query filters)."""
    return Contact(
        given_name="New",
        family_name=f"Person{n}",
        emails=(Email(f"new.{n}@people.test"),),
        phones=(Phone(f"+1 646 555 {n:04d}"),),
    )


def test_lookup_costs_requests_per_contacts_looked_up_not_per_card_in_the_book(
    book: Book, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a book whose listing would cost a request per 5 cards, of filler cards whose phones
    # end in the same four digits as the contacts looked up, and two cards that share a key
    monkeypatch.setattr(side_module, "MULTIGET", 5)
    sent: list[httpx.Request] = []
    book.http.event_hooks["request"] = [sent.append]

    def fill(start: int, stop: int) -> None:
        for n in range(start, stop):
            book.put(f"f{n}.vcf", card(f"f{n}", f"FN:Filler {n}", f"TEL:+1 212 555 {n:04d}"))

    fill(0, 20)
    book.put("lee.vcf", card("lee", "FN:Ann Lee", "N:Lee;Ann;;;", "EMAIL:ann@lee.test"))
    book.put("chen.vcf", card("chen", "FN:Bo Chen", "N:Chen;Bo;;;", "TEL:+1 (415) 555-0007"))
    one = [Contact(given_name="Ann", family_name="Lee")]
    many = [
        *(new_person(n) for n in range(58)),
        Contact(emails=(Email("ANN@lee.test"),)),
        Contact(phones=(Phone("415-555-0007"),)),
    ]

    def looked_up(contacts: list[Contact]) -> tuple[list[str], int]:
        sent.clear()
        found = book.side().lookup(contacts)
        assert all(b"addressbook-query" in r.content for r in sent)
        return sorted(r.contact.family_name for r in found), len(sent)

    # When one contact is looked up, then 60 (234 filters: two queries of at most 120)
    # Then the server found the cards sharing a key, and the fillers that only share four
    # digits of a phone were left out, in one and two requests
    assert looked_up(one) == (["Lee"], 1)
    assert looked_up(many) == (["Chen", "Lee"], 2)
    # And when the book triples, the same look-ups cost the same requests (a listing: 1 + 13)
    fill(20, 60)
    assert looked_up(one) == (["Lee"], 1)
    assert looked_up(many) == (["Chen", "Lee"], 2)


class WithoutQueries(DavClient):
    """A server that does not support addressbook-query (RFC 3253: 403 supported-report)."""

    def report(self, url: str, body: bytes, depth: str = "1") -> httpx.Response:
        if b"addressbook-query" in body:
            return httpx.Response(403, text='<error xmlns="DAV:"><supported-report/></error>')
        return super().report(url, body, depth)


def test_lookup_on_a_server_without_queries_lists_the_book_and_finds_the_same(book: Book) -> None:
    # Given cards sharing an email and a name, and a server that refuses addressbook-query
    book.put("e.vcf", card("ue", "FN:Ann Lee", "N:Lee;Ann;;;", "EMAIL:ann@lee.test"))
    book.put("n.vcf", card("un", "FN:Cy Park", "N:Park;Cy;;;"))
    book.put("x.vcf", card("ux", "FN:Di Other", "N:Other;Di;;;"))
    side = side_module.CardDavContacts(
        dav=WithoutQueries(book.http, lambda: (USER, PASSWORD)), folder_id=book.url
    )
    wanted = [
        Contact(emails=(Email("ann@lee.test"),)),
        Contact(given_name="Cy", family_name="Park"),
    ]
    # When they are looked up
    found = side.lookup(wanted)
    # Then the book was listed instead, and the same cards came back as a server's query finds
    assert sorted(r.contact.family_name for r in found) == ["Lee", "Park"]
    assert sorted(r.id for r in found) == sorted(r.id for r in book.side().lookup(wanted))


def test_a_long_listing_comes_in_pages(book: Book, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given five cards and pages of two
    for n in range(5):
        book.put(f"p{n}.vcf", card(f"p{n}", f"FN:P {n}", f"N:{n};P;;;"))
    monkeypatch.setattr(side_module, "PAGE", 2)
    # When we list
    pages = read_all(book.side())
    # Then three pages hold the five, and only the last one carries the cursor
    assert [len(p.contacts) for p in pages] == [2, 2, 1]  # type: ignore[attr-defined]
    assert [p.complete for p in pages] == [False, False, True]  # type: ignore[attr-defined]
    assert not pages[-1].position.startswith("{")  # type: ignore[attr-defined]


def test_an_unknown_sync_token_is_cursor_expired(book: Book) -> None:
    # Given a listing's token, and a token the server never gave
    book.put("a.vcf", card("a", "FN:A", "N:A;;;;"))
    side = book.side()
    side.read(None)
    # When we read from the unknown one, Then we are told to list again
    with pytest.raises(CursorExpired):
        side.read(f"{book.url}sync/never-issued")
    # And a full listing still works
    assert side.read(None).full


def test_fetch_says_none_only_for_a_card_that_is_gone(book: Book) -> None:
    book.put("a.vcf", card("a", "FN:A", "N:A;;;;"))
    side = book.side()
    present = side.read(None).contacts[0].id
    gone = f"{side_module.Scope.parse(book.url).book_path}never-there.vcf"
    found = side.fetch([present, gone])
    assert found[gone] is None
    assert found[present] is not None and found[present].contact.family_name == "A"


# --- writing ----------------------------------------------------------------------------------


def test_a_create_carries_our_mapping_id_and_is_never_made_twice(book: Book) -> None:
    # Given a contact we create
    side = book.side()
    [made] = side.create([NewContact(tag="map-123", contact=PERSON)])
    assert made.ok and made.remote is not None
    # Then the card is stored under our mapping id, carrying it, and reads back the same
    assert made.remote.id.endswith("/map-123.vcf") and made.remote.tag == "map-123"
    assert f"{TAG_PROPERTY}:map-123" in book.get("map-123.vcf")
    assert side.fetch([made.remote.id])[made.remote.id].contact == PERSON  # type: ignore[union-attr]
    # When the answer was lost and the pass creates it again
    [again] = side.create([NewContact(tag="map-123", contact=PERSON)])
    # Then it finds the card it made: one card, not two
    assert again.ok and again.remote is not None and again.remote.id == made.remote.id
    assert len(read_all(side)[0].contacts) == 1  # type: ignore[attr-defined]
    # And the lost-answer recovery finds it by its tag
    found = side.find_tagged("map-123")
    assert found is not None and found.id == made.remote.id
    assert side.find_tagged("map-never") is None


def test_an_update_rewrites_only_what_changed_and_keeps_the_rest(book: Book) -> None:
    # Given a card from an Apple device, with much we do not model
    book.put(
        "apple.vcf",
        card(
            "apple-1",
            "N:Lovelace;Ada;;Countess;",
            "FN:Ada Lovelace",
            "ORG:Analytical Engines;Research",
            "item1.EMAIL;TYPE=INTERNET:ada@analytical.example",
            "item1.X-ABLabel:_$!<Custom>!$_",
            "TEL;TYPE=CELL:+44 20 7946 0000",
            "X-SOCIALPROFILE;TYPE=twitter:https://twitter.example/ada",
            "PHOTO;ENCODING=b;TYPE=PNG:iVBORw0KGgo=",
            "IMPP;X-SERVICE-TYPE=Skype:skype:ada",
        ),
    )
    side = book.side()
    [remote] = side.read(None).contacts
    # When the CRM changed the family name and added an email
    after = remote.contact.with_fields(
        family_name="King", emails=(*remote.contact.emails, Email("ada@home.example", "home"))
    )
    [result] = side.update([ContactUpdate(remote.id, remote.version, remote.contact, after)])
    # Then the write succeeded with a new version and reads back as wanted
    assert result.ok and result.remote is not None and result.remote.version != remote.version
    assert side.fetch([remote.id])[remote.id].contact == after  # type: ignore[union-attr]
    # And what we do not model is still there, untouched
    text = book.get("apple.vcf").replace("\r\n ", "").upper()
    for kept in ("COUNTESS", "RESEARCH", "X-ABLABEL:_$!<CUSTOM>!$_", "X-SOCIALPROFILE",
                 "PHOTO", "SKYPE:ADA", "ITEM1.EMAIL"):  # fmt: skip
        assert kept in text, kept


def test_a_vcard_4_stays_a_vcard_4(book: Book) -> None:
    book.put(
        "v4.vcf",
        card(
            "urn:uuid:v4",
            "FN:Grace Hopper",
            "N:Hopper;Grace;;;",
            "EMAIL;TYPE=work;PREF=1:grace@navy.example",
            "BDAY:--1209",
            version="4.0",
        ),
    )
    side = book.side()
    [remote] = side.read(None).contacts
    assert remote.contact.birthday == "--12-09" and remote.contact.emails[0].primary
    after = remote.contact.with_fields(job_title="Rear Admiral")
    [result] = side.update([ContactUpdate(remote.id, remote.version, remote.contact, after)])
    assert result.ok
    text = book.get("v4.vcf")
    assert "VERSION:4.0" in text and "BDAY:--1209" in text and "TITLE:Rear Admiral" in text


def test_a_stale_version_is_refused_and_nothing_is_written(book: Book) -> None:
    # Given a card we read, then another client changed
    book.put("s.vcf", card("s", "FN:Stale", "N:Stale;;;;"))
    side = book.side()
    [remote] = side.read(None).contacts
    book.put("s.vcf", card("s", "FN:Stale", "N:Stale;;;;", "NOTE:their edit"))
    # When we update it against the version we read
    after = remote.contact.with_fields(job_title="ours")
    [result] = side.update([ContactUpdate(remote.id, remote.version, remote.contact, after)])
    # Then it is refused as stale (to be re-planned) and their edit stands
    assert isinstance(result.error, PreconditionFailed)
    assert "their edit" in book.get("s.vcf") and "ours" not in book.get("s.vcf")
    # And a delete against the old version gets the server's own 412
    [gone] = side.delete([ContactDelete(remote.id, remote.version)])
    assert isinstance(gone.error, PreconditionFailed) and gone.error.status == 412


def test_a_card_changed_between_our_read_and_our_write_gets_the_servers_412(book: Book) -> None:
    # Given a card, and another client that edits it just before our PUT reaches the server
    book.put("r.vcf", card("r", "FN:Race", "N:Race;;;;"))
    side = book.side()
    [remote] = side.read(None).contacts
    request = side._dav.request

    def edited_first(method: str, url: str, **kwargs: object) -> object:
        if method == "PUT":
            book.put("r.vcf", card("r", "FN:Race", "N:Race;;;;", "NOTE:theirs"))
        return request(method, url, **kwargs)  # type: ignore[arg-type]

    side._dav.request = edited_first  # type: ignore[method-assign]
    after = remote.contact.with_fields(job_title="ours")
    [result] = side.update([ContactUpdate(remote.id, remote.version, remote.contact, after)])
    # Then the server refused our If-Match, and that is a PreconditionFailed to re-plan
    assert isinstance(result.error, PreconditionFailed) and result.error.status == 412
    assert "theirs" in book.get("r.vcf") and "ours" not in book.get("r.vcf")


def test_delete_with_the_current_version_and_again(book: Book) -> None:
    book.put("d.vcf", card("d", "FN:Del", "N:Del;;;;"))
    side = book.side()
    [remote] = side.read(None).contacts
    [first] = side.delete([ContactDelete(remote.id, remote.version)])
    [second] = side.delete([ContactDelete(remote.id, remote.version)])
    assert first.ok and second.ok  # already gone counts as deleted
    assert side.fetch([remote.id]) == {remote.id: None}


# --- groups -----------------------------------------------------------------------------------


def test_a_group_card_scopes_the_contacts(book: Book) -> None:
    # Given a group card (iCloud / Fastmail style) with one member, and one contact outside
    book.put("in.vcf", card("in-1", "FN:In Side", "N:Side;In;;;"))
    book.put("out.vcf", card("out-1", "FN:Out Side", "N:Side;Out;;;"))
    group = card(
        "grp-1",
        "FN:Clients",
        "N:Clients;;;;",
        "X-ADDRESSBOOKSERVER-KIND:group",
        "X-ADDRESSBOOKSERVER-MEMBER:urn:uuid:in-1",
    )
    book.put("grp.vcf", group)
    folder = f"{book.url}#card:{side_module.Scope.parse(book.url).book_path}grp.vcf"
    side = book.side(folder)
    # When we list, Then the member is in scope, the other is not, and the group is no contact
    listing = side.read(None)
    scope = {r.contact.given_name: r.in_scope for r in listing.contacts}
    assert scope == {"In": True, "Out": False}
    # When the user adds the other contact to the group (only the group card changes)
    book.put(
        "grp.vcf",
        group.replace("END:VCARD", "X-ADDRESSBOOKSERVER-MEMBER:urn:uuid:out-1\r\nEND:VCARD"),
    )
    changes = side.read(listing.position)
    # Then the read lists again, and both are in scope
    assert changes.full
    assert {r.contact.given_name: r.in_scope for r in changes.contacts} == {"In": True, "Out": True}
    # When we create a contact in the group, Then the group card lists it too
    [made] = side.create([NewContact(tag="t-grp", contact=PERSON)])
    assert made.ok and made.remote is not None
    assert side.fetch([made.remote.id])[made.remote.id].in_scope  # type: ignore[union-attr]


class LeftOut(httpx.BaseTransport):
    """A server whose answer to a multiget of one card alone leaves that card out (a partial
    multistatus), while ``on``."""

    def __init__(self, path: str) -> None:
        self.inner = httpx.HTTPTransport()
        self.path = path.encode()
        self.on = True

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        alone = b"addressbook-multiget" in body and body.count(b"href>") == 2
        if self.on and alone and self.path in body:
            empty = b'<?xml version="1.0" encoding="utf-8"?>\n<d:multistatus xmlns:d="DAV:"/>'
            return httpx.Response(207, content=empty, request=request)
        return self.inner.handle_request(request)


def test_a_group_card_left_out_of_an_answer_is_not_an_empty_group(book: Book) -> None:
    # Given a group card with one member, and a server that leaves the group card out of answers
    book.put("in.vcf", card("in-1", "FN:In Side", "N:Side;In;;;"))
    members = "X-ADDRESSBOOKSERVER-MEMBER:urn:uuid:in-1"
    book.put("grp.vcf", card("grp-1", "FN:Clients", "N:Clients;;;;",
                             "X-ADDRESSBOOKSERVER-KIND:group", members))  # fmt: skip
    group_path = f"{side_module.Scope.parse(book.url).book_path}grp.vcf"
    transport = LeftOut(group_path)
    dav = DavClient(httpx.Client(transport=transport, timeout=20), lambda: (USER, PASSWORD))
    side = side_module.CardDavContacts(dav=dav, folder_id=f"{book.url}#card:{group_path}")
    # When we list, Then the read fails (to be tried again), rather than find nobody in the group
    with pytest.raises(Transient):
        side.read(None)
    # And a contact to create in the group is not made outside it
    [made] = side.create([NewContact(tag="t-left-out", contact=PERSON)])
    assert isinstance(made.error, Transient)
    assert [r.id for r in book.side().read(None).contacts if r.tag] == []
    # When the server answers whole again, Then the member is in scope
    transport.on = False
    assert [r.in_scope for r in side.read(None).contacts] == [True]


def test_a_card_left_out_of_the_read_before_an_update_is_not_gone(book: Book) -> None:
    book.put("ann.vcf", card("ann", "FN:Ann Lee", "N:Lee;Ann;;;"))
    [ann] = book.side().read(None).contacts
    transport = LeftOut(ann.id)
    dav = DavClient(httpx.Client(transport=transport, timeout=20), lambda: (USER, PASSWORD))
    side = side_module.CardDavContacts(dav=dav, folder_id=book.url)
    change = ContactUpdate(
        ann.id, ann.version, ann.contact, ann.contact.with_fields(job_title="CTO")
    )
    # When the server leaves the card out of the read our update starts with
    [result] = side.update([change])
    # Then the update is to be tried again, not taken for a card deleted
    assert isinstance(result.error, Transient), result.error
    transport.on = False
    [result] = side.update([change])
    assert result.ok and "TITLE:CTO" in book.get("ann.vcf")


def test_categories_scope_the_contacts(book: Book) -> None:
    book.put("a.vcf", card("a", "FN:A A", "N:A;A;;;", "CATEGORIES:Clients,VIP"))
    book.put("b.vcf", card("b", "FN:B B", "N:B;B;;;", "CATEGORIES:Family"))
    side = book.side(f"{book.url}#category:Clients")
    assert {r.contact.family_name: r.in_scope for r in side.read(None).contacts} == {
        "A": True,
        "B": False,
    }
    [made] = side.create([NewContact(tag="t-cat", contact=PERSON)])
    assert made.ok and made.remote is not None and made.remote.in_scope
    assert "CATEGORIES:Clients" in book.get("t-cat.vcf")


def test_the_groups_of_a_book_are_its_group_cards_and_categories(book: Book) -> None:
    # Given a group card and contacts filed under categories
    book.put("a.vcf", card("a", "FN:A A", "N:A;A;;;", "CATEGORIES:Clients"))
    book.put("b.vcf", card("b", "FN:B B", "N:B;B;;;", "CATEGORIES:Family,Clients"))
    group = card("g", "FN:Team", "N:Team;;;;", "X-ADDRESSBOOKSERVER-KIND:group",
                 "X-ADDRESSBOOKSERVER-MEMBER:urn:uuid:a")  # fmt: skip
    book.put("team.vcf", group)
    # When we list the book's groups
    groups = book.side().list_groups()
    # Then each is there once, by name, and its folder id scopes a side to it
    assert [name for _, name in groups] == ["Clients", "Family", "Team"]
    folders = dict((name, folder) for folder, name in groups)
    team = book.side(folders["Team"]).read(None).contacts
    assert {r.contact.family_name: r.in_scope for r in team} == {"A": True, "B": False}
    family = book.side(folders["Family"]).read(None).contacts
    assert {r.contact.family_name: r.in_scope for r in family} == {"A": False, "B": True}


# --- account ----------------------------------------------------------------------------------


def test_discovery_finds_the_address_book_from_the_server_root(book: Book) -> None:
    dav = DavClient(book.http, lambda: (USER, PASSWORD))
    account = discover(dav, book.server.url)
    assert account.principal_url.endswith(f"/{USER}/")
    assert book.url in [url for url, _ in address_books(dav, account.home_url)]


def test_a_refused_password_says_to_make_a_new_app_specific_password(book: Book) -> None:
    if not book.server.authenticates:
        pytest.skip(f"{book.server.kind} runs without authentication on plain http")
    side = book.side(password="revoked")
    with pytest.raises(AuthExpired) as refused:
        side.read(None)
    assert refused.value.message == REAUTH and "app-specific password" in REAUTH


def test_known_providers_are_found_from_an_email() -> None:
    assert server_for("ada@icloud.com") == "https://contacts.icloud.com"
    assert server_for("ada@fastmail.com") == "https://carddav.fastmail.com"
    assert server_for("ada@cloud.example.org") == "https://cloud.example.org"
