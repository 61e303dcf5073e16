"""End to end over HTTP on the local stack, against a real CardDAV server (Radicale with
authentication): connect with a username and an app-specific password, sync both ways, survive a
sync token the server forgot, a revoked password and a reconnect, explain, stop.

CardDAV has no push: CardDAV-side edits arrive by polling (the scheduler finds the connection
due), CRM-side edits by the CRM webhook, which makes the connection due at once.
"""

from __future__ import annotations

import shutil
import time

import httpx
import pytest
from contactsync.providers.base import RemoteContact
from contactsync.providers.carddav import CardDavContacts, DavClient

from local.demo import DemoUser
from local.stack import CARDDAV_USER, LocalStack
from tests.e2e.helpers import (
    FAST_POLLING,
    FirstSync,
    StackOptions,
    assert_no_duplicates,
    crm_emails,
    crm_owned,
    crm_person,
    eventually,
    quiet,
)

pytestmark = pytest.mark.e2e

STACK: StackOptions = {"schedule_every": 1.0, "extra_env": FAST_POLLING}
FIRST_SYNC: FirstSync = {"provider": "carddav", "persons": 30, "contacts": 30}


def cards(stack: LocalStack, demo: DemoUser) -> list[RemoteContact]:
    """The address book as it is now, read with the adapter (another client's view)."""
    password = stack.carddav.users[CARDDAV_USER]
    with httpx.Client(timeout=30) as http:
        side = CardDavContacts(
            dav=DavClient(http, lambda: (CARDDAV_USER, password)), folder_id=demo.carddav_book
        )
        page = side.read(None)
        found = list(page.contacts)
        while not page.complete:
            page = side.read(page.position)
            found.extend(page.contacts)
    return found


def card_emails(stack: LocalStack, demo: DemoUser) -> list[str]:
    return [e.value.lower() for c in cards(stack, demo) for e in c.contact.emails]


def card_of(stack: LocalStack, demo: DemoUser, email: str) -> RemoteContact:
    return next(c for c in cards(stack, demo) if email in str(c.contact.emails))


def edit_card(stack: LocalStack, card_id: str, line: str) -> None:
    """Another client (a phone) adds a line to a card, without conditions."""
    url = stack.carddav.url + card_id
    auth = stack.carddav.auth(CARDDAV_USER)
    text = httpx.get(url, auth=auth).text
    text = text.replace("END:VCARD", f"{line}\r\nEND:VCARD")
    resp = httpx.put(url, content=text.encode(), auth=auth, headers={"Content-Type": "text/vcard"})
    assert resp.status_code in (200, 201, 204), resp.text


def test_initial_sync_matches_by_email_and_creates_the_rest(stack, synced) -> None:
    demo, data, api, connection_id = synced
    crm, book = crm_emails(stack, demo), card_emails(stack, demo)
    # Then people on both sides are linked, not duplicated
    for email in data.same_email:
        assert crm.count(email) == 1, email
        assert book.count(email) == 1, email
    # And the rest was created on the other side
    assert len(crm_owned(stack, demo)) == data.crm_persons + 30
    assert len(cards(stack, demo)) == data.carddav_contacts + 30
    # And the ambiguous pair was left alone, and another user's person never reached the book
    assert book.count(data.ambiguous_email) == 1 and crm.count(data.ambiguous_email) == 2
    assert data.not_owned_email not in book
    # And the cards we created carry our mapping id (a lost create answer is found again)
    made = [c for c in cards(stack, demo) if c.tag]
    assert len(made) == 30, len(made)
    assert all(c.id.endswith(f"/{c.tag}.vcf") for c in made), [(c.id, c.tag) for c in made]
    assert api.connection(connection_id)["counts"]["mapped"] >= 60


def test_a_carddav_edit_reaches_the_crm_by_polling(stack, synced) -> None:
    demo, data, _, _ = synced
    email = data.same_email[0]
    edit_card(stack, card_of(stack, demo, email).id, "TITLE:Poller")
    eventually(
        lambda: crm_person(stack, demo, email).job_title == "Poller",
        what="the job title in the CRM",
    )


def test_a_crm_edit_reaches_the_address_book_through_the_webhook(stack, synced) -> None:
    demo, data, _, _ = synced
    email = data.same_email[1]
    stack.pipedrive.sandbox.edit_in_app(crm_person(stack, demo, email).id, {"job_title": "QA"})
    eventually(
        lambda: card_of(stack, demo, email).contact.job_title == "QA", what="the title in the card"
    )


