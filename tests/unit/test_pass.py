"""A sync pass over in-memory sides and store: ordering, crash recovery, cursors, guard."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from contactsync.contacts.model import Contact, Email, Phone
from contactsync.providers.base import PreconditionFailed, RateLimited, Transient, WriteResult
from contactsync.runtime.messages import SyncMessage
from contactsync.sync.memory import InMemorySide, InMemoryStore
from contactsync.sync.reconcile import (
    CHUNK,
    RETRY_MAX_SECONDS,
    PassContext,
    Sides,
    preview_pass,
    run_pass,
)

CID = "conn1"


class Crash(Exception):
    pass


MAPPING_IDS = itertools.count(1)


def person(name: str, email: str, phone: str = "") -> Contact:
    given, family = name.split(" ", 1)
    return Contact(
        given_name=given,
        family_name=family,
        emails=(Email(email, primary=True),),
        phones=(Phone(phone, primary=True),) if phone else (),
    )


@pytest.fixture
def world() -> tuple[InMemoryStore, InMemorySide, InMemorySide]:
    store = InMemoryStore()
    store.add_connection(CID, state="syncing_initial")
    return store, InMemorySide(name="crm"), InMemorySide(name="provider")


def context(
    store: InMemoryStore, crm: InMemorySide, provider: InMemorySide, **kw: object
) -> PassContext:
    return PassContext(
        store=store,
        sides_for=lambda _view: Sides(crm=crm, provider=provider),
        new_id=lambda: f"m{next(MAPPING_IDS)}",  # unique across passes, as uuids are
        **kw,  # type: ignore[arg-type]
    )


def start(store: InMemoryStore, crm: InMemorySide, provider: InMemorySide, **kw: object) -> str:
    return run_pass(
        CID, SyncMessage(connection_id=CID, reason="start"), context(store, crm, provider, **kw)
    ).status


def poll(store: InMemoryStore, crm: InMemorySide, provider: InMemorySide, **kw: object) -> str:
    return run_pass(
        CID, SyncMessage(connection_id=CID, reason="schedule"), context(store, crm, provider, **kw)
    ).status


def emails(side: InMemorySide) -> list[str]:
    return sorted(e.value.lower() for c in side.contacts.values() for e in c.contact.emails)


def test_initial_sync_links_matches_and_creates_the_rest(world) -> None:
    # Given a person on both sides with the same email, and one only on each side
    store, crm, provider = world
    crm.put(person("Ann Lee", "ann@x.com", "+1 415 555 0100"))
    provider.put(person("Ann Lee", "ANN@x.com ", "(415) 555-0100"))
    crm.put(person("Bob Moss", "bob@x.com"))
    provider.put(person("Cleo Park", "cleo@x.com"))
    # When the first pass runs
    assert start(store, crm, provider) == "done"
    # Then each side has all three people once, and three mappings exist
    assert emails(crm) == ["ann@x.com", "bob@x.com", "cleo@x.com"]
    assert len(provider.contacts) == 3
    assert store.count_mappings(CID) == 3
    assert store.connections[CID]["state"] == "active"
    # And only the CRM was searched before creating: the address book was listed whole
    assert (crm.calls.get("lookup", 0), provider.calls.get("lookup", 0)) == (1, 0)
    # And a second pass writes nothing (formatting-only differences do not echo)
    writes_before = dict(crm.calls), dict(provider.calls)
    assert poll(store, crm, provider) == "done"
    for side, before in zip((crm, provider), writes_before, strict=True):
        for call in ("create", "update", "delete"):
            assert side.calls.get(call, 0) == before.get(call, 0)


def test_an_edit_flows_to_the_other_side(world) -> None:
    store, crm, provider = world
    remote = provider.put(person("Ann Lee", "ann@x.com"))
    start(store, crm, provider)
    # When the provider contact gets a job title
    provider.put(remote.contact.with_fields(job_title="CTO"), contact_id=remote.id)
    poll(store, crm, provider)
    # Then the CRM copy has it
    (crm_copy,) = crm.contacts.values()
    assert crm_copy.contact.job_title == "CTO"


@pytest.mark.parametrize(
    "point",
    ["after_pending", "after_provider_call", "before_mapping_write", "before_cursor_advance"],
)
def test_a_crash_at_any_point_is_finished_by_the_next_pass_without_duplicates(world, point) -> None:
    # Given ten CRM persons and an empty address book
    store, crm, provider = world
    for i in range(10):
        crm.put(person(f"P {i}", f"p{i}@x.com"))

    def crash(at: str) -> None:
        if at == point:
            raise Crash(at)

    # When the first pass crashes at the injected point
    with pytest.raises(Crash):
        start(store, crm, provider, crash_point=crash)
    store.leases.clear()  # the crashed invocation's lease would expire
    # And the message is redelivered
    assert start(store, crm, provider) == "done"
    # Then every person exists exactly once on the provider side, each mapped once
    assert sorted(emails(provider)) == [f"p{i}@x.com" for i in range(10)]
    assert store.count_mappings(CID) == 10
    assert not store.pending(CID)


def test_a_contact_we_created_and_the_user_deleted_before_a_crash_was_recovered_stays_deleted(
    world,
) -> None:
    # Given a synced connection, and a new CRM person
    store, crm, provider = world
    crm.put(person("Ann Lee", "ann@x.com"))
    assert start(store, crm, provider) == "done"
    crm.put(person("Zoe Park", "zoe@x.com"))

    def crash(at: str) -> None:
        if at == "after_provider_call":
            raise Crash(at)

    # When the pass that copies her dies right after the provider made her contact
    with pytest.raises(Crash):
        poll(store, crm, provider, crash_point=crash)
    store.leases.clear()
    assert "zoe@x.com" in emails(provider)
    # And the user deletes that contact before the message comes back (its tag goes with it)
    made = next(i for i, c in provider.contacts.items() if c.contact.emails[0].value == "zoe@x.com")
    provider.remove(made)
    assert poll(store, crm, provider) == "done"
    # Then she is not created again: the delete reaches the CRM, as any delete would
    assert emails(provider) == ["ann@x.com"]
    assert emails(crm) == ["ann@x.com"]
    assert not store.pending(CID)


def test_a_plan_whose_pass_died_before_sending_it_is_made_again_from_fresh_reads(world) -> None:
    # Given a synced connection, and a new CRM person
    store, crm, provider = world
    crm.put(person("Ann Lee", "ann@x.com"))
    assert start(store, crm, provider) == "done"
    zoe = crm.put(person("Zoe Park", "zoe@x.com"))

    def crash(at: str) -> None:
        if at == "after_pending":
            raise Crash(at)

    # When the pass that planned to copy her dies before sending anything
    with pytest.raises(Crash):
        poll(store, crm, provider, crash_point=crash)
    store.leases.clear()
    # And she is deleted in the CRM before the message comes back
    crm.remove(zoe.id)
    pushed = SyncMessage(connection_id=CID, reason="crm_push", crm_ids=[zoe.id])
    assert run_pass(CID, pushed, context(store, crm, provider)).status == "done"
    # Then the stale plan is not carried out: she is never created in the provider
    assert emails(provider) == ["ann@x.com"]
    assert provider.calls.get("create", 0) == 1  # Ann's, in the first sync
    assert not store.pending(CID)


def test_a_write_refused_as_stale_is_planned_again_from_both_sides_read_afresh(world) -> None:
    # Given a synced pair
    store, crm, provider = world
    ann = crm.put(person("Ann Lee", "ann@x.com"))
    assert start(store, crm, provider) == "done"
    (contact_id,) = provider.contacts
    # When the provider contact is edited, and the CRM refuses the write as stale once (the CRM
    # person changed in a way the pass could not see, e.g. within the same second)
    provider.put(person("Ann Lee", "ann@x.com").with_fields(job_title="CTO"), contact_id=contact_id)
    original = crm.update
    refusals = iter([True])

    def refuse_once(items):
        if next(refusals, False):
            return [
                WriteResult(i.id, error=PreconditionFailed("changed as it was read")) for i in items
            ]
        return original(items)

    crm.update = refuse_once  # type: ignore[method-assign]
    assert poll(store, crm, provider) == "done"
    assert crm.contacts[ann.id].contact.job_title == ""
    # Then the next pass reads both again and the edit arrives, though neither side changed since
    assert poll(store, crm, provider) == "done"
    assert crm.contacts[ann.id].contact.job_title == "CTO"


def test_rate_limit_leaves_the_work_pending_and_schedules_a_retry(world) -> None:
    store, crm, provider = world
    crm.put(person("Ann Lee", "ann@x.com"))
    original = provider.create

    def throttled(items):  # the provider says "slow down" once
        provider.create = original
        raise RateLimited("slow down", retry_after=30)

    provider.create = throttled  # type: ignore[method-assign]
    assert start(store, crm, provider) == "throttled"
    assert store.pending(CID)  # the create is still pending, the cursor did not move
    assert store.cursor(CID, "crm") is None
    assert store.connections[CID]["next_run_at"] is not None
    # When the scheduler brings it back
    assert poll(store, crm, provider) == "done"
    assert emails(provider) == ["ann@x.com"]
    assert not store.pending(CID)


def test_failed_passes_back_off_and_throttles_do_not_count(world) -> None:
    # Given a provider that is down
    store, crm, provider = world
    crm.put(person("Ann Lee", "ann@x.com"))
    original = provider.read

    def down(position):
        raise Transient("503 Service Unavailable")

    def throttling(position):
        raise RateLimited("slow down", retry_after=7)

    provider.read = down  # type: ignore[method-assign]
    message = SyncMessage(connection_id=CID, reason="start")
    # When passes fail in a row, Then each waits twice as long as the last, up to a cap
    delays = [run_pass(CID, message, context(store, crm, provider)) for _ in range(4)]
    assert [r.status for r in delays] == ["failed"] * 4
    assert [r.retry_after for r in delays] == [10, 20, 40, 80]
    assert store.connections[CID]["last_error"]["repeats"] == 4
    # And a throttle in between neither counts as a failure nor resets the count
    provider.read = throttling  # type: ignore[method-assign]
    throttled = run_pass(CID, message, context(store, crm, provider))
    assert (throttled.status, throttled.retry_after) == ("throttled", 7)
    provider.read = down  # type: ignore[method-assign]
    assert run_pass(CID, message, context(store, crm, provider)).retry_after == RETRY_MAX_SECONDS
    for _ in range(3):
        last = run_pass(CID, message, context(store, crm, provider))
    assert last.retry_after == RETRY_MAX_SECONDS
    # And once the provider is back, a pass succeeds and the count starts again
    provider.read = original  # type: ignore[method-assign]
    assert run_pass(CID, message, context(store, crm, provider)).status == "done"
    assert store.connections[CID]["last_error"] is None
    provider.read = down  # type: ignore[method-assign]
    assert run_pass(CID, message, context(store, crm, provider)).retry_after == 10


def hold_a_mass_delete(store: InMemoryStore, crm: InMemorySide, provider: InMemorySide) -> None:
    """40 linked people, then 30 of the provider's copies disappear at once: the pass is held."""
    for i in range(40):
        crm.put(person(f"P {i}", f"p{i}@x.com"))
    start(store, crm, provider)
    for contact_id in list(provider.contacts)[:30]:
        provider.remove(contact_id)
    assert poll(store, crm, provider) == "held"


