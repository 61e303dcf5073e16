"""People API persons to and from the canonical contact.

- names: given/middle/family plus ``unstructuredName`` for the display name (Google keeps both
  as sent; we write the full name there when the contact has no display name, as Graph does).
- labels: Google ``type`` home/work/other/mobile map to the same label, workMobile to mobile,
  every other type (fax, pager, main, custom text) reads as "other"; an empty type too.
- primary: written as ``metadata.sourcePrimary`` (``primary`` is output only), read from either.
- organization/job title: the first organization. Birthday: ``date`` {year?, month, day};
  no year is "--MM-DD". Notes: the first biography (plain text). Websites: ``urls`` values.

An update is rebuilt on the person as Google holds it (``rebuilt``), so sub-values we do not
model (an address's PO box, a custom email type, a second organization, a name prefix) survive.
"""

from __future__ import annotations

from typing import Any

from contactsync.contacts.model import Address, Contact, Email, Phone
from contactsync.contacts.normalize import own_display_name

TAG_KEY = "contactsync.mapping"  # the clientData key carrying our mapping id
# The person fields we model, in updatePersonFields names.
MODELLED = (
    "names",
    "emailAddresses",
    "phoneNumbers",
    "organizations",
    "addresses",
    "birthdays",
    "biographies",
    "urls",
)

# The keys of an entry we write (anything else a person holds is kept as it was), and the
# output-only keys we must not send back.
WRITTEN_KEYS = {
    "names": {"givenName", "middleName", "familyName", "unstructuredName"},
    "emailAddresses": {"value", "type"},
    "phoneNumbers": {"value", "type"},
    "organizations": {"name", "title"},
    "addresses": {"streetAddress", "city", "region", "postalCode", "country", "type"},
    "birthdays": {"date", "text"},
    "biographies": {"value", "contentType"},
    "urls": {"value", "type"},
}
OUTPUT_ONLY = {
    "metadata",
    "displayName",
    "displayNameLastFirst",
    "formattedType",
    "canonicalForm",
    "formattedValue",
    "phoneticFullName",
}
LABELS = {"home": "home", "work": "work", "other": "other", "mobile": "mobile"}
LABELS_MORE = {"workmobile": "mobile"}


def to_person(c: Contact) -> dict[str, Any]:
    """Every person field we model, from a canonical contact (an empty field is ``[]``)."""
    name = {
        key: value
        for key, value in (
            ("givenName", c.given_name),
            ("middleName", c.middle_name),
            ("familyName", c.family_name),
            ("unstructuredName", c.display_name or c.full_name),
        )
        if value
    }
    organization = {k: v for k, v in (("name", c.organization), ("title", c.job_title)) if v}
    addresses = []
    for a in c.addresses:
        parts = (
            ("streetAddress", a.street),
            ("city", a.city),
            ("region", a.region),
            ("postalCode", a.postal_code),
            ("country", a.country),
            ("type", a.label),
        )
        addresses.append({k: v for k, v in parts if v})
    birthday = _google_date(c.birthday)
    return {
        "names": [name] if name else [],
        "emailAddresses": [_valued(e.value, e.label, e.primary) for e in c.emails],
        "phoneNumbers": [_valued(p.value, p.label, p.primary) for p in c.phones],
        "organizations": [organization] if organization else [],
        "addresses": addresses,
        "birthdays": [{"date": birthday}] if birthday else [],
        "biographies": [{"value": c.notes, "contentType": "TEXT_PLAIN"}] if c.notes else [],
        "urls": [{"value": w} for w in c.websites],
    }


def from_person(person: dict[str, Any]) -> Contact:
    """The canonical contact a person holds (fields we do not model are left out)."""
    names = person.get("names") or []
    name = next((n for n in names if _from_contact(n)), names[0] if names else {})
    organization = (person.get("organizations") or [{}])[0]
    addresses = tuple(
        Address(
            street=str(a.get("streetAddress") or ""),
            city=str(a.get("city") or ""),
            region=str(a.get("region") or ""),
            postal_code=str(a.get("postalCode") or ""),
            country=str(a.get("country") or ""),
            label=_label(a.get("type")),
        )
        for a in person.get("addresses") or []
    )
    biographies = person.get("biographies") or []
    return Contact(
        given_name=str(name.get("givenName") or ""),
        middle_name=str(name.get("middleName") or ""),
        family_name=str(name.get("familyName") or ""),
        display_name=own_display_name(
            str(name.get("unstructuredName") or name.get("displayName") or ""),
            str(name.get("givenName") or ""),
            str(name.get("middleName") or ""),
            str(name.get("familyName") or ""),
        ),
        emails=tuple(
            Email(str(e["value"]), _label(e.get("type")), is_primary(e))
            for e in person.get("emailAddresses") or []
            if e.get("value")
        ),
        phones=tuple(
            Phone(str(p["value"]), _label(p.get("type")), is_primary(p))
            for p in person.get("phoneNumbers") or []
            if p.get("value")
        ),
        organization=str(organization.get("name") or ""),
        job_title=str(organization.get("title") or ""),
        addresses=tuple(a for a in addresses if a != Address(label=a.label)),
        birthday=_canonical_birthday(person.get("birthdays") or []),
        notes=str(biographies[0].get("value") or "") if biographies else "",
        websites=tuple(str(u["value"]) for u in person.get("urls") or [] if u.get("value")),
    )


