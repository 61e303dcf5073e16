"""GoogleContacts against the People API sandbox on loopback: sync tokens, group scope, batched
writes, errors, and the mapping to and from People JSON."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from contactsync.contacts.model import Address, Contact, Email, Phone
from contactsync.contacts.normalize import own_display_name
from contactsync.providers.base import (
    AuthExpired,
    ContactDelete,
    ContactUpdate,
    CursorExpired,
    NewContact,
    PreconditionFailed,
    RateLimited,
    Transient,
)
from contactsync.providers.google import GoogleContacts
from contactsync.providers.google.adapter import MY_CONTACTS
from contactsync.providers.google.mapping import (
    TAG_KEY,
    from_person,
    person_fields_changed,
    to_person,
)
from contactsync.providers.google.persons import NOT_IN_GROUP
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.google import GoogleSandbox, RunningGoogle, running_google_sandbox

PERSON = Contact(
    given_name="Ada",
    middle_name="King",
    family_name="Lovelace",
    display_name="Ada, Countess of Lovelace",
    emails=(Email("ada@analytical.example", "work", True), Email("ada@home.example", "home")),
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


@dataclass
class Account:
    """A sandbox user, an httpx client that records what we send, and a token source the test
    controls (``refresh_works`` False hands out a token the sandbox never issued)."""

    google: RunningGoogle
    email: str
    http: httpx.Client
    sent: list[httpx.Request] = field(default_factory=list)
    token_calls: list[bool] = field(default_factory=list)
    refresh_works: bool = True
    before_send: Callable[[httpx.Request], None] | None = None

    @property
    def sb(self) -> GoogleSandbox:
        return self.google.sandbox

    def token(self, force_refresh: bool) -> str:
        self.token_calls.append(force_refresh)
        if force_refresh and not self.refresh_works:
            return "a-token-the-sandbox-never-issued"
        return self.sb.token_for(self.email)

    def adapter(self, group_id: str = MY_CONTACTS, **kwargs: Any) -> GoogleContacts:
        return GoogleContacts(
            base_url=self.google.people_url,
            token=self.token,
            group_id=group_id,
            client=self.http,
            **kwargs,
        )

    def requests(self, path_end: str) -> list[httpx.Request]:
        return [r for r in self.sent if r.url.path.endswith(path_end)]

    def calls(self, before: dict[str, int], method: str) -> int:
        """How many times the sandbox served ``method`` since the ``before`` snapshot."""
        return self.sb.stats_snapshot().get(method, 0) - before.get(method, 0)


@pytest.fixture
def google() -> Iterator[RunningGoogle]:
    """A fresh sandbox per test: its stats, quotas and faults are the test's own."""
    with running_google_sandbox(sandbox=GoogleSandbox()) as running:
        yield running


@pytest.fixture
def account(google: RunningGoogle) -> Iterator[Account]:
    email = "ada@example.com"
    google.sandbox.add_user(email, "Ada Lovelace")
    box: Account
    hooks = {"request": [lambda r: (box.sent.append(r), box.before_send and box.before_send(r))]}
    with httpx.Client(timeout=10.0, event_hooks=hooks) as http:
        box = Account(google, email, http)
        yield box


def read_all(adapter: GoogleContacts, position: str | None = None) -> list[Any]:
    """Follow a listing to its end: every page."""
    pages = [adapter.read(position)]
    while not pages[-1].complete:
        pages.append(adapter.read(pages[-1].position))
    return pages


def body_of(request: httpx.Request) -> dict[str, Any]:
    return json.loads(request.content)


# --- reading ----------------------------------------------------------------------------------


def test_full_listing_then_changes_and_deletions(account: Account) -> None:
    # Given 25 contacts
    sb = account.sb
    ids = [sb.add_contact(account.email, to_person(PERSON.with_fields(given_name=f"P{i}")))
           for i in range(25)]  # fmt: skip
    adapter = account.adapter(page_size=10)
    # When we list from no position
    pages = read_all(adapter)
    # Then three pages of a full listing came back, the last one holding a sync token
    assert [len(p.contacts) for p in pages] == [10, 10, 5]
    assert all(p.full for p in pages) and [p.complete for p in pages] == [False, False, True]
    assert sorted(c.id for p in pages for c in p.contacts) == sorted(ids)
    cursor = pages[-1].position
    assert cursor and not cursor.startswith("{")
    # When the user edits one contact, adds one and deletes one
    a, c = ids[0], ids[2]
    sb.update_contact(account.email, a, {"organizations": [{"name": "Edited"}]})
    new = sb.add_contact(account.email, {"names": [{"givenName": "Grace"}]})
    sb.delete_contact(account.email, c)
    sb.advance(sb.sync_lag.total_seconds())  # writes reach sync listings after a lag
    page = adapter.read(cursor)
    # Then only those come back, as one incremental, complete page
    assert not page.full and page.complete
    assert {r.id: r.contact.organization for r in page.contacts} == {a: "Edited", new: ""}
    assert page.deleted == [c]
    # And reading from the new position finds nothing
    again = adapter.read(page.position)
    assert again.contacts == [] and again.deleted == [] and again.complete


