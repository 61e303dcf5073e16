"""Reading vCard 3.0 / 4.0 as the canonical contact, with ``vobject`` (``vcard_writing`` writes).

We read the properties we model (N, FN, EMAIL, TEL, ORG, TITLE, ADR, BDAY, NOTE, URL) and, when we
write, change only those of them whose canonical value changed, on the card as the server holds it:
every other property (PHOTO, X-ABLabel, IMPP, RELATED, a name prefix, an ORG unit, X-… of other
apps) goes back untouched. A kept entry of a changed list (an email still there) keeps its own
parameters and group ("item1.EMAIL"), so labels Apple stores beside it survive too. The property
helpers at the end are shared with the writing.

A card's last-modified time is its ``REV`` (RFC 6350 §6.7.4), which the clients people edit cards
with (Apple's, Android's, Thunderbird) set on every save: the ``newest_wins`` policy compares it
with the CRM's. A card without one has no known time.

Our mapping id travels in ``X-CONTACTSYNC-ID``. Groups are read both ways servers keep them:
``X-ADDRESSBOOKSERVER-KIND:group`` cards listing ``X-ADDRESSBOOKSERVER-MEMBER:urn:uuid:<UID>``
(iCloud, Fastmail) and ``CATEGORIES`` on the contact (Nextcloud and others).

Labels: TYPE work/home/cell (mobile)/other map to the canonical label, anything else reads as
"other". Primary: ``TYPE=pref`` (3.0) or ``PREF=1`` (4.0). A birthday without a year is
``--MMDD`` in 4.0 and Apple's ``X-APPLE-OMIT-YEAR=1604`` form in 3.0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import vobject

from contactsync.contacts.model import Address, Contact, Email, Phone
from contactsync.contacts.normalize import own_display_name

TAG_PROPERTY = "X-CONTACTSYNC-ID"
KIND_PROPERTIES = ("X-ADDRESSBOOKSERVER-KIND", "KIND")
MEMBER_PROPERTIES = ("X-ADDRESSBOOKSERVER-MEMBER", "MEMBER")
LABELS = {"work": "work", "home": "home", "cell": "mobile", "mobile": "mobile", "other": "other"}
# Which vCard properties hold which canonical fields.
PROPERTIES = {
    "names": ("n", "fn"),
    "emails": ("email",),
    "phones": ("tel",),
    "organization": ("org", "title"),
    "addresses": ("adr",),
    "birthday": ("bday",),
    "notes": ("note",),
    "websites": ("url",),
}


class CardError(ValueError):
    """A body that is not a vCard we can read."""


@dataclass(frozen=True)
class Card:
    """One address book entry as read: a contact, or a group with its members."""

    uid: str
    contact: Contact
    tag: str
    categories: frozenset[str]
    is_group: bool
    group_name: str
    members: frozenset[str]  # UIDs (urn:uuid: stripped) of a group card's members
    revised: str = ""  # REV as ISO-8601 UTC ("" when the card has none we can read)


def parse(text: str) -> Any:
    try:
        card = vobject.readOne(text)
    except Exception as exc:  # vobject raises many kinds of errors on bad input
        raise CardError(f"not a vCard: {type(exc).__name__}") from exc
    if getattr(card, "name", "").upper() != "VCARD":
        raise CardError("not a vCard")
    return card


def read(text: str) -> Card:
    card = parse(text)
    is_group = any(
        value_of(p).strip().lower() == "group" for p in all_props(card, *KIND_PROPERTIES)
    )
    name = value_of(first_prop(card, "fn")).strip()
    members = frozenset(
        value_of(p).strip().removeprefix("urn:uuid:") for p in all_props(card, *MEMBER_PROPERTIES)
    )
    categories: set[str] = set()
    for prop in all_props(card, "categories"):
        value = prop.value
        items = value if isinstance(value, list) else str(value).split(",")
        categories.update(str(v).strip() for v in items if str(v).strip())
    return Card(
        uid=value_of(first_prop(card, "uid")).strip(),
        contact=Contact() if is_group else to_contact(card),
        tag=value_of(first_prop(card, TAG_PROPERTY.lower())).strip(),
        categories=frozenset(categories),
        is_group=is_group,
        group_name=name if is_group else "",
        members=members if is_group else frozenset(),
        revised=_revised(value_of(first_prop(card, "rev"))),
    )


def to_contact(card: Any) -> Contact:
    n = first_prop(card, "n")
    given = middle = family = ""
    if n is not None and hasattr(n.value, "given"):
        given, middle, family = (
            joined(n.value.given),
            joined(n.value.additional),
            joined(n.value.family),
        )
    elif n is not None:
        parts = ([*str(n.value).split(";"), "", "", ""])[:3]
        family, given, middle = (p.strip() for p in parts)
    org = first_prop(card, "org")
    organization = ""
    if org is not None:
        value = org.value
        organization = str(value[0] if isinstance(value, list) and value else value or "")
    return Contact(
        given_name=given,
        middle_name=middle,
        family_name=family,
        display_name=own_display_name(
            value_of(first_prop(card, "fn")).strip(), given, middle, family
        ),
        emails=tuple(
            Email(value_of(p).strip(), label_of(p), is_pref(p))
            for p in all_props(card, "email")
            if value_of(p).strip()
        ),
        phones=tuple(
            Phone(value_of(p).strip().removeprefix("tel:"), label_of(p), is_pref(p))
            for p in all_props(card, "tel")
            if value_of(p).strip().removeprefix("tel:")
        ),
        organization=organization.strip(),
        job_title=value_of(first_prop(card, "title")).strip(),
        addresses=tuple(
            a for p in all_props(card, "adr") if (a := address_of(p)) != Address(a.label)
        ),
        birthday=_birthday(first_prop(card, "bday")),
        notes=value_of(first_prop(card, "note")),
        websites=tuple(value_of(p).strip() for p in all_props(card, "url") if value_of(p).strip()),
    )


# --- writing ---------------------------------------------------------------------------------


# --- reading pieces --------------------------------------------------------------------------


def all_props(card: Any, *names: str) -> list[Any]:
    props: list[Any] = []
    for name in names:
        props.extend(card.contents.get(name.lower(), []))
    return props


def first_prop(card: Any, name: str) -> Any:
    props = card.contents.get(name.lower())
    return props[0] if props else None


def value_of(prop: Any) -> str:
    if prop is None:
        return ""
    value = prop.value
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value or "")


def joined(value: Any) -> str:
    if isinstance(value, list):
        return " ".join(str(v) for v in value if v).strip()
    return str(value or "").strip()


def _types(prop: Any) -> list[str]:
    types: list[str] = []
    for t in prop.params.get("TYPE", []):
        types.extend(x.strip().lower() for x in str(t).split(","))
    return types


def label_of(prop: Any) -> str:
    for t in _types(prop):
        if t in LABELS:
            return LABELS[t]
    return "other"


def is_pref(prop: Any) -> bool:
    return "pref" in _types(prop) or prop.params.get("PREF", [""])[0] in ("1", 1)


def address_of(prop: Any) -> Address:
    value = prop.value
    label = label_of(prop)
    if not hasattr(value, "street"):
        return Address(label=label)
    return Address(
        street=joined(value.street),
        city=joined(value.city),
        region=joined(value.region),
        postal_code=joined(value.code),
        country=joined(value.country),
        label=label,
    )


def address_key(a: Address) -> str:
    return "|".join(x.strip().casefold() for x in (a.street, a.city, a.postal_code, a.country))


_DATE = re.compile(r"^(\d{4}|--)-?(\d{2})-?(\d{2})")
_TIMESTAMP = re.compile(
    r"^(\d{4})-?(\d{2})-?(\d{2})(?:T(\d{2}):?(\d{2}):?(\d{2})(?:[.,](\d+))?)?"
    r"(Z|[+-]\d{2}(?::?\d{2})?)?$"
)


def _revised(text: str) -> str:
    """A REV value (basic or extended ISO 8601, a date alone, any offset; none: UTC) as
    ISO-8601 UTC (a fraction of a second kept to the microsecond), "" when it is not a time."""
    match = _TIMESTAMP.match(text.strip().upper())
    if not match:
        return ""
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        moment = datetime(
            int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0),
            int((fraction or "0")[:6].ljust(6, "0")), tzinfo=UTC,
        )  # fmt: skip
    except ValueError:
        return ""
    if zone and zone != "Z":
        digits = zone[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0))
        moment = moment - offset if zone[0] == "+" else moment + offset
    return moment.isoformat(timespec="microseconds" if fraction else "seconds").replace(
        "+00:00", "Z"
    )


def _birthday(prop: Any) -> str:
    if prop is None:
        return ""
    text = value_of(prop).strip()
    match = _DATE.match(text)
    if not match:
        return ""
    year, month, day = match.groups()
    omitted = prop.params.get("X-APPLE-OMIT-YEAR", [""])[0]
    if year in ("--", omitted):
        return f"--{month}-{day}"
    return f"{year}-{month}-{day}"
