"""Field-level three-way merge: each rule of the merge, one test each (Given / When / Then)."""

from __future__ import annotations

from contactsync.contacts.model import ALL_FIELDS, Contact, Email, Phone
from contactsync.engine.merge import SyncSettings, merge

TWO_WAY = SyncSettings()
EARLY, LATE = "2026-11-25T09:00:00Z", "2026-11-25T10:00:00Z"


def test_a_field_changed_on_one_side_is_taken() -> None:
    # Given a base, and a CRM that changed the job title while the provider changed the surname
    base = Contact(given_name="Ann", family_name="Lee", job_title="Engineer")
    crm = base.with_fields(job_title="CTO")
    provider = base.with_fields(family_name="Lee-Park")
    # When merged
    merged, conflicts = merge(base, crm, provider, TWO_WAY)
    # Then both changes are kept and nothing conflicts
    assert merged == base.with_fields(job_title="CTO", family_name="Lee-Park")
    assert conflicts == ()


def test_the_same_change_on_both_sides_is_taken_once() -> None:
    # Given both sides changed the title the same way (one with different spacing/case)
    base = Contact(job_title="Engineer")
    merged, conflicts = merge(
        base, base.with_fields(job_title="CTO"), base.with_fields(job_title=" cto "), TWO_WAY
    )
    # Then it is taken, no conflict
    assert merged.job_title == "CTO"
    assert conflicts == ()


def test_newest_wins_takes_the_later_side_and_reports_the_loser() -> None:
    # Given both sides changed the title differently, the provider later
    base = Contact(job_title="Engineer")
    crm, provider = base.with_fields(job_title="CTO"), base.with_fields(job_title="CEO")
    # When merged under newest_wins
    merged, conflicts = merge(base, crm, provider, TWO_WAY, EARLY, LATE)
    # Then the provider wins and the CRM's value is the loser
    assert merged.job_title == "CEO"
    (conflict,) = conflicts
    assert (conflict.field, conflict.winner, conflict.winner_value) == (
        "job_title",
        "provider",
        "CEO",
    )
    assert (conflict.loser, conflict.loser_value) == ("crm", "CTO")
    assert conflict.reason == f"newest_wins: provider modified {LATE}, CRM {EARLY}"


def test_newest_wins_gives_ties_to_the_crm() -> None:
    base = Contact(job_title="Engineer")
    crm, provider = base.with_fields(job_title="CTO"), base.with_fields(job_title="CEO")
    # Given equal times (written differently), and then no times at all
    for crm_at, provider_at in ((LATE, "2026-11-25T10:00:00+00:00"), ("", "")):
        merged, conflicts = merge(base, crm, provider, TWO_WAY, crm_at, provider_at)
        # Then the CRM wins
        assert merged.job_title == "CTO"
        assert conflicts[0].winner == "crm"


def test_newest_wins_prefers_a_known_time_over_an_unknown_one() -> None:
    base = Contact(job_title="Engineer")
    crm, provider = base.with_fields(job_title="CTO"), base.with_fields(job_title="CEO")
    merged, _ = merge(base, crm, provider, TWO_WAY, "", EARLY)
    assert merged.job_title == "CEO"


def test_crm_wins_and_provider_wins_ignore_the_times() -> None:
    base = Contact(job_title="Engineer")
    crm, provider = base.with_fields(job_title="CTO"), base.with_fields(job_title="CEO")
    # Given the provider changed later
    crm_wins = SyncSettings(conflict_policy="crm_wins")
    provider_wins = SyncSettings(conflict_policy="provider_wins")
    # Then each fixed policy picks its side regardless
    assert merge(base, crm, provider, crm_wins, EARLY, LATE)[0].job_title == "CTO"
    assert merge(base, crm, provider, provider_wins, LATE, EARLY)[0].job_title == "CEO"
    assert merge(base, crm, provider, crm_wins, EARLY, LATE)[1][0].reason == "crm_wins"


