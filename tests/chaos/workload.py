"""The chaos run's actors: the company and its users, the seeded random workload they perform in
their address books (the CRM, Outlook, Google and, for some, CardDAV), the fault switchboard,
the reconciler's crash hook, and the user who answers the service when it asks (sign in again,
confirm a held pass).

Every random choice comes from one ``random.Random(seed)``; the order in which the service's
threads interleave does not, so a replay repeats the workload and the faults, not the timing.
"""

from __future__ import annotations

import os
import random
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import httpx
from contactsync.providers.google.mapping import TAG_KEY as GOOGLE_TAG
from contactsync.store.mappings import mapping_by_provider_id

from local.carddav_faults import DavFaults
from local.stack import LocalStack
from sandbox.google.state import SYNC_LAG
from sandbox.pipedrive.delivery import DeliveryMode
from tests.chaos.address_book import (
    TAG,
    AddressBook,
    contact_card,
    group_card,
    new_uid,
    with_property,
    with_values,
)
from tests.chaos.ledger import FIELDS, PROVIDER_SIDES, Intended, Ledger, value_key
from tests.chaos.world import MY_CONTACTS, DavAccount, Member

FOLDER = "CRM contacts"
DAV_FIELDS = {"job_title": "TITLE", "notes": "NOTE"}
DROPS = os.environ.get("CHAOS_DROPS", "1") == "1"  # lost pushes among the faults (dropping())
TITLES = ["Engineer", "Buyer", "Director", "Analyst", "Founder", "Counsel", "Designer"]
AREAS = ["212", "415", "617", "312", "206", "512"]


# --- the company ----------------------------------------------------------------------------


class Api:
    """The admin API as one user's browser calls it (consent pages approve at once)."""

    def __init__(self, stack: LocalStack, member: Member) -> None:
        self.stack = stack
        self.member = member
        self.http = httpx.Client(
            base_url=stack.api_url,
            headers={"authorization": f"Bearer {member.token}"},
            timeout=30,
        )

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError:
            if method != "GET":
                raise
            # A kept-alive connection the server closed as it was reused: a browser asks again.
            response = self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path} -> {response.status_code}: {response.text}")
        return response.json()

    def consent(self, url: str, provider: str) -> None:
        """Follow the provider's consent page back to our callback, signed in as this user."""
        hint = self.member.google_email if provider != "pipedrive" else ""
        if hint:
            url += f"&login_hint={quote(hint)}"
        verify: Any = self.stack.graph.ca_file if provider == "microsoft" else True
        page = httpx.get(url, follow_redirects=False, verify=verify, timeout=30)
        if page.status_code not in (302, 303):
            raise RuntimeError(f"consent failed: {page.status_code} {page.text}")
        callback = self.http.post(page.headers["location"])
        if callback.status_code != 200:
            raise RuntimeError(f"callback failed: {callback.status_code} {callback.text}")

    def connect_crm(self) -> None:
        self.stack.pipedrive.sandbox.login_as(self.member.crm_user)
        self.consent(self.call("POST", "/crm/connect")["authorization_url"], "pipedrive")

    def connect(self, provider: str, folder_name: str, direction: str = "two_way") -> str:
        created = self.call("POST", "/connections", json={"provider": provider})
        self.consent(created["authorization_url"], provider)
        connection_id = str(created["connection"]["id"])
        groups = self.call("GET", f"/connections/{connection_id}/groups")["groups"]
        folder = next(g for g in groups if g["name"] == folder_name)
        body = {"folder_id": folder["id"], "direction": direction}
        self.call("PATCH", f"/connections/{connection_id}", json=body)
        self.call("POST", f"/connections/{connection_id}/start")
        return connection_id

    def connect_carddav(self, account: DavAccount, direction: str) -> str:
        """Server, username and app-specific password, as for iCloud; then the book or group."""
        body = {
            "provider": "carddav",
            "server_url": account.server_url,
            "username": account.username,
            "password": account.password,
        }
        connection_id = str(self.call("POST", "/connections", json=body)["connection"]["id"])
        groups = self.call("GET", f"/connections/{connection_id}/groups")["groups"]
        folder = next(g for g in groups if g["name"] == account.folder_name)
        body = {"folder_id": folder["id"], "direction": direction}
        self.call("PATCH", f"/connections/{connection_id}", json=body)
        self.call("POST", f"/connections/{connection_id}/start")
        return connection_id

    def reconnect(self, connection_id: str, provider: str) -> None:
        if provider == "carddav":
            assert self.member.carddav is not None
            body = {"password": self.member.carddav.password}
            self.call("POST", f"/connections/{connection_id}/reconnect", json=body)
            return
        url = self.call("POST", f"/connections/{connection_id}/reconnect")["authorization_url"]
        self.consent(url, provider)


def found_company(stack: LocalStack, users: int) -> list[Member]:
    """A company with ``users`` users, each with a mailbox and a Google account."""
    pd, gs, google = stack.pipedrive.sandbox, stack.graph.sandbox, stack.google.sandbox
    company = pd.add_company("Chaos Inc", contact_sync=True)  # every field is in the oracle
    members = []
    for i in range(1, users + 1):
        email = f"user{i}@chaos.example"
        crm_user = pd.add_user(company, f"User {i}", email)
        graph_user = gs.add_user(email, f"User {i}")
        google.add_user(email, f"User {i}")
        members.append(
            Member(
                key=f"u{i}",
                crm_user=crm_user,
                graph_user=graph_user,
                folder=gs.add_folder(graph_user, FOLDER),
                elsewhere=gs.add_folder(graph_user, "Private"),
                google_email=email,
                google_group=google.add_group(email, FOLDER),
                token=stack.token(crm_user, company),
            )
        )
    return members


