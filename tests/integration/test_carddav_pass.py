"""The sync pass with a real CardDAV server as the provider side (Radicale and xandikos), the CRM
and the store in memory: matching, one request for a pass with nothing to do, a card changed under
our write (412) re-planned without losing either edit, a lost create answer found by its tag, and
what we do not model left alone."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import httpx
import pytest
from contactsync.contacts.model import Contact, Email
from contactsync.providers.base import ContactUpdate, NewContact, Transient, WriteResult
from contactsync.providers.carddav import CardDavContacts
from contactsync.runtime.messages import SyncMessage
from contactsync.sync.reconcile import PassContext, Sides, run_pass

from tests.fakes import InMemorySide, InMemoryStore

if TYPE_CHECKING:
    from tests.integration.carddav_fixtures import Book

pytest_plugins = ["tests.integration.carddav_fixtures"]
USER, PASSWORD = "dana", "app-specific-1"  # the fixtures' account


def card(uid: str, *lines: str, version: str = "3.0") -> str:
    """A vCard as another client would store it."""
    body = "\r\n".join(("BEGIN:VCARD", f"VERSION:{version}", f"UID:{uid}", *lines, "END:VCARD"))
    return body + "\r\n"


CID = "conn-carddav"
IDS = itertools.count(1)


class Crash(Exception):
    pass


def person(given: str, family: str, email: str, **more: str) -> Contact:
    return Contact(given_name=given, family_name=family, emails=(Email(email, primary=True),),
                   **more)  # type: ignore[arg-type]  # fmt: skip


def run(
    store: InMemoryStore,
    crm: InMemorySide,
    side: CardDavContacts,
    reason: str = "schedule",
    crash_point: Callable[[str], None] = lambda _p: None,
) -> str:
    ctx = PassContext(
        store=store,
        sides_for=lambda _view: Sides(crm=crm, provider=side),
        new_id=lambda: f"map{next(IDS)}",
        crash_point=crash_point,
    )
    return run_pass(CID, SyncMessage(connection_id=CID, reason=reason), ctx).status


@pytest.fixture
def world(book: Book) -> tuple[InMemoryStore, InMemorySide, CardDavContacts, list[httpx.Request]]:
    store = InMemoryStore()
    store.add_connection(CID, state="syncing_initial", provider="carddav")
    sent: list[httpx.Request] = []
    book.http.event_hooks["request"] = [sent.append]
    return store, InMemorySide(name="crm"), book.side(), sent


def by_email(side: CardDavContacts, email: str) -> object:
    return next(r for r in side.read(None).contacts if email in str(r.contact.emails))


def test_a_first_sync_links_and_creates_then_a_quiet_pass_is_one_request(world, book) -> None:
    store, crm, side, sent = world
    # Given one person on both sides (as the CRM and an iPhone wrote it) and one on each alone
    book.put("ann.vcf", card("ann", "N:Lee;Ann;;;", "FN:Ann Lee", "EMAIL:ANN@x.example"))
    book.put("bob.vcf", card("bob", "N:Bay;Bob;;;", "FN:Bob Bay", "EMAIL:bob@x.example"))
    crm.put(person("Ann", "Lee", "ann@x.example"))
    crm.put(person("Cy", "Cole", "cy@x.example"))
    # When the first sync runs
    assert run(store, crm, side, "start") == "done"
    # Then Ann is linked, not duplicated; Bob reached the CRM and Cy the address book
    emails = sorted(e.value.lower() for r in side.read(None).contacts for e in r.contact.emails)
    assert emails == ["ann@x.example", "bob@x.example", "cy@x.example"]
    assert sorted(e.value for c in crm.contacts.values() for e in c.contact.emails) == [
        "ann@x.example", "bob@x.example", "cy@x.example"]  # fmt: skip
    # When the next pass has read back our own writes (they merge to nothing) ...
    assert run(store, crm, side) == "done"
    # (two writes, both in the first sync: Cy's new card, and the label of Ann's email that
    # the CRM holds as primary and work)
    assert [r.method for r in sent].count("PUT") == 2
    # ... and a pass finds nothing changed
    sent.clear()
    assert run(store, crm, side) == "done"
    # Then it asked the server once (one sync-collection REPORT) and wrote nothing
    assert [(r.method, r.url.path) for r in sent] == [("REPORT", side._scope.book_path)]


def test_a_card_changed_under_our_write_is_planned_again_and_both_edits_stay(world, book) -> None:
    store, crm, side, _ = world
    book.put("ann.vcf", card("ann", "N:Lee;Ann;;;", "FN:Ann Lee", "EMAIL:ann@x.example"))
    ann = crm.put(person("Ann", "Lee", "ann@x.example"))
    assert run(store, crm, side, "start") == "done"
    # Given a CRM edit, and the user editing the card on a phone just as our write goes out
    crm.put(ann.contact.with_fields(job_title="CTO"), contact_id=ann.id)
    update = side.update

    def phone_edits_first(items: Sequence[ContactUpdate]) -> list[WriteResult]:
        text = book.get("ann.vcf").replace("END:VCARD", "NOTE:met in Lisbon\r\nEND:VCARD")
        book.put("ann.vcf", text)
        return update(items)

    side.update = phone_edits_first  # type: ignore[method-assign]
    run(store, crm, side)
    side.update = update  # type: ignore[method-assign]
    # Then the stale write was refused (their note is not overwritten) ...
    assert "met in Lisbon" in book.get("ann.vcf") and "CTO" not in book.get("ann.vcf")
    # ... and the next pass merges both: the title reaches the card, the note the CRM
    assert run(store, crm, side) == "done"
    assert "met in Lisbon" in book.get("ann.vcf") and "TITLE:CTO" in book.get("ann.vcf")
    assert crm.contacts[ann.id].contact.notes == "met in Lisbon"


def test_a_create_whose_answer_was_lost_is_found_by_its_tag_not_made_twice(world, book) -> None:
    store, crm, side, _ = world
    crm.put(person("Cy", "Cole", "cy@x.example"))

    def crash_after_sending(point: str) -> None:
        if point == "after_provider_call":
            raise Crash(point)

    # Given a pass that created the card and died before writing down what it made
    with pytest.raises(Crash):
        run(store, crm, side, "start", crash_point=crash_after_sending)
    assert len(side.read(None).contacts) == 1
    # When the next pass finishes its work
    assert run(store, crm, side) == "done"
    # Then there is still one card, linked, carrying our mapping id
    [made] = side.read(None).contacts
    assert made.tag and made.id.endswith(f"/{made.tag}.vcf")
    assert run(store, crm, side) == "done"
    assert len(side.read(None).contacts) == 1


def test_a_card_whose_answer_was_lost_and_that_the_user_deleted_stays_deleted(world, book) -> None:
    store, crm, side, _ = world
    crm.put(person("Ann", "Lee", "ann@x.example"))
    assert run(store, crm, side, "start") == "done"
    cy = crm.put(person("Cy", "Cole", "cy@x.example"))
    create = side.create

    def answer_lost(items: Sequence[NewContact]) -> list[WriteResult]:
        create(items)
        raise Transient("the connection dropped before the answer came")

    # Given a pass that made Cy's card and never heard back (it fails)
    side.create = answer_lost  # type: ignore[method-assign]
    assert run(store, crm, side) == "failed"
    side.create = create  # type: ignore[method-assign]
    store.leases.clear()
    made = by_email(side, "cy@x.example")
    # And the user deletes that card on a phone before the next pass
    gone = book.http.delete(
        book.url + made.id.rsplit("/", 1)[-1],  # type: ignore[attr-defined]
        auth=book.server.auth(USER),
    )
    assert gone.status_code in (200, 204)
    # When the next pass runs
    assert run(store, crm, side) == "done"
    book_emails = [e.value for r in side.read(None).contacts for e in r.contact.emails]
    if book.server.kind == "xandikos":
        # (A server may leave out of its changes a card made and deleted since the token, as
        # RFC 6578 allows and xandikos does: nothing proves the delete, the card is made again)
        assert book_emails == ["ann@x.example", "cy@x.example"] and cy.id in crm.contacts
        return
    # Then the card is not made again, and Cy goes from the CRM as with any deleted card
    assert book_emails == ["ann@x.example"]
    assert cy.id not in crm.contacts
    assert any("deleted since" in e.message for _, e in store.log)


def test_a_sync_leaves_what_we_do_not_model_alone(world, book) -> None:
    store, crm, side, _ = world
    book.put(
        "ann.vcf",
        card("ann", "N:Lee;Ann;;Dr.;", "FN:Ann Lee", "EMAIL:ann@x.example",
             "PHOTO;ENCODING=b;TYPE=PNG:iVBORw0KGgo=", "X-PHONETIC-LAST-NAME:Li",
             "RELATED;TYPE=spouse:Sam Lee"),
    )  # fmt: skip
    ann = crm.put(person("Ann", "Lee", "ann@x.example"))
    assert run(store, crm, side, "start") == "done"
    crm.put(ann.contact.with_fields(organization="Acme"), contact_id=ann.id)
    assert run(store, crm, side) == "done"
    text = book.get("ann.vcf").replace("\r\n ", "")
    assert "ORG:Acme" in text
    for kept in ("Dr.", "PHOTO", "X-PHONETIC-LAST-NAME:Li", "Sam Lee"):
        assert kept in text, kept


@pytest.mark.parametrize("direction", ["two_way", "to_crm"])
def test_newest_wins_knows_when_a_card_was_last_revised(world, book, direction: str) -> None:
    store, crm, side, _ = world
    store.update_connection(CID, direction=direction)
    # Given two people in the CRM (last modified early on 2026-01-01) whom the user also typed on
    # a phone with another job title: Ann's card revised after the CRM's change, Bo's before it
    ann = crm.put(person("Ann", "Lee", "ann@x.example", job_title="Buyer"))
    bo = crm.put(person("Bo", "Ng", "bo@x.example", job_title="Counsel"))
    book.put("ann.vcf", card("ann", "N:Lee;Ann;;;", "FN:Ann Lee", "EMAIL:ann@x.example",
                             "TITLE:Founder", "REV:2026-03-01T09:30:00Z"))  # fmt: skip
    book.put("bo.vcf", card("bo", "N:Ng;Bo;;;", "FN:Bo Ng", "EMAIL:bo@x.example",
                            "TITLE:Analyst", "REV:20251231T235959Z"))  # fmt: skip
    # When the first sync links them (newest wins: the connection's conflict policy)
    assert run(store, crm, side, "start") == "done"
    # Then the CRM shows the newer title of each: the card's REV is its last-modified time
    assert crm.contacts[ann.id].contact.job_title == "Founder"
    assert crm.contacts[bo.id].contact.job_title == "Counsel"
    # And two-way, the card shows it too; one way into the CRM, the card is never written
    assert "TITLE:Founder" in book.get("ann.vcf")
    bo_title = "TITLE:Counsel" if direction == "two_way" else "TITLE:Analyst"
    assert bo_title in book.get("bo.vcf")


def test_a_card_created_in_a_group_card_is_in_the_group_though_the_group_write_failed(
    world, book
) -> None:
    store, crm, _, sent = world
    # Given a connection syncing an Apple group card, and a CRM person to copy into it
    book.put("grp.vcf", card("grp", "FN:Clients", "N:Clients;;;;",
                             "X-ADDRESSBOOKSERVER-KIND:group"))  # fmt: skip
    group_path = f"{httpx.URL(book.url).path}grp.vcf"
    side = book.side(f"{book.url}#card:{group_path}")
    crm.put(person("Cy", "Cole", "cy@x.example"))
    # And the server failing every write of the group card during the first pass (a dropped
    # connection each time: the password revoked in between, or the server down, does as much)
    failing = [True]

    def group_write_fails(request: httpx.Request) -> None:
        sent.append(request)
        if failing[0] and request.method == "PUT" and request.url.path == group_path:
            raise httpx.ReadError("connection reset", request=request)

    book.http.event_hooks["request"] = [group_write_fails]
    assert run(store, crm, side, "start") != "done"
    # When the server is well again and the next passes run
    failing[0] = False
    assert run(store, crm, side) == "done"
    assert run(store, crm, side) == "done"
    # Then Cy's card is in the group, linked, and made once
    cards = side.read(None).contacts
    assert [(r.contact.given_name, r.in_scope) for r in cards] == [("Cy", True)]
    assert [m.provider_id for m in store.mappings(CID) if not m.detached] == [cards[0].id]
