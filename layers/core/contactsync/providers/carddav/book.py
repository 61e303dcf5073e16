"""One CardDAV address book as the side reads it: what changed since a sync token, cards by
path (``addressbook-multiget``, 200 a request), cards found by a query, and whether a card is in
the connection's group. Cards become ``RemoteContact``s here; a group card, or a card we cannot
read, is out of scope (never read as deleted).
"""

from __future__ import annotations

import re
from urllib.parse import urljoin

from contactsync.contacts.model import Contact
from contactsync.providers.base import CursorExpired, RemoteContact, Transient
from contactsync.providers.carddav import vcard
from contactsync.providers.carddav.dav import (
    DavClient,
    addressbook_query_body,
    card_bodies,
    href_of,
    multiget_body,
    parse_multistatus,
    sync_collection_body,
)
from contactsync.providers.carddav.errors import error_of, invalid_token
from contactsync.providers.carddav.scope import Scope
from contactsync.providers.transport import chunks

MULTIGET = 200  # cards per addressbook-multiget
NOT_IN_GROUP = "not in the contact group"
A_GROUP = "a contact group card, not a contact"
UNREADABLE = "not a vCard the sync can read"
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_-]")


class AddressBook:
    """The cards of one address book, and the members of the connection's group card."""

    def __init__(self, dav: DavClient, scope: Scope) -> None:
        self._dav = dav
        self.scope = scope
        self._members: frozenset[str] | None = None  # the group card's members, read once a read

    def forget_members(self) -> None:
        """Read the group card's members again when next needed (a new read, or our write)."""
        self._members = None

    def sync(self, token: str) -> tuple[list[str], list[str], str]:
        """Paths changed and deleted since ``token`` ("" lists all), and the new token."""
        changed: dict[str, None] = {}
        deleted: dict[str, None] = {}
        while True:
            resp = self._dav.report(self.scope.book_url, sync_collection_body(token))
            if resp.status_code != 207:
                if token and invalid_token(resp.status_code, resp.text):
                    raise CursorExpired(
                        f"the CardDAV server no longer knows the sync token ({resp.status_code})",
                        status=resp.status_code,
                    )
                raise error_of(resp.status_code, "list the address book")
            responses, token = parse_multistatus(resp.content, self.scope.book_url)
            truncated = False
            for r in responses:
                if self.is_book(r.href):
                    truncated = r.status == 507
                    continue
                if r.status == 404:
                    deleted[r.href] = None
                    changed.pop(r.href, None)
                elif r.href.endswith("/"):
                    continue  # a sub-collection, not a card
                else:
                    changed[r.href] = None
                    deleted.pop(r.href, None)
            if not truncated:
                return list(changed), list(deleted), token

    def query(
        self, filters: list[tuple[str, tuple[str, ...]]]
    ) -> dict[str, tuple[str, str] | None] | None:
        """The cards matching any of ``filters`` (path -> vCard text, ETag); None when the server
        cannot answer the query (it refuses it, or truncates the answer: 507 on the book)."""
        resp = self._dav.report(self.scope.book_url, addressbook_query_body(filters))
        if resp.status_code in (404, 410):
            raise error_of(resp.status_code, "search the address book")
        if resp.status_code != 207:
            return None
        responses, _ = parse_multistatus(resp.content, self.scope.book_url)
        if any(self.is_book(r.href) and r.status == 507 for r in responses):
            return None
        return card_bodies(r for r in responses if not self.is_book(r.href))

    def get(self, paths: list[str], *, listing: bool = False) -> dict[str, RemoteContact | None]:
        """The cards at these paths: None for one the server says is gone (404)."""
        cards = self.bodies(paths)
        for path in paths:
            if path not in cards:
                raise Transient(f"the CardDAV server left out a card it was asked for ({path})")
        return self.cards({path: cards[path] for path in paths}, listing=listing)

    def cards(
        self, cards: dict[str, tuple[str, str] | None], *, listing: bool
    ) -> dict[str, RemoteContact | None]:
        """Cards read from their (vCard text, ETag), None kept for one that is gone. A group
        card, or a card we cannot read, is out of scope (never read as deleted); a listing
        leaves group cards out."""
        out: dict[str, RemoteContact | None] = {}
        for path, got in cards.items():
            if got is None:
                out[path] = None
                continue
            body, etag = got
            try:
                card = vcard.read(body)
            except vcard.CardError:
                out[path] = RemoteContact(
                    path, Contact(), etag, in_scope=False, scope_reason=UNREADABLE
                )
                continue
            if card.is_group:
                if not listing:
                    out[path] = RemoteContact(
                        path, Contact(), etag, in_scope=False, scope_reason=A_GROUP
                    )
                continue
            out[path] = self.remote(path, card, etag)
        return out

    def bodies(self, paths: list[str]) -> dict[str, tuple[str, str] | None]:
        """path -> (vCard text, ETag), or None for a card the server says does not exist;
        200 cards a multiget."""
        out: dict[str, tuple[str, str] | None] = {}
        for chunk in chunks(paths, MULTIGET):
            resp = self._dav.report(self.scope.book_url, multiget_body(chunk))
            if resp.status_code != 207:
                raise error_of(resp.status_code, "read contacts")
            responses, _ = parse_multistatus(resp.content, self.scope.book_url)
            out.update(card_bodies(responses))
        return out

    def remote(self, path: str, card: vcard.Card, etag: str) -> RemoteContact:
        in_scope = self._in_group(card)
        return RemoteContact(
            id=path,
            contact=card.contact,
            version=etag,
            modified_at=card.revised,
            in_scope=in_scope,
            scope_reason="" if in_scope else NOT_IN_GROUP,
            tag=card.tag,
        )

    def _in_group(self, card: vcard.Card) -> bool:
        group = self.scope.group
        if not group:
            return True
        if group.startswith("category:"):
            return group.removeprefix("category:") in card.categories
        return card.uid in self._group_members()

    def _group_members(self) -> frozenset[str]:
        if self._members is None:
            got = self.group_card()
            self._members = vcard.read(got[0]).members if got is not None else frozenset()
        return self._members

    def group_card(self) -> tuple[str, str] | None:
        """The chosen group card's (vCard text, ETag); None when it is gone. A server that
        leaves it out of its answer is Transient: no member would otherwise be in scope."""
        group_path = self.scope.group.removeprefix("card:")
        got = self.bodies([group_path])
        if group_path not in got:
            raise Transient(f"the CardDAV server left out the group card ({group_path})")
        return got[group_path]

    def is_book(self, path: str) -> bool:
        return path.rstrip("/") == self.scope.book_path.rstrip("/")

    def path_for(self, tag_value: str) -> str:
        return f"{self.scope.book_path}{_SAFE_NAME.sub('_', tag_value)}.vcf"

    def url(self, path: str) -> str:
        return urljoin(self.scope.book_url, href_of(path))