def open_address_book(
    stack: LocalStack, m: Member, direction: str, server_url: str, *, group: bool
) -> None:
    """An account for ``m`` on the stack's CardDAV server with an address book: synced whole, or
    (``group``) through an Apple group card in it, as iCloud keeps groups. ``server_url`` is
    where the service reaches the server (the fault proxy); the user's phone reaches it directly."""
    username = f"user{m.key[1:]}"
    stack.carddav.set_password(username, secrets.token_urlsafe(12))
    name = "Contacts" if group else FOLDER
    book_url = stack.carddav.make_address_book(username, name, "contacts")
    http = httpx.Client(auth=stack.carddav.auth(username), timeout=30)
    group_path = ""
    if group:
        uid = new_uid()
        group_path = f"{httpx.URL(book_url).path}{uid}.vcf"
        AddressBook(http, book_url).create(group_card(uid, FOLDER), uid)
    m.carddav = DavAccount(
        username=username,
        password=stack.carddav.users[username],
        book=AddressBook(http, book_url, group_path),
        folder_name=f"{name} / {FOLDER}" if group else FOLDER,
        server_url=server_url,
    )
    m.directions["carddav"] = direction


def connect_everyone(stack: LocalStack, members: list[Member]) -> dict[str, Api]:
    apis = {}
    for m in members:
        api = apis[m.key] = Api(stack, m)
        api.connect_crm()
        m.connections["outlook"] = api.connect("microsoft", FOLDER, m.directions["outlook"])
        m.connections["google"] = api.connect("google", FOLDER, m.directions["google"])
        if m.carddav is not None:
            m.connections["carddav"] = api.connect_carddav(m.carddav, m.directions["carddav"])
    return apis


# --- the address books, as their users touch them -------------------------------------------


