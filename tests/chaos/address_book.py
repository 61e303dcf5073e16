"""A chaos user's CardDAV client: what a phone or a Mac does to an address book on the stack's
Radicale, over HTTP and straight to the server (the fault proxy is the service's way in).

It lists the book (one ``addressbook-query`` for every card with its ETag and body), creates a
card with ``If-None-Match: *`` at ``<book>/<UID>.vcf``, rewrites one with ``If-Match`` its ETag
and deletes one the same way; every card it saves carries the time it was saved in ``REV``. A
write refused with 412 (the sync wrote the card in between) is made again on the card read
afresh, as a client does. Groups are Apple's: a group card (``X-ADDRESSBOOKSERVER-KIND:group``)
listing its members' UIDs, which the client rewrites to move a contact in or out, and from which
it takes a contact it deletes.

It reads vCards with its own few lines, never with the service's code: it is the oracle's eye.
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

KIND = "X-ADDRESSBOOKSERVER-KIND"
MEMBER = "X-ADDRESSBOOKSERVER-MEMBER"
TAG = "X-CONTACTSYNC-ID"  # what the service writes on the cards it makes (its mapping id)
VCARD = "text/vcard; charset=utf-8"
LISTING = (
    b'<?xml version="1.0" encoding="utf-8"?>\n'
    b'<C:addressbook-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:carddav">'
    b"<D:prop><D:getetag/><C:address-data/></D:prop></C:addressbook-query>"
)
TRIES = 8  # writes refused with 412 before the client gives up


@dataclass(frozen=True)
class Card:
    """One card of the book as the server holds it."""

    path: str  # "/u1/contacts/<name>.vcf": the id the service knows it by
    etag: str
    text: str = field(repr=False)

    def values(self, name: str) -> list[str]:
        return [value for prop, value in properties(self.text) if prop == name]

    def value(self, name: str) -> str:
        found = self.values(name)
        return found[0] if found else ""

    @property
    def uid(self) -> str:
        return self.value("UID")

    @property
    def email(self) -> str:
        return self.value("EMAIL").strip().lower()

    @property
    def is_group(self) -> bool:
        return self.value(KIND).strip().lower() == "group"

    @property
    def members(self) -> set[str]:
        return {v.strip().removeprefix("urn:uuid:") for v in self.values(MEMBER)}


def unfolded(text: str) -> list[str]:
    """The card's content lines, folded lines joined again (RFC 6350 §3.2)."""
    lines: list[str] = []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if line[:1] in (" ", "\t") and lines:
            lines[-1] += line[1:]
        elif line:
            lines.append(line)
    return lines


def _split(line: str) -> tuple[str, str, str]:
    """A content line's name (its group dropped, upper case), its parameters and its value."""
    head, _, value = line.partition(":")
    name, _, params = head.partition(";")
    return name.rpartition(".")[2].upper(), params, value


def properties(text: str) -> list[tuple[str, str]]:
    """(name, value) of every property, text values unescaped."""
    return [(name, unescape(value)) for name, _, value in map(_split, unfolded(text))]


def unescape(value: str) -> str:
    out, chars = [], iter(value)
    for ch in chars:
        if ch == "\\":
            nxt = next(chars, "")
            out.append("\n" if nxt in ("n", "N") else nxt)
        else:
            out.append(ch)
    return "".join(out)


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace(";", "\\;").replace("\n", "\\n")


def with_property(text: str, name: str, value: str) -> str:
    """The card with ``name`` set to ``value`` (one property, added when missing)."""
    lines = [line for line in unfolded(text) if _split(line)[0] != name]
    lines.insert(_end(lines), f"{name}:{escape(value)}")
    return "\r\n".join([*lines, ""])


def with_values(text: str, name: str, rewrite: Callable[[str], str]) -> str:
    """The card with every value of ``name`` rewritten (its parameters and group kept)."""
    lines = []
    for line in unfolded(text):
        prop, _, value = _split(line)
        lines.append(line[: len(line) - len(value)] + rewrite(value) if prop == name else line)
    return "\r\n".join([*lines, ""])


def with_member(text: str, uid: str, *, present: bool) -> str:
    """A group card with ``uid`` among its members, or without it."""
    member = f"urn:uuid:{uid}"
    lines = [
        line
        for line in unfolded(text)
        if not (_split(line)[0] == MEMBER and _split(line)[2].strip() == member)
    ]
    if present:
        lines.insert(_end(lines), f"{MEMBER}:{member}")
    return "\r\n".join([*lines, ""])


def _end(lines: list[str]) -> int:
    return max(i for i, line in enumerate(lines) if line.strip().upper() == "END:VCARD")


