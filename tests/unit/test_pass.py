"""A sync pass over in-memory sides and store: ordering, crash recovery, cursors, guard."""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from contactsync.contacts.model import Contact, Email, Phone
from contactsync.providers.base import (
    ChangePage,
    NewContact,
    PreconditionFailed,
    RateLimited,
    RemoteContact,
    Transient,
    WriteResult,
)
from contactsync.runtime.messages import SyncMessage
from contactsync.sync.reconcile import PassContext, Sides, preview_pass, run_pass
from contactsync.sync.reconcile.chunks import CHUNK, CRM_WRITES_PER_CHUNK
from contactsync.sync.reconcile.status import RECHECK_TRIES, RETRY_MAX_SECONDS

from tests.fakes import InMemorySide, InMemoryStore

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


def die_after_the_provider_call(
    store: InMemoryStore, crm: InMemorySide, provider: InMemorySide
) -> None:
    """A polled pass dies right after the provider answered, before recording; its lease is
    let go as an expired one would be."""

    def crash(at: str) -> None:
        if at == "after_provider_call":
            raise Crash(at)

    with pytest.raises(Crash):
        poll(store, crm, provider, crash_point=crash)
    store.leases.clear()


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

    # When the pass that copies her dies right after the provider made her contact
    die_after_the_provider_call(store, crm, provider)
    assert "zoe@x.com" in emails(provider)
    # And the user deletes that contact before the message comes back (its tag goes with it)
    made = next(i for i, c in provider.contacts.items() if c.contact.emails[0].value == "zoe@x.com")
    provider.remove(made)
    assert poll(store, crm, provider) == "done"
    # Then she is not created again: the delete reaches the CRM, as any delete would
    assert emails(provider) == ["ann@x.com"]
    assert emails(crm) == ["ann@x.com"]
    assert not store.pending(CID)


def test_a_retried_write_refused_because_its_dead_try_landed_is_no_edit_against_a_delete(
    world,
) -> None:
    # Given a synced pair, and a provider edit whose CRM update landed as the pass died
    store, crm, provider = world
    ann = crm.put(person("Ann Lee", "ann@x.com"))
    assert start(store, crm, provider) == "done"
    [copy] = provider.contacts.values()
    provider.put(copy.contact.with_fields(job_title="CTO"), contact_id=copy.id)

    die_after_the_provider_call(store, crm, provider)
    assert crm.contacts[ann.id].contact.job_title == "CTO"
    # When the user, seeing CTO everywhere, deletes the provider contact, and the next pass
    # sends the update again (refused: the person changed since it was read, by that write)
    provider.remove(copy.id)
    poll(store, crm, provider)
    # Then the CRM's CTO is what the dead try wrote, not an edit: the delete is followed
    assert poll(store, crm, provider) == "done"
    assert emails(crm) == emails(provider) == []


def _lose_the_answer_to_zoes_copy(store, crm, provider, **kw: object) -> str:
    """A synced connection; a new CRM person, Zoe; the pass that copies her makes her contact
    in the provider, but the answer is lost on the way back (the pass fails)."""
    crm.put(person("Ann Lee", "ann@x.com"))
    assert start(store, crm, provider, **kw) == "done"
    crm.put(person("Zoe Park", "zoe@x.com"))
    provider.lose_answers = 1
    assert poll(store, crm, provider, **kw) == "failed"
    made = [i for i, c in provider.contacts.items() if c.contact.emails[0].value == "zoe@x.com"]
    assert len(made) == 1
    return made[0]


def test_a_copy_whose_answer_was_lost_is_found_by_its_tag_and_not_made_twice(world) -> None:
    store, crm, provider = world
    made = _lose_the_answer_to_zoes_copy(store, crm, provider)
    assert poll(store, crm, provider) == "done"
    assert emails(provider) == ["ann@x.com", "zoe@x.com"]
    assert store.mapping_for(CID, "provider", made) is not None


def test_a_copy_whose_answer_was_lost_is_looked_for_at_once_and_recorded_in_the_same_pass(
    world,
) -> None:
    # Given a synced connection, and a new CRM person whose copy's create answer is lost
    store, crm, provider = world
    crm.put(person("Ann Lee", "ann@x.com"))
    assert start(store, crm, provider) == "done"
    crm.put(person("Zoe Park", "zoe@x.com"))
    provider.lose_item_answers = 1
    # When the pass copies her, Then it finds the copy by its tag at once: recorded, no failure
    assert poll(store, crm, provider) == "done"
    [made] = [i for i, c in provider.contacts.items() if "zoe" in str(c.contact.emails)]
    assert store.mapping_for(CID, "provider", made) is not None
    assert not store.pending(CID)
    # And the user deleting it right after is followed as any delete: the CRM person goes
    provider.remove(made)
    assert poll(store, crm, provider) == "done"
    assert emails(provider) == emails(crm) == ["ann@x.com"]


