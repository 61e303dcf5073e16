"""What a look-up searches Pipedrive for: each email, phone and name of the contacts a pass would
copy, and whether a listed person may be one of them."""

from __future__ import annotations

from collections.abc import Sequence

from contactsync.contacts.model import Contact

# Beyond this many searches, one look-up first tries listing the company (500 persons a page).
LOOKUP_LIST_FROM = 20


def search_terms(contacts: Sequence[Contact]) -> list[tuple[str, str]]:
    """Each distinct (field, value) to search for, in order."""
    return list(
        dict.fromkeys(
            (field, value.strip())
            for contact in contacts
            for field, values in (
                ("email", [e.value for e in contact.emails]),
                ("phone", [p.value for p in contact.phones]),
                ("name", [contact.full_name]),
            )
            for value in values
            if value.strip()
        )
    )


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def may_be_one_of(contact: Contact, terms: Sequence[tuple[str, str]]) -> bool:
    """Whether a listed person shares an email, a phone (its last 7 digits) or a name with
    the terms searched for; loose on purpose, the engine compares normalised keys."""
    mine = {("email", e.value.strip().casefold()) for e in contact.emails}
    mine |= {("phone", _digits(p.value)[-7:]) for p in contact.phones if _digits(p.value)}
    mine.add(("name", contact.full_name.strip().casefold()))
    wanted = {(f, _digits(v)[-7:] if f == "phone" else v.casefold()) for f, v in terms}
    return bool(mine & wanted)
