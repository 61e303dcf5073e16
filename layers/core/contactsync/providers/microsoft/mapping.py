"""Outlook contacts (Graph properties) to and from the canonical contact.

Graph has fewer shapes than the canonical contact:
- emails: Graph keeps no label or primary flag; they read back as "work", the first is primary.
- phones: label home -> homePhones, the first mobile -> mobilePhone, anything else ->
  businessPhones (so an extra mobile reads back as "work"); read order is business, home,
  mobile, and the first is primary.
- addresses: one each of business (label work and unknown labels), home, other.
- websites: only the first fits (businessHomePage). Birthday without a year uses year 1604, the
  year Outlook uses for "no year".
"""

from __future__ import annotations

from typing import Any

from contactsync.contacts.model import Address, Contact, Email, Phone
from contactsync.contacts.normalize import own_display_name

NO_YEAR = "1604"  # Outlook's year for a birthday without one


def to_graph(c: Contact) -> dict[str, Any]:
    """Every Graph property we own, from a canonical contact (empty -> null / [])."""
    business: list[str] = []
    home: list[str] = []
    mobile: list[str] = []
    for phone in c.phones:
        {"home": home, "mobile": mobile}.get(phone.label, business).append(phone.value)
    business += mobile[1:]
    addresses: dict[str, dict[str, str]] = {}
    for a in c.addresses:
        key = {"home": "homeAddress", "other": "otherAddress"}.get(a.label, "businessAddress")
        graph_address = {
            "street": a.street,
            "city": a.city,
            "state": a.region,
            "postalCode": a.postal_code,
            "countryOrRegion": a.country,
        }
        addresses.setdefault(key, graph_address)
    return {
        "givenName": c.given_name or None,
        "middleName": c.middle_name or None,
        "surname": c.family_name or None,
        "displayName": c.display_name or c.full_name,
        "emailAddresses": [{"address": e.value, "name": e.value} for e in c.emails],
        "businessPhones": business,
        "homePhones": home,
        "mobilePhone": mobile[0] if mobile else None,
        "companyName": c.organization or None,
        "jobTitle": c.job_title or None,
        "businessAddress": addresses.get("businessAddress", {}),
        "homeAddress": addresses.get("homeAddress", {}),
        "otherAddress": addresses.get("otherAddress", {}),
        "businessHomePage": c.websites[0] if c.websites else None,
        "birthday": _graph_birthday(c.birthday),
        "personalNotes": c.notes,
    }


def changed_properties(before: Contact, after: Contact) -> dict[str, Any]:
    """Only the Graph properties that differ (arrays go whole: Graph replaces them whole)."""
    old, new = to_graph(before), to_graph(after)
    return {key: value for key, value in new.items() if old.get(key) != value}


def from_graph(item: dict[str, Any]) -> Contact:
    def text(key: str) -> str:
        return str(item.get(key) or "")

    emails = [str(e.get("address") or "") for e in item.get("emailAddresses") or []]
    phones = [(str(p), "work") for p in item.get("businessPhones") or []]
    phones += [(str(p), "home") for p in item.get("homePhones") or []]
    if item.get("mobilePhone"):
        phones.append((text("mobilePhone"), "mobile"))
    addresses = []
    for key, label in (("businessAddress", "work"), ("homeAddress", "home"),
                       ("otherAddress", "other")):  # fmt: skip
        a = item.get(key) or {}
        address = Address(
            street=str(a.get("street") or ""),
            city=str(a.get("city") or ""),
            region=str(a.get("state") or ""),
            postal_code=str(a.get("postalCode") or ""),
            country=str(a.get("countryOrRegion") or ""),
            label=label,
        )
        if address != Address(label=label):
            addresses.append(address)
    return Contact(
        given_name=text("givenName"),
        middle_name=text("middleName"),
        family_name=text("surname"),
        display_name=own_display_name(
            text("displayName"), text("givenName"), text("middleName"), text("surname")
        ),
        emails=tuple(Email(v, "work", i == 0) for i, v in enumerate(e for e in emails if e)),
        phones=tuple(Phone(v, label, i == 0) for i, (v, label) in enumerate(phones)),
        organization=text("companyName"),
        job_title=text("jobTitle"),
        addresses=tuple(addresses),
        birthday=_canonical_birthday(text("birthday")),
        notes=text("personalNotes"),
        websites=(text("businessHomePage"),) if item.get("businessHomePage") else (),
    )


def _graph_birthday(birthday: str) -> str | None:
    if not birthday:
        return None
    if birthday.startswith("--"):
        return f"{NO_YEAR}-{birthday[2:]}T00:00:00Z"
    return f"{birthday}T00:00:00Z"


def _canonical_birthday(value: str) -> str:
    day = value[:10]
    if len(day) < 10:
        return ""
    return f"--{day[5:]}" if day.startswith(NO_YEAR) else day