@dataclass
class Books:
    """Find and change one person's contact on one side of one member, by its email."""

    stack: LocalStack

    def find(self, m: Member, side: str, email: str, *, moved_out: bool = False) -> Any:
        if side == "crm":
            persons = self.stack.pipedrive.sandbox.persons_of(m.crm_user)
            return next((p for p in persons if _first(p.emails, "value") == email), None)
        if side == "outlook":
            gs = self.stack.graph.sandbox
            with gs.lock:
                for c in gs.contacts.values():
                    mine = c.user_id == m.graph_user and (c.folder_id == m.folder) != moved_out
                    if mine and _first(c.props.get("emailAddresses"), "address") == email:
                        return c
            return None
        if side == "carddav":
            book = _book(m)
            cards = book.cards()
            group = book.members(cards)
            for card in cards:
                inside = group is None or card.uid in group
                if not card.is_group and inside != moved_out and card.email == email:
                    return card
            return None
        for p in self.stack.google.sandbox.contacts(m.google_email):
            if (p.get("metadata") or {}).get("deleted"):
                continue
            inside = m.google_group in {
                g.get("contactGroupMembership", {}).get("contactGroupResourceName")
                for g in p.get("memberships") or []
            }
            if inside != moved_out and _first(p.get("emailAddresses"), "value") == email:
                return p
        return None

    def unrecorded_copies(self, m: Member, side: str) -> list[tuple[str, Any]]:
        """(email, contact) of the copies the sync made in the member's Outlook folder or
        CardDAV book (or group) whose making no pass has recorded yet."""
        found: list[tuple[str, Any]] = []
        if side == "outlook":
            gs = self.stack.graph.sandbox
            with gs.lock:
                mine = [
                    c
                    for c in gs.contacts.values()
                    if c.user_id == m.graph_user and c.folder_id == m.folder and c.extended
                ]
            for c in mine:
                if self.unconfirmed_copy(m, side, c):
                    found.append((_first(c.props.get("emailAddresses"), "address"), c))
        elif side == "carddav":
            book = _book(m)
            cards = book.cards()
            group = book.members(cards)
            for card in cards:
                inside = group is None or card.uid in group
                if not card.is_group and inside and self.unconfirmed_copy(m, side, card):
                    found.append((card.email, card))
        return found

    def create(  # noqa: PLR0917
        self, m: Member, side: str, email: str, phone: str, title: str, notes: str = ""
    ) -> None:
        given, family = email.split("@", maxsplit=1)[0].split(".")
        if side == "crm":
            pd = self.stack.pipedrive.sandbox
            body = {
                "name": f"{given.title()} {family.title()}",
                "owner_id": m.crm_user,
                "emails": [{"value": email, "label": "work", "primary": True}],
                "phones": [{"value": phone, "label": "work", "primary": True}],
                "job_title": title,
                **({"notes": notes} if notes else {}),
            }
            pd.create_person(pd.users[m.crm_user], body, source="app")
        elif side == "outlook":
            body = {
                "givenName": given.title(),
                "surname": family.title(),
                "emailAddresses": [{"name": f"{given} {family}", "address": email}],
                "businessPhones": [phone],
                "jobTitle": title,
                **({"personalNotes": notes} if notes else {}),
            }
            self.stack.graph.sandbox.create_contact(m.graph_user, m.folder, body)
        elif side == "carddav":
            uid = new_uid()
            text = contact_card(uid, given.title(), family.title(), email, phone, title)
            if notes:
                text = with_property(text, "NOTE", notes)
            _book(m).create(text, uid)
        else:
            person = {
                "names": [{"givenName": given.title(), "familyName": family.title()}],
                "emailAddresses": [{"value": email, "type": "work"}],
                "phoneNumbers": [{"value": phone, "type": "work"}],
                "organizations": [{"title": title}],
            }
            if notes:
                person["biographies"] = [{"value": notes, "contentType": "TEXT_PLAIN"}]
            groups = (MY_CONTACTS, m.google_group)
            self.stack.google.sandbox.add_contact(m.google_email, person, groups=groups)

    def edit(self, m: Member, side: str, found: Any, name: str, value: str) -> bool:
        """False when the contact was gone by the time the user saved it (CardDAV: a round
        trip after it was read)."""
        if side == "crm":
            self.stack.pipedrive.sandbox.edit_in_app(found.id, {name: value})
        elif side == "outlook":
            key = {"job_title": "jobTitle", "notes": "personalNotes"}[name]
            self.stack.graph.sandbox.update_contact(m.graph_user, found.id, {key: value})
        elif side == "carddav":
            prop = DAV_FIELDS[name]
            return _book(m).rewrite(found, lambda text: with_property(text, prop, value))
        elif name == "job_title":
            orgs = found.get("organizations") or [{}]
            org = {k: v for k, v in orgs[0].items() if k in ("name", "title")}
            changes = {"organizations": [{**org, "title": value}]}
            self._google_update(m, found, changes)
        else:
            changes = {"biographies": [{"value": value, "contentType": "TEXT_PLAIN"}]}
            self._google_update(m, found, changes)
        return True

    def current(self, side: str, found: Any, name: str) -> str:
        if side == "crm":
            return str(getattr(found, name) or "")
        if side == "outlook":
            key = {"job_title": "jobTitle", "notes": "personalNotes"}[name]
            return str(found.props.get(key) or "")
        if side == "carddav":
            return str(found.value(DAV_FIELDS[name]))
        if name == "job_title":
            return str(((found.get("organizations") or [{}])[0]).get("title") or "")
        return str(((found.get("biographies") or [{}])[0]).get("value") or "")

    def reformat_phone(self, m: Member, side: str, found: Any, rng: random.Random) -> None:
        """The same numbers, written another way: a formatting-only edit."""
        if side == "crm":
            phones = [{**p, "value": reformat(p["value"], rng)} for p in found.phones]
            self.stack.pipedrive.sandbox.edit_in_app(found.id, {"phones": phones})
        elif side == "outlook":
            phones = [reformat(v, rng) for v in found.props.get("businessPhones") or []]
            self.stack.graph.sandbox.update_contact(
                m.graph_user, found.id, {"businessPhones": phones}
            )
        elif side == "carddav":
            # Drawn once, whatever the retries: the random sequence does not follow the timing.
            shapes = {v: reformat(v, rng) for v in found.values("TEL")}
            _book(m).rewrite(
                found, lambda text: with_values(text, "TEL", lambda v: shapes.get(v, v))
            )
        else:
            numbers = [
                {"value": reformat(p.get("value", ""), rng), "type": p.get("type", "work")}
                for p in found.get("phoneNumbers") or []
            ]
            self._google_update(m, found, {"phoneNumbers": numbers})

    def delete(self, m: Member, side: str, found: Any) -> None:
        if side == "crm":
            self.stack.pipedrive.sandbox.delete_in_app(found.id)
        elif side == "outlook":
            self.stack.graph.sandbox.delete_contact(m.graph_user, found.id)
        elif side == "carddav":
            _book(m).delete(found)
        else:
            self.stack.google.sandbox.delete_contact(m.google_email, found["resourceName"])

    @staticmethod
    def id_of(side: str, found: Any) -> str:
        if side == "google":
            return str(found["resourceName"])
        if side == "carddav":
            return str(found.path)
        return str(found.id)

    def unseen_return(self, m: Member, side: str, found: Any) -> bool:
        """A Google contact (or a card of a CardDAV group) put back in the group whose
        connection has not yet seen it back."""
        mapping = mapping_by_provider_id(m.connections[side], self.id_of(side, found))
        return mapping is not None and bool(mapping.detached)

    def unconfirmed_copy(self, m: Member, side: str, found: Any) -> bool:
        """A copy the sync made whose making its connection has not recorded yet (the answer
        was lost; the next pass looks it up by its tag, and if it is gone, asks the feed)."""
        if side == "outlook":
            tagged = bool(found.extended)
        elif side == "carddav":
            tagged = bool(found.value(TAG))
        else:
            tagged = any(d.get("key") == GOOGLE_TAG for d in found.get("clientData") or [])
        if not tagged:
            return False
        contact_id = self.id_of(side, found)
        return mapping_by_provider_id(m.connections[side], contact_id) is None

    def move(self, m: Member, side: str, found: Any, *, out: bool) -> None:
        if side == "outlook":
            target = m.elsewhere if out else m.folder
            self.stack.graph.sandbox.move_contact(m.graph_user, found.id, target)
        elif side == "carddav":
            _book(m).set_member(found.uid, present=not out)
        else:
            groups = [MY_CONTACTS] if out else [MY_CONTACTS, m.google_group]
            self.stack.google.sandbox.set_groups(m.google_email, found["resourceName"], groups)

    def _google_update(self, m: Member, found: Any, changes: dict[str, Any]) -> None:
        self.stack.google.sandbox.update_contact(m.google_email, found["resourceName"], changes)