def test_an_incremental_listing_pages_with_its_sync_token(account: Account) -> None:
    # Given a finished full listing and then three edits
    sb = account.sb
    ids = [sb.add_contact(account.email, {"names": [{"givenName": f"N{i}"}]}) for i in range(3)]
    adapter = account.adapter(page_size=2)
    cursor = read_all(adapter)[-1].position
    for rn in ids:
        sb.update_contact(account.email, rn, {"biographies": [{"value": "edited"}]})
    sb.advance(sb.sync_lag.total_seconds())  # writes reach sync listings after a lag
    # When we read the changes two at a time
    pages = read_all(adapter, cursor)
    # Then two incremental pages hold the three changes, and the sync token went along
    assert [len(p.contacts) for p in pages] == [2, 1]
    assert not any(p.full for p in pages)
    assert {r.contact.notes for p in pages for r in p.contacts} == {"edited"}
    listed = account.requests("/people/me/connections")[-2:]
    assert all(r.url.params.get("syncToken") == cursor for r in listed)


def test_an_expired_sync_token_is_cursor_expired(account: Account) -> None:
    # Given a sync token, and eight days passing (Google keeps them seven)
    account.sb.add_contact(account.email, to_person(PERSON))
    adapter = account.adapter()
    cursor = read_all(adapter)[-1].position
    account.sb.advance(8 * 24 * 3600)
    # When we read from it, Then we are told to start over
    with pytest.raises(CursorExpired):
        adapter.read(cursor)
    # And a full listing works again
    assert read_all(adapter)[-1].full


def test_only_the_chosen_group_is_in_scope(account: Account) -> None:
    # Given a "Clients" group with one member, and one contact only in My Contacts
    sb = account.sb
    clients = sb.add_group(account.email, "Clients")
    member = sb.add_contact(account.email, to_person(PERSON), groups=(MY_CONTACTS, clients))
    other = sb.add_contact(account.email, {"names": [{"givenName": "Outside"}]})
    adapter = account.adapter(group_id=clients)
    # When we list, Then the member is in scope and the other one is not
    [page] = read_all(adapter)
    scope = {r.id: (r.in_scope, r.scope_reason) for r in page.contacts}
    assert scope == {member: (True, ""), other: (False, NOT_IN_GROUP)}
    # When the user takes the member out of the group
    sb.set_groups(account.email, member, [MY_CONTACTS])
    sb.advance(sb.sync_lag.total_seconds())  # writes reach sync listings after a lag
    [moved] = adapter.read(page.position).contacts
    # Then it comes back out of scope (never as a delete)
    assert moved.id == member and not moved.in_scope and moved.scope_reason == NOT_IN_GROUP


def test_fetch_gets_current_state_and_none_for_gone(account: Account) -> None:
    sb = account.sb
    a = sb.add_contact(account.email, to_person(PERSON))
    b = sb.add_contact(account.email, {"names": [{"givenName": "Gone"}]})
    sb.delete_contact(account.email, b)
    found = account.adapter().fetch([a, b])
    assert found[b] is None
    assert found[a] is not None and found[a].contact == PERSON and found[a].version
    assert found[a].modified_at.endswith("Z")


# --- writing ----------------------------------------------------------------------------------


def test_create_carries_the_tag_and_the_group_and_find_tagged_finds_it(account: Account) -> None:
    # Given a user group chosen for the sync
    sb = account.sb
    clients = sb.add_group(account.email, "Clients")
    adapter = account.adapter(group_id=clients)
    # When we create a contact
    [made] = adapter.create([NewContact("map-1", PERSON)])
    # Then it is in the group, carries our tag, and reads back as we wrote it
    assert made.ok and made.remote is not None and made.remote.tag == "map-1"
    assert made.remote.in_scope and made.remote.contact == PERSON
    [stored] = sb.contacts(account.email)
    groups = {
        m["contactGroupMembership"]["contactGroupResourceName"] for m in stored["memberships"]
    }
    assert clients in groups
    assert [(d["key"], d["value"]) for d in stored["clientData"]] == [(TAG_KEY, "map-1")]
    # And find_tagged finds it by the tag, and nothing for another tag
    found = adapter.find_tagged("map-1")
    assert found is not None and found.id == made.remote.id
    assert adapter.find_tagged("map-2") is None


