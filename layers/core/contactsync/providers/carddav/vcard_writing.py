"""Writing vCards: a new card for a contact we create, and a card the server holds with only the
fields whose canonical value changed rewritten (every other property, and a kept entry's own
parameters and group, go back untouched), its group members or categories changed.

We write vCard 3.0 for a new card (what every server, iCloud included, takes) and keep a card's
own version when we edit it. Labels are written as TYPE work/home/cell/other; primary as
``TYPE=pref`` (3.0) or ``PREF=1`` (4.0); a birthday without a year as ``--MMDD`` in 4.0 and in
Apple's ``X-APPLE-OMIT-YEAR=1604`` form in 3.0.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from typing import Any

import vobject

from contactsync.contacts.model import Address, Contact, Email, Phone
from contactsync.providers.carddav.vcard import (
    MEMBER_PROPERTIES,
    TAG_PROPERTY,
    address_key,
    address_of,
    all_props,
    first_prop,
    is_pref,
    joined,
    label_of,
    parse,
    value_of,
)

NO_YEAR = "1604"  # Apple's leap year for a birthday without one
WRITTEN_TYPES = {"work": "WORK", "home": "HOME", "mobile": "CELL", "other": "OTHER"}


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
    version = value_of(first_prop(card, "version")).strip() or "3.0"
    _write_fields(card, before, after, version)
    return str(card.serialize())


def with_categories(text: str, add: Iterable[str]) -> str:
    """The card with these categories added (a contact we place in a group)."""
    card = parse(text)
    props = all_props(card, "categories")
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
    found = [p for p in all_props(card, *MEMBER_PROPERTIES) if value_of(p).strip() == member]
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
    if _names(before) != _names(after) or first_prop(card, "fn") is None:
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
        kept = {value_of(p).strip(): p for p in all_props(card, "url")}
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
    old = first_prop(card, "n")
    prefix = suffix = ""
    if old is not None and hasattr(old.value, "prefix"):
        prefix, suffix = joined(old.value.prefix), joined(old.value.suffix)
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
    for prop in all_props(card, name):
        kept.setdefault(identity(value_of(prop).strip()), prop)
    _remove(card, name)
    for item in wanted:
        prop = kept.get(identity(item.value))
        if prop is not None and label_of(prop) == item.label and is_pref(prop) == item.primary:
            uri = value_of(prop).strip().startswith("tel:")  # a 4.0 TEL;VALUE=uri stays a URI
            prop.value = f"tel:{item.value}" if uri else item.value
            card.add(prop)
            continue
        new = card.add(name)
        new.value = item.value
        _set_type(new, item.label, item.primary, v4, internet=name == "email" and not v4)


def _replace_org(card: Any, c: Contact) -> None:
    old = first_prop(card, "org")
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
    kept = {address_key(address_of(p)): p for p in all_props(card, "adr")}
    _remove(card, "adr")
    for a in addresses:
        prop = kept.get(address_key(a))
        if prop is not None and address_of(prop) == a:
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


def _remove(card: Any, name: str) -> None:
    for prop in list(card.contents.get(name, [])):
        card.remove(prop)


def _digits(value: str) -> str:
    return "".join(ch for ch in value if ch.isdigit() or ch == "+")