def _book(m: Member) -> AddressBook:
    assert m.carddav is not None, m.key
    return m.carddav.book


def _first(items: Any, key: str) -> str:
    return str((items or [{}])[0].get(key, "")).strip().lower()


def reformat(phone: str, rng: random.Random) -> str:
    digits = "".join(ch for ch in phone if ch.isdigit())[-10:]
    a, b, c = digits[:3], digits[3:6], digits[6:]
    shapes = [
        f"+1 ({a}) {b}-{c}",
        f"{a}.{b}.{c}",
        f"+1{a}{b}{c}",
        f"({a}) {b} {c}",
        f"1-{a}-{b}-{c}",
    ]
    others = [s for s in shapes if s != phone]
    return rng.choice(others)


# --- the workload ---------------------------------------------------------------------------

# Operation kinds and their weights.
OPS = {
    "create": 14,
    "create_twice": 5,
    "edit_title": 28,
    "edit_notes": 14,
    "reformat": 14,
    "delete": 8,
    "burst_delete": 1,
    "delete_unrecorded": 8,  # a copy whose making no pass recorded (its create answer lost)
    "move": 14,
    "hand_over": 4,
}


@dataclass
class Workload:
    """Seeded random operations by the members in their own address books, recorded in the
    ledger as they are made."""

    stack: LocalStack
    members: list[Member]
    rng: random.Random
    ledger: Ledger = field(default_factory=Ledger)
    made: Counter[str] = field(default_factory=Counter)
    serial: int = 0

    def __post_init__(self) -> None:
        self.books = Books(self.stack)
        self.ledger.directions = {m.key: dict(m.directions) for m in self.members}

    def seed(self, per_side: int) -> None:
        """Each member starts with ``per_side`` people made on each side."""
        for m in self.members:
            for side in m.sides:
                for _ in range(per_side):
                    self.create(m, side)

    def create(self, m: Member, side: str) -> None:
        self.serial += 1
        email = f"{self.rng.choice(['ada', 'bo', 'cy', 'di', 'ed'])}.p{self.serial}@people.example"
        phone = f"+1 {self.rng.choice(AREAS)} 555 {1000 + self.serial % 9000:04d}"
        title = f"{self.rng.choice(TITLES)} {self.serial}"
        self.books.create(m, side, email, phone, title)
        self.ledger.create(email, m.key, side, phone, job_title=title)

    def step(self) -> str:
        """One random operation (drawn again when it cannot apply right now)."""
        for _ in range(20):
            kind = self.rng.choices(list(OPS), weights=list(OPS.values()))[0]
            if self.try_op(kind):
                self.made[kind] += 1
                return kind
        return "none"

    def member(self, key: str) -> Member:
        return next(m for m in self.members if m.key == key)

    def try_op(self, kind: str) -> bool:
        if kind == "create":
            m = self.rng.choice(self.members)
            self.create(m, self.rng.choice(m.sides))
            return True
        if kind == "burst_delete":
            return self.try_burst_delete()
        if kind == "create_twice":
            return self.try_create_twice()
        if kind == "delete_unrecorded":
            return self.try_delete_unrecorded()
        live = self.ledger.live()
        if not live:
            return False
        person = self.rng.choice(live)
        m = self.member(person.owner)
        sides = person.in_scope()
        if not sides:
            return False
        side = self.rng.choice(sides)
        found = self.books.find(m, side, person.email)
        if kind == "move":
            if person.made_twice:
                return False  # see the ledger
            return self.try_move(m, person.email, person.outside)
        if found is None:
            return False  # not there (yet): the user cannot touch it on this side
        if kind in ("edit_title", "edit_notes"):
            name = "job_title" if kind == "edit_title" else "notes"
            self.serial += 1
            value = f"{self.rng.choice(TITLES)} {self.serial}"
            if name == "notes":
                value = f"Met at event {self.serial}.\nCall back on Tuesday."
            settled = self.settled(m, person, (name,))
            if not self.books.edit(m, side, found, name, value):
                return False
            self.ledger.edit(person.email, side, name, value, settled)
            return True
        if kind == "reformat":
            self.ledger.touch(person.email, side)
            if self.rng.random() < 0.5:
                self.books.reformat_phone(m, side, found, self.rng)
                return True
            title = self.books.current(side, found, "job_title")
            if not title:
                return False
            return self.books.edit(
                m,
                side,
                found,
                "job_title",
                title.upper() if title != title.upper() else title.lower(),
            )
        if kind == "delete":
            return self.try_delete(m, person, side, found)
        if kind == "hand_over":
            return self.try_hand_over(m, person.email)
        raise AssertionError(kind)

    def try_delete(self, m: Member, person: Intended, side: str, found: Any) -> bool:
        if person.former_owners:
            return False  # see the ledger: a handed-over person is not deleted
        if side in ("google", "carddav") and self.books.unseen_return(m, side, found):
            return False  # see the ledger: a copy back in its group is not deleted yet
        if side == "google" and self.books.unconfirmed_copy(m, side, found):
            return False  # see the ledger: a Google copy not yet recorded is not deleted yet
        settled = self.settled(m, person, FIELDS)
        if person.one_way:  # see the ledger: one way, a delete is settled only untouched
            settled = settled and person.touched <= {side}
        if person.made_twice:  # see the ledger: its two copies may not be linked yet
            settled = False
        self.books.delete(m, side, found)
        self.ledger.delete(person.email, side, self.books.id_of(side, found), settled)
        return True

    def try_delete_unrecorded(self) -> bool:
        """A user deletes, in Outlook or CardDAV, a copy the sync made whose making no pass has
        recorded yet (the answer to its create was lost): followed like any other delete."""
        m = self.rng.choice(self.members)
        sides = [s for s in m.sides if s in ("outlook", "carddav")]
        if not sides:
            return False
        side = self.rng.choice(sides)
        live = {p.email: p for p in self.ledger.live() if p.owner == m.key}
        for email, found in self.books.unrecorded_copies(m, side):
            person = live.get(email)
            if person is not None and side in person.in_scope():
                if not self.try_delete(m, person, side, found):
                    return False
                self.made[f"delete_unrecorded_{side}"] += 1  # by side, in the run's figures
                return True
        return False

    def try_burst_delete(self) -> bool:
        """A user clears out several contacts of one address book within a second: the mass-
        change guard may hold them (the attendant confirms, as the user would)."""
        m = self.rng.choice(self.members)
        side = self.rng.choice(m.sides)
        mine = [p for p in self.ledger.live() if p.owner == m.key and side in p.in_scope()]
        self.rng.shuffle(mine)
        deleted = 0
        for person in mine[: self.rng.randint(3, 8)]:
            found = self.books.find(m, side, person.email)
            if found is not None and self.try_delete(m, person, side, found):
                deleted += 1
        return deleted > 0

    def settled(self, m: Member, person: Intended, names: tuple[str, ...]) -> bool:
        """Every side in scope shows the last intended value of each field in ``names``: no
        edit of them is on its way (then a new edit, or a delete, must win); for a person added
        on two sides, only once the copies are seen joined (``Ledger.joined``)."""
        shown_everywhere = self.shown_everywhere(m, person, names)
        joined = [self.ledger.joined(person.email, n, shown_everywhere) for n in names]
        return shown_everywhere and all(joined)

    def shown_everywhere(self, m: Member, person: Intended, names: tuple[str, ...]) -> bool:
        for side in person.in_scope():
            found = self.books.find(m, side, person.email)
            if found is None:
                return False
            for name in names:
                shown = self.books.current(side, found, name)
                if value_key(name, shown) != value_key(name, person.expected(name, side)):
                    return False
                awaited = person.awaited(name, side)
                if awaited is not None and value_key(name, shown) != value_key(name, awaited):
                    return False  # (so never settled while the source's edit is awaited)
        return True

    def try_create_twice(self) -> bool:
        """The same person added on a second side where the sync has not put it: at once, on
        two sides, before any pass; or, one way, beside a person the arrows kept off that side
        (Google's own contact, then added in Outlook, which feeds the CRM, which feeds Google)."""
        m = self.rng.choice(self.members)
        if not m.one_way:
            first, second = self.rng.sample(m.sides, 2)
            self.create(m, first)
            email = next(reversed(self.ledger.people))
            person = self.ledger.people[email]
            values = {name: person.values[name][-1].value for name in FIELDS}
            self.books.create(m, second, email, person.phone, values["job_title"])
            self.ledger.made_again(email, second, values)
            return True
        # The same person typed again: only one that shows the same values wherever it is (who
        # wins when they differ is not what this checks).
        candidates = [
            (p, s)
            for p in self.ledger.live()
            if p.owner == m.key and self.uniform(p)
            for s in m.sides
            if s not in p.present
        ]
        if not candidates:
            return False
        person, side = self.rng.choice(candidates)
        if not self.settled(m, person, FIELDS):
            return False
        where = person.in_scope()[0]
        values = {name: person.expected(name, where) for name in FIELDS}
        self.books.create(m, side, person.email, person.phone, values["job_title"], values["notes"])
        self.ledger.made_again(person.email, side, values)
        return True

    @staticmethod
    def uniform(person: Intended) -> bool:
        sides = person.in_scope()
        return bool(sides) and all(
            len({person.expected(name, s) for s in sides}) == 1 for name in FIELDS
        )

    def everywhere(self, m: Member, email: str) -> bool:
        return all(self.books.find(m, s, email) is not None for s in m.sides)

    def try_move(self, m: Member, email: str, outside: set[str]) -> bool:
        if m.one_way:
            return False  # moves and hand-overs are the two-way users' (see the ledger)
        if outside and self.rng.random() < 0.6:
            side = self.rng.choice(sorted(outside))
            found = self.books.find(m, side, email, moved_out=True)
            if found is None:
                return False
            self.books.move(m, side, found, out=False)
            self.ledger.move_in(email, side)
            return True
        candidates = [s for s in PROVIDER_SIDES if s not in outside and self.has_group(m, s)]
        # Only a person the sync has already spread can be moved out: a contact moved out
        # before its connection ever saw it is simply never synced (nothing to check).
        if not candidates or outside or not self.everywhere(m, email):
            return False
        side = self.rng.choice(candidates)
        found = self.books.find(m, side, email)
        if found is None:
            return False
        self.books.move(m, side, found, out=True)
        self.ledger.move_out(email, side)
        return True

    @staticmethod
    def has_group(m: Member, side: str) -> bool:
        """The side syncs a folder or group its contacts can be moved out of."""
        if side == "carddav":
            return m.carddav is not None and bool(m.carddav.book.group_path)
        return True

    def try_hand_over(self, m: Member, email: str) -> bool:
        person = self.ledger.people[email]
        heirs = [
            x
            for x in self.members
            if x.key != m.key and x.key not in person.former_owners and not x.one_way
        ]
        if m.one_way:
            return False
        if person.outside or not heirs or not self.everywhere(m, email):
            return False
        heir = self.rng.choice(heirs)
        found = self.books.find(m, "crm", email)
        self.stack.pipedrive.sandbox.change_owner(found.id, heir.crm_user)
        self.ledger.hand_over(email, heir.key)
        return True


