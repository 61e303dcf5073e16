"""The CardDAV side: one address book (optionally one group in it), over RFC 6352 and RFC 6578.

Reads use ``sync-collection`` with the sync token as the cursor: an empty token lists every card
with its ETag, a later token only what changed (a removed card answers 404). Bodies come with
``addressbook-multiget``, 200 cards a request. A token the server no longer accepts
(``DAV:valid-sync-token``) is CursorExpired: the pass lists again and re-matches. A truncated
answer (507 on the collection) goes on from the token it carried.

The folder id is the address book's URL, with ``#card:<path>`` for a group kept as a group card
(iCloud, Fastmail: ``X-ADDRESSBOOKSERVER-KIND:group`` listing its members' UIDs) or
``#category:<name>`` for a group kept as ``CATEGORIES``. A contact outside the group is read
``in_scope=False``. When a group card changes, the group's members may have changed without
their cards changing, so that read turns into a full listing. A look-up asks the server for the
cards sharing an email, a phone or a name (``addressbook-query``), never lists the book.

Writes are one PUT / DELETE per card (``writes``): a create is made at ``<book>/<mapping id>.vcf``
so that one whose answer was lost is found again, never made twice.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta

from contactsync.contacts.model import ALL_FIELDS, Contact
from contactsync.providers.base import (
    ChangePage,
    ContactDelete,
    ContactUpdate,
    NewContact,
    RemoteContact,
    WriteResult,
)
from contactsync.providers.carddav import vcard
from contactsync.providers.carddav.book import MULTIGET, AddressBook
from contactsync.providers.carddav.dav import (
    DavClient,
)
from contactsync.providers.carddav.lookup import QUERY, Wanted, query_filters
from contactsync.providers.carddav.scope import Scope
from contactsync.providers.carddav.writes import CardWrites
from contactsync.providers.transport import chunks

PAGE = 500  # contacts per page of a listing
CONTINUES = "{"  # a position continuing a listing is JSON; sync tokens are URIs


class CardDavContacts:
    """A ``ContactSide`` over one CardDAV address book (or a group in it)."""

    name = "carddav"
    carries = frozenset(ALL_FIELDS)
    limits: tuple[str, ...] | None = ()  # nothing a CardDAV account cannot sync
    listing_lag = timedelta(0)  # sync-collection reports a write at once
    lost_copy_proof = "tag"  # our cards are made at ``<book>/<tag>.vcf``
    creates_per_request = 1  # a PUT each

    def __init__(self, *, dav: DavClient, folder_id: str) -> None:
        self._dav = dav
        self._scope = Scope.parse(folder_id)
        # A book's deletions are all in scope; a group's feed reports every card of the book.
        self.deletes_in_scope_only = not self._scope.group
        self._book = AddressBook(dav, self._scope)
        self._writes = CardWrites(dav, self._book, self._scope)

    # --- reading ------------------------------------------------------------------------------

    def read(self, position: str | None) -> ChangePage:
        """One page of a full listing (from ``None``) or of the changes since a sync token."""
        if position and position.startswith(CONTINUES):
            state = json.loads(position)
            return self._page(list(state["left"]), [], str(state["token"]), bool(state["full"]))
        self._book.forget_members()
        token = position or ""
        changed, deleted, new_token = self._book.sync(token)
        if token and self._scope.group.startswith("card:"):
            group_path = self._scope.group.removeprefix("card:")
            if group_path in changed or group_path in deleted:
                # Who is in the group may have changed without any member's card changing.
                return self.read(None)
        return self._page(changed, deleted, new_token, full=not token)

    def _page(self, left: list[str], deleted: list[str], token: str, full: bool) -> ChangePage:
        now, later = left[:PAGE], left[PAGE:]
        contacts = [r for r in self._book.get(now, listing=True).values() if r is not None]
        if later:
            state = json.dumps({"token": token, "left": later, "full": full})
            return ChangePage(contacts, deleted, state, complete=False, full=full)
        return ChangePage(contacts, deleted, token, complete=True, full=full)

    def fetch(self, ids: Sequence[str]) -> dict[str, RemoteContact | None]:
        """Current state of these cards (multiget); None for a card that is gone."""
        self._book.forget_members()
        return self._book.get(list(ids))

    def id_for_tag(self, tag: str) -> str:
        return self._book.path_for(tag)

    def find_tagged(self, tag_value: str) -> RemoteContact | None:
        """The card carrying our mapping id: where we create it (``<book>/<tag>.vcf``), else
        anywhere in the book (a server that files cards under its own names)."""
        found = self._book.get([self._book.path_for(tag_value)]).get(self._book.path_for(tag_value))
        if found is not None and found.tag == tag_value:
            return found
        changed, _, _ = self._book.sync("")
        for chunk in chunks(changed, MULTIGET):
            for remote in self._book.get(chunk, listing=True).values():
                if remote is not None and remote.tag == tag_value:
                    return remote
        return None

    def lookup(self, contacts: Sequence[Contact]) -> list[RemoteContact]:
        """Cards of the address book that may be one of ``contacts`` (an email, a phone's digits
        or the full name in common), found by the server: ``addressbook-query`` REPORTs whose
        filters ask for the cards containing one of the emails, the last four digits of one of
        the phones, or every word of one of the names (in FN or N), ``QUERY`` filters a request.
        The cards that come back are compared here by their keys. A server that cannot answer
        such a query, or cuts its answer short, has the book listed instead: slower, same
        answer. A phone whose last four digits the card writes with a space or a dash among
        them ("06 12 34 56 78") is not found by its phone, only by a shared email or name."""
        wanted = Wanted.of(contacts)
        if not wanted:
            return []
        cards: dict[str, tuple[str, str] | None] = {}
        for chunk in chunks(query_filters(contacts), QUERY):
            answer = self._book.query(chunk)
            if answer is None:
                return self._lookup_in_listing(wanted)
            cards.update(answer)
        found = self._book.cards(cards, listing=True).values()
        return [r for r in found if r is not None and wanted.shares_with(r.contact)]

    def _lookup_in_listing(self, wanted: Wanted) -> list[RemoteContact]:
        """The look-up by listing the book (one sync-collection, a multiget per 200 cards)."""
        changed, _, _ = self._book.sync("")
        found: list[RemoteContact] = []
        for chunk in chunks(changed, MULTIGET):
            for remote in self._book.get(chunk, listing=True).values():
                if remote is not None and wanted.shares_with(remote.contact):
                    found.append(remote)
        return found

    def list_groups(self) -> list[tuple[str, str]]:
        """(folder id, name) of the groups in this address book: group cards, then categories."""
        cards: dict[str, str] = {}
        categories: set[str] = set()
        changed, _, _ = self._book.sync("")
        for chunk in chunks(changed, MULTIGET):
            for path, got in self._book.bodies(chunk).items():
                try:
                    card = vcard.read(got[0]) if got is not None else None
                except vcard.CardError:
                    continue
                if card is not None and card.is_group:
                    cards[path] = card.group_name or path.rpartition("/")[2]
                elif card is not None:
                    categories.update(card.categories)
        book = self._scope.book_url
        groups = [(Scope(book, f"card:{path}").folder_id, name) for path, name in cards.items()]
        groups += [(Scope(book, f"category:{c}").folder_id, c) for c in categories]
        return sorted(groups, key=lambda g: (g[1].casefold(), g[0]))

    # --- writing (``writes``) ----------------------------------------------------------------

    def create(self, items: Sequence[NewContact]) -> list[WriteResult]:
        return self._writes.create(items)

    def update(self, items: Sequence[ContactUpdate]) -> list[WriteResult]:
        return self._writes.update(items)

    def delete(self, items: Sequence[ContactDelete]) -> list[WriteResult]:
        return self._writes.delete(items)
