"""MicrosoftContacts against the Graph sandbox on loopback: delta, batching, errors, mapping."""

from __future__ import annotations

import dataclasses
import threading
from datetime import UTC, datetime, timedelta

import pytest
from contactsync.contacts.model import Address, Contact, Email, Phone
from contactsync.providers.base import (
    AuthExpired,
    ContactDelete,
    ContactUpdate,
    CursorExpired,
    NewContact,
    PreconditionFailed,
    ProviderError,
    RateLimited,
    Transient,
)
from contactsync.providers.microsoft.items import MOVED_OUT
from contactsync.providers.microsoft.mapping import changed_properties, from_graph, to_graph

from tests.integration.graph_fixtures import Mailbox, Receiver, control, graph, mailbox, receiver

__all__ = ["graph", "mailbox", "receiver"]  # fixtures used by name below

PERSON = Contact(
    given_name="Ada",
    middle_name="King",
    family_name="Lovelace",
    display_name="Ada, Countess of Lovelace",
    emails=(Email("ada@analytical.example", "work", True), Email("ada@home.example", "work")),
    phones=(
        Phone("+44 20 7946 0000", "work", True),
        Phone("+44 20 7946 0001", "home"),
        Phone("+44 7700 900000", "mobile"),
    ),
    organization="Analytical Engines",
    job_title="Programmer",
    addresses=(Address("12 St James's Square", "London", "", "SW1Y 4JH", "UK", "work"),),
    birthday="1815-12-10",
    notes="First programmer.",
    websites=("https://analytical.example",),
)


def read_all(adapter, position=None):
    """Follow a listing to its end: (pages, last page)."""
    pages = [adapter.read(position)]
    while not pages[-1].complete:
        pages.append(adapter.read(pages[-1].position))
    return pages


# --- reading ----------------------------------------------------------------------------------


def test_full_delta_pages_with_the_requested_page_size(mailbox: Mailbox) -> None:
    # Given 25 contacts in the folder (and some in another folder)
    sb = mailbox.graph.sandbox
    ids = sb.seed_contacts(mailbox.user_id, mailbox.folder_id, 25, seed=1)
    sb.seed_contacts(mailbox.user_id, mailbox.other_folder_id, 3, seed=2)
    # When we list from no position with pages of 10
    pages = read_all(mailbox.adapter(page_size=10))
    # Then three pages came back, all part of a full listing, ending with a delta link
    assert [len(p.contacts) for p in pages] == [10, 10, 5]
    assert all(p.full for p in pages)
    assert [p.complete for p in pages] == [False, False, True]
    assert "$deltatoken" in pages[-1].position
    assert sorted(c.id for p in pages for c in p.contacts) == sorted(ids)
    assert len(mailbox.requests("GET", "/delta")) == 3


def test_incremental_delta_returns_only_changes(mailbox: Mailbox) -> None:
    # Given a completed full listing
    sb = mailbox.graph.sandbox
    a, b, c = sb.seed_contacts(mailbox.user_id, mailbox.folder_id, 3)
    adapter = mailbox.adapter()
    cursor = read_all(adapter)[-1].position
    # When the user edits one contact in Outlook, adds one and deletes one
    control(mailbox.graph, "POST", f"/users/{mailbox.user_id}/contacts/{a}", {"jobTitle": "CEO"})
    new = sb.create_contact(mailbox.user_id, mailbox.folder_id, {"givenName": "Grace"}).id
    sb.delete_contact(mailbox.user_id, c)
    page = adapter.read(cursor)
    # Then only those come back, as an incremental, complete page
    assert not page.full and page.complete
    assert {r.id: r.contact.job_title for r in page.contacts} == {a: "CEO", new: ""}
    assert page.deleted == [c]
    assert b not in {r.id for r in page.contacts}
    # And reading again from the new position finds nothing
    again = adapter.read(page.position)
    assert again.contacts == [] and again.deleted == []


