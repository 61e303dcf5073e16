"""A card's REV is its last-modified time (what ``newest_wins`` compares with the CRM's): read in
the forms clients write it, as ISO-8601 UTC; anything else is no known time."""

from __future__ import annotations

import pytest
from contactsync.providers.carddav import vcard


def card_with(*lines: str) -> str:
    return "\r\n".join(("BEGIN:VCARD", "VERSION:3.0", "UID:a", "FN:Ann Lee", "N:Lee;Ann;;;",
                        *lines, "END:VCARD", ""))  # fmt: skip


@pytest.mark.parametrize(
    ("rev", "revised"),
    [
        ("REV:2026-03-01T09:30:00Z", "2026-03-01T09:30:00Z"),  # Apple, extended
        ("REV:20260301T093000Z", "2026-03-01T09:30:00Z"),  # basic (vCard 4.0, Android)
        ("REV:2026-03-01T09:30:00.512Z", "2026-03-01T09:30:00.512000Z"),  # with a fraction
        ("REV:20260301T113000+0200", "2026-03-01T09:30:00Z"),  # an offset east of UTC
        ("REV:2026-03-01T04:30:00-05:00", "2026-03-01T09:30:00Z"),  # and west of it
        ("REV:20260301", "2026-03-01T00:00:00Z"),  # a date alone
        ("REV:2026-02-30T09:30:00Z", ""),  # no such day
        ("REV:yesterday", ""),
    ],
)
def test_rev_is_the_cards_last_modified_time(rev: str, revised: str) -> None:
    assert vcard.read(card_with(rev)).revised == revised


def test_a_card_without_rev_has_no_known_time() -> None:
    assert vcard.read(card_with()).revised == ""