def test_a_mass_delete_is_held_for_confirmation(world) -> None:
    # When 30 of 40 provider contacts disappear at once
    store, crm, provider = world
    hold_a_mass_delete(store, crm, provider)
    # Then nothing was deleted in the CRM and the connection waits for the user
    assert len(crm.contacts) == 40
    assert store.connections[CID]["state"] == "needs_attention"
    # And after confirmation the deletes go through
    confirmed = run_pass(
        CID, SyncMessage(connection_id=CID, reason="confirm"), context(store, crm, provider)
    )
    assert confirmed.status == "done"
    assert len(crm.contacts) == 10


def test_a_confirmed_pass_that_runs_out_of_time_is_finished_by_its_continuations(world) -> None:
    # Given a held mass delete
    store, crm, provider = world
    hold_a_mass_delete(store, crm, provider)
    # When the user confirms and the confirmed pass runs out of time before writing
    confirm = SyncMessage(connection_id=CID, reason="confirm")
    hurried = context(store, crm, provider, budget_seconds=0.0)
    assert run_pass(CID, confirm, hurried).status == "continue"
    # Then the connection no longer waits for the user, and the continuation finishes the plan
    assert store.connections[CID]["state"] == "active"
    assert store.connections[CID]["held"] is None
    going_on = SyncMessage(connection_id=CID, reason="continuation")
    assert run_pass(CID, going_on, context(store, crm, provider)).status == "done"
    assert len(crm.contacts) == 10