def test_removed_items_are_told_apart_deleted_or_moved(mailbox: Mailbox) -> None:
    # Given two listed contacts
    sb = mailbox.graph.sandbox
    stays_gone, moves = sb.seed_contacts(mailbox.user_id, mailbox.folder_id, 2)
    adapter = mailbox.adapter()
    cursor = read_all(adapter)[-1].position
    # When one is deleted and the other moved to another folder
    sb.delete_contact(mailbox.user_id, stays_gone)
    control(mailbox.graph, "POST", f"/users/{mailbox.user_id}/contacts/{moves}/move",
            {"destinationId": mailbox.other_folder_id})  # fmt: skip
    page = adapter.read(cursor)
    # Then the deleted one is a delete, the moved one is out of scope (never a delete)
    assert page.deleted == [stays_gone]
    [moved] = page.contacts
    assert moved.id == moves and not moved.in_scope and moved.scope_reason == MOVED_OUT


def test_an_expired_delta_token_is_cursor_expired(mailbox: Mailbox) -> None:
    # Given a cursor, and the service forgetting its sync state
    mailbox.graph.sandbox.seed_contacts(mailbox.user_id, mailbox.folder_id, 2)
    adapter = mailbox.adapter()
    cursor = read_all(adapter)[-1].position
    control(mailbox.graph, "POST", "/delta/expire", {"user_id": mailbox.user_id})
    # When we read from it, Then we are told to start over
    with pytest.raises(CursorExpired):
        adapter.read(cursor)
    # And a full listing works again
    assert read_all(adapter)[-1].full


# --- writing ----------------------------------------------------------------------------------


def test_creates_go_in_batches_of_twenty_with_the_tag(mailbox: Mailbox) -> None:
    # Given 45 new contacts
    items = [NewContact(f"map-{i}", PERSON.with_fields(given_name=f"P{i}")) for i in range(45)]
    # When we create them
    results = mailbox.adapter().create(items)
    # Then three $batch calls carried 45 POSTs, each item with its own result
    assert len(mailbox.requests("POST", "$batch")) == 3
    posts = [r for r in mailbox.requests("POST", "/contacts") if r["batched"]]
    assert len(posts) == 45
    assert [r.key for r in results] == [f"map-{i}" for i in range(45)]
    assert all(r.ok and r.remote and r.remote.id and r.remote.version for r in results)
    assert results[7].remote.tag == "map-7"
    # And the contacts are in the folder, carrying our tag
    fetched = mailbox.adapter().fetch([results[7].remote.id])
    assert fetched[results[7].remote.id].tag == "map-7"


def test_a_throttled_create_keeps_what_was_done_and_stops(mailbox: Mailbox) -> None:
    # Given a mailbox budget that runs out in the middle of the second batch
    control(mailbox.graph, "POST", "/limits", {"budget": 25})
    items = [NewContact(f"t-{i}", PERSON) for i in range(45)]
    # When we create 45 contacts
    results = mailbox.adapter().create(items)
    # Then the first 25 were created, the rest are RateLimited, and no third batch was sent
    assert [r.ok for r in results] == [True] * 25 + [False] * 20
    assert all(isinstance(r.error, RateLimited) for r in results[25:])
    assert len(mailbox.requests("POST", "$batch")) == 2


def test_a_create_is_not_retried_after_a_server_error(mailbox: Mailbox) -> None:
    # Given the service fails the next request (it might have created the contacts anyway)
    control(mailbox.graph, "POST", "/faults", {"status": 500, "count": 1})
    # When we create two contacts, Then each reports Transient and nothing was re-sent
    results = mailbox.adapter().create([NewContact("a", PERSON), NewContact("b", PERSON)])
    assert all(isinstance(r.error, Transient) for r in results)
    assert len([r for r in mailbox.graph.sandbox.requests if r["path"] == "$batch"
                and r["user_id"] in (None, mailbox.user_id)]) == 1  # fmt: skip


def test_a_create_whose_answer_is_cut_short_is_transient(mailbox: Mailbox) -> None:
    # Given Graph makes the next contact but cuts its answer short
    control(mailbox.graph, "POST", "/breaks", {"kind": "truncated"})
    # When we create one contact (sent alone, not in a $batch)
    [result] = mailbox.adapter().create([NewContact("tag-cut", PERSON)])
    # Then it is Transient (made or not: a recovering pass looks for the tag), not a crash
    assert isinstance(result.error, Transient)
    assert mailbox.adapter().find_tagged("tag-cut") is not None