def person_fields_changed(before: Contact, after: Contact) -> list[str]:
    """The updatePersonFields names whose value differs between two contacts."""
    old, new = to_person(before), to_person(after)
    return [f for f in MODELLED if old[f] != new[f]]


def rebuilt(
    current: dict[str, Any], wanted: dict[str, Any], mask: tuple[str, ...]
) -> dict[str, Any]:
    """The update body: the masked fields as we want them, built on the current entries so
    what we do not model stays, plus the etag and sources Google checks."""
    body: dict[str, Any] = {
        "resourceName": current["resourceName"],
        "etag": current.get("etag", ""),
        "metadata": {"sources": (current.get("metadata") or {}).get("sources") or []},
    }
    for field in mask:
        had = list(current.get(field) or [])
        if field in ("names", "organizations", "birthdays", "biographies"):
            # One entry is ours (the first); further organizations stay as they are.
            first = [_kept(field, had[0] if had else {}, w) for w in wanted[field][:1]]
            body[field] = first + (had[1:] if field == "organizations" else [])
        else:
            by_identity = {_identity(field, e): e for e in reversed(had)}
            body[field] = [
                _kept(field, by_identity.get(_identity(field, w), {}), w) for w in wanted[field]
            ]
    return body


def _kept(field: str, had: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    """``wanted`` on top of what ``had`` holds beyond our keys; a type that reads as the same
    label (workMobile for "mobile", a custom type for "other") is kept as the user set it."""
    entry = {k: v for k, v in had.items() if k not in WRITTEN_KEYS[field] | OUTPUT_ONLY}
    entry.update(wanted)
    if had.get("type") and _label(had["type"]) == _label(wanted.get("type")):
        entry["type"] = had["type"]
    return entry


def _identity(field: str, entry: dict[str, Any]) -> str:
    if field == "addresses":
        keys = ("streetAddress", "city", "postalCode", "country")
        return "|".join(str(entry.get(k) or "").strip().casefold() for k in keys)
    value = str(entry.get("value") or "")
    if field == "phoneNumbers":
        return "".join(ch for ch in value if ch.isdigit() or ch == "+")
    return value.strip().casefold()


def _valued(value: str, label: str, primary: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"value": value, "type": label}
    if primary:
        entry["metadata"] = {"sourcePrimary": True}
    return entry


def _label(google_type: Any) -> str:
    key = str(google_type or "").strip().lower()
    return LABELS.get(key) or LABELS_MORE.get(key) or "other"


def is_primary(entry: dict[str, Any]) -> bool:
    metadata = entry.get("metadata") or {}
    return bool(metadata.get("primary") or metadata.get("sourcePrimary"))


def _from_contact(entry: dict[str, Any]) -> bool:
    source = (entry.get("metadata") or {}).get("source") or {}
    return source.get("type") == "CONTACT"


def _google_date(birthday: str) -> dict[str, int] | None:
    """A canonical birthday ("YYYY-MM-DD" or "--MM-DD") as a Google Date; no year, no key."""
    try:
        if birthday.startswith("--"):
            month, day = birthday[2:].split("-")
            return {"month": int(month), "day": int(day)}
        year, month, day = birthday.split("-")
        return {"year": int(year), "month": int(month), "day": int(day)}
    except ValueError:
        return None


def _canonical_birthday(birthdays: list[dict[str, Any]]) -> str:
    for entry in birthdays:
        date = entry.get("date") or {}
        month, day = int(date.get("month") or 0), int(date.get("day") or 0)
        if month and day:
            year = int(date.get("year") or 0)
            return f"{year:04d}-{month:02d}-{day:02d}" if year else f"--{month:02d}-{day:02d}"
    return ""


def tag_of(person: dict[str, Any]) -> str:
    for data in person.get("clientData") or []:
        if data.get("key") == TAG_KEY:
            return str(data.get("value") or "")
    return ""
