"""Normalised keys: formatting never counts as a change; content, labels and primary flags do."""

from __future__ import annotations

from contactsync.contacts.model import Address, Contact, Email, Phone
from contactsync.contacts.normalize import (
    comparable,
    email_key,
    name_key,
    own_display_name,
    phone_key,
    website_key,
)


def test_phone_key_gives_e164_whatever_the_formatting() -> None:
    # Given the same US number written three ways
    variants = ["+1 (415) 555-0100", "4155550100", "415.555.0100"]
    # When each is normalised with region US
    keys = {phone_key(v, "US") for v in variants}
    # Then they are all one E.164 number
    assert keys == {"+14155550100"}


def test_phone_key_uses_the_default_region_only_without_a_country_code() -> None:
    # Given a UK number with its country code, normalised with region US
    # Then the country code wins
    assert phone_key("+44 20 7946 0000", "US") == "+442079460000"
    # And a national number takes the default region
    assert phone_key("020 7946 0000", "GB") == "+442079460000"


def test_phone_key_keeps_the_extension() -> None:
    # Given two extensions of one line
    # Then they stay two numbers
    assert phone_key("415 555 0100 ext 12", "US") == "+14155550100;ext=12"
    assert phone_key("415 555 0100 ext 12", "US") != phone_key("415 555 0100 ext 13", "US")


def test_phone_key_falls_back_to_digits_when_unparseable() -> None:
    # Given values the phone library cannot parse
    # Then the digits are the key, or the text itself when there are none
    assert phone_key("0", "US") == "0"
    assert phone_key("  Ask Reception ", "US") == "ask reception"


def test_email_key_trims_and_case_folds() -> None:
    # Given an email typed with spaces, capitals and full-width letters
    # Then it equals the plain lower-case address
    assert email_key(" Bob@X.com ") == "bob@x.com"
    assert email_key("\uff22\uff2f\uff22@x.com") == "bob@x.com"  # full-width "BOB"


def test_name_key_collapses_whitespace_and_case() -> None:
    assert name_key("  Anne   MARIE\tSmith ") == "anne marie smith"
    assert name_key("Straße") == name_key("STRASSE")


def test_website_key_ignores_scheme_case_and_trailing_slash() -> None:
    assert website_key("https://Example.com/") == website_key("example.com")


def test_comparable_ignores_formatting_and_order() -> None:
    # Given one contact and the same contact as another system formats it
    one = Contact(
        given_name="Bob",
        emails=(Email("Bob@X.com ", "work", True), Email("b@home.org", "home")),
        phones=(Phone("+1 (415) 555-0100", "mobile"),),
        addresses=(Address(street="1 Main St", city="Springfield", label="home"),),
        websites=("https://bob.example/",),
        notes="line one\r\nline two\n",
    )
    other = Contact(
        given_name=" bob",
        emails=(Email("b@home.org", "Home"), Email("bob@x.com", "WORK", True)),
        phones=(Phone("4155550100", "Mobile"),),
        addresses=(Address(street="1  main st", city="SPRINGFIELD", label="Home"),),
        websites=("bob.example",),
        notes="line one\nline two",
    )
    # When both are normalised
    # Then they compare equal
    assert comparable(one, "US") == comparable(other, "US")


def test_comparable_counts_labels_and_primary_flags() -> None:
    # Given a contact
    work = Contact(emails=(Email("bob@x.com", "work", primary=True),))
    # When only the label or only the primary flag changes
    relabelled = Contact(emails=(Email("bob@x.com", "home", primary=True),))
    demoted = Contact(emails=(Email("bob@x.com", "work", primary=False),))
    # Then each is a difference
    assert comparable(work, "US") != comparable(relabelled, "US")
    assert comparable(work, "US") != comparable(demoted, "US")


def test_comparable_ignores_empty_and_repeated_elements() -> None:
    # Given a list with an empty element and the same address twice
    messy = Contact(emails=(Email(""), Email("bob@x.com"), Email("BOB@x.com", "home")))
    clean = Contact(emails=(Email("bob@x.com"),))
    # Then only the first occurrence of each address counts
    assert comparable(messy, "US") == comparable(clean, "US")


def test_comparable_can_be_limited_to_what_a_side_carries() -> None:
    # Given two contacts that differ only in notes
    a, b = Contact(given_name="Ann", notes="x"), Contact(given_name="Ann", notes="y")
    # Then they differ in full, and are equal for a side that does not carry notes
    assert comparable(a, "US") != comparable(b, "US")
    assert comparable(a, "US", frozenset({"given_name"})) == comparable(
        b, "US", frozenset({"given_name"})
    )


def test_a_display_name_that_only_joins_the_name_parts_is_derived() -> None:
    # Given display names as Outlook and the CRM fill them in from the name parts
    # Then they count as derived (""), whatever the case or spacing
    assert own_display_name("Ann Lee", "Ann", "", "Lee") == ""
    assert own_display_name("ann  LEE", "Ann", "", "Lee") == ""
    assert own_display_name("Ann B. Lee", "Ann", "B.", "Lee") == ""
    assert own_display_name("Ann Lee", "Ann", "B.", "Lee") == ""


def test_a_display_name_the_user_chose_is_kept() -> None:
    # Given a display name that differs from the name parts
    # Then it is a value of its own
    assert own_display_name("Dr. Ann Lee", "Ann", "", "Lee") == "Dr. Ann Lee"
    assert own_display_name("Acme Front Desk", "", "", "") == "Acme Front Desk"