def test_find_tagged_finds_our_contact_or_nothing(mailbox: Mailbox) -> None:
    adapter = mailbox.adapter()
    # Given a contact we created with a tag, and one with a quote in its tag
    [made] = adapter.create([NewContact("tag-123", PERSON)])
    adapter.create([NewContact("it's", PERSON)])
    # When we look it up by tag, Then we find it
    found = adapter.find_tagged("tag-123")
    assert found is not None and found.id == made.remote.id and found.tag == "tag-123"
    assert adapter.find_tagged("it's") is not None
    # And an unknown tag finds nothing
    assert adapter.find_tagged("tag-999") is None


def test_find_tagged_finds_our_contact_moved_to_another_folder(mailbox: Mailbox) -> None:
    # Given a contact we created, which the user then moved out of the sync folder
    adapter = mailbox.adapter()
    [made] = adapter.create([NewContact("tag-moved", PERSON)])
    assert made.remote is not None
    control(mailbox.graph, "POST", f"/users/{mailbox.user_id}/contacts/{made.remote.id}/move",
            {"destinationId": mailbox.other_folder_id})  # fmt: skip
    # When a recovering pass looks for it by tag
    found = adapter.find_tagged("tag-moved")
    # Then it is found (not created again), and reported out of scope
    assert found is not None and found.id == made.remote.id
    assert not found.in_scope and found.scope_reason == MOVED_OUT


def test_update_sends_only_changed_fields_and_keeps_the_rest(mailbox: Mailbox) -> None:
    # Given a contact with a nickname (a field we do not model)
    sb = mailbox.graph.sandbox
    cid = sb.create_contact(mailbox.user_id, mailbox.folder_id,
                            {**to_graph(PERSON), "nickName": "Countess"}).id  # fmt: skip
    adapter = mailbox.adapter()
    current = adapter.fetch([cid])[cid]
    # When we change the job title and one phone
    after = current.contact.with_fields(
        job_title="Analyst",
        phones=(*current.contact.phones[:2], Phone("+44 7700 900999", "mobile")),
    )
    [result] = adapter.update([ContactUpdate(cid, current.version, current.contact, after)])
    # Then the PATCH carried only those properties
    [patch] = mailbox.requests("PATCH", cid)
    assert set(patch["body"]) == {"jobTitle", "mobilePhone"}
    # And the result and the stored contact have the change; the nickname survived
    assert result.ok and result.remote.contact.job_title == "Analyst"
    assert result.remote.version != current.version
    stored = control(mailbox.graph, "GET", f"/users/{mailbox.user_id}/contacts/{cid}")
    assert stored["nickName"] == "Countess" and stored["mobilePhone"] == "+44 7700 900999"


def test_stale_version_is_precondition_failed_per_item(mailbox: Mailbox) -> None:
    # Given two contacts read by us, one of them edited in Outlook since
    sb = mailbox.graph.sandbox
    a, b = sb.seed_contacts(mailbox.user_id, mailbox.folder_id, 2)
    adapter = mailbox.adapter()
    seen = adapter.fetch([a, b])
    sb.update_contact(mailbox.user_id, a, {"jobTitle": "Edited in Outlook"})
    # When we update both
    updates = [
        ContactUpdate(
            cid,
            seen[cid].version,
            seen[cid].contact,
            seen[cid].contact.with_fields(notes="from the CRM"),
        )
        for cid in (a, b)
    ]
    results = {r.key: r for r in adapter.update(updates)}
    # Then only the stale one failed, with PreconditionFailed
    assert isinstance(results[a].error, PreconditionFailed)
    assert results[b].ok
    # And a delete with the stale version fails the same way, a fresh one succeeds
    [gone] = adapter.delete([ContactDelete(a, seen[a].version)])
    assert isinstance(gone.error, PreconditionFailed)
    fresh = adapter.fetch([a])[a]
    assert adapter.delete([ContactDelete(a, fresh.version)])[0].ok
    assert adapter.fetch([a])[a] is None


def test_update_with_nothing_to_change_sends_nothing(mailbox: Mailbox) -> None:
    results = mailbox.adapter().update([ContactUpdate("x", "v", PERSON, PERSON)])
    assert results[0].ok and mailbox.requests() == []


# --- errors -----------------------------------------------------------------------------------