def test_a_lost_answer_whose_look_up_fails_too_is_finished_by_the_next_pass(world) -> None:
    # Given a lost create answer, and the side down for the look-up just after it
    store, crm, provider = world
    crm.put(person("Ann Lee", "ann@x.com"))
    assert start(store, crm, provider) == "done"
    crm.put(person("Zoe Park", "zoe@x.com"))
    provider.lose_item_answers, provider.fail_find_tagged = 1, 1
    assert poll(store, crm, provider) == "failed"
    # When the next pass runs, Then it finds the copy by its tag: linked, not made twice
    assert poll(store, crm, provider) == "done"
    assert emails(provider) == emails(crm) == ["ann@x.com", "zoe@x.com"]
    assert provider.calls["create"] == 2


def test_lost_answers_are_looked_for_a_request_at_a_time_and_only_while_the_side_answers(
    world,
) -> None:
    # Given three creates in one call whose answers were lost, the first of them never made
    # (a sub-request refused), on a side that takes two creates a request
    store, crm, provider = world
    provider.creates_per_request = 2
    crm.put(person("Ann Lee", "ann@x.com"))
    assert start(store, crm, provider) == "done"
    for name in ("Bo", "Cy", "Di"):
        crm.put(person(f"{name} Park", f"{name.lower()}@x.com"))
    provider.lose_item_answers = 1
    made_them = provider.create

    def first_never_made(items: Sequence[NewContact]) -> list[WriteResult]:
        results = made_them(items)
        never = next(i for i, c in provider.contacts.items() if c.tag == items[0].tag)
        provider.contacts.pop(never)
        provider._log = [entry for entry in provider._log if entry[1] != never]
        return results

    provider.create = first_never_made  # type: ignore[method-assign]
    # When the pass copies them, Then it looks for the first request's two only: the second
    # is found and linked, the first stays to be finished (the pass fails)
    assert poll(store, crm, provider) == "failed"
    assert provider.calls["find_tagged"] == 2
    assert len(store.pending(CID)) == 3  # Bo's and Di's ops, and the cursors
    provider.create = made_them  # type: ignore[method-assign]
    # And the next pass finds Di's by its tag and makes Bo's: each once
    assert poll(store, crm, provider) == "done"
    assert emails(provider) == emails(crm) == ["ann@x.com", "bo@x.com", "cy@x.com", "di@x.com"]
    # And a look-up that fails stops the looking (the side went down)
    crm.put(person("Ed Park", "ed@x.com"))
    crm.put(person("Fa Park", "fa@x.com"))
    provider.lose_item_answers, provider.fail_find_tagged = 1, 1
    looked = provider.calls["find_tagged"]
    assert poll(store, crm, provider) == "failed"
    assert provider.calls["find_tagged"] == looked + 1


def test_a_create_that_never_reached_the_provider_is_made_on_the_next_pass(world) -> None:
    # Given a create whose answer was lost, where nothing was made after all (the request never
    # got there: no trace in the change feed either)
    store, crm, provider = world
    made = _lose_the_answer_to_zoes_copy(store, crm, provider)
    provider.contacts.pop(made)
    provider._log = [entry for entry in provider._log if entry[1] != made]
    # When the next pass runs
    assert poll(store, crm, provider) == "done"
    # Then she is made, once, and linked; the CRM keeps her
    assert emails(provider) == ["ann@x.com", "zoe@x.com"]
    assert emails(crm) == ["ann@x.com", "zoe@x.com"]
    assert not store.pending(CID)


def test_a_lost_answer_waits_for_the_providers_listing_lag_before_looking(world) -> None:
    # Given a provider whose listings show a write a minute late, and a lost create answer
    store, crm, provider = world
    provider.listing_lag = timedelta(seconds=60)
    now = [datetime(2026, 12, 5, 9, 0, tzinfo=UTC)]
    made = _lose_the_answer_to_zoes_copy(store, crm, provider, clock=lambda: now[0])
    # When the next pass comes 10 s later
    now[0] += timedelta(seconds=10)
    ctx = context(store, crm, provider, clock=lambda: now[0])
    result = run_pass(CID, SyncMessage(connection_id=CID, reason="schedule"), ctx)
    # Then it looks for nothing yet, and comes back when the listings are sure to show the copy
    assert result.status == "recheck"
    assert 45 <= result.retry_after <= 51
    assert provider.calls.get("find_tagged", 0) == 0
    # And the pass after the lag finds it by its tag: linked, not made twice
    now[0] += timedelta(seconds=51)
    assert poll(store, crm, provider, clock=lambda: now[0]) == "done"
    assert emails(provider) == emails(crm) == ["ann@x.com", "zoe@x.com"]
    assert store.mapping_for(CID, "provider", made) is not None


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
    # Then the pass asks to be run again within seconds (not at the next poll)
    result = run_pass(
        CID, SyncMessage(connection_id=CID, reason="provider_push"), context(store, crm, provider)
    )
    assert (result.status, result.retry_after) == ("recheck", 2.0)
    assert crm.contacts[ann.id].contact.job_title == ""
    # And that pass reads both again and the edit arrives, though neither side changed since
    assert poll(store, crm, provider) == "done"
    assert crm.contacts[ann.id].contact.job_title == "CTO"
    assert store.mapping_for(CID, "crm", ann.id).refusals == 0


