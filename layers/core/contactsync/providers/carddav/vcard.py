"""vCard 3.0 / 4.0 to and from the canonical contact, with ``vobject``.

We read the properties we model (N, FN, EMAIL, TEL, ORG, TITLE, ADR, BDAY, NOTE, URL) and, when we
write, change only those of them whose canonical value changed, on the card as the server holds it:
every other property (PHOTO, X-ABLabel, IMPP, RELATED, a name prefix, an ORG unit, X-… of other
apps) goes back untouched. A kept entry of a changed list (an email still there) keeps its own
parameters and group ("item1.EMAIL"), so labels Apple stores beside it survive too.

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
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import vobject

from contactsync.contacts.model import Address, Contact, Email, Phone
from contactsync.contacts.normalize import own_display_name

TAG_PROPERTY = "X-CONTACTSYNC-ID"
KIND_PROPERTIES = ("X-ADDRESSBOOKSERVER-KIND", "KIND")
MEMBER_PROPERTIES = ("X-ADDRESSBOOKSERVER-MEMBER", "MEMBER")
NO_YEAR = "1604"  # Apple's leap year for a birthday without one
LABELS = {"work": "work", "home": "home", "cell": "mobile", "mobile": "mobile", "other": "other"}
WRITTEN_TYPES = {"work": "WORK", "home": "HOME", "mobile": "CELL", "other": "OTHER"}
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
    is_group = any(_value(p).strip().lower() == "group" for p in _all(card, *KIND_PROPERTIES))
    name = _value(_first(card, "fn")).strip()
    members = frozenset(
        _value(p).strip().removeprefix("urn:uuid:") for p in _all(card, *MEMBER_PROPERTIES)
    )
    categories: set[str] = set()
    for prop in _all(card, "categories"):
        value = prop.value
        items = value if isinstance(value, list) else str(value).split(",")
        categories.update(str(v).strip() for v in items if str(v).strip())
    return Card(
        uid=_value(_first(card, "uid")).strip(),
        contact=Contact() if is_group else to_contact(card),
        tag=_value(_first(card, TAG_PROPERTY.lower())).strip(),
        categories=frozenset(categories),
        is_group=is_group,
        group_name=name if is_group else "",
        members=members if is_group else frozenset(),
        revised=_revised(_value(_first(card, "rev"))),
    )


def to_contact(card: Any) -> Contact:
    n = _first(card, "n")
    given = middle = family = ""
    if n is not None and hasattr(n.value, "given"):
        given, middle, family = (
            _joined(n.value.given),
            _joined(n.value.additional),
            _joined(n.value.family),
        )
    elif n is not None:
        parts = ([*str(n.value).split(";"), "", "", ""])[:3]
        family, given, middle = (p.strip() for p in parts)
    org = _first(card, "org")
    organization = ""
    if org is not None:
        value = org.value
        organization = str(value[0] if isinstance(value, list) and value else value or "")
    return Contact(
        given_name=given,
        middle_name=middle,
        family_name=family,
        display_name=own_display_name(_value(_first(card, "fn")).strip(), given, middle, family),
        emails=tuple(
            Email(_value(p).strip(), _label(p), _is_pref(p))
            for p in _all(card, "email")
            if _value(p).strip()
        ),
        phones=tuple(
            Phone(_value(p).strip().removeprefix("tel:"), _label(p), _is_pref(p))
            for p in _all(card, "tel")
            if _value(p).strip().removeprefix("tel:")
        ),
        organization=organization.strip(),
        job_title=_value(_first(card, "title")).strip(),
        addresses=tuple(a for p in _all(card, "adr") if (a := _address(p)) != Address(a.label)),
        birthday=_birthday(_first(card, "bday")),
        notes=_value(_first(card, "note")),
        websites=tuple(_value(p).strip() for p in _all(card, "url") if _value(p).strip()),
    )


# --- writing ---------------------------------------------------------------------------------


def new_card(contact: Contact, *, uid: str, tag: str, categories: Iterable[str] = ()) -> str:
    """A vCard 3.0 (what every server, iCloud included, takes) for a contact we create."""
    card = vobject.vCard()
    card.add("version").value = "3.0"
    card.add("uid").value = uid
    card.add(TAG_PROPERTY.lower()).value = tag
    if cats := sorted(set(categories)):
        card.add("categories").value = cats
    _write_fields(card, Contact(), contact, "3.0")
    return str(card.serialize())


def updated_card(text: str, before: Contact, after: Contact) -> str:
    """The card ``text`` with the fields that differ between ``before`` and ``after`` rewritten
    and everything else as it was."""
    card = parse(text)
    version = _value(_first(card, "version")).strip() or "3.0"
    _write_fields(card, before, after, version)
    return str(card.serialize())


def with_categories(text: str, add: Iterable[str]) -> str:
    """The card with these categories added (a contact we place in a group)."""
    card = parse(text)
    props = _all(card, "categories")
    have: list[str] = []
    for prop in props:
        value = prop.value
        have.extend(value if isinstance(value, list) else str(value).split(","))
        card.remove(prop)
    merged = have + [c for c in add if c not in have]
    if merged:
        card.add("categories").value = merged
    return str(card.serialize())


def with_member(text: str, uid: str, *, present: bool) -> str:
    """A group card with ``uid`` added to (or removed from) its members."""
    card = parse(text)
    member = f"urn:uuid:{uid}"
    found = [p for p in _all(card, *MEMBER_PROPERTIES) if _value(p).strip() == member]
    if present and not found:
        card.add(MEMBER_PROPERTIES[0].lower()).value = member
    if not present:
        for prop in found:
            card.remove(prop)
    return str(card.serialize())


def uid_for(tag: str) -> str:
    """The UID of the card we create for a mapping id: the same for every attempt."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"contactsync:{tag}")).upper()