def test_throttling_is_rate_limited_with_retry_after(mailbox: Mailbox) -> None:
    # Given the service answering 429 with Retry-After: 7
    control(mailbox.graph, "POST", "/faults", {"status": 429, "count": 1, "retry_after": 7})
    # When we call it, Then we get RateLimited carrying the delay
    with pytest.raises(RateLimited) as raised:
        mailbox.adapter().whoami()
    assert raised.value.retry_after == 7


def test_the_mailbox_request_budget_throttles(mailbox: Mailbox) -> None:
    # Given a mailbox budget of 3 requests per window
    control(mailbox.graph, "POST", "/limits", {"budget": 3})
    adapter = mailbox.adapter()
    for _ in range(3):
        adapter.whoami()
    # When we make a fourth, Then it is throttled with a positive Retry-After
    with pytest.raises(RateLimited) as raised:
        adapter.whoami()
    assert raised.value.retry_after >= 1


def test_server_errors_are_retried_then_transient(mailbox: Mailbox) -> None:
    adapter = mailbox.adapter()
    # Given two 503s, When we call, Then the retries get through
    control(mailbox.graph, "POST", "/faults", {"status": 503, "count": 2})
    assert adapter.whoami()[0] == mailbox.user_id
    # Given three 500s, When we call, Then we give up with Transient
    control(mailbox.graph, "POST", "/faults", {"status": 500, "count": 3})
    with pytest.raises(Transient):
        adapter.whoami()


def test_401_refreshes_the_token_once(mailbox: Mailbox) -> None:
    adapter = mailbox.adapter()
    adapter.whoami()
    # Given the access token expired
    control(mailbox.graph, "POST", "/tokens/expire", {"user_id": mailbox.user_id})
    # When we call, Then the adapter asked for a forced refresh once and succeeded
    assert adapter.whoami()[0] == mailbox.user_id
    assert mailbox.token_calls == [False, True]


def test_401_after_a_refresh_is_auth_expired(mailbox: Mailbox) -> None:
    # Given a token source whose refresh yields a token Graph refuses
    mailbox.refresh_works = False
    adapter = mailbox.adapter()
    adapter.whoami()
    control(mailbox.graph, "POST", "/tokens/expire", {"user_id": mailbox.user_id})
    # When we call, Then AuthExpired, after exactly one refresh
    with pytest.raises(AuthExpired):
        adapter.whoami()
    assert mailbox.token_calls == [False, True]


# --- mapping, account, folders, subscriptions -------------------------------------------------


def test_a_contact_round_trips_through_graph(mailbox: Mailbox) -> None:
    adapter = mailbox.adapter()
    [made] = adapter.create([NewContact("m-1", PERSON)])
    back = adapter.fetch([made.remote.id])[made.remote.id]
    assert back.contact == PERSON
    assert back.modified_at and back.in_scope


def test_mapping_edge_cases() -> None:
    # A birthday without a year and extra mobiles survive as far as Graph allows
    c = Contact(birthday="--07-04", phones=(Phone("1", "mobile"), Phone("2", "mobile")))
    graph_body = to_graph(c)
    assert graph_body["birthday"] == "1604-07-04T00:00:00Z"
    assert graph_body["mobilePhone"] == "1" and graph_body["businessPhones"] == ["2"]
    back = from_graph(graph_body)
    assert back.birthday == "--07-04"
    # Arrays are sent whole when one element changes; untouched fields are not sent
    changed = PERSON.with_fields(emails=(PERSON.emails[0], Email("new@x.example")))
    assert set(changed_properties(PERSON, changed)) == {"emailAddresses"}


def test_whoami_and_folders(mailbox: Mailbox) -> None:
    adapter = mailbox.adapter()
    uid, mail = adapter.whoami()
    assert uid == mailbox.user_id and mail.endswith("@contoso.example")
    folders = dict(adapter.list_folders())
    assert next(iter(folders.values())) == "Contacts"
    assert folders[mailbox.folder_id] == "Clients"
    assert folders[mailbox.other_folder_id] == "Archive"