def test_a_pair_refused_again_and_again_backs_off_then_says_so_in_status(world) -> None:
    # Given a synced pair whose CRM person refuses every write as stale
    store, crm, provider = world
    ann = crm.put(person("Ann Lee", "ann@x.com"))
    assert start(store, crm, provider) == "done"
    (contact_id,) = provider.contacts
    provider.put(person("Ann Lee", "ann@x.com").with_fields(job_title="CTO"), contact_id=contact_id)
    crm.update = lambda items: [  # type: ignore[method-assign]
        WriteResult(i.id, error=PreconditionFailed("changed as it was read")) for i in items
    ]
    # When passes keep running
    delays = []
    for _ in range(RECHECK_TRIES):
        message = SyncMessage(connection_id=CID, reason="continuation")
        result = run_pass(CID, message, context(store, crm, provider))
        delays.append((result.status, result.retry_after))
    # Then each asks for the next sooner than a poll, backing off
    assert delays == [("recheck", 2.0 * 2**i) for i in range(RECHECK_TRIES)]
    # And once the tries are spent the pair waits for the next pass and status says why
    assert poll(store, crm, provider) == "done"
    error = store.connections[CID]["last_error"]
    assert error["code"] == "WriteRefused"
    assert store.mapping_for(CID, "crm", ann.id).refusals == RECHECK_TRIES + 1


def one_way(store, crm, provider, direction: str) -> tuple[str, str]:
    """A synced pair (CRM id, provider id) on a connection switched to ``direction``."""
    ann = crm.put(person("Ann Lee", "ann@x.com"))
    assert start(store, crm, provider) == "done"
    store.connections[CID]["direction"] = direction
    (contact_id,) = provider.contacts
    return ann.id, contact_id


@pytest.mark.parametrize("direction", ["to_crm", "to_provider"])
def test_one_way_edits_keep_flowing_after_the_protected_side_is_edited(world, direction) -> None:
    store, crm, provider = world
    crm_id, provider_id = one_way(store, crm, provider, direction)
    source, target = (provider, crm) if direction == "to_crm" else (crm, provider)
    source_id, target_id = (provider_id, crm_id) if direction == "to_crm" else (crm_id, provider_id)
    # Given the side the connection feeds is edited by hand (correctly not sent back)
    target.put(
        target.contacts[target_id].contact.with_fields(job_title="Own title"), contact_id=target_id
    )
    assert poll(store, crm, provider) == "done"
    assert source.contacts[source_id].contact.job_title == ""
    # When the source is edited, again and again, in another field
    for n in range(3):
        edited = source.contacts[source_id].contact.with_fields(organization=f"Org {n}")
        source.put(edited, contact_id=source_id)
        # Then every edit arrives at once (no write refused: the pass knows what the side holds)
        assert poll(store, crm, provider) == "done"
        assert target.contacts[target_id].contact.organization == f"Org {n}"
    # And the hand edit there stays, as nothing in the source changed that field
    assert target.contacts[target_id].contact.job_title == "Own title"


@pytest.mark.parametrize("direction", ["to_crm", "to_provider"])
@pytest.mark.parametrize("policy", ["crm_wins", "provider_wins", "newest_wins"])
def test_one_way_the_source_wins_a_field_both_sides_changed(world, direction, policy) -> None:
    store, crm, provider = world
    crm_id, provider_id = one_way(store, crm, provider, direction)
    store.connections[CID]["conflict_policy"] = policy
    source, target = (provider, crm) if direction == "to_crm" else (crm, provider)
    source_id, target_id = (provider_id, crm_id) if direction == "to_crm" else (crm_id, provider_id)
    # Given the fed side's own edit of a field
    target.put(
        target.contacts[target_id].contact.with_fields(job_title="Own title"), contact_id=target_id
    )
    assert poll(store, crm, provider) == "done"
    # When the source then changes the same field
    source.put(
        source.contacts[source_id].contact.with_fields(job_title="Source title"),
        contact_id=source_id,
    )
    assert poll(store, crm, provider) == "done"
    # Then the source's value wins whatever the policy, and the hand edit is the logged loser
    assert target.contacts[target_id].contact.job_title == "Source title"
    conflicts = [e for cid, e in store.log if cid == CID and e.kind == "conflict"]
    assert [c.details["loser_value"] for c in conflicts] == ["Own title"]
    assert conflicts[0].details["loser"] == ("crm" if direction == "to_crm" else "provider")
    # And nothing is written again on the next pass
    writes = dict(target.calls)
    assert poll(store, crm, provider) == "done"
    assert target.calls.get("update", 0) == writes.get("update", 0)


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


