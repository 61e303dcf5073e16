"""The plan of a pass: pair rules, direction, links and creations, the guard, the preview."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import pytest
from contactsync.contacts.model import ALL_FIELDS, Contact, Email, Phone
from contactsync.engine.plan import (
    UNCHANGED,
    ChangeWindow,
    MappingState,
    PairInput,
    PassInput,
    Plan,
    SyncSettings,
    Unchanged,
)
from contactsync.engine.plan_pass import plan_pass
from contactsync.engine.plan_summary import held_changes, preview
from contactsync.providers.base import RemoteContact

EARLY, LATE = "2026-11-25T09:00:00Z", "2026-11-25T10:00:00Z"
TWO_WAY = SyncSettings()
BASE = Contact(
    given_name="Ann",
    family_name="Lee",
    emails=(Email("ann@x.com", "work", True),),
    phones=(Phone("+1 415 555 0100", "mobile"),),
    job_title="Engineer",
)


def ids(prefix: str = "m") -> Callable[[], str]:
    """A deterministic mapping id factory: m1, m2, ..."""
    count = iter(range(1, 10_000))
    return lambda: f"{prefix}{next(count)}"


def mapping(base: Contact = BASE, number: int = 1) -> MappingState:
    return MappingState(f"map{number}", f"c{number}", f"p{number}", base, "cv1", "pv1")


def crm(
    contact: Contact,
    number: int = 1,
    *,
    modified_at: str = "",
    in_scope: bool = True,
    scope_reason: str = "",
) -> RemoteContact:
    return RemoteContact(f"c{number}", contact, "cv2", modified_at, in_scope, scope_reason)


def provider(
    contact: Contact,
    number: int = 1,
    *,
    modified_at: str = "",
    in_scope: bool = True,
    scope_reason: str = "",
) -> RemoteContact:
    return RemoteContact(f"p{number}", contact, "pv2", modified_at, in_scope, scope_reason)


Reported = RemoteContact | Unchanged | None


def pass_of(
    pairs: Sequence[tuple[MappingState, Reported, Reported]] = (),
    unmapped_crm: Sequence[RemoteContact] = (),
    unmapped_provider: Sequence[RemoteContact] = (),
    settings: SyncSettings = TWO_WAY,
    mapped_total: int | None = None,
    *,
    window: ChangeWindow | None = None,
    **flags: bool,
) -> Plan:
    inputs = [PairInput(m, c, p) for m, c, p in pairs]
    total = len(inputs) if mapped_total is None else mapped_total
    inp = PassInput(
        settings, inputs, unmapped_crm, unmapped_provider, total, window=window, **flags
    )
    return plan_pass(inp, new_mapping_id=ids())


# --- Pairs ----------------------------------------------------------------------------------------


def test_a_crm_edit_is_written_to_the_provider_only() -> None:
    # Given the CRM changed the job title, the provider reported nothing
    edited = BASE.with_fields(job_title="CTO")
    # When planned
    plan = pass_of([(mapping(), crm(edited), UNCHANGED)])
    # Then one update of the provider, based on the stored version, and the base moves on
    (outcome,) = plan.outcomes
    (write,) = outcome.writes
    assert (write.side, write.kind, write.target_id, write.version) == (
        "provider",
        "update",
        "p1",
        "pv1",
    )
    assert (write.before, write.after) == (BASE, edited)
    assert outcome.kind == "merge"
    assert outcome.new_base == edited
    assert outcome.reason == "changed: job_title"


def test_a_write_keeps_the_sides_own_spelling_of_untouched_values() -> None:
    # Given the provider holds the phone formatted its own way, and the CRM changes the title
    provider_now = BASE.with_fields(phones=(Phone("(415) 555-0100", "mobile"),))
    plan = pass_of([(mapping(), crm(BASE.with_fields(job_title="CTO")), provider(provider_now))])
    # Then the update sends the new title but leaves the phone as the provider wrote it
    (write,) = plan.outcomes[0].writes
    assert write.after == provider_now.with_fields(job_title="CTO")


def test_formatting_only_changes_write_nothing() -> None:
    reformatted = BASE.with_fields(
        given_name="ANN",
        emails=(Email("Ann@X.com ", "Work", True),),
        phones=(Phone("4155550100", "mobile"),),
    )
    plan = pass_of([(mapping(), crm(reformatted), provider(BASE))])
    (outcome,) = plan.outcomes
    assert outcome.writes == ()
    assert outcome.kind == "noop"


def test_our_own_write_coming_back_merges_to_nothing() -> None:
    # Given the provider reports exactly what we wrote last pass (it equals the base)
    plan = pass_of([(mapping(), UNCHANGED, provider(BASE))])
    assert plan.outcomes[0].writes == ()
    assert plan.outcomes[0].new_base == BASE


def test_conflicting_edits_are_settled_by_policy_and_both_sides_converge() -> None:
    # Given both sides changed the title, the CRM later
    plan = pass_of(
        [
            (
                mapping(),
                crm(BASE.with_fields(job_title="CTO"), modified_at=LATE),
                provider(BASE.with_fields(job_title="CEO"), modified_at=EARLY),
            )
        ]
    )
    (outcome,) = plan.outcomes
    # Then only the provider is written, and the provider's value is the recorded loser
    assert [(w.side, w.after.job_title) for w in outcome.writes] == [("provider", "CTO")]
    assert [(c.loser, c.loser_value) for c in outcome.conflicts] == [("provider", "CEO")]


def test_deleted_on_one_side_and_unchanged_on_the_other_deletes_it_there() -> None:
    plan = pass_of([(mapping(), None, UNCHANGED)])
    (outcome,) = plan.outcomes
    (write,) = outcome.writes
    assert (write.side, write.kind, write.target_id, write.version) == (
        "provider",
        "delete",
        "p1",
        "pv1",
    )
    assert write.after == Contact()
    assert (outcome.kind, outcome.new_base) == ("delete", None)


def test_deleted_on_one_side_while_the_other_only_reformatted_still_deletes() -> None:
    reformatted = BASE.with_fields(given_name="ann")
    plan = pass_of([(mapping(), crm(reformatted), None)])
    assert [(w.side, w.kind) for w in plan.outcomes[0].writes] == [("crm", "delete")]


def test_deleted_on_one_side_and_edited_on_the_other_recreates_it() -> None:
    # Given the CRM deleted the person while the provider changed the title
    edited = BASE.with_fields(job_title="CTO")
    plan = pass_of([(mapping(), None, provider(edited))])
    (outcome,) = plan.outcomes
    # Then the edit wins: the CRM side is created again from the edited contact
    (write,) = outcome.writes
    assert (write.side, write.kind, write.target_id, write.before) == (
        "crm",
        "create",
        "",
        Contact(),
    )
    assert write.after == edited
    assert (outcome.kind, outcome.crm_id, outcome.provider_id) == ("merge", "", "p1")
    assert outcome.new_base == edited
    assert "edit wins" in outcome.reason


def test_a_deleted_contact_another_sync_already_made_again_is_linked_not_made_twice() -> None:
    # Given the CRM deleted Ann while the provider edited her, and another connection over the
    # same CRM has already made her again there (new, unmapped, same email, its own edit)
    edited = BASE.with_fields(job_title="CTO")
    again = BASE.with_fields(notes="from the other address book")
    plan = pass_of([(mapping(), None, provider(edited))], unmapped_crm=[crm(again, 7)])
    # Then the pair moves to that CRM person and merges: nothing is created on either side
    (outcome,) = plan.outcomes
    assert (outcome.kind, outcome.mapping_id, outcome.crm_id, outcome.provider_id) == (
        "merge",
        "map1",
        "c7",
        "p1",
    )
    assert [(w.side, w.kind) for w in outcome.writes] == [("crm", "update"), ("provider", "update")]
    assert outcome.new_base == edited.with_fields(notes="from the other address book")
    assert "linked to it" in outcome.reason


def test_a_recreated_side_gets_back_what_only_it_carried() -> None:
    # Given a provider without notes; the CRM deleted a person with notes, the provider edited it
    settings = SyncSettings(provider_fields=frozenset(ALL_FIELDS) - {"notes"})
    base = BASE.with_fields(notes="met at the fair")
    edited = BASE.with_fields(job_title="CTO")
    plan = pass_of([(mapping(base), None, provider(edited))], settings=settings)
    # Then the CRM is recreated with the notes from the base
    assert plan.outcomes[0].writes[0].after == edited.with_fields(notes="met at the fair")


def test_deleted_on_both_sides_drops_the_mapping() -> None:
    plan = pass_of([(mapping(), None, None)])
    (outcome,) = plan.outcomes
    assert (outcome.writes, outcome.new_base, outcome.kind) == ((), None, "delete")


def test_a_contact_leaving_scope_is_unlinked_never_deleted() -> None:
    # Given the provider contact moved out of the folder
    moved = provider(BASE, in_scope=False, scope_reason="moved out of the folder")
    for crm_side in (UNCHANGED, crm(BASE.with_fields(job_title="CTO"))):
        plan = pass_of([(mapping(), crm_side, moved)])
        (outcome,) = plan.outcomes
        # Then nothing is written anywhere, and the pair is kept but detached on that side
        assert (outcome.kind, outcome.writes, outcome.detached) == ("unlink", (), "provider")
        assert outcome.new_base == BASE
        assert outcome.reason.startswith("moved out of the folder")
        assert "left alone" in outcome.reason


def test_a_contact_leaving_scope_while_its_partner_is_deleted_is_forgotten() -> None:
    # Given the provider contact left the folder and the CRM person was deleted
    moved = provider(BASE, in_scope=False, scope_reason="moved out of the folder")
    (outcome,) = pass_of([(mapping(), None, moved)]).outcomes
    # Then the mapping is dropped and nothing is written
    assert (outcome.kind, outcome.new_base, outcome.writes) == ("unlink", None, ())


def detached(base: Contact = BASE) -> MappingState:
    return replace(mapping(base), detached="provider")


def test_a_detached_pair_syncs_nothing_while_its_partner_is_out_of_scope() -> None:
    # Given a pair detached because the provider contact left the folder
    # When the CRM person is edited, or the provider contact changes while still outside
    still_out = provider(BASE.with_fields(notes="x"), in_scope=False)
    for crm_side, provider_side in (
        (crm(BASE.with_fields(job_title="CTO")), UNCHANGED),
        (UNCHANGED, still_out),
    ):
        (outcome,) = pass_of([(detached(), crm_side, provider_side)]).outcomes
        # Then nothing is written and the pair stays detached (so neither side is copied again)
        assert (outcome.kind, outcome.writes, outcome.detached) == ("noop", (), "provider")
        assert outcome.new_base == BASE


def test_a_detached_pair_links_again_when_its_partner_comes_back_into_scope() -> None:
    # Given a detached pair whose CRM person was edited while its partner was away
    edited = BASE.with_fields(job_title="CTO")
    # When the provider contact comes back into the folder
    (outcome,) = pass_of([(detached(), crm(edited), provider(BASE))]).outcomes
    # Then the pair is linked again and the CRM's edit reaches the provider
    assert outcome.detached == ""
    assert outcome.new_base is not None and outcome.new_base.job_title == "CTO"
    (write,) = outcome.writes
    assert (write.side, write.kind, write.after.job_title) == ("provider", "update", "CTO")


def test_a_detached_pair_whose_partner_is_deleted_stays_left_alone() -> None:
    # Given a detached pair whose away contact is then deleted (e.g. by the colleague it was
    # handed to)
    (outcome,) = pass_of([(detached(), crm(BASE), None)]).outcomes
    # Then nothing is written and the pair stays detached: the CRM person is not copied again
    assert (outcome.kind, outcome.writes, outcome.detached) == ("noop", (), "provider")


def test_a_detached_pair_whose_remaining_contact_is_deleted_is_forgotten() -> None:
    # Given a detached pair whose in-scope CRM person is deleted
    (outcome,) = pass_of([(detached(), None, UNCHANGED)]).outcomes
    # Then the mapping is dropped and nothing is written
    assert (outcome.kind, outcome.new_base, outcome.writes) == ("unlink", None, ())


def test_a_detached_partner_back_in_scope_as_its_pair_is_deleted_takes_the_delete() -> None:
    # Given a detached pair; since the last pass the provider contact came back into the folder
    # and the CRM person was deleted
    (outcome,) = pass_of([(detached(), None, provider(BASE))]).outcomes
    # Then the pair is dealt with as a linked one: the delete reaches the provider, nothing is
    # forgotten (which would copy the returned contact into the CRM again)
    assert [(w.side, w.kind, w.target_id) for w in outcome.writes] == [("provider", "delete", "p1")]
    assert (outcome.kind, outcome.new_base, outcome.detached) == ("delete", None, "")
    assert outcome.reason.startswith("back in scope in the provider; deleted in the CRM")


def test_a_detached_contact_deleted_where_only_in_scope_deletes_are_seen_takes_its_partner() -> (
    None
):
    # Given a pair detached by a move out of an Outlook folder, whose delta reports deletions
    # only of contacts in the folder
    folder = SyncSettings(deletes_in_scope_only=frozenset({"provider"}))
    # When it reports the away contact deleted (so it came back and was deleted since)
    (outcome,) = pass_of([(detached(), UNCHANGED, None)], settings=folder).outcomes
    # Then the delete reaches the CRM, as on a linked pair
    assert [(w.side, w.kind, w.target_id) for w in outcome.writes] == [("crm", "delete", "c1")]
    assert outcome.detached == ""
    # While where deletions of any contact are reported, its partner stays left alone
    (kept,) = pass_of([(detached(), UNCHANGED, None)]).outcomes
    assert (kept.writes, kept.detached) == ((), "provider")


# --- Direction ------------------------------------------------------------------------------------


def test_to_crm_never_writes_the_provider_and_keeps_the_crm_edit_pending() -> None:
    # Given a one-way connection into the CRM and a CRM-only edit
    to_crm = SyncSettings(direction="to_crm")
    edited = BASE.with_fields(job_title="CTO")
    plan = pass_of([(mapping(), crm(edited), provider(BASE))], settings=to_crm)
    (outcome,) = plan.outcomes
    # Then nothing is written, and the base keeps what the provider holds
    assert outcome.writes == ()
    assert outcome.new_base == BASE
    # And when the direction goes back to two-way, the next pass that sees the pair sends it
    assert outcome.new_base is not None
    again = pass_of([(mapping(outcome.new_base), crm(edited), UNCHANGED)])
    assert [(w.side, w.after.job_title) for w in again.outcomes[0].writes] == [("provider", "CTO")]


def test_to_crm_writes_provider_edits_into_the_crm() -> None:
    edited = BASE.with_fields(job_title="CTO")
    plan = pass_of(
        [(mapping(), UNCHANGED, provider(edited))], settings=SyncSettings(direction="to_crm")
    )
    (outcome,) = plan.outcomes
    assert [(w.side, w.after) for w in outcome.writes] == [("crm", edited)]
    assert outcome.new_base == edited


def test_to_provider_never_writes_the_crm() -> None:
    to_provider = SyncSettings(direction="to_provider")
    # Given a provider edit, a provider deletion, and a provider-only new contact
    edit = pass_of(
        [(mapping(), UNCHANGED, provider(BASE.with_fields(job_title="X")))], settings=to_provider
    )
    deletion = pass_of([(mapping(), UNCHANGED, None)], settings=to_provider)
    new = pass_of(unmapped_provider=[provider(BASE, number=9)], settings=to_provider)
    # Then none of them writes the CRM
    assert edit.outcomes[0].writes == ()
    assert deletion.outcomes[0].writes == ()
    assert deletion.outcomes[0].kind == "unlink"
    assert new.outcomes == ()
    assert new.skipped == (("p9", "direction to_provider does not write the CRM"),)


@pytest.mark.parametrize("direction", ["to_crm", "to_provider"])
def test_a_delete_on_the_fed_side_stays_and_the_source_contact_is_never_copied_back(
    direction: str,
) -> None:
    settings = SyncSettings(direction=direction)  # type: ignore[arg-type]
    fed = "crm" if direction == "to_crm" else "provider"
    # Given the fed side's contact is deleted by hand
    reported = (None, UNCHANGED) if fed == "crm" else (UNCHANGED, None)
    (outcome,) = pass_of([(mapping(), *reported)], settings=settings).outcomes
    # Then nothing is written, and the pair is kept, detached on the fed side
    assert (outcome.kind, outcome.writes, outcome.detached) == ("unlink", (), fed)
    assert outcome.new_base == BASE
    # And when the source's contact is edited or listed again later, it stays left alone
    kept = replace(mapping(), detached=fed)
    source = provider(BASE.with_fields(job_title="X")) if fed == "crm" else crm(BASE)
    later = (UNCHANGED, source) if fed == "crm" else (source, UNCHANGED)
    (again,) = pass_of([(kept, *later)], settings=settings).outcomes
    assert (again.kind, again.writes, again.detached) == ("noop", (), fed)


# --- New contacts ---------------------------------------------------------------------------------


def test_an_unmatched_new_contact_is_created_on_the_other_side() -> None:
    # Given a new CRM person with notes, and a provider that cannot carry notes
    settings = SyncSettings(provider_fields=frozenset(ALL_FIELDS) - {"notes"})
    person = BASE.with_fields(notes="vip")
    plan = pass_of(unmapped_crm=[crm(person, number=7)], settings=settings)
    (outcome,) = plan.outcomes
    # Then it is created in the provider under a new mapping id, without the notes
    assert (outcome.kind, outcome.mapping_id, outcome.crm_id, outcome.provider_id) == (
        "create",
        "m1",
        "c7",
        "",
    )
    (write,) = outcome.writes
    assert (write.side, write.kind, write.target_id, write.version) == (
        "provider",
        "create",
        "",
        "",
    )
    assert write.after == BASE
    # And the base is the contact as the CRM carries it
    assert outcome.new_base == person


def test_matched_new_contacts_are_linked_over_an_empty_base() -> None:
    # Given the same person on both sides, each with something the other lacks, titles differing
    crm_person = Contact(given_name="Ann", emails=(Email("ann@x.com"),), job_title="CTO")
    provider_person = Contact(
        given_name="Ann",
        emails=(Email("ANN@x.com"), Email("ann@home.org", "home")),
        job_title="CEO",
    )
    plan = pass_of(
        unmapped_crm=[crm(crm_person, modified_at=LATE)],
        unmapped_provider=[provider(provider_person, modified_at=EARLY)],
    )
    (outcome,) = plan.outcomes
    # Then they are linked: emails unioned, the title by policy, both sides written to agree
    assert (outcome.kind, outcome.crm_id, outcome.provider_id) == ("link", "c1", "p1")
    assert outcome.reason == "matched by email:ann@x.com"
    merged = Contact(
        given_name="Ann",
        emails=(Email("ann@x.com"), Email("ann@home.org", "home")),
        job_title="CTO",
    )
    assert outcome.new_base == merged
    assert [w.side for w in outcome.writes] == ["crm", "provider"]
    assert outcome.writes[0].after == merged
    assert outcome.writes[1].after.job_title == "CTO"
    assert [c.loser_value for c in outcome.conflicts] == ["CEO"]


def test_ambiguous_matches_are_neither_linked_nor_created() -> None:
    plan = pass_of(
        unmapped_crm=[crm(BASE, number=1)],
        unmapped_provider=[provider(BASE, number=1), provider(BASE, number=2)],
    )
    assert plan.outcomes == ()
    assert len(plan.duplicates) == 1
    assert {contact_id for contact_id, _ in plan.skipped} == {"c1", "p1", "p2"}


def test_out_of_scope_new_contacts_are_skipped() -> None:
    other = crm(BASE, number=3, in_scope=False, scope_reason="owned by another user")
    plan = pass_of(unmapped_crm=[other])
    assert (plan.outcomes, plan.skipped) == ((), (("c3", "owned by another user"),))


def test_two_crm_persons_sharing_an_email_are_one_review_item_and_neither_is_copied() -> None:
    # Given two CRM persons with the same email and nothing like them in the provider
    twin = BASE.with_fields(given_name="Annie", phones=())
    plan = pass_of(unmapped_crm=[crm(BASE, number=1), crm(twin, number=2)])
    # Then nothing is copied: one review item names both
    assert plan.outcomes == ()
    (duplicate,) = plan.duplicates
    assert (duplicate.crm_ids, duplicate.provider_ids) == (("c1", "c2"), ())
    assert "2 CRM contacts share email:ann@x.com" in duplicate.reason
    assert {contact_id for contact_id, _ in plan.skipped} == {"c1", "c2"}


def test_two_contacts_sharing_only_a_phone_are_both_copied() -> None:
    # Given two provider contacts sharing an office phone, different people
    ann = Contact(given_name="Ann", phones=(Phone("+1 415 555 0100"),))
    bob = Contact(given_name="Bob", phones=(Phone("+1 415 555 0100"),))
    plan = pass_of(unmapped_provider=[provider(ann, number=1), provider(bob, number=2)])
    # Then both are copied: a shared phone is not a duplicate on its own
    assert [o.kind for o in plan.outcomes] == ["create", "create"]


def found_pass(new: RemoteContact, found: Sequence[RemoteContact], **extra: object) -> Plan:
    """A to_crm pass with one new provider contact and what the CRM look-up found for it."""
    settings = SyncSettings(direction="to_crm")
    inp = PassInput(settings, [], [], [new], 5, found_crm=found, **extra)  # type: ignore[arg-type]
    return plan_pass(inp, new_mapping_id=ids())


@pytest.mark.parametrize(
    ("crm_at", "provider_at", "google_shows"),
    [
        ("2026-12-05T10:00:00Z", "2026-12-05T10:05:00Z", "Buyer"),  # the hand edit is newer
        ("2026-12-05T10:05:00Z", "2026-12-05T10:00:00Z", "Director"),  # the CRM's is newer
    ],
)
def test_a_one_way_link_keeps_the_fed_sides_newer_value_and_writes_only_the_fed_side(
    crm_at: str, provider_at: str, google_shows: str
) -> None:
    # Given a CRM person and a Google contact with one email and different job titles, linked
    # in a connection where the CRM feeds Google
    settings = SyncSettings(direction="to_provider")
    theirs = crm(BASE.with_fields(job_title="Director"), number=9, modified_at=crm_at)
    ours = provider(BASE.with_fields(job_title="Buyer"), number=4, modified_at=provider_at)
    plan = pass_of(unmapped_crm=[theirs], unmapped_provider=[ours], settings=settings)
    # Then they are linked; the CRM is never written, and Google shows the newer value: its
    # own hand edit stays until the CRM changes that field, a newer CRM value is sent to it
    (outcome,) = plan.outcomes
    assert outcome.kind == "link"
    assert all(w.side == "provider" for w in outcome.writes)
    shown = next((w.after.job_title for w in outcome.writes), ours.contact.job_title)
    assert shown == google_shows


def test_a_new_contact_found_in_the_other_sides_book_is_linked_not_copied() -> None:
    # Given a new Outlook contact and a CRM person with its email that did not change this pass
    existing = crm(BASE.with_fields(job_title="CTO"), number=9)
    plan = found_pass(provider(BASE, number=4), [existing])
    # Then they are linked: no second CRM person
    (outcome,) = plan.outcomes
    assert (outcome.kind, outcome.crm_id, outcome.provider_id) == ("link", "c9", "p4")
    assert all(w.kind != "create" for w in outcome.writes)


def test_found_contacts_that_match_nothing_are_never_copied() -> None:
    # Given a found CRM person that shares no key with the new contact (searches over-return)
    stranger = crm(Contact(given_name="Zed", emails=(Email("zed@y.com"),)), number=9)
    plan = found_pass(provider(BASE, number=4), [stranger])
    # Then the new contact is created and the found person is left alone (not skipped, not sent)
    (outcome,) = plan.outcomes
    assert (outcome.kind, outcome.provider_id) == ("create", "p4")
    assert plan.skipped == ()


def test_a_new_contact_matching_two_found_persons_is_held_for_review() -> None:
    plan = found_pass(provider(BASE, number=4), [crm(BASE, number=8), crm(BASE, number=9)])
    assert plan.outcomes == ()
    (duplicate,) = plan.duplicates
    assert (duplicate.crm_ids, duplicate.provider_ids) == (("c8", "c9"), ("p4",))


def test_a_new_contact_whose_crm_match_is_owned_by_another_user_is_held() -> None:
    # Given a CRM person with the same email owned by a colleague
    theirs = crm(BASE, number=9, in_scope=False, scope_reason="owned by Bo Chen")
    plan = found_pass(provider(BASE, number=4), [theirs])
    # Then the new contact is neither copied nor linked, and the reason names the owner
    assert plan.outcomes == ()
    (duplicate,) = plan.duplicates
    assert (duplicate.crm_ids, duplicate.provider_ids) == (("c9",), ("p4",))
    assert plan.skipped == (("p4", duplicate.reason),)
    assert duplicate.reason.startswith("exists in the CRM, owned by Bo Chen")


def test_a_new_contact_whose_crm_match_this_pass_read_as_a_colleagues_is_held() -> None:
    # Given a CRM person with the same email that the pass read itself (a push named it: just
    # handed to a colleague), so the look-up leaves it out
    handed = crm(BASE, number=9, in_scope=False, scope_reason="owned by Bo Chen")
    plan = pass_of(unmapped_crm=[handed], unmapped_provider=[provider(BASE, number=4)])
    # Then the new Outlook contact is held as if the look-up had found it: no second CRM person
    assert plan.outcomes == ()
    (duplicate,) = plan.duplicates
    assert (duplicate.crm_ids, duplicate.provider_ids) == (("c9",), ("p4",))
    assert duplicate.reason.startswith("exists in the CRM, owned by Bo Chen")


def test_a_new_contact_whose_match_is_linked_already_is_held() -> None:
    # Given a CRM person with the same email, linked to another Outlook contact
    linked = crm(BASE, number=9)
    plan = found_pass(provider(BASE, number=4), [linked], found_linked=frozenset({("crm", "c9")}))
    # Then the second Outlook contact does not make a second CRM person, nor steals the link
    assert plan.outcomes == ()
    (duplicate,) = plan.duplicates
    assert "linked to another contact already" in duplicate.reason


# --- Guard ----------------------------------------------------------------------------------------


def people(count: int, side: str) -> list[RemoteContact]:
    make = crm if side == "crm" else provider
    return [
        make(Contact(given_name=f"P{i}", emails=(Email(f"p{i}@x.com"),)), number=i)
        for i in range(count)
    ]


def test_many_deletes_hold_the_pass_but_keep_the_preview() -> None:
    # Given 200 mappings and 21 of them deleted in the CRM (over 10% and over 20)
    pairs = [(mapping(BASE, n), None, UNCHANGED) for n in range(21)]
    plan = pass_of(pairs, mapped_total=200)
    # Then the plan is held, with counts and plain words, and its outcomes are still there
    assert plan.held is not None
    assert (plan.held.creates, plan.held.deletes, plan.held.mapped_total) == (0, 21, 200)
    assert (
        "would delete 21 of 200 linked contacts (0 in the CRM, 21 in the provider)"
        in plan.held.message
    )
    assert len(plan.outcomes) == 21


def test_a_held_pass_names_whom_it_would_change() -> None:
    # Given a pass held for 21 deletes in the provider
    pairs = [(mapping(BASE, n), None, UNCHANGED) for n in range(21)]
    plan = pass_of(pairs, mapped_total=200)
    # Then each contact it would delete is named, with its side and email
    changes = held_changes(plan)
    assert len(changes) == 21
    assert {c["change"] for c in changes} == {"delete"}
    assert {c["side"] for c in changes} == {"provider"}
    assert changes[0]["name"] == BASE.full_name
    assert changes[0]["email"] == BASE.emails[0].value


def test_deletes_within_either_threshold_are_not_held() -> None:
    # Given 21 deletes of 1,000 (over 20 but under 10%), and 19 of 50 (over 10% but under 20)
    many = pass_of([(mapping(BASE, n), None, UNCHANGED) for n in range(21)], mapped_total=1000)
    few = pass_of([(mapping(BASE, n), None, UNCHANGED) for n in range(19)], mapped_total=50)
    assert many.held is None
    assert few.held is None


def test_a_confirmed_pass_is_not_held() -> None:
    pairs = [(mapping(BASE, n), None, UNCHANGED) for n in range(30)]
    assert pass_of(pairs, mapped_total=30, confirmed=True).held is None


def test_creations_are_not_guarded_on_the_initial_sync_but_are_later() -> None:
    # Given 50 new CRM people
    new = people(50, "crm")
    # When nothing is mapped yet, then the pass goes ahead
    assert pass_of(unmapped_crm=new, mapped_total=0).held is None
    # When 100 are already mapped, then 50 creations are held
    held = pass_of(unmapped_crm=new, mapped_total=100).held
    assert held is not None
    assert held.creates == 50
    assert "create 50 contacts" in held.message


def test_a_full_listing_that_comes_back_empty_on_one_side_is_held() -> None:
    # Given three mappings whose provider side all vanished in a full listing (under the thresholds)
    pairs = [(mapping(BASE, n), UNCHANGED, None) for n in range(3)]
    plan = pass_of(pairs, full_listing=True)
    # Then it is held anyway, unless confirmed
    assert plan.held is not None
    assert "the provider listed no contacts at all while 3 are linked" in plan.held.message
    assert pass_of(pairs, full_listing=True, confirmed=True).held is None
    # And the same deletions in an incremental pass are not held
    assert pass_of(pairs).held is None


def test_deletes_split_across_passes_are_held_once_the_window_crosses_the_limit() -> None:
    # Given 48 linked contacts, and passes just before that deleted 16 of them (each under 20)
    window = ChangeWindow(reference=48, deletes=16)
    # When a pass would delete 8 more
    pairs = [(mapping(BASE, n), UNCHANGED, None) for n in range(8)]
    plan = pass_of(pairs, mapped_total=32, window=window)
    # Then it is held, and the message says what came before
    assert plan.held is not None
    assert plan.held.deletes == 8
    assert "on top of 16 deleted or unlinked by the passes just before it" in plan.held.message
    assert "(of 48 linked when they began)" in plan.held.message
    # And the same 8 with nothing before them go through, as does a confirmed pass
    assert pass_of(pairs, mapped_total=48).held is None
    assert pass_of(pairs, mapped_total=32, window=window, confirmed=True).held is None


def test_a_window_over_the_limit_does_not_hold_a_pass_that_removes_nothing() -> None:
    # Given a window already past the limit (a confirmed mass delete in it)
    window = ChangeWindow(reference=48, deletes=24)
    # When a pass only edits a contact
    edit = [(mapping(), crm(BASE.with_fields(job_title="CTO")), UNCHANGED)]
    # Then it is not held
    assert pass_of(edit, mapped_total=24, window=window).held is None


def test_creates_split_across_passes_are_held_once_the_window_crosses_the_limit() -> None:
    # Given 48 linked contacts and 15 created by the passes just before
    window = ChangeWindow(reference=48, creates=15)
    # When a pass would create 10 more
    held = pass_of(unmapped_crm=people(10, "crm"), mapped_total=63, window=window).held
    # Then it is held
    assert held is not None
    assert held.creates == 10
    assert "on top of 15 created by the passes just before it" in held.message


def test_contacts_leaving_scope_at_once_are_a_mass_change() -> None:
    # Given 30 linked contacts whose provider side all left the folder (moved elsewhere)
    pairs = [
        (mapping(BASE, n), UNCHANGED, provider(BASE, n, in_scope=False, scope_reason="moved"))
        for n in range(30)
    ]
    # When planned
    plan = pass_of(pairs, mapped_total=30)
    # Then the pass is held, in plain words, not silently unlinked
    assert plan.held is not None
    assert plan.held.unlinks == 30
    assert "unlink 30 of 30 linked contacts that left the sync scope at once" in plan.held.message
    # And a few leaving is not held
    assert pass_of(pairs[:5], mapped_total=30).held is None


def test_deletes_and_unlinks_count_together() -> None:
    # Given 100 linked contacts: 12 deleted in the provider and 12 moved out of its folder
    deleted = [(mapping(BASE, n), UNCHANGED, None) for n in range(12)]
    moved = [
        (mapping(BASE, n), UNCHANGED, provider(BASE, n, in_scope=False, scope_reason="moved"))
        for n in range(12, 24)
    ]
    # Then the 24 contacts gone from the sync together are held
    plan = pass_of(deleted + moved, mapped_total=100)
    assert plan.held is not None
    assert (plan.held.deletes, plan.held.unlinks) == (12, 12)


def test_a_detached_pair_forgotten_is_not_counted_as_an_unlink() -> None:
    # Given 25 pairs already detached (left scope earlier) whose CRM side is now deleted
    pairs = [(replace(mapping(BASE, n), detached="provider"), None, UNCHANGED) for n in range(25)]
    # Then forgetting them is not a mass change (nothing linked is lost)
    plan = pass_of(pairs, mapped_total=100)
    assert all(o.kind == "unlink" for o in plan.outcomes)
    assert plan.held is None


def test_preview_counts_what_the_plan_would_do() -> None:
    # Given a pass with one edit, one deletion, one move out of scope, one link, one creation
    pairs = [
        (mapping(BASE, 1), crm(BASE.with_fields(job_title="CTO"), 1), UNCHANGED),
        (mapping(BASE, 2), UNCHANGED, None),
        (mapping(BASE, 3), UNCHANGED, provider(BASE, 3, in_scope=False, scope_reason="moved")),
    ]
    ann = Contact(given_name="Ann", emails=(Email("ann@x.com"),))
    plan = pass_of(
        pairs,
        unmapped_crm=[crm(ann, 4), crm(Contact(given_name="Bob"), 5)],
        unmapped_provider=[provider(ann.with_fields(job_title="CTO"), 4)],
    )
    # Then the preview counts each
    assert preview(plan) == {
        "linked": 1,
        "created_in_crm": 0,
        "created_in_provider": 1,
        "updated_crm": 1,
        "updated_provider": 1,
        "deleted_crm": 1,
        "deleted_provider": 0,
        "unlinked": 1,
        "conflicts": 0,
        "duplicates": 0,
        "skipped": {},
        "held": None,
    }


def test_a_delete_made_after_our_write_reached_that_side_wins_over_the_edit_it_carried() -> None:
    # Given the CRM's new title was sent to Outlook, the answer lost, and the retry found the
    # contact gone: the mapping keeps what Outlook may have held then
    sent = BASE.with_fields(job_title="Founder")
    known = replace(mapping(), holds={"provider": sent})
    # When the pass sees the Outlook contact deleted and the CRM person with that title
    (outcome,) = pass_of([(known, crm(sent), None)]).outcomes
    # Then the user deleted it knowing the title: the CRM person is deleted, not copied back
    assert outcome.kind == "delete"
    assert [(w.side, w.kind) for w in outcome.writes] == [("crm", "delete")]
    # But a title Outlook never held is an edit, and wins over the delete
    newer = BASE.with_fields(job_title="Director")
    (again,) = pass_of([(known, crm(newer), None)]).outcomes
    assert [(w.side, w.kind) for w in again.writes] == [("provider", "create")]


def test_one_way_both_changes_new_to_a_pass_the_source_wins_whatever_the_times() -> None:
    # Given a linked pair in a connection where the CRM feeds Google, the CRM's job title and a
    # hand edit of it in Google both new to this pass, Google's the later by its modified time
    settings = SyncSettings(direction="to_provider")
    theirs = crm(BASE.with_fields(job_title="Director"), modified_at="2026-12-05T10:00:00Z")
    ours = provider(BASE.with_fields(job_title="Buyer"), modified_at="2026-12-05T10:05:00Z")
    (outcome,) = pass_of([(mapping(), theirs, ours)], settings=settings).outcomes
    # Then the source wins: a contact's modified time may be of a change of any field
    (write,) = outcome.writes
    assert (write.side, write.after.job_title) == ("provider", "Director")


@pytest.mark.parametrize(
    ("google_now", "refusals", "google_shows"),
    [
        ("Buyer", 0, "Buyer"),  # edited by hand since the pass read it: the later change stays
        ("Analyst", 0, "Director"),  # as that pass read it: its write is made again
        ("Buyer", 1, "Director"),  # the write was refused as stale: it never landed
    ],
)
def test_one_way_a_hand_edit_made_after_a_pass_read_the_sources_change_stays(
    google_now: str, refusals: int, google_shows: str
) -> None:
    # Given a linked pair in a connection where the CRM feeds Google, and a pass that read the
    # CRM's new job title but whose write of it to Google failed (the pair remembers what each
    # side held then: the CRM's new title, Google's old one)
    settings = SyncSettings(direction="to_provider")
    remembered = {
        "crm": BASE.with_fields(job_title="Director"),
        "provider": BASE.with_fields(job_title="Analyst"),
    }
    known = replace(mapping(), holds=remembered, refusals=refusals)
    theirs = crm(BASE.with_fields(job_title="Director"))
    ours = provider(BASE.with_fields(job_title=google_now))
    (outcome,) = pass_of([(known, theirs, ours)], settings=settings).outcomes
    # Then the CRM is never written, and Google shows the later of the two changes
    assert all(w.side == "provider" for w in outcome.writes)
    shown = next((w.after.job_title for w in outcome.writes), google_now)
    assert shown == google_shows


def test_a_hand_edit_an_earlier_pass_saw_loses_to_the_sources_change_whatever_the_times() -> None:
    # Given a linked pair in a connection where the CRM feeds Google, Google's hand-edited job
    # title already seen and kept by an earlier pass, and Google's modified time since moved on
    # by our own write of another field
    settings = SyncSettings(direction="to_provider")
    known = replace(mapping(), holds={"provider": BASE.with_fields(job_title="Buyer")})
    ours = provider(BASE.with_fields(job_title="Buyer"), modified_at="2026-12-05T10:05:00Z")
    # When the CRM changes the job title (its time, to the second, before Google's)
    theirs = crm(BASE.with_fields(job_title="Director"), modified_at="2026-12-05T10:04:59Z")
    (outcome,) = pass_of([(known, theirs, ours)], settings=settings).outcomes
    # Then the CRM's new value reaches Google: the old hand edit is the conflict's loser
    (write,) = outcome.writes
    assert (write.side, write.after.job_title) == ("provider", "Director")
    (conflict,) = outcome.conflicts
    assert (conflict.winner, conflict.loser_value) == ("crm", "Buyer")


def test_a_fed_sides_time_from_an_edit_of_another_field_does_not_beat_the_sources_change() -> None:
    # Given a linked pair in a connection where the CRM feeds Google; Google's job title and
    # the CRM's both changed since the last pass, the CRM's after Google's, and then Google's
    # notes edited by hand (so Google's modified time is the latest of the three)
    settings = SyncSettings(direction="to_provider")
    theirs = crm(BASE.with_fields(job_title="Director"), modified_at="2026-12-05T10:01:00Z")
    ours = provider(
        BASE.with_fields(job_title="Buyer", notes="Met in Lyon"), modified_at="2026-12-05T10:05:00Z"
    )
    (outcome,) = pass_of([(mapping(), theirs, ours)], settings=settings).outcomes
    # Then Google's time cannot say when its title was edited: the source's title wins, and the
    # hand-edited notes (a field the CRM did not change) stay
    (write,) = outcome.writes
    assert (write.side, write.after.job_title) == ("provider", "Director")
    (conflict,) = outcome.conflicts
    assert (conflict.field, conflict.winner) == ("job_title", "crm")