def test_creates_go_two_hundred_per_call(account: Account) -> None:
    # Given 450 new contacts
    items = [NewContact(f"m-{i}", PERSON.with_fields(given_name=f"P{i}")) for i in range(450)]
    before = account.sb.stats_snapshot()
    # When we create them
    results = account.adapter().create(items)
    # Then three calls carried them, each item has its own result in order
    assert account.calls(before, "batchCreateContacts") == 3
    assert [r.key for r in results] == [f"m-{i}" for i in range(450)]
    assert all(r.ok and r.remote and r.remote.tag == r.key for r in results)
    assert len(account.sb.contacts(account.email)) == 450


def test_update_sends_only_changed_fields_and_keeps_what_we_do_not_model(
    account: Account,
) -> None:
    # Given a contact with a nickname, a custom email type and a department (not modelled)
    sb = account.sb
    person = to_person(PERSON)
    person["nicknames"] = [{"value": "Countess"}]
    person["emailAddresses"][1]["type"] = "Lab"
    person["organizations"][0]["department"] = "Engines"
    rn = sb.add_contact(account.email, person)
    adapter = account.adapter()
    current = adapter.fetch([rn])[rn]
    assert current is not None
    # When we change the job title and the first email's address
    after = current.contact.with_fields(
        job_title="Analyst",
        emails=(Email("ada@engines.example", "work", True), current.contact.emails[1]),
    )
    [result] = adapter.update([ContactUpdate(rn, current.version, current.contact, after)])
    # Then one update carried only those two person fields
    [sent] = account.requests("people:batchUpdateContacts")
    assert body_of(sent)["updateMask"] == "emailAddresses,organizations"
    assert result.ok and result.remote is not None and result.remote.contact == after
    assert result.remote.version != current.version
    # And what we do not model survived
    [stored] = sb.contacts(account.email)
    assert stored["nicknames"][0]["value"] == "Countess"
    assert stored["emailAddresses"][1]["type"] == "Lab"
    assert stored["organizations"][0]["department"] == "Engines"
    assert stored["organizations"][0]["title"] == "Analyst"


def test_update_with_nothing_to_change_sends_nothing(account: Account) -> None:
    results = account.adapter().update([ContactUpdate("people/c1", "e", PERSON, PERSON)])
    assert results[0].ok and account.sent == []


def test_a_stale_etag_is_precondition_failed_for_that_contact_only(account: Account) -> None:
    # Given two contacts we read, one of them edited by the user since
    sb = account.sb
    a = sb.add_contact(account.email, to_person(PERSON))
    b = sb.add_contact(account.email, to_person(PERSON.with_fields(given_name="Byron")))
    adapter = account.adapter()
    seen = adapter.fetch([a, b])
    sb.update_contact(account.email, a, {"biographies": [{"value": "edited by the user"}]})
    # When we update both
    updates = [
        ContactUpdate(rn, seen[rn].version, seen[rn].contact,  # type: ignore[union-attr]
                      seen[rn].contact.with_fields(job_title="From the CRM"))  # type: ignore[union-attr]
        for rn in (a, b)
    ]  # fmt: skip
    results = {r.key: r for r in adapter.update(updates)}
    # Then only the stale one failed, with PreconditionFailed, and the user's edit stands
    assert isinstance(results[a].error, PreconditionFailed)
    assert results[b].ok
    stored = {p["resourceName"]: p for p in sb.contacts(account.email)}
    assert stored[a]["biographies"][0]["value"] == "edited by the user"
    assert stored[a]["organizations"][0]["title"] == "Programmer"