def test_a_pass_that_finds_the_connection_held_once_it_has_the_lease_runs_nothing(
    world,
) -> None:
    # Given a pass that read the connection active, while the pass before it, holding the
    # lease, held a mass delete for the user to confirm
    store, crm, provider = world
    hold_a_mass_delete(store, crm, provider)
    held = dict(store.connections[CID])
    was_active = {**held, "state": "active", "held": None}
    store.connections[CID] = was_active
    take_lease = store.acquire_lease

    def held_meanwhile(*args: object) -> bool:
        store.connections[CID] = dict(held)
        return take_lease(*args)  # type: ignore[arg-type]

    store.acquire_lease = held_meanwhile  # type: ignore[method-assign]
    # When it gets the lease, Then it turns away: the hold stays for the user, nothing deleted
    assert poll(store, crm, provider) == "skipped"
    assert store.connections[CID]["state"] == "needs_attention"
    assert len(crm.contacts) == 40
    assert CID not in store.leases or store.leases[CID][1] <= datetime.now(UTC)


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


def test_a_confirmed_pass_busy_with_earlier_writes_goes_on_confirmed(world) -> None:
    # Given writes left pending by a pass that died, and then a held mass delete
    store, crm, provider = world
    for i in range(40):
        crm.put(person(f"P {i}", f"p{i}@x.com"))
    start(store, crm, provider)
    for i in range(3):
        crm.put(person(f"N {i}", f"n{i}@x.com"))

    die_after_the_provider_call(store, crm, provider)
    for contact_id in list(provider.contacts)[:30]:
        provider.remove(contact_id)
    store.update_connection(CID, state="needs_attention", held={"was": "active"})
    # When the confirmed pass spends its time on the pending writes
    confirm = SyncMessage(connection_id=CID, reason="confirm")
    result = run_pass(CID, confirm, context(store, crm, provider, budget_seconds=0.0))
    assert result.status == "continue"
    # Then the pass that goes on is still the confirmed one (a plain continuation would be
    # turned away while the connection waits), and it lets the deletes through
    assert result.continue_as == "confirm", result.message
    going_on = SyncMessage(connection_id=CID, reason=result.continue_as)
    assert run_pass(CID, going_on, context(store, crm, provider)).status == "done"
    assert store.connections[CID]["state"] == "active"
    assert len(crm.contacts) == 13


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
    # Then the CRM holds her once: the Outlook pass could not claim her, made nothing, and
    # asks to run again in a few seconds
    assert statuses == ["recheck"]
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


def test_a_person_made_by_one_connection_and_deleted_is_not_held_from_the_other() -> None:
    # Given the same new person in both books; the Outlook pass makes her in the CRM first,
    # and the Google pass, in the same instant, cannot claim her
    store, crm, outlook, google = two_syncs_of_one_crm()
    for cid, book in (("outlook", outlook), ("google", google)):
        assert sync(store, cid, crm, book) == "done"
    outlook.put(person("Ada Byron", "ada@x.com"))
    google.put(person("Ada Byron", "ada@x.com"))
    statuses = []

    def google_in_the_same_instant(point: str) -> None:
        if point == "before_create" and not statuses:
            statuses.append(sync(store, "google", crm, google))

    assert sync(store, "outlook", crm, outlook, crash_point=google_in_the_same_instant) == "done"
    assert statuses == ["recheck"]
    # When the user deletes her in the CRM before the Google pass runs again
    [ada] = crm.contacts
    crm.remove(ada)
    assert sync(store, "outlook", crm, outlook) == "done"
    # Then the Google pass is not kept waiting by the Outlook pass's claim: its Ada is a
    # contact the CRM lacks, made there again (the claim named the person deleted since)
    assert sync(store, "google", crm, google) == "done"
    assert emails(crm) == ["ada@x.com"]
    assert {made for _, _, made in store.claims.values()} == set(crm.contacts)


