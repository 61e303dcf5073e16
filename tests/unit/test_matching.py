"""Matching unmapped contacts: email, then phone, then name + organisation; ambiguity reported."""

from __future__ import annotations

from contactsync.contacts.model import Contact, Email, Phone
from contactsync.engine.matching import AMBIGUOUS, MatchResult, match_unmapped
from contactsync.providers.base import RemoteContact


def remote(contact_id: str, **fields: object) -> RemoteContact:
    return RemoteContact(contact_id, Contact().with_fields(**fields))


def linked_ids(result: MatchResult) -> list[tuple[str, str]]:
    return [(m.crm.id, m.provider.id) for m in result.matches]


def test_contacts_sharing_a_normalised_email_are_matched() -> None:
    # Given the same email written differently on both sides
    crm = [remote("c1", emails=(Email("Bob@X.com"),))]
    provider = [remote("p1", emails=(Email(" bob@x.com"),))]
    # When matched
    result = match_unmapped(crm, provider, "US")
    # Then they are one match, by email
    assert linked_ids(result) == [("c1", "p1")]
    assert result.matches[0].key == "email:bob@x.com"
    assert result.unmatched_crm == result.unmatched_provider == ()


def test_phone_is_tried_when_no_email_matches() -> None:
    crm = [remote("c1", emails=(Email("a@x.com"),), phones=(Phone("+1 (415) 555-0100"),))]
    provider = [remote("p1", emails=(Email("b@y.com"),), phones=(Phone("4155550100"),))]
    result = match_unmapped(crm, provider, "US")
    assert linked_ids(result) == [("c1", "p1")]
    assert result.matches[0].key == "phone:+14155550100"


def test_name_and_organisation_match_only_together_and_only_with_a_name() -> None:
    # Given same name and org (different case), same name with another org, and two nameless
    crm = [
        remote("c1", given_name="Ann", family_name="Lee", organization="Acme"),
        remote("c2", given_name="Bob", organization="Acme"),
        remote("c3", organization="Initech"),
    ]
    provider = [
        remote("p1", display_name="ann  lee", organization="ACME"),
        remote("p2", given_name="Bob", organization="Globex"),
        remote("p3", organization="Initech"),
    ]
    # When matched
    result = match_unmapped(crm, provider, "US")
    # Then only Ann is matched; the rest stay unmatched (to be created)
    assert linked_ids(result) == [("c1", "p1")]
    assert [r.id for r in result.unmatched_crm] == ["c2", "c3"]
    assert [r.id for r in result.unmatched_provider] == ["p2", "p3"]


def test_one_contact_matching_several_is_a_duplicate_candidate() -> None:
    # Given one CRM contact whose email is on two provider contacts
    crm = [remote("c1", emails=(Email("bob@x.com"),))]
    provider = [
        remote("p1", emails=(Email("bob@x.com"),)),
        remote("p2", emails=(Email("BOB@x.com"),)),
    ]
    # When matched
    result = match_unmapped(crm, provider, "US")
    # Then nothing is linked or left to create, and all three are reported
    assert result.matches == ()
    assert result.unmatched_crm == result.unmatched_provider == ()
    (duplicate,) = result.duplicates
    assert (duplicate.crm_ids, duplicate.provider_ids) == (("c1",), ("p1", "p2"))
    assert duplicate.key == "email:bob@x.com"
    assert sorted(result.skipped) == [("c1", AMBIGUOUS), ("p1", AMBIGUOUS), ("p2", AMBIGUOUS)]


def test_two_contacts_on_one_side_sharing_the_key_are_a_duplicate_candidate() -> None:
    crm = [
        remote("c1", phones=(Phone("4155550100"),)),
        remote("c2", phones=(Phone("415.555.0100"),)),
    ]
    provider = [remote("p1", phones=(Phone("+14155550100"),))]
    result = match_unmapped(crm, provider, "US")
    assert result.matches == ()
    assert result.duplicates[0].crm_ids == ("c1", "c2")


def test_a_contact_matching_two_by_different_emails_is_ambiguous() -> None:
    crm = [remote("c1", emails=(Email("a@x.com"), Email("b@x.com")))]
    provider = [remote("p1", emails=(Email("a@x.com"),)), remote("p2", emails=(Email("b@x.com"),))]
    result = match_unmapped(crm, provider, "US")
    assert result.matches == ()
    assert result.duplicates[0].provider_ids == ("p1", "p2")


def test_the_first_key_that_matches_decides_even_when_a_later_key_is_unique() -> None:
    # Given an ambiguous email, but a phone that only one provider contact has
    crm = [remote("c1", emails=(Email("bob@x.com"),), phones=(Phone("4155550100"),))]
    provider = [
        remote("p1", emails=(Email("bob@x.com"),), phones=(Phone("4155550100"),)),
        remote("p2", emails=(Email("bob@x.com"),)),
    ]
    # When matched
    result = match_unmapped(crm, provider, "US")
    # Then the phone is never consulted: it stays a duplicate candidate
    assert result.matches == ()
    assert len(result.duplicates) == 1


def test_out_of_scope_contacts_are_skipped_with_their_reason() -> None:
    crm = [
        RemoteContact(
            "c1",
            Contact(emails=(Email("a@x.com"),)),
            in_scope=False,
            scope_reason="owned by another user",
        )
    ]
    provider = [remote("p1", emails=(Email("a@x.com"),))]
    result = match_unmapped(crm, provider, "US")
    assert result.matches == ()
    assert result.skipped == (("c1", "owned by another user"),)
    assert [r.id for r in result.unmatched_provider] == ["p1"]