# --- faults ---------------------------------------------------------------------------------


RECONCILER_THREADS = ("sqs-poller", "invoke-ReconcilerFunction")  # where the local stack runs it


@dataclass
class DynamoThrottle:
    """While ``rate`` > 0, that share of the reconciler's DynamoDB calls fails as throttled: what
    reaches the service when the SDK's own retries are spent. Only the reconciler's threads are
    touched (the user's settings page keeps working)."""

    rng: random.Random
    rate: float = 0.0
    hits: int = 0
    _original: Any = None

    def install(self) -> None:
        from botocore.client import BaseClient
        from botocore.exceptions import ClientError

        original = self._original = BaseClient._make_api_call
        throttle = self

        def call(client: Any, operation: str, params: dict[str, Any]) -> Any:
            if (
                throttle.rate
                and client.meta.service_model.service_name == "dynamodb"
                and threading.current_thread().name.startswith(RECONCILER_THREADS)
                and throttle.rng.random() < throttle.rate
            ):
                throttle.hits += 1
                error = {"Code": "ProvisionedThroughputExceededException", "Message": "chaos"}
                raise ClientError({"Error": error}, operation)
            return original(client, operation, params)

        BaseClient._make_api_call = call  # type: ignore[method-assign]

    def uninstall(self) -> None:
        if self._original is not None:
            from botocore.client import BaseClient

            BaseClient._make_api_call = self._original  # type: ignore[method-assign]
            self._original = None