def test_a_person_made_meanwhile_is_found_by_its_claim_when_the_crm_read_comes_back_short() -> None:
    # Given one user syncing Outlook and Google, and the same new person added to both books
    store, crm, outlook, google = two_syncs_of_one_crm()
    for cid, book in (("outlook", outlook), ("google", google)):
        assert sync(store, cid, crm, book) == "done"
    outlook.put(person("Ada Byron", "ada@x.com"))
    google.put(person("Ada Byron", "ada@x.com"))
    read = crm.read

    def outlook_makes_her_and_the_next_crm_read_is_short(point: str) -> None:
        # The Google pass has planned to make her; the Outlook pass makes her first, and the
        # Google pass's read of the CRM's changes just before creating comes back empty
        if point == "after_pending":
            assert sync(store, "outlook", crm, outlook) == "done"
            crm.read = lambda position: ChangePage(position=position or "", complete=True)  # type: ignore[method-assign]

    # When the Google pass goes on to create her
    status = sync(
        store, "google", crm, google, crash_point=outlook_makes_her_and_the_next_crm_read_is_short
    )
    # Then the claim the Outlook pass made her under stops it: nothing is made twice
    assert status == "recheck"
    assert emails(crm) == ["ada@x.com"]
    # And the next pass, reading the CRM whole again, links to her
    crm.read = read  # type: ignore[method-assign]
    assert sync(store, "google", crm, google) == "done"
    [ada] = crm.contacts
    assert [m.crm_id for m in store.mappings("google")] == [ada]


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


def test_a_full_listing_of_the_crm_keeps_its_duplicate_clusters(world) -> None:
    # Given two CRM persons sharing an email, a third sharing a phone with one of them
    store, crm, provider = world
    ann = crm.put(person("Ann Lee", "ann@x.com", "+1 415 555 0100"))
    annie = crm.put(person("Annie Lee", "ann@x.com"))
    bo = crm.put(person("Bo Lee", "bo@x.com", "(415) 555-0100"))
    crm.put(person("Cy Sea", "cy@x.com"))
    # When the first pass lists the CRM in full
    assert start(store, crm, provider) == "done"
    # Then it keeps the one cluster the three make, with the keys they share
    [(ids, keys)] = store.clusters[CID]
    assert sorted(ids) == sorted([ann.id, annie.id, bo.id])
    assert sorted(keys) == ["email:ann@x.com", "phone:+14155550100"]
    # And a pass that reads only changes leaves them; the next full listing replaces them
    crm.remove(annie.id)
    assert poll(store, crm, provider) == "done"
    assert len(store.clusters[CID][0][0]) == 3
    resync = SyncMessage(connection_id=CID, reason="resync")
    assert run_pass(CID, resync, context(store, crm, provider)).status == "done"
    assert store.clusters[CID] == [((ann.id, bo.id), ("phone:+14155550100",))]


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


class PartialSide(InMemorySide):
    """A side whose answers leave some contacts out: listings skip them and a fetch answers
    without them (a 200 that omits an id, as batch reads and ``ids=`` listings may)."""

    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.left_out: set[str] = set()

    def read(self, position: str | None) -> ChangePage:
        page = super().read(position)
        kept = [c for c in page.contacts if c.id not in self.left_out]
        return replace(page, contacts=kept)

    def fetch(self, ids: Sequence[str]) -> dict[str, RemoteContact | None]:
        return {i: c for i, c in super().fetch(ids).items() if i not in self.left_out}


def test_a_contact_left_out_of_a_full_listing_and_its_fetch_is_unknown_not_deleted() -> None:
    # Given a synced pair, and a CRM that then leaves Ann out of a full listing and of the
    # fetch that asks for her by id
    store, crm, provider = InMemoryStore(), PartialSide(name="crm"), InMemorySide(name="provider")
    store.add_connection(CID, state="syncing_initial")
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    ann = crm.put(person("Ann Lee", "ann@x.com"))
    crm.put(person("Bob Moss", "bob@x.com"))
    assert start(store, crm, provider, clock=lambda: now[0]) == "done"
    crm.left_out.add(ann.id)
    # When the daily full listing runs
    now[0] += timedelta(hours=25)
    assert poll(store, crm, provider, clock=lambda: now[0]) == "done"
    # Then her Outlook copy is still there, and still linked
    assert emails(provider) == ["ann@x.com", "bob@x.com"]
    assert store.count_mappings(CID) == 2


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


