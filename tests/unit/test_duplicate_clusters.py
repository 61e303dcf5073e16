"""Which CRM persons the duplicates page groups as one person."""

from __future__ import annotations

from typing import Any

from contactsync.contacts.model import Contact, Email, Phone
from contactsync.engine.matching import duplicate_clusters
from contactsync.providers.base import RemoteContact


def remote(contact_id: str, **values: Any) -> RemoteContact:
    return RemoteContact(id=contact_id, contact=Contact(**values))


def test_persons_sharing_a_key_directly_or_through_each_other_form_one_cluster() -> None:
    # Given 1 and 2 sharing an email (written differently), 2 and 3 sharing a phone
    # (formatted differently), 4 and 5 with the same name at the same organisation, 6 alone
    persons = [
        remote("1", display_name="Ann A", emails=(Email("Ann@X.example "),)),
        remote(
            "2",
            display_name="Ann B",
            emails=(Email("ann@x.example"),),
            phones=(Phone("+1 415 555 0100"),),
        ),
        remote("3", display_name="Ann C", phones=(Phone("(415) 555-0100"),)),
        remote("4", display_name="Bob Bee", organization="Acme"),
        remote("5", display_name="bob  bee", organization="ACME"),
        remote("6", display_name="Carl Sea", emails=(Email("carl@x.example"),)),
    ]
    # When clustered
    clusters = duplicate_clusters(persons, "US")
    # Then 1-2-3 are one cluster, 4-5 another, and 6 is in none
    assert sorted(sorted(c.items) for c in clusters) == [["1", "2", "3"], ["4", "5"]]
    # And each names the keys its persons share
    assert [sorted(c.keys) for c in clusters] == [
        ["email:ann@x.example", "phone:+14155550100"],
        ["name:bob bee|acme"],
    ]


def test_the_same_name_at_different_organisations_is_not_a_duplicate() -> None:
    persons = [
        remote("1", display_name="Dee Dee", organization="One"),
        remote("2", display_name="Dee Dee", organization="Two"),
    ]
    assert duplicate_clusters(persons, "US") == []
