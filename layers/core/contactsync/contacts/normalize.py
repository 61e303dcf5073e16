"""Normalised keys: how two values are compared, never how they are stored.

Two sides format the same data differently ("+1 (415) 555-0100" vs "4155550100", "Bob@X.com " vs
"bob@x.com"). The engine compares these keys so a formatting difference is never a change and
never echoes back and forth. The values written to a side stay as the user typed them.

Multi-valued fields (emails, phones, addresses, websites) are compared element by element: each
element has an *identity* (its normalised value) and *attributes* (normalised label, primary
flag). Order does not count, elements with an empty identity are ignored, and when one contact
holds two elements with the same identity the first one counts.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Hashable, Sequence

import phonenumbers

from contactsync.contacts.model import (
    ALL_FIELDS,
    LIST_FIELDS,
    Address,
    Contact,
    Email,
    Phone,
)

Element = Email | Phone | Address | str
"""One item of a multi-valued field (a website is a plain string)."""

ElementState = tuple[Hashable, ...]
"""The normalised attributes of an element: label and primary flag where it has them."""

_SPACES = re.compile(r"\s+")
_NOT_DIGITS = re.compile(r"\D")


def _nfkc(value: str) -> str:
    return unicodedata.normalize("NFKC", value)


def name_key(value: str) -> str:
    """A name (or label, organisation, title) for comparing: NFKC, spaces collapsed, case-folded."""
    return _SPACES.sub(" ", _nfkc(value)).strip().casefold()


def email_key(value: str) -> str:
    """An email address for comparing: NFKC, trimmed, case-folded."""
    return _nfkc(value).strip().casefold()


def phone_key(value: str, region: str) -> str:
    """A phone number in E.164 (``region`` for numbers written without a country code).

    An extension is kept (";ext=12") so two extensions of one line stay two numbers. What the
    ``phonenumbers`` library cannot parse falls back to its digits, or to its name key when it
    has none.
    """
    text = _nfkc(value).strip()
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        digits = _NOT_DIGITS.sub("", text)
        return digits or name_key(text)
    key = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return f"{key};ext={number.extension}" if number.extension else key


def website_key(value: str) -> str:
    """A web address for comparing: case-folded, without scheme or trailing slash."""
    key = name_key(value)
    for scheme in ("https://", "http://"):
        if key.startswith(scheme):
            key = key[len(scheme) :]
    return key.rstrip("/")


def text_key(value: str) -> str:
    """Free text (notes) for comparing: NFKC, one kind of line break, no outer whitespace."""
    return _nfkc(value).replace("\r\n", "\n").replace("\r", "\n").strip()


def own_display_name(display: str, given: str, middle: str = "", family: str = "") -> str:
    """``display`` when the user chose it, "" when it merely joins the name parts.

    Every side derives a display name its own way (Outlook fills it in, the CRM joins first and
    last name), so a derived one is not a value of its own: kept as "", it compares equal across
    sides and is derived afresh by each side when the name parts change.
    """
    joins = (
        " ".join(p for p in (given, middle, family) if p.strip()),
        " ".join(p for p in (given, family) if p.strip()),
    )
    if not display.strip() or any(name_key(display) == name_key(j) for j in joins):
        return ""
    return display


def scalar_key(field: str, value: str) -> str:
    """The comparison key of one scalar field's value."""
    if field == "notes":
        return text_key(value)
    if field == "birthday":
        return value.strip()
    return name_key(value)


def element_identity(element: Element, region: str) -> str:
    """What makes an element of a multi-valued field the same element on both sides."""
    if isinstance(element, Email):
        return email_key(element.value)
    if isinstance(element, Phone):
        return phone_key(element.value, region) if element.value.strip() else ""
    if isinstance(element, Address):
        parts = [element.street, element.city, element.region, element.postal_code]
        keys = [name_key(p) for p in [*parts, element.country]]
        return "|".join(keys) if any(keys) else ""
    return website_key(element)


def element_state(element: Element) -> ElementState:
    """The attributes of an element that count besides its identity."""
    if isinstance(element, Email | Phone):
        return (name_key(element.label), element.primary)
    if isinstance(element, Address):
        return (name_key(element.label),)
    return ()


def elements_by_identity(elements: Sequence[Element], region: str) -> dict[str, Element]:
    """The elements keyed by identity, in order; empty identities dropped, first one wins."""
    keyed: dict[str, Element] = {}
    for element in elements:
        identity = element_identity(element, region)
        if identity and identity not in keyed:
            keyed[identity] = element
    return keyed


def field_key(contact: Contact, field: str, region: str) -> Hashable:
    """The normalised form of one field of a contact."""
    value = getattr(contact, field)
    if field in LIST_FIELDS:
        keyed = elements_by_identity(value, region)
        return frozenset((identity, element_state(e)) for identity, e in keyed.items())
    return scalar_key(field, value)


def comparable(
    contact: Contact, region: str, fields: Sequence[str] | frozenset[str] = ALL_FIELDS
) -> dict[str, Hashable]:
    """A normalised form of ``contact`` to compare with another field by field.

    Two contacts that differ only in formatting (phone punctuation, email case, whitespace,
    element order) give equal results; labels and primary flags count. ``fields`` limits the
    comparison to what a side carries.
    """
    return {f: field_key(contact, f, region) for f in ALL_FIELDS if f in fields}