def _write_fields(card: Any, before: Contact, after: Contact, version: str) -> None:
    v4 = version.startswith("4")
    if _names(before) != _names(after) or _first(card, "fn") is None:
        _replace_names(card, after)
    if before.emails != after.emails:
        _replace_list(card, "email", after.emails, str.casefold, v4)
    if before.phones != after.phones:
        _replace_list(card, "tel", after.phones, _digits, v4)
    if (before.organization, before.job_title) != (after.organization, after.job_title):
        _replace_org(card, after)
    if before.addresses != after.addresses:
        _replace_addresses(card, after.addresses)
    if before.birthday != after.birthday:
        _remove(card, "bday")
        if after.birthday:
            _add_birthday(card, after.birthday, v4)
    if before.notes != after.notes:
        _remove(card, "note")
        if after.notes:
            card.add("note").value = after.notes
    if before.websites != after.websites:
        kept = {_value(p).strip(): p for p in _all(card, "url")}
        _remove(card, "url")
        for site in after.websites:
            prop = kept.get(site)
            if prop is not None:
                card.add(prop)
            else:
                card.add("url").value = site


def _names(c: Contact) -> tuple[str, str, str, str]:
    return (c.given_name, c.middle_name, c.family_name, c.display_name)


def _replace_names(card: Any, c: Contact) -> None:
    old = _first(card, "n")
    prefix = suffix = ""
    if old is not None and hasattr(old.value, "prefix"):
        prefix, suffix = _joined(old.value.prefix), _joined(old.value.suffix)
    _remove(card, "n")
    _remove(card, "fn")
    card.add("n").value = vobject.vcard.Name(
        family=c.family_name,
        given=c.given_name,
        additional=c.middle_name,
        prefix=prefix,
        suffix=suffix,
    )
    # FN is required; a contact with no name at all shows its first email or phone.
    fallback = next((e.value for e in c.emails), "") or next((p.value for p in c.phones), "")
    card.add("fn").value = c.display_name or c.full_name or c.organization or fallback or "-"


def _replace_list(
    card: Any,
    name: str,
    wanted: tuple[Email, ...] | tuple[Phone, ...],
    identity: Callable[[str], str],
    v4: bool,
) -> None:
    kept: dict[str, Any] = {}
    for prop in _all(card, name):
        kept.setdefault(identity(_value(prop).strip()), prop)
    _remove(card, name)
    for item in wanted:
        prop = kept.get(identity(item.value))
        if prop is not None and _label(prop) == item.label and _is_pref(prop) == item.primary:
            uri = _value(prop).strip().startswith("tel:")  # a 4.0 TEL;VALUE=uri stays a URI
            prop.value = f"tel:{item.value}" if uri else item.value
            card.add(prop)
            continue
        new = card.add(name)
        new.value = item.value
        _set_type(new, item.label, item.primary, v4, internet=name == "email" and not v4)