def test_a_push_for_a_person_the_running_pass_already_read_stays_for_the_next_pass(world) -> None:
    # Given a synced pair, and a push that queued a pass for an edit of Ann
    store, crm, provider = world
    ann = crm.put(person("Ann Lee", "ann@x.com"))
    assert start(store, crm, provider) == "done"
    crm.put(ann.contact.with_fields(job_title="CTO"), contact_id=ann.id)
    assert store.ring(CID, [ann.id])
    pushed = SyncMessage(connection_id=CID, reason="crm_push", crm_ids=[ann.id])
    # When Ann is edited again while that pass runs, after it read her (the push only adds the
    # same id again: a pass request already waits)

    def edit_again(point: str) -> None:
        if point == "before_cursor_advance" and crm.contacts[ann.id].contact.job_title == "CTO":
            crm.put(ann.contact.with_fields(job_title="CEO"), contact_id=ann.id)
            store.ring(CID, [ann.id])

    ctx = context(store, crm, provider, crash_point=edit_again)
    assert run_pass(CID, pushed, ctx).status == "done"
    # Then the hint stays for the next pass, which sends the second edit
    assert store.connections[CID]["pending_crm_ids"] == [ann.id]
    assert poll(store, crm, provider) == "done"
    (copy,) = provider.contacts.values()
    assert copy.contact.job_title == "CEO"
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


def test_crm_writes_go_in_small_chunks_so_a_pass_stops_in_time(world) -> None:
    # Given a hundred provider contacts to create in the CRM (a request each, so a chunk of
    # them takes seconds), and a pass whose time is up once the first chunk is sent
    store, crm, provider = world
    for i in range(100):
        provider.put(person(f"P {i}", f"p{i}@x.com"))
    original, chunks = crm.create, []

    def slow_create(items):
        chunks.append(len(items))
        time.sleep(0.6)
        return original(items)

    crm.create = slow_create  # type: ignore[method-assign]
    ctx = context(store, crm, provider, budget_seconds=0.5)
    # When the initial pass runs
    result = run_pass(CID, SyncMessage(connection_id=CID, reason="start"), ctx)
    # Then it sent one chunk of CRM creates, as many as a burst window allows, and hands the
    # rest to a continuation instead of running past its time
    assert result.status == "continue"
    assert chunks == [CRM_WRITES_PER_CHUNK]
    # And the continuations finish the rest
    while run_pass(CID, SyncMessage(connection_id=CID, reason="continuation"), ctx).status == (
        "continue"
    ):
        pass
    assert len(crm.contacts) == 100


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


# --- Mass changes across passes ---------------------------------------------------------------


def linked(store: InMemoryStore, crm: InMemorySide, provider: InMemorySide, n: int = 48) -> None:
    for i in range(n):
        crm.put(person(f"P {i}", f"p{i}@x.com"))
    assert start(store, crm, provider) == "done"
    assert store.connections[CID]["mapped_count"] == n


def confirm(store: InMemoryStore, crm: InMemorySide, provider: InMemorySide, **kw: object) -> str:
    message = SyncMessage(connection_id=CID, reason="confirm")
    return run_pass(CID, message, context(store, crm, provider, **kw)).status


def test_a_burst_of_deletes_settles_and_is_held_whole_then_confirmed(world) -> None:
    # Given 48 linked contacts, and creates, deletes and unlinks that wait 5 s for their burst
    store, crm, provider = world
    linked(store, crm, provider)
    now = [datetime(2026, 1, 1, 12, tzinfo=UTC)]
    kw: dict[str, object] = {"clock": lambda: now[0], "settle_seconds": 5.0}
    victims = list(provider.contacts)[:24]
    # When half of them are deleted in the provider, 8 at a time, a pass a second after each
    results = []
    for start_at in range(0, 24, 8):
        for contact_id in victims[start_at : start_at + 8]:
            provider.remove(contact_id)
        results.append(run_pass(CID, SyncMessage(connection_id=CID, reason="provider_push"),
                                context(store, crm, provider, **kw)))  # fmt: skip
        now[0] += timedelta(seconds=1)
    # Then the first passes let them wait and ask to run again when the settle period ends;
    # the third, seeing 24 at once (what waited is read again by every pass), is held
    assert [r.status for r in results] == ["settling", "settling", "held"]
    assert [round(r.retry_after) for r in results[:2]] == [5, 4]
    assert len(crm.contacts) == 48
    assert "would delete 24 of 48 linked contacts" in store.connections[CID]["held"]["message"]
    # And after confirmation all of them go through, and the counts are true
    assert confirm(store, crm, provider, **kw) == "done"
    assert len(crm.contacts) == 24
    assert store.connections[CID]["mapped_count"] == store.count_mappings(CID) == 24
    assert not store.connections[CID]["pending_provider_ids"]
    assert store.connections[CID]["change_window"] is None


