"""End to end on the local stack: a CardDAV card made by a create whose answer was lost is found
by its tag at once; when that look-up fails too and the user deletes the card before the next
pass, it stays deleted and its delete is followed (the Outlook cases are in
test_microsoft_sync.py). The service reaches the CardDAV server through the fault proxy, which
loses the answer to one card's creation."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from contactsync.providers.carddav import CardDavContacts, DavClient
from contactsync.store.mappings import mapping_by_provider_id

from local.carddav_faults import RunningDavFaults, start_carddav_faults
from local.demo import FOLDER_NAME, Api, seed
from local.stack import CARDDAV_USER, LocalStack
from tests.e2e.helpers import (
    FAST_POLLING,
    StackOptions,
    SyncedConnection,
    crm_emails,
    eventually,
    quiet,
)

pytestmark = pytest.mark.e2e

STACK: StackOptions = {"schedule_every": 1.0, "extra_env": FAST_POLLING}


@pytest.fixture(scope="module")
def proxy(stack: LocalStack) -> Iterator[RunningDavFaults]:
    running = start_carddav_faults(stack.carddav.url)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def synced(stack: LocalStack, proxy: RunningDavFaults) -> SyncedConnection:
    """The demo user's address book connected through the proxy, its first sync done."""
    demo, data = seed(stack, persons=5, contacts=5)
    api = Api(stack, demo.token)
    api.connect_crm()
    body = {
        "provider": "carddav",
        "server_url": proxy.url,
        "username": CARDDAV_USER,
        "password": stack.carddav.users[CARDDAV_USER],
    }
    connection_id = str(api.call("POST", "/connections", json=body)["connection"]["id"])
    assert api.connection(connection_id)["folder"]["name"] == FOLDER_NAME
    api.start(connection_id)
    assert api.wait_until_active(connection_id, timeout=120)["state"] == "active"
    return SyncedConnection(demo, data, api, connection_id)


def card_of(stack: LocalStack, book: str, email: str) -> str | None:
    """The id of the card holding ``email``, read straight from the server (a phone's view)."""
    password = stack.carddav.users[CARDDAV_USER]
    with httpx.Client(timeout=30) as http:
        side = CardDavContacts(
            dav=DavClient(http, lambda: (CARDDAV_USER, password)), folder_id=book
        )
        page = side.read(None)
        found = list(page.contacts)
        while not page.complete:
            page = side.read(page.position)
            found.extend(page.contacts)
    return next((c.id for c in found if email in str(c.contact.emails)), None)


def test_a_card_whose_answer_was_lost_is_found_at_once(
    stack: LocalStack, synced: SyncedConnection, proxy: RunningDavFaults
) -> None:
    demo, _, api, connection_id = synced
    pd = stack.pipedrive.sandbox
    quiet(stack)
    made_before = proxy.faults.hits["lost_create_answer"]
    # Given the server's answer to the next card made is lost (the card is made)
    proxy.faults.inject("lost_create_answer")
    # When a person is added in the CRM
    body = {
        "name": "Ida Instant",
        "owner_id": demo.user_id,
        "emails": [{"value": "ida@instant.example", "primary": True}],
    }
    pd.create_person(pd.users[demo.user_id], body, source="app")
    # Then the pass that made the card finds it by its tag (at <book>/<tag>.vcf): linked at once
    card = eventually(lambda: card_of(stack, demo.carddav_book, "ida@instant"), what="the card")
    eventually(
        lambda: mapping_by_provider_id(connection_id, card) is not None,
        timeout=5,
        what="the card linked by the pass that made it",
    )
    assert proxy.faults.hits["lost_create_answer"] == made_before + 1
    quiet(stack)
    assert api.connection(connection_id).get("last_error") is None


def test_a_card_whose_answer_was_lost_and_that_the_user_deleted_stays_deleted(
    stack: LocalStack, synced: SyncedConnection, proxy: RunningDavFaults
) -> None:
    demo, _, api, connection_id = synced
    pd = stack.pipedrive.sandbox
    quiet(stack)
    hits = dict(proxy.faults.hits)
    # Given the server's answer to the next card made is lost (the card is made), and its answer
    # to the look-up by our tag that follows leaves the card out
    proxy.faults.inject("lost_create_answer")
    proxy.faults.inject("multiget_partial")
    # When a person is added in the CRM, and the user deletes the card on a phone at once,
    # before the pass after the lost answer (10 s later) could record it
    body = {
        "name": "Gus Gone",
        "owner_id": demo.user_id,
        "emails": [{"value": "gus@gone.example", "primary": True}],
    }
    pd.create_person(pd.users[demo.user_id], body, source="app")
    card = eventually(lambda: card_of(stack, demo.carddav_book, "gus@gone"), what="the card")
    assert proxy.faults.hits["lost_create_answer"] == hits.get("lost_create_answer", 0) + 1
    eventually(
        lambda: proxy.faults.hits["multiget_partial"] == hits.get("multiget_partial", 0) + 1,
        what="the look-up by tag failed",
    )
    assert mapping_by_provider_id(connection_id, card) is None  # not recorded yet
    gone = httpx.delete(stack.carddav.url + card, auth=stack.carddav.auth(CARDDAV_USER))
    assert gone.status_code in (200, 204)
    # Then the delete is followed as any card's: the CRM person goes ...
    eventually(lambda: "gus@gone.example" not in crm_emails(stack, demo), timeout=60, what="CRM")
    # ... and the card never comes back
    quiet(stack)
    assert card_of(stack, demo.carddav_book, "gus@gone") is None
    assert api.connection(connection_id).get("last_error") is None