def test_subscription_lifecycle_and_notifications(mailbox: Mailbox, receiver: Receiver) -> None:
    adapter = mailbox.adapter()
    expires = datetime.now(UTC) + timedelta(hours=48)
    # When we subscribe to the folder
    sub_id, until = adapter.create_subscription(
        notification_url=receiver.url,
        lifecycle_url=receiver.url,
        client_state="s3cret-state",
        expires_at=expires,
    )
    # Then both URLs were validated and the expiry is what we asked for
    assert receiver.validations == 2
    assert abs((until - expires).total_seconds()) < 1
    # And an edit in Outlook is notified with our client state
    cid = mailbox.graph.sandbox.seed_contacts(mailbox.user_id, mailbox.folder_id, 1)[0]
    [item] = receiver.wait_for(1)
    assert item["subscriptionId"] == sub_id and item["clientState"] == "s3cret-state"
    assert item["changeType"] == "created" and item["resourceData"]["id"] == cid
    # When we renew and then delete it (twice: a missing one is fine)
    later = adapter.renew_subscription(sub_id, expires + timedelta(hours=12))
    assert later > until
    adapter.delete_subscription(sub_id)
    adapter.delete_subscription(sub_id)


def test_a_subscription_whose_endpoint_fails_validation_is_refused(
    mailbox: Mailbox, receiver: Receiver
) -> None:
    receiver.echo_wrong = True
    with pytest.raises(ProviderError) as raised:
        mailbox.adapter().create_subscription(
            notification_url=receiver.url,
            lifecycle_url=receiver.url,
            client_state="x",
            expires_at=datetime.now(UTC) + timedelta(hours=1),
        )
    assert raised.value.status == 400
    assert "validation request failed" in raised.value.message


# --- what real Graph does that a forgiving emulator would not ---------------------------------


def test_every_request_asks_for_immutable_ids(mailbox: Mailbox, receiver: Receiver) -> None:
    # Given an adapter that lists, creates, updates, fetches, subscribes and deletes
    sb = mailbox.graph.sandbox
    sb.seed_contacts(mailbox.user_id, mailbox.folder_id, 3)
    adapter = mailbox.adapter()
    read_all(adapter)
    [made] = adapter.create([NewContact("t-1", PERSON)])
    assert made.remote is not None
    edited = dataclasses.replace(PERSON, job_title="Analyst")
    adapter.update([ContactUpdate(made.remote.id, made.remote.version, PERSON, edited)])
    adapter.fetch([made.remote.id, "missing"])
    sub_id, _ = adapter.create_subscription(
        notification_url=receiver.url,
        lifecycle_url=receiver.url,
        client_state="s",
        expires_at=datetime.now(UTC) + timedelta(hours=1),
    )
    adapter.delete([ContactDelete(made.remote.id, "")])
    adapter.delete_subscription(sub_id)
    # Then every request and every $batch sub-request carried Prefer: IdType="ImmutableId"
    seen = mailbox.requests()
    assert len(seen) >= 8
    missing = [r for r in seen if 'IdType="ImmutableId"' not in (r["prefer"] or "")]
    assert missing == []
    # And the ids it got back are the immutable ones
    assert made.remote.id in {c.id for c in sb.made}


def test_a_contact_moved_away_keeps_its_id_and_is_never_read_as_deleted(mailbox: Mailbox) -> None:
    # Given a listed contact the user then moves to another folder (Outlook gives it a new
    # default id: the one a client without immutable ids knew is 404 from then on)
    sb = mailbox.graph.sandbox
    [cid] = sb.seed_contacts(mailbox.user_id, mailbox.folder_id, 1)
    adapter = mailbox.adapter()
    cursor = read_all(adapter)[-1].position
    old_default_id = sb.contacts[cid].rest_id
    sb.move_contact(mailbox.user_id, cid, mailbox.other_folder_id)
    assert sb.contacts[cid].rest_id != old_default_id
    # When the folder's delta reports it removed
    page = adapter.read(cursor)
    # Then it is out of scope under the same id, not deleted, and still writable by that id
    assert page.deleted == []
    [moved] = page.contacts
    assert moved.id == cid and not moved.in_scope and moved.scope_reason == MOVED_OUT
    assert adapter.fetch([cid])[cid] is not None