def test_a_contact_back_in_scope_is_merged_with_what_its_partner_holds_now(world) -> None:
    # Given a linked pair
    store, crm, provider = world
    ann = crm.put(person("Ann Lee", "ann@x.com"))
    assert start(store, crm, provider) == "done"
    [copy] = provider.contacts.values()
    # When the provider copy is edited and moved out before a pass sees the edit
    edited = replace(copy.contact, job_title="Designer")
    provider.put(edited, contact_id=copy.id, in_scope=False)
    assert poll(store, crm, provider) == "done"  # detached: the CRM person is left alone
    # And the CRM person is edited while its partner is away (a pass reads that edit)
    crm.put(replace(ann.contact, job_title="Counsel"), contact_id=ann.id)
    assert poll(store, crm, provider) == "done"
    # And the copy comes back, no change in the CRM since
    provider.put(edited, contact_id=copy.id, in_scope=True)
    assert poll(store, crm, provider) == "done"
    # Then the two edits met as a conflict (said in the audit), not as the CRM's old value
    conflicts = [e for _, e in store.log if e.kind == "conflict"]
    assert [c.details["field"] for c in conflicts] == ["job_title"]
    [conflict] = conflicts
    assert {conflict.details["winner_value"], conflict.details["loser_value"]} == {
        "Designer",
        "Counsel",
    }
    assert crm.contacts[ann.id].contact.job_title == provider.contacts[copy.id].contact.job_title