class InjectedCrash(Exception):
    """The reconciler "dies" here: the pass stops, SQS redelivers its message."""


@dataclass
class CrashHook:
    """``build_passes().crash_point``: kills a pass now and then at the crash points."""

    rng: random.Random
    rates: dict[str, float]
    armed: bool = True
    crashes: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, point: str) -> None:
        with self.lock:
            hit = self.armed and self.rng.random() < self.rates.get(point, 0.0)
            if hit:
                self.crashes[point] += 1
        if hit:
            raise InjectedCrash(f"chaos: the reconciler died at {point}")


@dataclass
class Switchboard:
    """Switches the sandboxes' faults on at random, and all of them off at the end."""

    stack: LocalStack
    members: list[Member]
    rng: random.Random
    timeout: float  # the reconciler's, in seconds
    injected: Counter[str] = field(default_factory=Counter)
    windows: list[tuple[float, Callable[[], None]]] = field(default_factory=list)
    dynamo: DynamoThrottle | None = None  # set by the run, installed for its duration
    dav: DavFaults | None = None  # the CardDAV server's fault proxy, when members have books

    def random_fault(self) -> None:
        name = self.rng.choice(sorted(self.faults()))
        self.faults()[name]()
        self.injected[name] += 1

    def random_carddav_fault(self) -> None:
        """One of the CardDAV server's faults (drawn apart from the others, so that adding them
        left the others' rate as it was)."""
        faults = self.carddav_faults()
        name = self.rng.choice(sorted(faults))
        faults[name]()
        self.injected[name] += 1

    def window(self, seconds: float, on: Callable[[], None], off: Callable[[], None]) -> None:
        on()
        self.windows.append((time.monotonic() + seconds, off))

    def tick(self) -> None:
        """Switch off the faults whose window has passed."""
        now = time.monotonic()
        for _, off in [w for w in self.windows if w[0] <= now]:
            off()
        self.windows = [w for w in self.windows if w[0] > now]

    def faults(self) -> dict[str, Callable[[], None]]:
        gs, pd, google = (
            self.stack.graph.sandbox,
            self.stack.pipedrive.sandbox,
            self.stack.google.sandbox,
        )
        rng = self.rng
        span = rng.uniform(1.5, 4.0)

        def graph_delivery(key: str, on: Any, off: Any) -> Callable[[], None]:
            return lambda: self.window(
                span,
                lambda: gs.delivery.__setitem__(key, on),
                lambda: gs.delivery.__setitem__(key, off),
            )

        def crm_delivery(key: str, on: Any, off: Any) -> Callable[[], None]:
            return lambda: self.window(
                span,
                lambda: setattr(pd.delivery.mode, key, on),
                lambda: setattr(pd.delivery.mode, key, off),
            )

        def google_rate(key: str, on: Any) -> Callable[[], None]:
            off = 0 if key == "slow_ms" else 0.0
            return lambda: self.window(
                span,
                lambda: google.set_faults(**{key: on}),
                lambda: google.set_faults(**{key: off}),
            )

        def lifecycle() -> None:
            subs = list(gs.subscriptions)
            if subs:
                event = rng.choice(["reauthorizationRequired", "subscriptionRemoved", "missed"])
                gs.fire_lifecycle(rng.choice(subs), event)

        return {
            "graph_429": lambda: gs.inject_faults(429, rng.randint(1, 3), retry_after=1),
            "graph_503": lambda: gs.inject_faults(503, rng.randint(1, 3)),
            "graph_reset": lambda: gs.inject_breaks("reset", rng.randint(1, 2)),
            "graph_truncated": lambda: gs.inject_breaks("truncated", 1),
            "graph_create_answer_lost": lambda: gs.inject_breaks("truncated", 1, only_creates=True),
            "graph_slow": lambda: self.window(
                span, lambda: setattr(gs, "latency_ms", 400), lambda: setattr(gs, "latency_ms", 0)
            ),
            # Graph hangs as long as the reconciler's timeout: the passes waiting on it are cut off.
            "reconciler_cut_off": lambda: self.window(
                1.0,
                lambda: setattr(gs, "latency_ms", int(self.timeout * 850)),
                lambda: setattr(gs, "latency_ms", 0),
            ),
            "graph_webhooks_twice": graph_delivery("duplicate", True, False),
            "graph_webhooks_late": graph_delivery("delay_ms", 2500, 0),
            "graph_webhooks_out_of_order": graph_delivery("reorder", True, False),
            "graph_lifecycle": lifecycle,
            "graph_delta_expired": lambda: gs.expire_delta_tokens(
                rng.choice(self.members).graph_user
            ),
            "crm_429": lambda: pd.inject_fault(429, rng.randint(1, 3)),
            "crm_503": lambda: pd.inject_fault(503, rng.randint(1, 3)),
            "crm_reset": lambda: pd.inject_break("reset", rng.randint(1, 2)),
            "crm_truncated": lambda: pd.inject_break("truncated", 1),
            "crm_slow": lambda: self.window(
                span, lambda: setattr(pd, "latency_ms", 400), lambda: setattr(pd, "latency_ms", 0)
            ),
            "crm_webhooks_twice": crm_delivery("duplicate", True, False),
            "crm_webhooks_late": crm_delivery("delay_ms", 2500, 0),
            "crm_webhooks_out_of_order": crm_delivery("reorder", True, False),
            "google_429": google_rate("rate_429", 0.3),
            "google_503": google_rate("rate_503", 0.3),
            "google_reset": google_rate("rate_reset", 0.2),
            "google_malformed": google_rate("rate_malformed", 0.2),
            "google_slow": google_rate("slow_ms", 400),
            "google_sync_token_expired": lambda: google.set_faults(expire_sync_tokens=True),
            # Where real providers are stricter (sandbox/README.md); moves between folders change
            # Outlook ids by default, so the workload's moves are that fault already.
            "graph_delta_empty_pages": lambda: gs.__setattr__(
                "empty_delta_pages", rng.randint(1, 3)
            ),
            "crm_partial_ids": lambda: self.window(
                span,
                lambda: setattr(pd, "partial_rate", 0.5),
                lambda: setattr(pd, "partial_rate", 0.0),
            ),
            "crm_empty_pages": lambda: setattr(pd, "empty_pages", rng.randint(1, 3)),
            "google_partial": google_rate("rate_partial", 0.5),
            "google_empty_pages": lambda: google.set_faults(empty_pages=rng.randint(1, 3)),
            "google_visibility_lag": lambda: self.window(
                span,
                lambda: setattr(google, "sync_lag", timedelta(seconds=8)),
                lambda: setattr(google, "sync_lag", SYNC_LAG),
            ),
            **(self.dropping() if DROPS else {}),
            **(self.throttling() if self.dynamo is not None else {}),
        }

    def carddav_faults(self) -> dict[str, Callable[[], None]]:
        """What real CardDAV servers do (iCloud, Fastmail and Nextcloud all throttle, drop
        connections and forget sync tokens), through the proxy in front of the local server."""
        dav, rng = self.dav, self.rng
        assert dav is not None
        return {
            "carddav_429": lambda: dav.inject("429", rng.randint(1, 3)),
            "carddav_503": lambda: dav.inject("503", rng.randint(1, 3)),
            "carddav_503_no_retry_after": lambda: dav.inject("503_bare", rng.randint(1, 3)),
            "carddav_reset": lambda: dav.inject("reset", rng.randint(1, 2)),
            "carddav_answer_lost": lambda: dav.inject("lost_answer", 1),
            "carddav_create_answer_lost": lambda: dav.inject("lost_create_answer", 1),
            "carddav_cut_short": lambda: dav.inject("cut_short", 1),
            "carddav_sync_token_invalid": lambda: dav.inject("sync_token_invalid", 1),
            "carddav_sync_truncated": lambda: dav.inject("sync_truncated", 1),
            "carddav_multiget_partial": lambda: dav.inject("multiget_partial", 1),
            "carddav_412": lambda: dav.inject("precondition", 1),
            "carddav_slow": lambda: self.window(
                rng.uniform(1.5, 4.0),
                lambda: setattr(dav, "latency_ms", 400),
                lambda: setattr(dav, "latency_ms", 0),
            ),
        }

    def throttling(self) -> dict[str, Callable[[], None]]:
        dynamo = self.dynamo
        assert dynamo is not None
        return {
            "dynamodb_throttled": lambda: self.window(
                self.rng.uniform(1.5, 4.0),
                lambda: setattr(dynamo, "rate", 0.2),
                lambda: setattr(dynamo, "rate", 0.0),
            )
        }

    def dropping(self) -> dict[str, Callable[[], None]]:
        """Pushes lost on the way (``CHAOS_DROPS=0`` leaves them out): only a later push, a poll
        or the full listing reads what they announced (the run polls and lists in full often)."""
        gs, pd = self.stack.graph.sandbox, self.stack.pipedrive.sandbox
        span = self.rng.uniform(1.5, 4.0)
        return {
            "graph_notifications_dropped": lambda: self.window(
                span,
                lambda: gs.delivery.__setitem__("drop_rate", 0.5),
                lambda: gs.delivery.__setitem__("drop_rate", 0.0),
            ),
            "crm_webhooks_dropped": lambda: self.window(
                span,
                lambda: setattr(pd.delivery.mode, "drop_rate", 0.5),
                lambda: setattr(pd.delivery.mode, "drop_rate", 0.0),
            ),
        }

    def revoke(self, provider: str, m: Member) -> None:
        """The user withdraws our access: the refresh token stops working."""
        if provider == "microsoft":
            self.stack.graph.sandbox.revoke_refresh_tokens(m.graph_user)
            self.stack.graph.sandbox.expire_access_tokens(m.graph_user)
        elif provider == "google":
            self.stack.google.sandbox.revoke(m.google_email)
        elif provider == "carddav":  # a new app-specific password: the old one stops working
            assert m.carddav is not None
            password = secrets.token_urlsafe(12)
            self.stack.carddav.set_password(m.carddav.username, password)
            m.carddav.new_password(password)
        else:
            self.stack.pipedrive.sandbox.revoke_tokens(m.crm_user)
        self.injected[f"{provider}_token_revoked"] += 1

    def all_off(self) -> None:
        for _, off in self.windows:
            off()
        self.windows = []
        gs, pd, google = (
            self.stack.graph.sandbox,
            self.stack.pipedrive.sandbox,
            self.stack.google.sandbox,
        )
        gs.clear_faults()
        gs.latency_ms = 0
        gs.delivery.update({"duplicate": False, "delay_ms": 0, "reorder": False, "drop_rate": 0.0})
        pd.clear_breaks()
        pd.latency_ms = 0
        pd.delivery.mode = DeliveryMode()
        pd.partial_rate, pd.empty_pages = 0.0, 0
        google.set_faults(
            rate_429=0.0, rate_503=0.0, rate_reset=0.0, rate_malformed=0.0, slow_ms=0,
            expire_sync_tokens=False, rate_partial=0.0, empty_pages=0,
        )  # fmt: skip
        google.sync_lag = SYNC_LAG  # back to the default lag (it never goes away)
        google.latency_ms = 0
        if self.dav is not None:
            self.dav.clear()


