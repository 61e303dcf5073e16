"""A create whose answer was lost, whose copy its tag no longer finds: made and deleted by the user
(the change feed proves it: the delete is followed), or not provably (made again)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from contactsync.contacts.model import Contact, Email
from contactsync.providers.base import NewContact, RateLimited, WriteResult
from contactsync.runtime.messages import SyncMessage
from contactsync.sync.reconcile import PassContext, Sides, run_pass
from contactsync.sync.reconcile.lost_copies import Unfound, deleted_copies

from tests.fakes import InMemorySide, InMemoryStore

CID = "conn1"
MAPPING_IDS = itertools.count(1)  # unique across passes, as uuids are
ZOE, ADA = Unfound("000000000", "m-zoe"), Unfound("000000001", "m-ada")


def test_a_card_path_made_from_the_tag_proves_the_copy_deleted() -> None:
    ids = {"m-zoe": "/book/m-zoe.vcf", "m-ada": "/book/m-ada.vcf"}
    found = deleted_copies(
        "tag", [ZOE, ADA], {"/book/m-zoe.vcf", "/book/x.vcf"},
        ids_for_tags=ids, unseen=(), first_chunk=False,
    )  # fmt: skip
    assert found == {ZOE.op_id: "/book/m-zoe.vcf"}


def test_as_many_unseen_deletions_as_unfound_creates_are_taken_for_the_copies() -> None:
    found = deleted_copies(
        "unseen", [ADA, ZOE], {"b", "a"}, ids_for_tags={}, unseen={"b", "a"}, first_chunk=True
    )
    assert found == {ZOE.op_id: "a", ADA.op_id: "b"}


def test_an_unseen_deletion_that_cannot_be_told_apart_proves_nothing() -> None:
    # More unseen deletions than unfound creates: one is the user's own; fewer: which?
    assert not deleted_copies(
        "unseen", [ZOE], {"a", "b"}, ids_for_tags={}, unseen={"a", "b"}, first_chunk=True
    )
    assert not deleted_copies(
        "unseen", [ZOE, ADA], {"a"}, ids_for_tags={}, unseen={"a"}, first_chunk=True
    )
    # A plan that died past its first chunk may have recorded deletes read again now
    assert not deleted_copies(
        "unseen", [ZOE], {"a"}, ids_for_tags={}, unseen={"a"}, first_chunk=False
    )
    # A side that cannot tell (Google, the CRM)
    assert not deleted_copies("", [ZOE], {"a"}, ids_for_tags={}, unseen={"a"}, first_chunk=True)


# --- through a pass ------------------------------------------------------------------------


def person(email: str) -> Contact:
    return Contact(given_name="Zoe", family_name=email[:3], emails=(Email(email, primary=True),))


def run(store: InMemoryStore, crm: InMemorySide, provider: InMemorySide, reason: str) -> str:
    ctx = PassContext(
        store=store,
        sides_for=lambda _view: Sides(crm=crm, provider=provider),
        new_id=lambda: f"m{next(MAPPING_IDS)}",
    )
    return run_pass(CID, SyncMessage(connection_id=CID, reason=reason), ctx).status


def lost_copy_deleted(proof: str, *, user_makes_one_too: bool = False):
    """A synced connection, a new CRM person whose copy's create answer is lost (the pass
    fails), and the user deleting that copy before the next pass."""
    store, crm = InMemoryStore(), InMemorySide(name="crm")
    provider = InMemorySide(name="provider", lost_copy_proof=proof)
    store.add_connection(CID, state="syncing_initial")
    crm.put(person("ann@x.com"))
    assert run(store, crm, provider, "start") == "done"
    crm.put(person("zoe@x.com"))
    provider.lose_answers = 1
    assert run(store, crm, provider, "schedule") == "failed"
    store.leases.clear()
    [made] = [i for i, c in provider.contacts.items() if "zoe" in str(c.contact.emails)]
    provider.remove(made)
    if user_makes_one_too:
        provider.remove(provider.put(person("own@x.com")).id)
    return store, crm, provider, made


def emails(side: InMemorySide) -> list[str]:
    return sorted(e.value for c in side.contacts.values() for e in c.contact.emails)


def test_a_card_deleted_before_the_pass_recorded_it_stays_deleted_and_so_does_its_partner() -> None:
    store, crm, provider, made = lost_copy_deleted("tag")
    assert made == f"provider-{store.pending(CID)[0].mapping_id}"  # its id is made from its tag
    # When the next pass runs
    assert run(store, crm, provider, "schedule") == "done"
    # Then the copy is not made again, and the delete reached the CRM as any delete does
    assert emails(provider) == ["ann@x.com"]
    assert emails(crm) == ["ann@x.com"]
    assert provider.calls["create"] == 2  # Ann's, and Zoe's whose answer was lost
    assert any("deleted since" in e.message for _, e in store.log)
    assert not store.pending(CID)


def test_an_unseen_outlook_deletion_is_taken_for_the_copy() -> None:
    store, crm, provider, _ = lost_copy_deleted("unseen")
    assert run(store, crm, provider, "schedule") == "done"
    assert emails(provider) == emails(crm) == ["ann@x.com"]


def test_unseen_deletions_that_cannot_be_told_apart_make_the_copy_again() -> None:
    # Given the user also made a contact of their own and deleted it, unseen, meanwhile
    store, crm, provider, _ = lost_copy_deleted("unseen", user_makes_one_too=True)
    assert run(store, crm, provider, "schedule") == "done"
    # Then which deletion was the copy's is unknown: made again, the CRM person kept
    assert emails(provider) == emails(crm) == ["ann@x.com", "zoe@x.com"]


def test_a_side_that_cannot_tell_makes_the_copy_again() -> None:
    store, crm, provider, _ = lost_copy_deleted("")
    assert run(store, crm, provider, "schedule") == "done"
    assert emails(provider) == emails(crm) == ["ann@x.com", "zoe@x.com"]


def test_an_edit_made_since_wins_over_the_delete() -> None:
    store, crm, provider, _ = lost_copy_deleted("tag")
    [zoe] = [c for c in crm.contacts.values() if "zoe" in str(c.contact.emails)]
    crm.put(zoe.contact.with_fields(job_title="CTO"), contact_id=zoe.id)
    assert run(store, crm, provider, "schedule") == "done"
    assert run(store, crm, provider, "schedule") == "done"
    # Then the CRM keeps her, and she is copied again with the edit
    assert emails(provider) == emails(crm) == ["ann@x.com", "zoe@x.com"]
    assert any(c.contact.job_title == "CTO" for c in provider.contacts.values())


def test_one_way_to_the_provider_a_deleted_copy_stays_deleted_and_the_person_stays() -> None:
    store, crm, provider, _ = lost_copy_deleted("tag")
    store.update_connection(CID, direction="to_provider")
    assert run(store, crm, provider, "schedule") == "done"
    assert run(store, crm, provider, "schedule") == "done"
    assert emails(provider) == ["ann@x.com"]
    assert emails(crm) == ["ann@x.com", "zoe@x.com"]


def test_a_delete_the_dead_plan_recorded_and_the_feed_reports_again_is_not_taken_for_a_copy() -> (
    None
):
    # Given two linked people, Bob's provider contact deleted by the user, Zoe new in the CRM
    store, crm = InMemoryStore(), InMemorySide(name="crm")
    provider = InMemorySide(name="provider", lost_copy_proof="unseen")
    store.add_connection(CID, state="syncing_initial")
    crm.put(person("ann@x.com"))
    crm.put(person("bob@x.com"))
    assert run(store, crm, provider, "start") == "done"
    [bob] = [i for i, c in provider.contacts.items() if "bob" in str(c.contact.emails)]
    provider.remove(bob)
    crm.put(person("zoe@x.com"))
    # When the pass deletes Bob in the CRM (recorded: his link is gone) and the provider turns
    # away Zoe's create (never sent), the plan's position not advanced
    create = provider.create

    def busy(items: Sequence[NewContact]) -> list[WriteResult]:
        raise RateLimited("slow down", retry_after=1)

    provider.create = busy  # type: ignore[method-assign]
    assert run(store, crm, provider, "schedule") != "done"
    provider.create = create  # type: ignore[method-assign]
    store.leases.clear()
    assert emails(crm) == ["ann@x.com", "zoe@x.com"]
    # Then the next pass, reading Bob's deletion again from the old position, does not take it
    # for Zoe's copy: she is made, and stays in the CRM
    assert run(store, crm, provider, "schedule") == "done"
    assert emails(provider) == emails(crm) == ["ann@x.com", "zoe@x.com"]
