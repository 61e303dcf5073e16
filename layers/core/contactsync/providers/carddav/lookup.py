"""What a CardDAV look-up asks the server for, and how it compares the cards that come back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from contactsync.contacts.model import Contact
from contactsync.contacts.normalize import email_key, name_key

QUERY = 120  # filters per addressbook-query: 30 contacts with an email, a phone and a name


@dataclass(frozen=True)
class Wanted:
    """What a look-up compares cards by: the contacts' email keys, phones' digits and name keys.
    Phones by their digits: the adapter does not know the connection's phone region, and a
    look-up may return too much (the engine compares normalised keys), never too little."""

    emails: frozenset[str]
    phones: frozenset[str]
    names: frozenset[str]

    @classmethod
    def of(cls, contacts: Sequence[Contact]) -> Wanted:
        return cls(
            frozenset(k for c in contacts for e in c.emails if (k := email_key(e.value))),
            frozenset(k for c in contacts for p in c.phones if (k := phone_digits(p.value))),
            frozenset(k for c in contacts if (k := name_key(c.full_name))),
        )

    def __bool__(self) -> bool:
        return bool(self.emails or self.phones or self.names)

    def shares_with(self, card: Contact) -> bool:
        return bool(
            {email_key(e.value) for e in card.emails} & self.emails
            or {phone_digits(p.value) for p in card.phones} & self.phones
            or name_key(card.full_name) in self.names
        )


def query_filters(contacts: Sequence[Contact]) -> list[tuple[str, tuple[str, ...]]]:
    """The addressbook-query filters that find the cards a look-up wants, each once: EMAIL
    containing an email; TEL containing a phone's last four digits (the part most ways of
    writing a number keep together); FN, and N, containing every word of a name (words, not the
    name: FN "Cy  Park" is found, and so is N "Park;Cy;Middle" for "Cy Middle Park"). Texts
    are sent as typed: the server compares them without case."""
    filters: dict[tuple[str, tuple[str, ...]], None] = {}
    for contact in contacts:
        for email in contact.emails:
            if email.value.strip():
                filters[("EMAIL", (email.value.strip(),))] = None
        for phone in contact.phones:
            if digits := phone_digits(phone.value)[-4:]:
                filters[("TEL", (digits,))] = None
        if words := tuple(contact.full_name.split()):
            filters[("FN", words)] = None
            filters[("N", words)] = None
    return list(filters)


def phone_digits(phone: str) -> str:
    """A phone's last ten digits (how the lookup compares numbers written differently)."""
    return "".join(ch for ch in phone if ch.isdigit())[-10:]