def two_syncs_of_one_crm() -> tuple[InMemoryStore, InMemorySide, InMemorySide, InMemorySide]:
    """One user's CRM synced with two address books (Outlook and Google), both active."""
    store = InMemoryStore()
    store.add_connection("outlook", provider="microsoft")
    store.add_connection("google", provider="google")
    return store, InMemorySide(name="crm"), InMemorySide(name="outlook"), InMemorySide(name="gg")


def sync(
    store: InMemoryStore, cid: str, crm: InMemorySide, book: InMemorySide, **kw: object
) -> str:
    message = SyncMessage(connection_id=cid, reason="schedule")
    return run_pass(cid, message, context(store, crm, book, **kw)).status


def while_planned(store: InMemoryStore, crm: InMemorySide, book: InMemorySide) -> object:
    """A crash point that runs a pass of the Outlook connection while the other pass has saved
    its plan and not sent it yet: the two passes overlap as two Lambdas do."""

    def overlap(point: str) -> None:
        if point == "after_pending":
            assert sync(store, "outlook", crm, book) == "done"

    return overlap


def test_a_person_both_address_books_bring_in_at_once_is_made_once_in_the_crm() -> None:
    # Given one user syncing Outlook and Google with the CRM
    store, crm, outlook, google = two_syncs_of_one_crm()
    for cid, book in (("outlook", outlook), ("google", google)):
        assert sync(store, cid, crm, book) == "done"
    # When the same new person is added to both address books
    outlook.put(person("Ada Byron", "ada@x.com").with_fields(job_title="Countess"))
    google.put(person("Ada Byron", "ada@x.com").with_fields(notes="met at the fair"))
    # And both passes plan to make her in the CRM, the Outlook one first to send
    assert sync(store, "google", crm, google, crash_point=while_planned(store, crm, outlook)) == (
        "done"
    )
    # Then the CRM holds her once, linked by both connections
    assert emails(crm) == ["ada@x.com"]
    [ada] = crm.contacts
    for cid in ("outlook", "google"):
        [mapping] = store.mappings(cid)
        assert mapping.crm_id == ada
    assert any(e.kind == "link" for cid, e in store.log if cid == "google")
    # And once the passes have run again, everyone holds what each book added, and nothing echoes
    for _ in range(2):
        for cid, book in (("google", google), ("outlook", outlook)):
            assert sync(store, cid, crm, book) == "done"
    for side in (crm, outlook, google):
        [held] = side.contacts.values()
        assert (held.contact.job_title, held.contact.notes) == ("Countess", "met at the fair")