# --- the user who answers the service -------------------------------------------------------


@dataclass
class Attendant:
    """Looks at the members' connections as their settings page would, and does what a user
    does: sign in again when asked (CRM first), confirm a pass the guard held."""

    apis: dict[str, Api]
    reconnects: int = 0
    confirmed: int = 0
    failed_sign_ins: int = 0
    holds: list[str] = field(default_factory=list)
    last_seen: list[dict[str, Any]] = field(default_factory=list)
    answered: dict[str, float] = field(default_factory=dict)  # held pass -> when confirmed

    def attend(self) -> list[str]:
        """Fix what asks for the user; returns the states of every connection."""
        states = []
        self.last_seen = []
        for api in self.apis.values():
            for view in api.call("GET", "/connections")["connections"]:
                state = view["state"]
                states.append(state)
                self.last_seen.append(view)
                if state == "needs_reauth":
                    try:
                        api.connect_crm()
                        api.reconnect(view["id"], view["provider"])
                    except RuntimeError:
                        # The provider is down as they sign in (a fault is on): they try again
                        # in a moment, as a user would.
                        self.failed_sign_ins += 1
                        continue
                    self.reconnects += 1
                elif state == "needs_attention":
                    held = str((view.get("held") or {}).get("message"))
                    key = f"{view['id']} {held}"
                    if time.monotonic() - self.answered.get(key, -60.0) < 30:
                        continue  # confirmed a moment ago; the confirmed pass has not run yet
                    self.answered[key] = time.monotonic()
                    self.holds.append(held)
                    api.call("POST", f"/connections/{view['id']}/confirm")
                    self.confirmed += 1
        return states