def test_an_edit_racing_our_update_is_precondition_failed_and_the_rest_is_written(
    account: Account,
) -> None:
    # Given two contacts, and the user editing one of them just as our batch update leaves
    sb = account.sb
    a = sb.add_contact(account.email, to_person(PERSON))
    b = sb.add_contact(account.email, to_person(PERSON.with_fields(given_name="Byron")))
    adapter = account.adapter()
    seen = adapter.fetch([a, b])

    def user_edits(request: httpx.Request) -> None:
        if request.url.path.endswith("people:batchUpdateContacts") and account.before_send:
            account.before_send = None
            sb.update_contact(account.email, a, {"nicknames": [{"value": "Countess"}]})

    account.before_send = user_edits
    updates = [
        ContactUpdate(rn, seen[rn].version, seen[rn].contact,  # type: ignore[union-attr]
                      seen[rn].contact.with_fields(notes="From the CRM"))  # type: ignore[union-attr]
        for rn in (a, b)
    ]  # fmt: skip
    # When we update both
    results = {r.key: r for r in adapter.update(updates)}
    # Then Google's etag check failed the raced one only; the other was sent again and written
    assert isinstance(results[a].error, PreconditionFailed)
    *_, resent = account.requests("people:batchUpdateContacts")
    assert list(body_of(resent)["contacts"]) == [b]
    assert results[b].ok and results[b].remote is not None
    assert results[b].remote.contact.notes == "From the CRM"


def test_deletes_batch_and_a_contact_already_gone_counts_as_deleted(account: Account) -> None:
    # Given three contacts, one of which the user already deleted
    sb = account.sb
    ids = [sb.add_contact(account.email, {"names": [{"givenName": f"D{i}"}]}) for i in range(3)]
    sb.delete_contact(account.email, ids[1])
    # When we delete all three
    results = account.adapter().delete([ContactDelete(rn) for rn in ids])
    # Then every delete succeeded and nothing is left
    assert [r.key for r in results] == ids and all(r.ok for r in results)
    assert sb.contacts(account.email) == []