def test_two_connections_making_one_person_in_the_same_instant_make_her_once() -> None:
    # Given one user syncing Outlook and Google with the CRM, and the same new person in both
    store, crm, outlook, google = two_syncs_of_one_crm()
    for cid, book in (("outlook", outlook), ("google", google)):
        assert sync(store, cid, crm, book) == "done"
    outlook.put(person("Ada Byron", "ada@x.com"))
    google.put(person("Ada Byron", "ADA@x.com").with_fields(notes="met at the fair"))
    statuses = []

    def outlook_in_the_same_instant(point: str) -> None:
        # The Google pass has looked around the CRM and is about to create: the Outlook pass
        # runs whole now, its look-up and look-around seeing no Ada either.
        if point == "before_create":
            statuses.append(sync(store, "outlook", crm, outlook))

    # When both passes get as far as creating her, the Google one first to claim her email
    assert sync(store, "google", crm, google, crash_point=outlook_in_the_same_instant) == "done"
    # Then the CRM holds her once: the Outlook pass could not claim her and made nothing
    assert statuses == ["done"]
    assert emails(crm) == ["ada@x.com"]
    assert list(store.mappings("outlook")) == []
    assert any("planned again" in e.message for cid, e in store.log if cid == "outlook")
    # And it is due again within seconds, when it finds her and links to her
    outlook_conn = store.connections["outlook"]
    due = outlook_conn["next_run_at"] - datetime.fromisoformat(outlook_conn["last_success_at"])
    assert due <= timedelta(seconds=5)
    assert sync(store, "outlook", crm, outlook) == "done"
    [ada] = crm.contacts
    for cid in ("outlook", "google"):
        [mapping] = store.mappings(cid)
        assert mapping.crm_id == ada
    for _ in range(2):
        for cid, book in (("google", google), ("outlook", outlook)):
            assert sync(store, cid, crm, book) == "done"
    assert emails(crm) == emails(outlook) == emails(google) == ["ada@x.com"]