def _replace_org(card: Any, c: Contact) -> None:
    old = _first(card, "org")
    units: list[str] = []
    if old is not None and isinstance(old.value, list):
        units = [str(u) for u in old.value[1:]]
    _remove(card, "org")
    _remove(card, "title")
    if c.organization or units:
        card.add("org").value = [c.organization, *units]
    if c.job_title:
        card.add("title").value = c.job_title


def _replace_addresses(card: Any, addresses: tuple[Address, ...]) -> None:
    kept = {_address_key(_address(p)): p for p in _all(card, "adr")}
    _remove(card, "adr")
    for a in addresses:
        prop = kept.get(_address_key(a))
        if prop is not None and _address(prop) == a:
            card.add(prop)
            continue
        new = card.add("adr")
        new.value = vobject.vcard.Address(
            street=a.street, city=a.city, region=a.region, code=a.postal_code, country=a.country
        )
        new.type_param = WRITTEN_TYPES.get(a.label, "OTHER")


def _add_birthday(card: Any, birthday: str, v4: bool) -> None:
    prop = card.add("bday")
    if birthday.startswith("--"):
        month, day = birthday[2:].split("-")
        if v4:
            prop.value = f"--{month}{day}"
        else:
            prop.value = f"{NO_YEAR}-{month}-{day}"
            prop.params["X-APPLE-OMIT-YEAR"] = [NO_YEAR]
    else:
        prop.value = birthday


def _set_type(prop: Any, label: str, primary: bool, v4: bool, *, internet: bool) -> None:
    types = [WRITTEN_TYPES.get(label, "OTHER")]
    if v4:
        types = [t.lower() for t in types]
        if primary:
            prop.params["PREF"] = ["1"]
    else:
        if internet:
            types.insert(0, "INTERNET")
        if primary:
            types.append("pref")
    prop.params["TYPE"] = types


# --- reading pieces --------------------------------------------------------------------------


def _all(card: Any, *names: str) -> list[Any]:
    props: list[Any] = []
    for name in names:
        props.extend(card.contents.get(name.lower(), []))
    return props


def _first(card: Any, name: str) -> Any:
    props = card.contents.get(name.lower())
    return props[0] if props else None


def _remove(card: Any, name: str) -> None:
    for prop in list(card.contents.get(name, [])):
        card.remove(prop)


def _value(prop: Any) -> str:
    if prop is None:
        return ""
    value = prop.value
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value or "")


def _joined(value: Any) -> str:
    if isinstance(value, list):
        return " ".join(str(v) for v in value if v).strip()
    return str(value or "").strip()


def _types(prop: Any) -> list[str]:
    types: list[str] = []
    for t in prop.params.get("TYPE", []):
        types.extend(x.strip().lower() for x in str(t).split(","))
    return types


def _label(prop: Any) -> str:
    for t in _types(prop):
        if t in LABELS:
            return LABELS[t]
    return "other"


def _is_pref(prop: Any) -> bool:
    return "pref" in _types(prop) or prop.params.get("PREF", [""])[0] in ("1", 1)


def _address(prop: Any) -> Address:
    value = prop.value
    label = _label(prop)
    if not hasattr(value, "street"):
        return Address(label=label)
    return Address(
        street=_joined(value.street),
        city=_joined(value.city),
        region=_joined(value.region),
        postal_code=_joined(value.code),
        country=_joined(value.country),
        label=label,
    )


def _address_key(a: Address) -> str:
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
    text = _value(prop).strip()
    match = _DATE.match(text)
    if not match:
        return ""
    year, month, day = match.groups()
    omitted = prop.params.get("X-APPLE-OMIT-YEAR", [""])[0]
    if year in ("--", omitted):
        return f"--{month}-{day}"
    return f"{year}-{month}-{day}"


def _digits(value: str) -> str:
    return "".join(ch for ch in value if ch.isdigit() or ch == "+")