def test_mutations_are_never_sent_concurrently() -> None:
    # Given a slow service and one adapter shared by four threads
    slow = GoogleSandbox(latency_ms=20)
    with running_google_sandbox(sandbox=slow) as running, httpx.Client(timeout=10) as http:
        slow.add_user("busy@example.com")
        adapter = GoogleContacts(
            base_url=running.people_url,
            token=lambda _force: slow.token_for("busy@example.com"),
            group_id=MY_CONTACTS,
            client=http,
        )

        def create_some(n: int) -> None:
            adapter.create([NewContact(f"t{n}-{i}", PERSON) for i in range(3)])

        # When they all write at once
        threads = [threading.Thread(target=create_some, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # Then the service never saw two mutations of this user overlap
        stats = slow.stats_snapshot()
        assert stats.get("batchCreateContacts") == 4
        assert stats.get("concurrent_mutations", 0) == 0


# --- errors -----------------------------------------------------------------------------------


def test_quota_exceeded_is_rate_limited_without_sleeping(account: Account) -> None:
    # Given a user quota of one read a minute, already spent
    account.sb.set_quota(reads_per_minute=1)
    adapter = account.adapter()
    adapter.read(None)
    # When we read again
    started = time.monotonic()
    with pytest.raises(RateLimited) as caught:
        adapter.read(None)
    # Then we are told to come back later, at once and without a retry
    assert caught.value.retry_after == 30.0
    assert time.monotonic() - started < 1.0
    assert len(account.requests("/people/me/connections")) == 2


def test_a_throttled_create_keeps_what_was_done(account: Account) -> None:
    # Given a write quota that allows one call a minute
    account.sb.set_quota(writes_per_minute=1)
    items = [NewContact(f"q-{i}", PERSON) for i in range(250)]
    # When we create 250 contacts (two calls' worth)
    results = account.adapter().create(items)
    # Then the first 200 were created and the rest are RateLimited, to be re-queued
    assert all(r.ok for r in results[:200])
    assert all(isinstance(r.error, RateLimited) for r in results[200:])
    assert len(account.sb.contacts(account.email)) == 200


def test_server_errors_are_retried_then_transient(account: Account) -> None:
    # Given a service failing every request with 503
    account.sb.faults.rate_503 = 1.0
    # When we read, Then after the first attempt and two retries it is Transient
    with pytest.raises(Transient):
        account.adapter().read(None)
    assert len(account.sent) == 3


def test_401_refreshes_the_token_once(account: Account) -> None:
    # Given an access token that expired
    adapter = account.adapter()
    adapter.read(None)
    account.sb.expire_access_tokens()
    # When we read, Then the token is refreshed once and the read works
    assert adapter.read(None).full
    assert account.token_calls == [False, True]


def test_401_after_a_refresh_is_auth_expired(account: Account) -> None:
    # Given a token that stopped working and a refresh that does not help
    adapter = account.adapter()
    adapter.read(None)
    account.sb.expire_access_tokens()
    account.refresh_works = False
    # When we read, Then the user must reconnect
    with pytest.raises(AuthExpired):
        adapter.read(None)
    assert account.token_calls == [False, True]


# --- account, groups --------------------------------------------------------------------------


def test_whoami_and_groups(account: Account) -> None:
    sb = account.sb
    for name in ("Suppliers", "Clients"):
        sb.add_group(account.email, name)
    adapter = account.adapter()
    rn, email = adapter.whoami()
    assert rn.startswith("people/") and email == account.email
    groups = adapter.list_groups()
    assert groups[0] == (MY_CONTACTS, "My Contacts")
    assert [name for _, name in groups[1:]] == ["Clients", "Suppliers"]


def test_a_group_made_for_the_sync_is_listed(account: Account) -> None:
    adapter = account.adapter()
    # When a contact group is made for the sync
    made = adapter.create_group("Synced with the CRM")
    # Then Google has it as a user group, listed for the user to choose
    assert made[0].startswith("contactGroups/") and made[1] == "Synced with the CRM"
    assert made in adapter.list_groups()


# --- mapping ----------------------------------------------------------------------------------

labels = st.sampled_from(["work", "home", "other", "mobile"])
text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=12)
words = text.map(str.strip).filter(bool)


@st.composite
def contacts(draw: st.DrawFn) -> Contact:
    """Contacts as Google can hold them: a display name always present (Google computes one
    otherwise), labels among Google's types, dates that exist."""
    emails = draw(st.lists(st.builds(Email, words, labels, st.booleans()), max_size=3))
    phones = draw(st.lists(st.builds(Phone, words, labels, st.booleans()), max_size=3))
    addresses = draw(
        st.lists(st.builds(Address, words, text, text, text, text, labels), max_size=2)
    )
    birthday = draw(
        st.one_of(
            st.just(""),
            st.dates().map(lambda d: d.isoformat()).filter(lambda d: len(d) == 10),
            st.dates().map(lambda d: d.strftime("--%m-%d")),
        )
    )
    given, middle, family = draw(text), draw(text), draw(text)
    return Contact(
        given_name=given,
        middle_name=middle,
        family_name=family,
        display_name=own_display_name(draw(words), given, middle, family),
        emails=tuple(emails),
        phones=tuple(phones),
        organization=draw(text),
        job_title=draw(text),
        addresses=tuple(addresses),
        birthday=birthday,
        notes=draw(text),
        websites=tuple(draw(st.lists(words, max_size=2))),
    )


@settings(max_examples=200, deadline=None)
@given(contacts())
def test_to_person_and_back_is_the_same_contact(contact: Contact) -> None:
    assert from_person(to_person(contact)) == contact


@settings(max_examples=100, deadline=None)
@given(contacts(), contacts())
def test_changed_fields_are_exactly_those_that_differ(a: Contact, b: Contact) -> None:
    changed = person_fields_changed(a, b)
    assert (changed == []) == (to_person(a) == to_person(b))
    assert person_fields_changed(a, a) == []


def test_mapping_edge_cases() -> None:
    # A birthday without a year has no year key; Google's other types read as our labels
    assert to_person(Contact(birthday="--07-04"))["birthdays"] == [{"date": {"month": 7, "day": 4}}]
    person = {
        "names": [{"givenName": "Ada", "familyName": "Lovelace", "displayName": "Ada Lovelace"}],
        "phoneNumbers": [{"value": "1", "type": "workMobile"}, {"value": "2", "type": "pager"}],
        "emailAddresses": [{"value": "a@x", "metadata": {"primary": True}}],
    }
    c = from_person(person)
    assert c.display_name == ""  # it only joins the name parts: derived, as on every side
    assert [(p.value, p.label) for p in c.phones] == [("1", "mobile"), ("2", "other")]
    assert c.emails == (Email("a@x", "other", True),)
    # Without a display name the full name is written, as Graph does
    assert to_person(Contact(given_name="Ada"))["names"] == [
        {"givenName": "Ada", "unstructuredName": "Ada"}
    ]
    # Only the fields that differ are named
    changed = PERSON.with_fields(job_title="CEO", notes="")
    assert person_fields_changed(PERSON, changed) == ["organizations", "biographies"]


# --- what real Google does that a forgiving emulator would not ----------------------------------


def test_a_person_left_out_of_a_batch_get_is_unknown_never_deleted(account: Account) -> None:
    # Given three contacts, one deleted, and a service whose batch answers leave names out
    sb = account.sb
    alive = [sb.add_contact(account.email, {"names": [{"givenName": f"A{i}"}]}) for i in range(2)]
    gone = sb.add_contact(account.email, {"names": [{"givenName": "Gone"}]})
    sb.delete_contact(account.email, gone)
    sb.set_faults(rate_partial=1.0)
    # When we fetch all three, Then the names left out are not in the answer at all
    assert account.adapter().fetch([*alive, gone]) == {}
    # And with whole answers the deleted one is None and the others are there
    sb.set_faults(rate_partial=0.0)
    fetched = account.adapter().fetch([*alive, gone])
    assert fetched[gone] is None and all(fetched[rn] is not None for rn in alive)


def test_empty_pages_in_a_listing_are_followed(account: Account) -> None:
    sb = account.sb
    ids = [sb.add_contact(account.email, {"names": [{"givenName": f"N{i}"}]}) for i in range(3)]
    sb.set_faults(empty_pages=2)
    pages = read_all(account.adapter(page_size=2))
    assert [len(p.contacts) for p in pages][:2] == [0, 0] and pages[-1].complete
    assert sorted(c.id for p in pages for c in p.contacts) == sorted(ids)


def test_an_update_right_after_our_write_is_refused_as_stale_not_sent_blind(
    account: Account,
) -> None:
    # Given a contact we just updated (Google may still hand out its previous etag)
    sb = account.sb
    rn = sb.add_contact(account.email, to_person(PERSON))
    sb.advance(sb.stale_read.total_seconds())
    adapter = account.adapter()
    current = adapter.fetch([rn])[rn]
    assert current is not None
    first = PERSON.with_fields(job_title="First")
    [done] = adapter.update([ContactUpdate(rn, current.version, PERSON, first)])
    assert done.remote is not None
    # When we update it again at once, with the version our write returned
    second = PERSON.with_fields(job_title="Second")
    before = sb.stats_snapshot()
    [refused] = adapter.update([ContactUpdate(rn, done.remote.version, first, second)])
    # Then the stale read is a PreconditionFailed and nothing was written with the old etag
    assert isinstance(refused.error, PreconditionFailed)
    assert account.calls(before, "batchUpdateContacts") == 0
    # And once Google's reads catch up, the same update goes through
    sb.advance(sb.stale_read.total_seconds())
    [later] = adapter.update([ContactUpdate(rn, done.remote.version, first, second)])
    assert later.ok and later.remote is not None and later.remote.contact.job_title == "Second"


def test_a_contact_with_a_new_resource_name_names_its_previous_one(account: Account) -> None:
    # Given a listed contact that Google then gives a new resource name
    sb = account.sb
    old = sb.add_contact(account.email, {"names": [{"givenName": "Ann"}]})
    adapter = account.adapter()
    cursor = read_all(adapter)[-1].position
    new = sb.change_resource_name(account.email, old)
    sb.advance(sb.sync_lag.total_seconds())  # writes reach sync listings after a lag
    # When we read the changes, and fetch it by its old name
    [renamed] = adapter.read(cursor).contacts
    fetched = adapter.fetch([old])
    # Then both name the old resource name, under the new one (the pass moves the link)
    assert renamed.id == new and renamed.previous_ids == (old,)
    assert fetched[old] is not None and fetched[old].id == new


def test_lookup_warms_up_then_searches_each_email_phone_and_name(account: Account) -> None:
    # Given Ada in the synced group, her twin only in My Contacts, and someone else
    sb = account.sb
    clients = sb.add_group(account.email, "Clients")
    ada = sb.add_contact(account.email, to_person(PERSON), groups=(MY_CONTACTS, clients))
    sb.add_contact(account.email, to_person(PERSON))
    sb.add_contact(account.email, {"names": [{"givenName": "Bob"}]}, groups=(MY_CONTACTS, clients))
    adapter = account.adapter(group_id=clients)
    before = sb.stats_snapshot()
    # When a contact with Ada's work email (in other case) and a phone is looked up
    wanted = Contact(emails=(Email("ADA@analytical.example"),), phones=(PERSON.phones[2],))
    found = adapter.lookup([wanted])
    # Then the group's Ada is found, not the twin outside the group
    assert [r.id for r in found] == [ada]
    # And it cost a warm-up and one search per email and phone
    assert account.calls(before, "searchContacts") == 3
    assert [r.url.params["query"] for r in account.requests(":searchContacts")] == [
        "", "ADA@analytical.example", "+44 7700 900000"
    ]  # fmt: skip