def test_a_person_deleted_in_the_crm_and_edited_in_both_books_comes_back_once() -> None:
    # Given a person in the CRM, synced to Outlook and Google
    store, crm, outlook, google = two_syncs_of_one_crm()
    ada = crm.put(person("Ada Byron", "ada@x.com"))
    for cid, book in (("outlook", outlook), ("google", google)):
        assert sync(store, cid, crm, book) == "done"
    # When she is deleted in the CRM while each book edits her (one field in both)
    crm.remove(ada.id)
    [in_outlook] = outlook.contacts.values()
    outlook.put(in_outlook.contact.with_fields(job_title="Countess"), contact_id=in_outlook.id)
    [in_google] = google.contacts.values()
    edit = in_google.contact.with_fields(job_title="Mathematician", notes="met at the fair")
    google.put(edit, contact_id=in_google.id)
    # And both connections decide "the edit wins: make her again", Outlook's first to send
    assert sync(store, "google", crm, google, crash_point=while_planned(store, crm, outlook)) == (
        "done"
    )
    # Then she is back once in the CRM
    assert emails(crm) == ["ada@x.com"]
    for _ in range(2):
        for cid, book in (("google", google), ("outlook", outlook)):
            assert sync(store, cid, crm, book) == "done"
    assert emails(crm) == emails(outlook) == emails(google) == ["ada@x.com"]
    # And the two edits met as a recorded conflict, their other fields merged, all sides agree
    [conflict] = [e for cid, e in store.log if e.kind == "conflict"]
    winner = conflict.details["winner_value"]
    assert {winner, conflict.details["loser_value"]} == {"Mathematician", "Countess"}
    for side in (crm, outlook, google):
        [held] = side.contacts.values()
        assert (held.contact.job_title, held.contact.notes) == (winner, "met at the fair")


def test_a_new_contact_that_exists_unchanged_in_the_crm_is_linked_not_made_again(world) -> None:
    # Given a to_crm connection whose CRM person was never copied to the address book
    store, crm, provider = world
    store.update_connection(CID, direction="to_crm")
    ann = crm.put(person("Ann Lee", "ann@x.com"))
    assert start(store, crm, provider) == "done"
    assert provider.contacts == {}
    # When the user adds the same person to the address book (the CRM does not change)
    added = provider.put(person("Ann Lee", "ANN@x.com").with_fields(job_title="CTO"))
    assert poll(store, crm, provider) == "done"
    # Then she is linked to the CRM person, and no second one is made
    assert list(crm.contacts) == [ann.id]
    [mapping] = store.mappings(CID)
    assert (mapping.crm_id, mapping.provider_id) == (ann.id, added.id)
    assert crm.calls.get("create", 0) == 0
    assert crm.calls["lookup"] == 1


def test_a_new_contact_whose_crm_match_belongs_to_someone_else_is_held(world) -> None:
    # Given a CRM person with Ann's email that is not the user's (another owner)
    store, crm, provider = world
    theirs = crm.put(person("Ann Lee", "ann@x.com"), in_scope=False)
    assert start(store, crm, provider) == "done"
    # When the user adds Ann to the address book
    added = provider.put(person("Ann Lee", "ann@x.com"))
    assert poll(store, crm, provider) == "done"
    # Then nothing is made in the CRM, and the audit says why, naming both contacts
    assert list(crm.contacts) == [theirs.id]
    assert list(store.mappings(CID)) == []
    [held] = [e for cid, e in store.log if e.kind == "duplicate"]
    assert held.message.startswith("exists in the CRM, moved out of the folder")
    assert held.details == {"crm_ids": [theirs.id], "provider_ids": [added.id],
                            "key": "email:ann@x.com"}  # fmt: skip


@pytest.mark.parametrize("reason", ["schedule", "resync"])
def test_a_crm_person_whose_email_is_linked_already_is_not_copied_again(world, reason) -> None:
    # Given Ann copied to the address book and linked
    store, crm, provider = world
    crm.put(person("Ann Lee", "ann@x.com"))
    assert start(store, crm, provider) == "done"
    # When a second CRM person with her email appears, read incrementally or in a full listing
    crm.put(person("Annie Lee", "ann@x.com"))
    message = SyncMessage(connection_id=CID, reason=reason)
    assert run_pass(CID, message, context(store, crm, provider)).status == "done"
    # Then the address book still holds her once, and the second person waits for review
    assert emails(provider) == ["ann@x.com"]
    assert any("linked to another contact already" in e.message for _, e in store.log)


