"""Matching unmapped contacts across the two sides before anything is created.

Keys are tried in order: normalised email, then normalised phone, then the normalised full name
together with the normalised organisation (only for contacts that have a name). At each key, the
contacts still unmatched are grouped by the keys they share with the *other* side:

- a group of exactly one CRM contact and one provider contact is a match (a link);
- any bigger group (one contact matching several, or several on one side sharing the key) is a
  possible duplicate: nothing in it is linked or created, a person has to decide.

Two contacts on the *same* side sharing an email are a possible duplicate too, even with nothing
like them on the other side: copying both would make the other side hold the same person twice.
(Only emails: two people sharing a phone, a family's or an office's, are common and distinct.)

A contact whose first matching key already settled it is never looked at by a later key, so
matching can never link one contact to two.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from contactsync.contacts.model import Contact
from contactsync.contacts.normalize import email_key, name_key, phone_key
from contactsync.engine.grouping import Group, linked_groups
from contactsync.providers.base import RemoteContact

AMBIGUOUS = "ambiguous match: possible duplicate"
"""The ``skipped`` reason for every contact of a duplicate candidate."""


@dataclass(frozen=True)
class DuplicateCandidate:
    crm_ids: tuple[str, ...]
    provider_ids: tuple[str, ...]
    key: str  # the shared match key ("email:bob@x.com")
    reason: str


@dataclass(frozen=True)
class Match:
    """One CRM contact and one provider contact that are the same person."""

    crm: RemoteContact
    provider: RemoteContact
    key: str  # the match key they share


@dataclass(frozen=True)
class MatchResult:
    matches: tuple[Match, ...]
    duplicates: tuple[DuplicateCandidate, ...]
    skipped: tuple[tuple[str, str], ...]  # (contact id, reason): out of scope or ambiguous
    unmatched_crm: tuple[RemoteContact, ...]  # in scope, nothing like them on the provider side
    unmatched_provider: tuple[RemoteContact, ...]


def email_keys(contact: Contact) -> set[str]:
    """A contact's email addresses as compared (blank ones left out)."""
    return {k for e in contact.emails if (k := email_key(e.value))}


def _email_keys(contact: Contact, region: str) -> set[str]:
    return {f"email:{k}" for k in email_keys(contact)}


def _phone_keys(contact: Contact, region: str) -> set[str]:
    return {f"phone:{phone_key(p.value, region)}" for p in contact.phones if p.value.strip()}


def _name_keys(contact: Contact, region: str) -> set[str]:
    name = name_key(contact.full_name)
    return {f"name:{name}|{name_key(contact.organization)}"} if name else set()


MATCH_KEYS: tuple[Callable[[Contact, str], set[str]], ...] = (_email_keys, _phone_keys, _name_keys)
"""The match keys of a contact, strongest first."""

_Node = tuple[str, str]  # ("crm" | "provider", contact id)


def _across_sides(key: str, holders: Sequence[_Node]) -> bool:
    """A key links contacts when both sides hold it."""
    return len({side for side, _ in holders}) == 2


def _across_or_within_sides(key: str, holders: Sequence[_Node]) -> bool:
    """A key links contacts when both sides hold it, or two contacts of one side do."""
    return _across_sides(key, holders) or len(holders) > 1


def duplicate_clusters(contacts: Sequence[RemoteContact], region: str) -> list[Group[str]]:
    """Contacts of one side that look like one person: they share a match key (normalised
    email, phone, or name + organisation), directly or through each other. Groups of two or
    more contact ids, with the keys they share."""
    keys = {
        c.id: {k for keys_of in MATCH_KEYS for k in keys_of(c.contact, region)} for c in contacts
    }
    return linked_groups(keys)


def match_unmapped(
    crm: Sequence[RemoteContact], provider: Sequence[RemoteContact], region: str
) -> MatchResult:
    """Pair up unmapped contacts one to one; report what is ambiguous or out of scope."""
    skipped = [
        (c.id, c.scope_reason or "out of scope") for c in (*crm, *provider) if not c.in_scope
    ]
    left: dict[_Node, RemoteContact] = {("crm", c.id): c for c in crm if c.in_scope}
    left.update({("provider", c.id): c for c in provider if c.in_scope})
    matches: list[Match] = []
    duplicates: list[DuplicateCandidate] = []
    for keys_of in MATCH_KEYS:
        keys = {node: keys_of(remote.contact, region) for node, remote in left.items()}
        links = _across_or_within_sides if keys_of is _email_keys else _across_sides
        for group in linked_groups(keys, links):
            nodes, shared = group.items, group.keys
            crm_ids = tuple(node[1] for node in nodes if node[0] == "crm")
            provider_ids = tuple(node[1] for node in nodes if node[0] == "provider")
            if len(crm_ids) == 1 and len(provider_ids) == 1:
                pair = [left[n] for n in (("crm", crm_ids[0]), ("provider", provider_ids[0]))]
                matches.append(Match(pair[0], pair[1], shared[0]))
            else:
                reason = (
                    f"{len(crm_ids)} CRM and {len(provider_ids)} provider contacts share "
                    f"{', '.join(shared)}; link them by hand"
                )
                if not crm_ids or not provider_ids:
                    where = "CRM" if crm_ids else "provider"
                    reason = (
                        f"{len(nodes)} {where} contacts share {', '.join(shared)}: none is "
                        "copied until they are merged or told apart by hand"
                    )
                duplicates.append(DuplicateCandidate(crm_ids, provider_ids, shared[0], reason))
                skipped.extend((i, AMBIGUOUS) for i in (*crm_ids, *provider_ids))
            for node in nodes:
                del left[node]
    return MatchResult(
        matches=tuple(matches),
        duplicates=tuple(duplicates),
        skipped=tuple(skipped),
        unmatched_crm=tuple(r for (side, _), r in left.items() if side == "crm"),
        unmatched_provider=tuple(r for (side, _), r in left.items() if side == "provider"),
    )