def contact_card(  # noqa: PLR0917
    uid: str, given: str, family: str, email: str, phone: str, title: str
) -> str:
    """A new contact as an iPhone stores it."""
    lines = [
        "BEGIN:VCARD",
        "VERSION:3.0",
        "PRODID:-//Apple Inc.//iPhone OS 17.4//EN",
        f"UID:{uid}",
        f"N:{family};{given};;;",
        f"FN:{given} {family}",
        f"EMAIL;type=INTERNET;type=WORK;type=pref:{email}",
        f"TEL;type=WORK;type=VOICE;type=pref:{phone}",
        f"TITLE:{escape(title)}",
        f"REV:{revision()}",
        "END:VCARD",
    ]
    return "\r\n".join([*lines, ""])


def revision() -> str:
    """Now, as a REV value (to the millisecond: the CRM's times are whole seconds)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def group_card(uid: str, name: str) -> str:
    lines = [
        "BEGIN:VCARD",
        "VERSION:3.0",
        f"UID:{uid}",
        f"N:{name};;;;",
        f"FN:{name}",
        f"{KIND}:group",
        "END:VCARD",
    ]
    return "\r\n".join([*lines, ""])


class AddressBook:
    """One user's address book (and the group in it they sync, if any), straight on the server."""

    def __init__(self, http: httpx.Client, book_url: str, group_path: str = "") -> None:
        self.http = http
        self.book_url = book_url
        self.group_path = group_path
        base = httpx.URL(book_url)
        self.origin = f"{base.scheme}://{base.netloc.decode()}"

    def cards(self) -> list[Card]:
        """Every card of the book, group cards included."""
        resp = self.http.request(
            "REPORT",
            self.book_url,
            content=LISTING,
            headers={"Depth": "1", "Content-Type": "application/xml; charset=utf-8"},
        )
        resp.raise_for_status()
        return _multistatus_cards(resp.content)

    def members(self, cards: list[Card]) -> set[str] | None:
        """The UIDs in the synced group, or None when the whole book is synced."""
        if not self.group_path:
            return None
        group = next((c for c in cards if c.path == self.group_path), None)
        return group.members if group is not None else set()

    def get(self, path: str) -> Card | None:
        resp = self.http.get(self.origin + path)
        if resp.status_code == 404:
            return None
        resp.raise_for_status()
        return Card(path, resp.headers.get("ETag", ""), resp.text)

    def create(self, text: str, uid: str) -> Card:
        path = f"{httpx.URL(self.book_url).path}{uid}.vcf"
        resp = self.http.put(
            self.origin + path,
            content=text.encode(),
            headers={"If-None-Match": "*", "Content-Type": VCARD},
        )
        resp.raise_for_status()
        if self.group_path:
            self.set_member(uid, present=True)
        return Card(path, resp.headers.get("ETag", ""), text)

    def rewrite(self, card: Card, change: Callable[[str], str]) -> bool:
        """Write the card back changed, ``If-Match`` its ETag; re-read and change again when the
        sync wrote it in between. False when it is gone."""
        current: Card | None = card
        for _ in range(TRIES):
            if current is None:
                return False
            resp = self.http.put(
                self.origin + current.path,
                content=with_property(change(current.text), "REV", revision()).encode(),
                headers={"If-Match": current.etag, "Content-Type": VCARD},
            )
            if resp.status_code != 412:
                resp.raise_for_status()
                return True
            current = self.get(current.path)
        raise RuntimeError(f"{card.path} kept changing under the user's edit")

    def delete(self, card: Card) -> None:
        """Delete the card (``If-Match``), then take it out of the group card, as Apple does."""
        current: Card | None = card
        for _ in range(TRIES):
            if current is None:
                break
            resp = self.http.delete(self.origin + current.path, headers={"If-Match": current.etag})
            if resp.status_code in (404, 410):
                break
            if resp.status_code != 412:
                resp.raise_for_status()
                break
            current = self.get(current.path)
        else:
            raise RuntimeError(f"{card.path} kept changing under the user's delete")
        if self.group_path:
            self.set_member(card.uid, present=False)

    def set_member(self, uid: str, *, present: bool) -> None:
        """Move a contact into the synced group, or out of it."""
        group = self.get(self.group_path)
        if group is None:
            raise RuntimeError(f"the group card {self.group_path} is gone")
        self.rewrite(group, lambda text: with_member(text, uid, present=present))


def new_uid() -> str:
    return str(uuid.uuid4()).upper()


def _multistatus_cards(content: bytes) -> list[Card]:
    dav, card_ns = "{DAV:}", "{urn:ietf:params:xml:ns:carddav}"
    root = ET.fromstring(content)  # noqa: S314 - the local Radicale's answer
    cards = []
    for response in root.iter(f"{dav}response"):
        href = (response.findtext(f"{dav}href") or "").strip()
        for propstat in response.iter(f"{dav}propstat"):
            if " 200 " not in (propstat.findtext(f"{dav}status") or ""):
                continue
            data = propstat.findtext(f"{dav}prop/{card_ns}address-data")
            etag = propstat.findtext(f"{dav}prop/{dav}getetag") or ""
            if data:
                path = httpx.URL(href).path
                cards.append(Card(path, etag.strip(), data))
    return cards