def test_two_crm_persons_sharing_an_email_are_not_both_copied(world) -> None:
    store, crm, provider = world
    crm.put(person("Ann Lee", "ann@x.com"))
    crm.put(person("Annie Lee", "ann@x.com"))
    assert start(store, crm, provider) == "done"
    assert provider.contacts == {}
    [held] = [e for cid, e in store.log if e.kind == "duplicate"]
    assert len(held.details["crm_ids"]) == 2 and held.details["provider_ids"] == []


def test_a_stopped_connection_is_not_synced(world) -> None:
    store, crm, provider = world
    store.update_connection(CID, state="stopped")
    crm.put(person("Ann Lee", "ann@x.com"))
    assert start(store, crm, provider) == "skipped"
    assert not provider.contacts


def test_the_mapping_count_survives_a_pass_that_stops_halfway(world) -> None:
    # Given three chunks of CRM persons and a provider that throttles the 2nd chunk
    store, crm, provider = world
    total = 2 * CHUNK + CHUNK // 2
    for i in range(total):
        crm.put(person(f"P {i}", f"p{i}@x.com"))
    original, calls = provider.create, {"n": 0}

    def throttles_second_chunk(items):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RateLimited("slow down", retry_after=5)
        return original(items)

    provider.create = throttles_second_chunk  # type: ignore[method-assign]
    # When the first pass stops after one chunk and a later pass finishes the rest
    assert start(store, crm, provider) == "throttled"
    assert poll(store, crm, provider) == "done"
    # Then the connection's count of linked pairs is the real one, without recounting
    assert store.count_mappings(CID) == total
    assert store.connections[CID]["mapped_count"] == total


def test_preview_counts_what_the_first_pass_would_do_and_writes_nothing(world) -> None:
    # Given one shared person, one only in the CRM and one only in the provider
    store, crm, provider = world
    crm.put(person("Ann Lee", "ann@x.com"))
    provider.put(person("Ann Lee", "ann@x.com"))
    crm.put(person("Bob Moss", "bob@x.com"))
    provider.put(person("Cleo Park", "cleo@x.com"))
    contacts_before = (dict(crm.contacts), dict(provider.contacts))
    # When a preview is asked for
    plan = preview_pass(CID, context(store, crm, provider))
    # Then it plans one link and one creation on each side
    kinds = sorted(o.kind for o in plan.outcomes)
    assert kinds == ["create", "create", "link"]
    # And nothing was written anywhere: no contact, mapping, cursor or audit entry
    assert (crm.contacts, provider.contacts) == contacts_before
    assert not any(crm.calls.get(c) or provider.calls.get(c) for c in ("create", "update"))
    assert store.count_mappings(CID) == 0
    assert store.cursor(CID, "crm") is None
    assert store.log == [] and store.ops == {}


def test_a_possible_duplicate_is_never_copied_when_edited_later(world) -> None:
    # Given two CRM persons and one provider contact share an email: ambiguous, left for review
    store, crm, provider = world
    twin = crm.put(person("Twin One", "twice@x.com"))
    crm.put(person("Twin Two", "twice@x.com"))
    provider.put(person("Twin Contact", "twice@x.com"))
    assert start(store, crm, provider) == "done"
    assert len(provider.contacts) == 1
    # When one twin is edited and an incremental pass sees it alone
    crm.put(twin.contact.with_fields(job_title="CTO"), contact_id=twin.id)
    assert poll(store, crm, provider) == "done"
    # Then it is still not copied: no duplicate appears in the provider
    assert len(provider.contacts) == 1
    assert store.count_mappings(CID) == 0


