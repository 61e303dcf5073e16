"""Recording what a pending write achieved: the mapping kept or dropped, its base, the audit.

Plain values in and out: each test gives a pending write and the sides' answers, and reads what
is to be stored."""

from __future__ import annotations

from contactsync.contacts.model import Contact, Email
from contactsync.engine.merge import Conflict, SyncSettings
from contactsync.engine.plan import UNCHANGED, MappingState, PairInput, PassInput, Write
from contactsync.engine.plan_pass import plan_pass
from contactsync.providers.base import (
    InvalidContact,
    NotFound,
    PreconditionFailed,
    RemoteContact,
    WriteResult,
)
from contactsync.store.pending import PendingOp
from contactsync.sync.reconcile.recording import prior_to_read, record, unclaimed_entry

ADA = Contact(given_name="Ada", family_name="Lovelace", emails=(Email("ada@example.com"),))
ADA_NEW = Contact(given_name="Ada", family_name="King", emails=(Email("ada@example.com"),))
AGREED = Contact(given_name="Ada", family_name="Byron")


def create_in_crm(**kw: object) -> PendingOp:
    write = Write("crm", "create", "", "", Contact(), ADA)
    fields: dict[str, object] = {
        "op_id": "000000001",
        "mapping_id": "m1",
        "provider_id": "p1",
        "writes": (write,),
        "new_base": ADA,
        "kind": "create",
        "provider_version": "pv1",
        "reason": "new in the provider",
        **kw,
    }
    return PendingOp(**fields)  # type: ignore[arg-type]


def update_both(**kw: object) -> PendingOp:
    writes = (
        Write("crm", "update", "c1", "cv1", ADA, ADA_NEW),
        Write("provider", "update", "p1", "pv1", ADA, ADA_NEW),
    )
    fields: dict[str, object] = {
        "op_id": "000000002",
        "mapping_id": "m1",
        "crm_id": "c1",
        "provider_id": "p1",
        "writes": writes,
        "new_base": ADA_NEW,
        "crm_version": "cv1",
        "provider_version": "pv1",
        "was_linked": True,
        **kw,
    }
    return PendingOp(**fields)  # type: ignore[arg-type]


def made(contact_id: str, contact: Contact, version: str) -> WriteResult:
    return WriteResult(key=contact_id, remote=RemoteContact(contact_id, contact, version))


def stored(refusals: int = 0, holds: dict[str, Contact] | None = None) -> MappingState:
    return MappingState(
        mapping_id="m1",
        crm_id="c1",
        provider_id="p1",
        base=AGREED,
        crm_version="cv0",
        provider_version="pv0",
        holds=holds or {},
        refusals=refusals,
    )


def test_a_create_links_the_pair_with_the_new_id_version_and_base() -> None:
    # Given a CRM create the CRM answered with the new person's id and version
    op = create_in_crm()
    # When it is recorded
    done = record(op, [made("c9", ADA, "cv9")])
    # Then the pair is linked under both ids with the base both now hold
    assert done.mapping == MappingState(
        mapping_id="m1", crm_id="c9", provider_id="p1", base=ADA, crm_version="cv9",
        provider_version="pv1",
    )  # fmt: skip
    assert not done.drop
    assert done.linked_change == 1  # a new link
    # And the audit says what was written where, and why
    (entry,) = done.audit
    assert (entry.kind, entry.side, entry.crm_id, entry.provider_id, entry.mapping_id) == (
        "write", "crm", "c9", "p1", "m1",
    )  # fmt: skip
    assert entry.message == "create on crm: new in the provider"
    assert entry.before is None and entry.after == ADA.to_dict()
    # And the person made in the CRM settles its claims; one CRM create is counted
    assert done.made_in_crm == (("c9", ADA),)
    assert done.tallies == {"crm_creates": 1}
    assert done.recheck == () and done.refusals == 0


def test_a_create_needs_no_stored_mapping() -> None:
    op = create_in_crm()
    assert prior_to_read(op, [made("c9", ADA, "cv9")], linked_instead=False) is None