def test_edits_go_through_while_deletes_settle(world) -> None:
    store, crm, provider = world
    linked(store, crm, provider, 3)
    now = [datetime(2026, 1, 1, 12, tzinfo=UTC)]
    kw: dict[str, object] = {"clock": lambda: now[0], "settle_seconds": 5.0}
    first, second, *_ = provider.contacts.values()
    # When one contact is edited and another deleted in the provider
    provider.put(first.contact.with_fields(job_title="CTO"), contact_id=first.id)
    provider.remove(second.id)
    # Then the edit reaches the CRM at once, the delete only after the settle period
    assert poll(store, crm, provider, **kw) == "settling"
    assert sorted(c.contact.job_title for c in crm.contacts.values()) == ["", "", "CTO"]
    now[0] += timedelta(seconds=6)
    assert poll(store, crm, provider, **kw) == "done"
    assert len(crm.contacts) == 2
    assert store.connections[CID]["settle_until"] == ""
    assert store.connections[CID]["mapped_count"] == 2


def test_deletes_split_across_passes_are_held_when_the_window_crosses_the_limit(world) -> None:
    # Given 48 linked contacts and no settle period (each pass applies what it sees)
    store, crm, provider = world
    linked(store, crm, provider)
    victims = list(provider.contacts)[:24]
    statuses = []
    # When 8 are deleted in the provider before each of three passes
    for start_at in range(0, 24, 8):
        for contact_id in victims[start_at : start_at + 8]:
            provider.remove(contact_id)
        statuses.append(poll(store, crm, provider))
    # Then the first two go through (16, under the limit of 20) and the third is held
    assert statuses == ["done", "done", "held"]
    assert len(crm.contacts) == 32
    message = store.connections[CID]["held"]["message"]
    assert "on top of 16 deleted or unlinked by the passes just before it" in message
    # And confirming lets the rest through and closes the window
    assert confirm(store, crm, provider) == "done"
    assert len(crm.contacts) == 24
    assert store.connections[CID]["change_window"] is None


def test_the_window_closes_after_a_quiet_hour(world) -> None:
    store, crm, provider = world
    linked(store, crm, provider)
    now = [datetime(2026, 1, 1, 12, tzinfo=UTC)]
    victims = list(provider.contacts)[:24]
    for contact_id in victims[:16]:
        provider.remove(contact_id)
    assert poll(store, crm, provider, clock=lambda: now[0]) == "done"
    assert store.connections[CID]["change_window"]["deletes"] == 16
    # When the next 8 come two hours later
    now[0] += timedelta(hours=2)
    for contact_id in victims[16:]:
        provider.remove(contact_id)
    # Then they are judged on their own (against the 32 linked now): not held
    assert poll(store, crm, provider, clock=lambda: now[0]) == "done"
    assert len(crm.contacts) == 24
    window = store.connections[CID]["change_window"]
    assert (window["reference"], window["deletes"]) == (32, 8)


def test_a_burst_of_creates_settles_and_is_held_whole(world) -> None:
    store, crm, provider = world
    linked(store, crm, provider)
    now = [datetime(2026, 1, 1, 12, tzinfo=UTC)]
    kw: dict[str, object] = {"clock": lambda: now[0], "settle_seconds": 5.0}
    # When 24 contacts are added in the provider, 8 before each of three passes a second apart
    statuses = []
    for batch in range(3):
        for i in range(8):
            provider.put(person(f"New {batch} {i}", f"new{batch}.{i}@x.com"))
        statuses.append(poll(store, crm, provider, **kw))
        now[0] += timedelta(seconds=1)
    # Then the first two wait, and the third, seeing all 24, is held
    assert statuses == ["settling", "settling", "held"]
    assert len(crm.contacts) == 48
    assert "would create 24 contacts" in store.connections[CID]["held"]["message"]
    # And confirmed, they are created once each
    assert confirm(store, crm, provider, **kw) == "done"
    assert len(crm.contacts) == 72
    assert store.connections[CID]["mapped_count"] == store.count_mappings(CID) == 72


def test_a_folder_emptied_by_moving_every_contact_away_is_held_not_unlinked(world) -> None:
    store, crm, provider = world
    linked(store, crm, provider)
    # When every provider contact is moved to another folder
    for remote in list(provider.contacts.values()):
        provider.put(remote.contact, contact_id=remote.id, in_scope=False)
    # Then the pass is held, saying so in plain words, and every pair stays linked
    assert poll(store, crm, provider) == "held"
    message = store.connections[CID]["held"]["message"]
    assert "unlink 48 of 48 linked contacts that left the sync scope at once" in message
    assert store.count_mappings(CID) == 48
    assert not any(m.detached for m in store.mappings(CID))


def test_the_counts_are_true_after_unlinks_and_relinks(world) -> None:
    store, crm, provider = world
    linked(store, crm, provider)
    moved = list(provider.contacts.values())[:5]
    # When five contacts leave the folder
    for remote in moved:
        provider.put(remote.contact, contact_id=remote.id, in_scope=False)
    assert poll(store, crm, provider) == "done"
    # Then the connection counts 43 linked pairs (the detached ones apart)
    assert store.connections[CID]["mapped_count"] == store.count_mappings(CID) == 43
    # And when they come back, 48 again
    for remote in moved:
        provider.put(remote.contact, contact_id=remote.id, in_scope=True)
    assert poll(store, crm, provider) == "done"
    assert store.connections[CID]["mapped_count"] == store.count_mappings(CID) == 48