def test_deletes_propagate_both_ways(stack, synced) -> None:
    demo, data, _, _ = synced
    gone_in_book, gone_in_crm = data.same_email[2], data.same_email[3]
    url = stack.carddav.url + card_of(stack, demo, gone_in_book).id
    httpx.delete(url, auth=stack.carddav.auth(CARDDAV_USER)).raise_for_status()
    stack.pipedrive.sandbox.delete_in_app(crm_person(stack, demo, gone_in_crm).id)
    eventually(lambda: gone_in_book not in crm_emails(stack, demo), what="CRM delete")
    eventually(lambda: gone_in_crm not in card_emails(stack, demo), what="card delete")


def test_a_forgotten_sync_token_relists_without_duplicates_or_lost_edits(stack, synced) -> None:
    demo, data, _, _ = synced
    email = data.same_email[5]
    quiet(stack)
    # Given the server forgot every sync token it gave (its token cache is gone) and an edit
    # waits in the address book
    book_dir = stack.carddav.collection_dir(CARDDAV_USER, "crm-contacts")
    shutil.rmtree(book_dir / ".Radicale.cache" / "sync-token", ignore_errors=True)
    edit_card(stack, card_of(stack, demo, email).id, "TITLE:After Expiry")
    # Then the next poll re-lists in full, re-matches, and the edit arrives
    eventually(
        lambda: crm_person(stack, demo, email).job_title == "After Expiry",
        what="the edit after the sync token was forgotten",
    )
    quiet(stack)
    # And nothing was duplicated on either side
    assert_no_duplicates(crm_emails(stack, demo), card_emails(stack, demo), data)


def test_explain_says_why_a_card_syncs_or_not(stack, synced) -> None:
    demo, data, api, connection_id = synced
    linked = card_of(stack, demo, data.same_email[6])
    twin = card_of(stack, demo, data.ambiguous_email)
    path = f"/connections/{connection_id}/explain"
    # A linked card is syncing, and names its CRM person
    answer = api.call("GET", path, params={"provider_contact_id": linked.id})
    person = crm_person(stack, demo, data.same_email[6])
    assert answer["syncing"] is True, answer
    assert any(f"CRM contact {person.id}" in r for r in answer["reasons"]), answer
    # The card whose email is on two CRM persons is a duplicate candidate, not synced
    answer = api.call("GET", path, params={"provider_contact_id": twin.id})
    assert answer["syncing"] is False, answer
    assert any("duplicate" in r for r in answer["reasons"]), answer


def test_a_revoked_password_needs_reauth_and_a_new_one_heals_it(stack, synced) -> None:
    demo, data, api, connection_id = synced
    quiet(stack)
    # Given the user revoked the app-specific password
    new_password = "new-app-password-2"
    stack.carddav.set_password(CARDDAV_USER, new_password)
    email = data.same_email[7]
    edit_card(stack, card_of(stack, demo, email).id, "TITLE:While Broken")
    # Then the connection waits for a new sign-in, and says how to get one
    view = eventually(
        lambda: (v := api.connection(connection_id))["state"] == "needs_reauth" and v,
        what="needs_reauth",
    )
    assert "app-specific password" in view["last_error"]["message"], view
    # When a wrong password is sent, Then it is refused and nothing changes
    wrong = api.http.post(f"/connections/{connection_id}/reconnect", json={"password": "not-it"})
    assert wrong.status_code == 422, wrong.text
    assert "app-specific password" in wrong.json()["error"]["message"]
    assert api.connection(connection_id)["state"] == "needs_reauth"
    # When the user reconnects with the new password
    healed = api.call(
        "POST", f"/connections/{connection_id}/reconnect", json={"password": new_password}
    )
    assert healed["same_account"] is True
    # Then the sync resumes, and the edit made meanwhile arrives
    eventually(
        lambda: crm_person(stack, demo, email).job_title == "While Broken",
        timeout=60,
        what="the edit made while the password was revoked",
    )
    assert api.connection(connection_id)["state"] == "active"


def test_stop_ends_polling_and_webhooks(stack, synced) -> None:
    demo, data, api, connection_id = synced
    assert api.stop(connection_id)["state"] == "stopped"
    quiet(stack)
    email = data.same_email[9]
    edit_card(stack, card_of(stack, demo, email).id, "TITLE:After Stop")
    time.sleep(4)
    assert crm_person(stack, demo, email).job_title != "After Stop"