def test_a_field_a_side_does_not_carry_is_neither_taken_from_it_nor_blanked() -> None:
    # Given a provider that cannot carry notes (so it shows none)
    settings = SyncSettings(provider_fields=frozenset(ALL_FIELDS) - {"notes"})
    base = Contact(given_name="Ann", notes="met at the fair")
    provider = base.only(settings.provider_fields).with_fields(given_name="Anna")
    # When merged with an unchanged CRM
    merged, conflicts = merge(base, base, provider, settings)
    # Then the notes survive and the name change is taken
    assert merged == Contact(given_name="Anna", notes="met at the fair")
    assert conflicts == ()


def test_a_field_neither_side_carries_is_left_out_of_the_result() -> None:
    settings = SyncSettings(
        crm_fields=frozenset(ALL_FIELDS) - {"birthday"},
        provider_fields=frozenset(ALL_FIELDS) - {"birthday"},
    )
    base = Contact(given_name="Ann", birthday="1990-01-01")
    merged, _ = merge(base, base, base, settings)
    assert merged == Contact(given_name="Ann")


def test_formatting_only_differences_are_not_changes() -> None:
    # Given both sides hold the base, reformatted
    base = Contact(
        given_name="Ann", emails=(Email("ann@x.com"),), phones=(Phone("+1 415 555 0100"),)
    )
    crm = base.with_fields(given_name="ANN ", emails=(Email("Ann@X.com"),))
    provider = base.with_fields(phones=(Phone("(415) 555-0100"),))
    # When merged
    merged, conflicts = merge(base, crm, provider, TWO_WAY)
    # Then the result is the base exactly as stored
    assert merged == base
    assert conflicts == ()


def test_additions_on_both_sides_are_both_kept() -> None:
    base = Contact(emails=(Email("a@x.com"),))
    crm = base.with_fields(emails=(Email("a@x.com"), Email("b@x.com")))
    provider = base.with_fields(emails=(Email("c@x.com"), Email("a@x.com")))
    merged, conflicts = merge(base, crm, provider, TWO_WAY)
    assert [e.value for e in merged.emails] == ["a@x.com", "b@x.com", "c@x.com"]
    assert conflicts == ()


def test_an_element_removed_on_one_side_and_untouched_on_the_other_is_removed() -> None:
    base = Contact(phones=(Phone("4155550100"), Phone("4155550101")))
    crm = base.with_fields(phones=(Phone("4155550101"),))
    merged, conflicts = merge(base, crm, base, TWO_WAY)
    assert merged.phones == (Phone("4155550101"),)
    assert conflicts == ()


def test_a_label_or_primary_change_on_one_side_is_taken() -> None:
    base = Contact(emails=(Email("a@x.com", "work", True), Email("b@x.com", "work", False)))
    # Given the provider moved "primary" to b and relabelled a (written in capitals)
    provider = base.with_fields(
        emails=(Email("A@x.com", "home", False), Email("b@x.com", "work", True))
    )
    merged, conflicts = merge(base, base, provider, TWO_WAY)
    assert merged.emails == provider.emails
    assert conflicts == ()


def test_removed_on_one_side_and_relabelled_on_the_other_is_a_conflict() -> None:
    # Given the CRM removed an email the provider relabelled, the CRM later
    base = Contact(emails=(Email("a@x.com", "work"),))
    crm = base.with_fields(emails=())
    provider = base.with_fields(emails=(Email("a@x.com", "home"),))
    merged, conflicts = merge(base, crm, provider, TWO_WAY, LATE, EARLY)
    # Then the policy decides (the removal), and the relabelled email is the loser's value
    assert merged.emails == ()
    (conflict,) = conflicts
    assert (conflict.field, conflict.winner_value, conflict.loser_value) == (
        "emails",
        None,
        Email("a@x.com", "home"),
    )


def test_the_same_element_added_differently_on_both_sides_is_settled_by_policy() -> None:
    # Given an empty base (a link) and both sides holding one phone with different labels
    crm = Contact(phones=(Phone("4155550100", "mobile"),))
    provider = Contact(phones=(Phone("+1 415 555 0100", "work"),))
    merged, conflicts = merge(Contact(), crm, provider, SyncSettings(conflict_policy="crm_wins"))
    assert merged.phones == crm.phones
    assert conflicts[0].loser_value == provider.phones[0]