def test_more_waiting_than_the_ids_kept_lists_in_full_next(world, monkeypatch) -> None:
    store, crm, provider = world
    linked(store, crm, provider)
    monkeypatch.setattr("contactsync.sync.reconcile.hints.MAX_HINTS", 3)
    now = [datetime(2026, 1, 1, 12, tzinfo=UTC)]
    kw: dict[str, object] = {"clock": lambda: now[0], "settle_seconds": 5.0}
    # When more contacts are deleted than the pass may keep as ids to re-read
    for contact_id in list(provider.contacts)[:5]:
        provider.remove(contact_id)
    assert poll(store, crm, provider, **kw) == "settling"
    # Then the next pass lists in full and still finds every delete
    assert store.connections[CID]["list_in_full"] is True
    now[0] += timedelta(seconds=6)
    assert poll(store, crm, provider, **kw) == "done"
    assert len(crm.contacts) == 43
    assert store.connections[CID]["list_in_full"] is False


@pytest.mark.parametrize(
    "point",
    ["after_pending", "after_provider_call", "before_mapping_write", "before_cursor_advance"],
)
def test_a_settling_pass_that_crashes_loses_nothing_that_waits(world, point) -> None:
    # Given 10 linked contacts, one edited and three deleted in the provider
    store, crm, provider = world
    linked(store, crm, provider, 10)
    now = [datetime(2026, 1, 1, 12, tzinfo=UTC)]
    kw: dict[str, object] = {"clock": lambda: now[0], "settle_seconds": 5.0}
    first, *others = list(provider.contacts.values())
    provider.put(first.contact.with_fields(job_title="CTO"), contact_id=first.id)
    for remote in others[:3]:
        provider.remove(remote.id)

    def crash(at: str) -> None:
        if at == point:
            raise Crash(at)

    # When the pass that lets the deletes wait crashes at the injected point
    with pytest.raises(Crash):
        poll(store, crm, provider, crash_point=crash, **kw)
    store.leases.clear()
    # Then the redelivered pass and the one after the settle period finish everything once
    assert poll(store, crm, provider, **kw) in ("settling", "done", "recheck")
    now[0] += timedelta(seconds=6)
    assert poll(store, crm, provider, **kw) == "done"
    assert len(crm.contacts) == 7
    assert sorted(c.contact.job_title for c in crm.contacts.values()).count("CTO") == 1
    assert store.connections[CID]["mapped_count"] == store.count_mappings(CID) == 7


def test_what_an_account_cannot_sync_is_kept_for_the_connection_status() -> None:
    # Given a CRM whose adapter learnt that the company has contact sync off
    store = InMemoryStore()
    store.add_connection(CID, state="syncing_initial")
    limit = "the CRM company has contact sync turned off: job title ... are not synced"
    crm, provider = InMemorySide(name="crm", limits=(limit,)), InMemorySide(name="provider")
    # When a pass runs, Then the connection says so (and says nothing once it is fixed)
    assert start(store, crm, provider) == "done"
    assert store.connections[CID]["limits"] == [limit]
    crm.limits = None  # a pass that read nothing to learn it from keeps what is known
    assert poll(store, crm, provider) == "done"
    assert store.connections[CID]["limits"] == [limit]
    crm.limits = ()
    assert poll(store, crm, provider) == "done"
    assert store.connections[CID]["limits"] == []


def test_a_contact_read_under_a_new_id_keeps_its_link_and_is_not_copied_again(world) -> None:
    # Given a linked pair
    store, crm, provider = world
    ann = provider.put(person("Ann Lee", "ann@x.com"))
    assert start(store, crm, provider) == "done"
    # When the provider gives Ann a new id (Google: linked to a profile), naming the old one,
    # and she gets a job title
    provider.contacts.pop(ann.id)
    renamed = RemoteContact(
        id="provider-renamed",
        contact=ann.contact.with_fields(job_title="CTO"),
        version="v-renamed",
        previous_ids=(ann.id,),
    )
    provider.contacts[renamed.id] = renamed
    provider._log.append((next(provider._seq), renamed.id))
    assert poll(store, crm, provider) == "done"
    # Then the link follows her: one CRM person, the edit arrived, nothing copied back
    (crm_copy,) = crm.contacts.values()
    assert crm_copy.contact.job_title == "CTO"
    assert list(provider.contacts) == ["provider-renamed"]
    (mapping,) = store.mappings(CID)
    assert mapping.provider_id == "provider-renamed"