def test_an_update_of_both_sides_keeps_the_mapping_with_both_new_versions() -> None:
    op = update_both()
    done = record(op, [made("c1", ADA_NEW, "cv2"), made("p1", ADA_NEW, "pv2")])
    assert done.mapping is not None
    assert (done.mapping.crm_version, done.mapping.provider_version) == ("cv2", "pv2")
    assert done.mapping.base == ADA_NEW
    assert done.linked_change == 0  # linked before, linked after
    assert [e.message for e in done.audit] == ["update on crm", "update on provider"]
    assert done.audit[0].before == ADA.to_dict()
    assert done.tallies == {"crm_updates": 1, "provider_updates": 1}
    assert done.made_in_crm == ()


def test_a_delete_drops_the_mapping_and_the_pair_is_no_longer_counted() -> None:
    # Given a pair whose provider contact was deleted, and its CRM person deleted now
    write = Write("crm", "delete", "c1", "cv1", ADA, Contact())
    op = update_both(writes=(write,), kind="delete", new_base=None, reason="deleted in Outlook")
    done = record(op, [WriteResult(key="c1")])
    assert done.mapping is None
    assert done.drop
    assert done.linked_change == -1
    (entry,) = done.audit
    assert (entry.crm_id, entry.message) == ("", "delete on crm: deleted in Outlook")
    assert entry.after is None


def test_a_write_refused_as_stale_keeps_the_old_agreement_and_counts_the_refusal() -> None:
    # Given an update of both sides the CRM refused as stale (the person changed meanwhile)
    op = update_both()
    results = [
        WriteResult(key="c1", error=PreconditionFailed("etag mismatch")),
        made("p1", ADA_NEW, "pv2"),
    ]
    # Then the pair's stored mapping is what the record needs, read by its CRM id
    assert prior_to_read(op, results, linked_instead=False) == ("crm", "c1")
    # When it is recorded against that mapping, refused twice in a row before
    done = record(op, results, prior=stored(refusals=2))
    # Then the base stays what both agreed before, so the next pass merges the edit again
    assert done.mapping is not None
    assert done.mapping.base == AGREED
    # And the pair knows what each side holds now: the CRM what was read, the provider our write
    assert done.mapping.holds == {"crm": ADA, "provider": ADA_NEW}
    assert done.mapping.refusals == done.refusals == 3
    # And both contacts are read again soon
    assert done.recheck == (("c1", "p1"),)
    # And the audit has the failure and the write that went through
    assert [e.kind for e in done.audit] == ["error", "write"]
    assert done.audit[0].message == "update on crm failed: etag mismatch"
    assert done.tallies == {"provider_updates": 1}


def test_an_update_of_a_contact_gone_meanwhile_holds_what_was_sent() -> None:
    # Given an update whose provider contact is gone (an earlier try may have landed)
    op = update_both()
    results = [made("c1", ADA_NEW, "cv2"), WriteResult(key="p1", error=NotFound("gone"))]
    done = record(op, results, prior=stored())
    # Then the pair remembers what it sent there (and to the CRM), and both are read again
    assert done.mapping is not None
    assert done.mapping.holds == {"crm": ADA_NEW, "provider": ADA_NEW}
    assert done.recheck == (("c1", "p1"),)
    assert done.refusals == 1


def test_a_failed_write_of_a_contact_keeps_the_failure_out_of_the_refusal_count() -> None:
    # Given a write the side rejected for its data (not stale)
    op = update_both()
    results = [WriteResult(key="c1", error=InvalidContact("bad phone")), made("p1", ADA, "pv2")]
    done = record(op, results, prior=stored(refusals=0, holds={"crm": ADA}))
    assert done.mapping is not None
    assert done.mapping.base == AGREED
    assert done.mapping.holds == {"crm": ADA, "provider": ADA_NEW}
    assert done.refusals == 0 and done.recheck == ()


def test_a_failed_write_of_a_new_pair_gives_it_an_empty_base() -> None:
    # Given a link whose provider update failed, with no mapping stored yet
    write = Write("provider", "update", "p1", "pv1", ADA, ADA_NEW)
    op = update_both(writes=(write,), kind="link", was_linked=False)
    done = record(op, [WriteResult(key="p1", error=InvalidContact("too long"))], prior=None)
    # Then both sides merge afresh next time
    assert done.mapping is not None and done.mapping.base == Contact()
    assert done.linked_change == 1