def test_a_day_after_the_last_full_listing_a_pass_lists_in_full_again(world) -> None:
    # Given a synced pair, and a CRM deletion whose webhook never came (the incremental CRM
    # feed does not report deletions: only a full listing notices the person is gone)
    store, crm, provider = world
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    ann = crm.put(person("Ann Lee", "ann@x.com"))
    crm.put(person("Bob Moss", "bob@x.com"))
    assert start(store, crm, provider, clock=lambda: now[0]) == "done"
    crm.contacts.pop(ann.id)  # gone without a trace in the change log
    # When a poll runs an hour later, nothing is noticed
    now[0] += timedelta(hours=1)
    assert poll(store, crm, provider, clock=lambda: now[0]) == "done"
    assert emails(provider) == ["ann@x.com", "bob@x.com"]
    # Then a poll a day after the last full listing lists in full and propagates the delete
    now[0] += timedelta(hours=24)
    assert poll(store, crm, provider, clock=lambda: now[0]) == "done"
    assert emails(provider) == ["bob@x.com"]


def test_a_pushed_change_that_arrives_while_waiting_is_read_by_the_next_pass(world) -> None:
    # Given a synced pair, and a connection waiting for the user (a held pass)
    store, crm, provider = world
    ann = crm.put(person("Ann Lee", "ann@x.com"))
    crm.put(person("Bob Moss", "bob@x.com"))
    assert start(store, crm, provider) == "done"
    store.update_connection(CID, state="needs_attention")
    # When the CRM deletes Ann (only its webhook says so) while the connection waits
    crm.contacts.pop(ann.id)
    pushed = SyncMessage(connection_id=CID, reason="crm_push", crm_ids=[ann.id])
    assert run_pass(CID, pushed, context(store, crm, provider)).status == "skipped"
    # Then the next pass after the wait re-reads Ann and deletes her contact too
    store.update_connection(CID, state="active")
    assert poll(store, crm, provider) == "done"
    assert emails(provider) == ["bob@x.com"]
    assert not store.connections[CID]["pending_crm_ids"]


def test_one_pass_reads_every_crm_delete_pushed_while_it_waited(world) -> None:
    # Given three synced pairs
    store, crm, provider = world
    people = [crm.put(person(f"P {i}", f"p{i}@x.com")) for i in range(3)]
    crm.put(person("Bob Moss", "bob@x.com"))
    assert start(store, crm, provider) == "done"
    # When the CRM deletes all three and pushes three webhooks: the first queues a pass, the
    # other two only ring the doorbell (a pass already waits)
    for p in people:
        crm.contacts.pop(p.id)
    queued = [store.ring(CID, [p.id]) for p in people]
    assert queued == [True, False, False]
    pushed = SyncMessage(connection_id=CID, reason="crm_push", crm_ids=[people[0].id])
    # Then the one pass deletes all three contacts, and forgets the hints it read
    assert run_pass(CID, pushed, context(store, crm, provider)).status == "done"
    assert emails(provider) == ["bob@x.com"]
    assert not store.connections[CID]["pending_crm_ids"]
    # And a push after it queues a new pass
    assert store.ring(CID, ["123"]) is True


def test_a_stop_during_a_pass_takes_effect_after_the_current_chunk(world) -> None:
    # Given two chunks of CRM persons to create in the provider
    store, crm, provider = world
    for i in range(CHUNK + 10):
        crm.put(person(f"P {i}", f"p{i}@x.com"))
    original = provider.create

    def user_stops_meanwhile(items):
        store.update_connection(CID, state="stopped")  # the user pressed "stop"
        return original(items)

    provider.create = user_stops_meanwhile  # type: ignore[method-assign]
    # When the pass runs
    start(store, crm, provider)
    # Then the chunk in flight finished, nothing after it was sent, and nothing waits to be sent
    assert len(provider.contacts) == CHUNK
    assert store.ops.get(CID, {}) == {}
