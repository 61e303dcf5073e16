"""Reading every member's address books (the CRM, Outlook, Google and, for some, CardDAV), and the
audit log, into the checker's terms."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
from contactsync.store.audit import list_audit_page

from local.stack import LocalStack
from tests.chaos.address_book import AddressBook
from tests.chaos.address_book import Card as DavCard
from tests.chaos.ledger import SIDES, Card, World, phone_keys, value_key

MY_CONTACTS = "contactGroups/myContacts"


@dataclass
class DavAccount:
    """A member's account on the stack's CardDAV server and the address book they sync (or the
    group card in it), with the client their phone uses, straight on the server."""

    username: str
    password: str = field(repr=False)
    book: AddressBook = field(repr=False)
    folder_name: str  # the book or group as the connection's list of groups names it
    server_url: str  # where the service reaches the server (through the fault proxy)

    def new_password(self, password: str) -> None:
        """The user made a new app-specific password and gave it to their phone too."""
        self.password = password
        self.book.http.auth = httpx.BasicAuth(self.username, password)


@dataclass
class Member:
    """One user of the company: their CRM user, mailbox, Google account, maybe a CardDAV account,
    and a connection for each."""

    key: str  # "u1"
    crm_user: int
    graph_user: str
    folder: str  # the synced Outlook folder
    elsewhere: str  # another Outlook folder, where moved-out contacts go
    google_email: str
    google_group: str
    token: str = field(repr=False)
    connections: dict[str, str] = field(default_factory=dict)  # "outlook"/... -> id
    # "outlook"/"google"/"carddav" (when it has one) -> two_way, to_crm or to_provider
    directions: dict[str, str] = field(
        default_factory=lambda: {"outlook": "two_way", "google": "two_way"}
    )
    carddav: DavAccount | None = None

    @property
    def one_way(self) -> bool:
        return set(self.directions.values()) != {"two_way"}

    @property
    def sides(self) -> tuple[str, ...]:
        return tuple(s for s in SIDES if s == "crm" or s in self.directions)


def read_world(stack: LocalStack, members: list[Member]) -> World:
    world = World()
    for m in members:
        crm = [p for p in stack.pipedrive.sandbox.persons_of(m.crm_user)]
        world.inside[m.key, "crm"] = [_crm_card(p) for p in crm]
        mailbox = [
            c for c in list(stack.graph.sandbox.contacts.values()) if c.user_id == m.graph_user
        ]
        world.inside[m.key, "outlook"] = [
            _outlook_card(c.props, c.id) for c in mailbox if c.folder_id == m.folder
        ]
        world.outside[m.key, "outlook"] = [
            _outlook_card(c.props, c.id) for c in mailbox if c.folder_id != m.folder
        ]
        people = stack.google.sandbox.contacts(m.google_email)
        people = [p for p in people if not (p.get("metadata") or {}).get("deleted")]
        inside = [p for p in people if m.google_group in _groups(p)]
        world.inside[m.key, "google"] = [_google_card(p) for p in inside]
        world.outside[m.key, "google"] = [_google_card(p) for p in people if p not in inside]
        if m.carddav is not None:
            book = m.carddav.book
            cards = book.cards()
            group = book.members(cards)
            contacts = [c for c in cards if not c.is_group]
            world.inside[m.key, "carddav"] = [
                _carddav_card(c) for c in contacts if group is None or c.uid in group
            ]
            world.outside[m.key, "carddav"] = [
                _carddav_card(c) for c in contacts if group is not None and c.uid not in group
            ]
    return world


def _card(email: str, job_title: Any, notes: Any, phones: list[str], contact_id: str) -> Card:
    return Card(
        id=contact_id,
        email=email.strip().lower(),
        job_title=value_key("job_title", str(job_title or "")),
        notes=value_key("notes", str(notes or "")),
        phones=phone_keys(phones),
    )


def _crm_card(person: Any) -> Card:
    email = person.emails[0]["value"] if person.emails else ""
    phones = [p["value"] for p in person.phones]
    return _card(email, person.job_title, person.notes, phones, str(person.id))


def _outlook_card(props: dict[str, Any], contact_id: str) -> Card:
    emails = props.get("emailAddresses") or []
    phones = [*(props.get("businessPhones") or []), *(props.get("homePhones") or [])]
    if props.get("mobilePhone"):
        phones.append(props["mobilePhone"])
    email = emails[0].get("address", "") if emails else ""
    return _card(email, props.get("jobTitle"), props.get("personalNotes"), phones, contact_id)


def _google_card(person: dict[str, Any]) -> Card:
    emails = person.get("emailAddresses") or []
    orgs = person.get("organizations") or [{}]
    bios = person.get("biographies") or [{}]
    phones = [p.get("value", "") for p in person.get("phoneNumbers") or []]
    email = emails[0].get("value", "") if emails else ""
    rn = str(person.get("resourceName", ""))
    return _card(email, orgs[0].get("title"), bios[0].get("value"), phones, rn)


def _carddav_card(card: DavCard) -> Card:
    return _card(card.email, card.value("TITLE"), card.value("NOTE"), card.values("TEL"), card.path)


def _groups(person: dict[str, Any]) -> set[str]:
    return {
        m.get("contactGroupMembership", {}).get("contactGroupResourceName", "")
        for m in person.get("memberships") or []
    }


def _audit(connection_id: str) -> list[Any]:
    entries: list[Any] = []
    cursor: str | None = None
    while True:
        page, cursor = list_audit_page(connection_id, limit=200, cursor=cursor)
        entries.extend(page)
        if cursor is None or not page:
            return entries


def _emails_by_id(stack: LocalStack, members: list[Member]) -> dict[str, str]:
    """Every id a contact ever had on any side (deleted ones too), to its email."""
    ids: dict[str, str] = {}
    for person in list(stack.pipedrive.sandbox.persons.values()):
        if person.emails:
            ids[str(person.id)] = person.emails[0]["value"].lower()
    for contact in list(stack.graph.sandbox.contacts.values()):
        emails = contact.props.get("emailAddresses") or []
        if emails:
            ids[contact.id] = str(emails[0].get("address", "")).lower()
    for m in members:
        for person in stack.google.sandbox.contacts(m.google_email):
            emails = person.get("emailAddresses") or []
            if emails:
                ids[str(person.get("resourceName"))] = str(emails[0].get("value", "")).lower()
        if m.carddav is not None:
            ids.update((card.path, card.email) for card in m.carddav.book.cards() if card.email)
    return ids


def unrecorded_graph_creates(stack: LocalStack, members: list[Member]) -> list[str]:
    """Contacts we made in Outlook (they carry our tag, a mapping id) that no audit entry names:
    made, but never recorded by a pass, so never linked. Each as "time email tag id"."""
    recorded = {
        entry.mapping_id
        for m in members
        for connection_id in m.connections.values()
        for entry in _audit(connection_id)
    }
    unrecorded = []
    for contact in list(stack.graph.sandbox.made):
        tags = [str(v) for v in contact.extended.values()]
        if tags and not set(tags) & recorded:
            emails = [str(e.get("address", "")) for e in contact.props.get("emailAddresses") or []]
            at = contact.created.isoformat()
            unrecorded.append(f"{at} {','.join(emails)} {tags[0]} {contact.id}")
    return unrecorded


def graph_create_tags(stack: LocalStack, email: str) -> list[str]:
    """The tags (mapping ids) of every create of this person sent to Graph, in order."""
    tags = []
    for request in list(stack.graph.sandbox.requests):
        body = request.get("body")
        if request["method"] != "POST" or not isinstance(body, dict):
            continue
        addresses = [str(e.get("address", "")).lower() for e in body.get("emailAddresses") or []]
        if email in addresses:
            tags += [str(p.get("value")) for p in body.get("singleValueExtendedProperties") or []]
    return tags


def audit_trail(
    stack: LocalStack, members: list[Member], email: str, gone: dict[str, str], owner: str = ""
) -> list[str]:
    """Every audit entry about one person, on every connection, oldest first (for a failure),
    and the owner's connection-wide ones (passes held, failed, confirmed).
    ``gone``: ids of copies deleted since (id -> email), which the sides no longer show."""
    emails = {**gone, **_emails_by_id(stack, members)}
    tags = set(graph_create_tags(stack, email))
    lines = [f"(Graph was asked to create it with tags {sorted(tags)})"]
    for m in members:
        for provider, connection_id in m.connections.items():
            for entry in _audit(connection_id):
                ids = (emails.get(entry.crm_id or ""), emails.get(entry.provider_id or ""))
                everyone = m.key == owner and not (entry.crm_id or entry.provider_id)
                if email in ids or entry.mapping_id in tags or everyone:
                    lines.append(
                        f"{entry.sk[4:30]} {m.key}/{provider} {entry.kind}: {entry.message} "
                        f"[{entry.mapping_id} {entry.crm_id} {entry.provider_id}]"
                    )
    return sorted(lines)
