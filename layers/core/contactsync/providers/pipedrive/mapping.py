"""Pipedrive persons (v2) to and from the canonical contact.

A person carries one name (``name``, ``first_name``, ``last_name`` kept consistent), labelled
emails and phones (work, home, mobile, other; anything else is written as "other"), one
organization (by id: the adapter resolves names), and, only while the company has contact sync
on, a job title, a birthday with a year, notes and one postal address.
"""

from __future__ import annotations

from typing import Any

from contactsync.contacts.model import Address, Contact, Email, Phone
from contactsync.contacts.normalize import own_display_name

JSON = dict[str, Any]
EMAIL_LABELS = frozenset({"work", "home", "other"})
PHONE_LABELS = frozenset({"work", "home", "mobile", "other"})
NAME_KEYS = ("name", "first_name", "last_name")

# v2 person keys only read and written when the company has contact sync on -> our field.
CONTACT_SYNC_ONLY = {
    "job_title": "job_title",
    "birthday": "birthday",
    "notes": "notes",
    "postal_address": "addresses",
}


def normalize_org_name(name: str) -> str:
    """How two organization names are compared: case and spacing do not matter."""
    return " ".join(name.split()).casefold()


def person_fields(contact: Contact) -> JSON:
    """The person fields for ``contact`` (organization is resolved separately)."""
    given, family = contact.given_name.strip(), contact.family_name.strip()
    name = contact.display_name.strip() or " ".join(p for p in (given, family) if p)
    if not name:
        name = next((e.value for e in contact.emails), "") or "(no name)"
    birthday = contact.birthday if len(contact.birthday) == 10 else None  # no yearless dates
    return {
        "name": name,
        "first_name": given or None,
        "last_name": family or None,
        "emails": [
            {"value": e.value, "label": _label(e.label, EMAIL_LABELS), "primary": e.primary}
            for e in contact.emails
        ],
        "phones": [
            {"value": p.value, "label": _label(p.label, PHONE_LABELS), "primary": p.primary}
            for p in contact.phones
        ],
        "job_title": contact.job_title or None,
        "birthday": birthday,
        "notes": contact.notes or None,
        "postal_address": _postal(contact.addresses[0]) if contact.addresses else None,
    }


def contact_of(person: JSON, organization: str) -> Contact:
    """The canonical contact a person holds; ``organization`` is its organization's name."""
    first = (person.get("first_name") or "").strip()
    last = (person.get("last_name") or "").strip()
    name = (person.get("name") or "").strip()
    address = person.get("postal_address")
    return Contact(
        given_name=first,
        family_name=last,
        display_name=own_display_name(name, first, "", last),
        emails=tuple(
            Email(e["value"], e.get("label") or "work", bool(e.get("primary")))
            for e in person.get("emails") or []
            if (e.get("value") or "").strip()
        ),
        phones=tuple(
            Phone(p["value"], p.get("label") or "work", bool(p.get("primary")))
            for p in person.get("phones") or []
            if (p.get("value") or "").strip()
        ),
        organization=organization,
        job_title=person.get("job_title") or "",
        birthday=person.get("birthday") or "",
        notes=person.get("notes") or "",
        addresses=(_address(address),) if isinstance(address, dict) and address else (),
    )


def _label(label: str, allowed: frozenset[str]) -> str:
    return label if label in allowed else "other"


def _address(postal: JSON) -> Address:
    street = " ".join(p for p in (postal.get("route"), postal.get("street_number")) if p) or (
        "" if postal.get("locality") else postal.get("value") or ""
    )
    return Address(
        street=street,
        city=postal.get("locality") or "",
        region=postal.get("admin_area_level_1") or "",
        postal_code=postal.get("postal_code") or "",
        country=postal.get("country") or "",
    )


def _postal(address: Address) -> JSON | None:
    parts = {
        "route": address.street,
        "locality": address.city,
        "admin_area_level_1": address.region,
        "postal_code": address.postal_code,
        "country": address.country,
    }
    parts = {k: v for k, v in parts.items() if v}
    if not parts:
        return None
    line = ", ".join(
        p
        for p in (
            address.street,
            f"{address.postal_code} {address.city}".strip(),
            address.region,
            address.country,
        )
        if p
    )
    return {"value": line, **parts}