def test_a_create_linked_to_a_person_made_meanwhile_keeps_no_agreement_yet() -> None:
    # Given a CRM create that linked to the person another sync made meanwhile
    op = create_in_crm()
    result = made("c7", ADA_NEW, "cv7")
    assert prior_to_read(op, [result], linked_instead=True) == ("provider", "p1")
    # When it is recorded, with no mapping stored for its provider contact
    done = record(op, [result], linked_instead=True, prior=None)
    # Then the pair is linked with an empty base, so the next pass merges both contacts' edits
    assert done.mapping is not None
    assert (done.mapping.crm_id, done.mapping.base) == ("c7", Contact())
    assert done.recheck == (("c7", "p1"),)
    # And the audit says it was linked, not made; nothing was made, no claim to let go
    (entry,) = done.audit
    assert entry.kind == "link"
    assert entry.message.endswith("instead of creating it again (new in the provider)")
    assert done.made_in_crm == () and done.tallies == {}


def test_a_conflict_and_an_unlink_are_written_down() -> None:
    conflict = Conflict(
        field="family_name",
        winner="provider",
        winner_value="King",
        loser="crm",
        loser_value="Byron",
        reason="newest_wins: provider modified later",
    )
    op = update_both(writes=(), kind="unlink", conflicts=(conflict,), detached="provider")
    done = record(op, [])
    assert [e.kind for e in done.audit] == ["conflict", "unlink"]
    assert done.audit[0].details == {
        "field": "family_name",
        "winner": "provider",
        "loser": "crm",
        "loser_value": "Byron",
        "winner_value": "King",
    }
    assert done.audit[1].message == "left the sync scope"
    # And the detached pair is kept, no longer counted as linked
    assert done.mapping is not None and done.mapping.detached == "provider"
    assert done.linked_change == -1


def test_an_op_left_to_another_syncs_claim_says_so() -> None:
    entry = unclaimed_entry(create_in_crm())
    assert (entry.kind, entry.side, entry.provider_id, entry.mapping_id) == (
        "pass", "crm", "p1", "m1",
    )  # fmt: skip
    assert "another sync of this user" in entry.message


def test_a_refused_update_leaves_its_change_known_so_a_delete_is_not_taken_for_an_edit() -> None:
    # Given the CRM changed Ada, and the update taking it to the provider was refused as stale
    # (an earlier try landed, its answer lost: the provider already holds the change)
    write = Write("provider", "update", "p1", "pv1", AGREED, ADA_NEW)
    op = update_both(writes=(write,), new_base=ADA_NEW)
    done = record(
        op, [WriteResult(key="p1", error=PreconditionFailed("changeKey"))], prior=stored()
    )
    assert done.mapping is not None and done.mapping.base == AGREED
    # When the CRM person is then deleted, and the provider shows the change our write carried
    pair = PairInput(done.mapping, None, RemoteContact("p1", ADA_NEW, "pv3"))
    plan = plan_pass(PassInput(SyncSettings(), [pair], [], [], 1), new_mapping_id=lambda: "m2")
    # Then the delete is followed: the provider's copy held nothing the CRM had not had
    (outcome,) = plan.outcomes
    assert [(w.side, w.kind) for w in outcome.writes] == [("provider", "delete")]


def test_a_refused_update_keeps_the_change_it_carried_for_the_next_pass() -> None:
    # Given the CRM's change could not be written to the provider (refused as stale)
    write = Write("provider", "update", "p1", "pv1", AGREED, ADA_NEW)
    op = update_both(writes=(write,), new_base=ADA_NEW)
    done = record(
        op, [WriteResult(key="p1", error=PreconditionFailed("changeKey"))], prior=stored()
    )
    assert done.mapping is not None
    # When the next pass reads the provider unchanged and the CRM reports nothing new
    pair = PairInput(done.mapping, UNCHANGED, RemoteContact("p1", AGREED, "pv2"))
    plan = plan_pass(PassInput(SyncSettings(), [pair], [], [], 1), new_mapping_id=lambda: "m2")
    # Then the CRM's change is written to the provider again
    (outcome,) = plan.outcomes
    assert [(w.side, w.kind, w.after) for w in outcome.writes] == [("provider", "update", ADA_NEW)]