def test_batch_sub_requests_refused_for_mailbox_concurrency_are_sent_again_alone(
    mailbox: Mailbox,
) -> None:
    # Given two other requests hold two of the mailbox's four slots for a moment
    sb = mailbox.graph.sandbox
    assert sb.take_slots(mailbox.user_id, 2) == 2
    release = threading.Timer(0.3, sb.leave, args=(mailbox.user_id, 2))
    release.start()
    try:
        # When we create six contacts in one $batch
        results = mailbox.adapter().create([NewContact(f"c-{i}", PERSON) for i in range(6)])
    finally:
        release.join()
    # Then the batch ran two, the four refused with 429 were sent again (alone), and each
    # contact exists exactly once
    assert all(r.ok for r in results), [r.error for r in results]
    batches = [r for r in mailbox.requests("POST", "$batch") if not r["batched"]]
    assert [len(b["body"]["requests"]) for b in batches] == [6, 4]
    made = [c for c in sb.folder_contacts(mailbox.user_id, mailbox.folder_id)]
    tags = sorted(v for c in made for v in c.extended.values())
    assert tags == [f"c-{i}" for i in range(6)]


def test_sub_requests_still_refused_after_the_last_round_are_rate_limited(
    mailbox: Mailbox,
) -> None:
    # Given other requests hold three of the four slots all along (one free slot at a time)
    sb = mailbox.graph.sandbox
    assert sb.take_slots(mailbox.user_id, 3) == 3
    try:
        # When we create five contacts
        results = mailbox.adapter().create([NewContact(f"k-{i}", PERSON) for i in range(5)])
    finally:
        sb.leave(mailbox.user_id, 3)
    # Then each round ran one, what was done is kept, the last one is RateLimited (made
    # nothing) and none was made twice
    assert [r.ok for r in results] == [True] * 4 + [False]
    assert isinstance(results[4].error, RateLimited)
    batches = [r for r in mailbox.requests("POST", "$batch") if not r["batched"]]
    assert [len(b["body"]["requests"]) for b in batches] == [5, 4, 3, 2]
    tags = sorted(v for c in sb.folder_contacts(mailbox.user_id, mailbox.folder_id)
                  for v in c.extended.values())  # fmt: skip
    assert tags == ["k-0", "k-1", "k-2", "k-3"]


def test_empty_delta_pages_are_not_the_end_of_the_listing(mailbox: Mailbox) -> None:
    # Given three contacts and a service that answers the next two delta pages with nothing
    sb = mailbox.graph.sandbox
    ids = sb.seed_contacts(mailbox.user_id, mailbox.folder_id, 3)
    control(mailbox.graph, "POST", "/delta/empty", {"count": 2})
    # When we list the folder
    pages = read_all(mailbox.adapter())
    # Then the empty pages were followed, and everything was listed (nothing read as deleted)
    assert [len(p.contacts) for p in pages[:2]] == [0, 0]
    assert sorted(c.id for p in pages for c in p.contacts) == sorted(ids)
    assert all(p.deleted == [] for p in pages)


def test_lookup_filters_the_folder_by_email_and_display_name(mailbox: Mailbox) -> None:
    adapter = mailbox.adapter()
    # Given Ada in the sync folder, an O'Brien, and Ada's twin in another folder
    [ada] = adapter.create([NewContact("t-ada", PERSON)])
    obrien = Contact(given_name="Sean", family_name="O'Brien")
    [sean] = adapter.create([NewContact("t-sean", obrien)])
    [twin] = adapter.create([NewContact("t-twin", PERSON)])
    assert ada.remote is not None and sean.remote is not None and twin.remote is not None
    control(mailbox.graph, "POST", f"/users/{mailbox.user_id}/contacts/{twin.remote.id}/move",
            {"destinationId": mailbox.other_folder_id})  # fmt: skip
    before = len(mailbox.requests("POST", "$batch"))
    # When the address in other case, and the name with its quote, are looked up
    wanted = [Contact(emails=(Email("ADA@analytical.example"),)), Contact(given_name="Sean",
              family_name="O'Brien"), Contact(emails=(Email("nobody@x.example"),))]  # fmt: skip
    found = adapter.lookup(wanted)
    # Then the folder's Ada and Sean are found, tags read, and not the twin in another folder
    assert sorted(r.id for r in found) == sorted([ada.remote.id, sean.remote.id])
    assert {r.tag for r in found} == {"t-ada", "t-sean"}
    # And the three filters went in one $batch
    assert len(mailbox.requests("POST", "$batch")) == before + 1
