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

Writes are one PUT / DELETE per card (CardDAV has no batch): a create is PUT at
``<book>/<mapping id>.vcf`` with ``If-None-Match: *`` and carries our mapping id in
``X-CONTACTSYNC-ID``, so a create whose answer was lost is found again (a second attempt gets 412
and finds its own card there), never made twice. An update reads the card first and writes it
back with ``If-Match``: a card whose ETag is not the one the change was planned against, or a 412,
is PreconditionFailed (re-read and re-planned). Only the fields that changed are rewritten.
A card created in a group card's scope joins the group card before it is made (its UID comes
from its mapping id), never after.
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
    InvalidContact,
    NewContact,
    NotFound,
    PreconditionFailed,
    ProviderError,
    RateLimited,
    RemoteContact,
    Transient,
    WriteResult,
)
from contactsync.providers.carddav import vcard, vcard_writing
from contactsync.providers.carddav.book import MULTIGET, AddressBook
from contactsync.providers.carddav.dav import (
    DavClient,
)
from contactsync.providers.carddav.errors import error_of
from contactsync.providers.carddav.lookup import QUERY, Wanted, query_filters
from contactsync.providers.carddav.scope import Scope
from contactsync.providers.transport import chunks

PAGE = 500  # contacts per page of a listing
CONTINUES = "{"  # a position continuing a listing is JSON; sync tokens are URIs
VCARD_TYPE = "text/vcard; charset=utf-8"


class CardDavContacts:
    """A ``ContactSide`` over one CardDAV address book (or a group in it)."""

    name = "carddav"
    carries = frozenset(ALL_FIELDS)
    limits: tuple[str, ...] | None = ()  # nothing a CardDAV account cannot sync
    listing_lag = timedelta(0)  # sync-collection reports a write at once
    lost_copy_proof = "tag"  # our cards are made at ``<book>/<tag>.vcf``

    def __init__(self, *, dav: DavClient, folder_id: str) -> None:
        self._dav = dav
        self._scope = Scope.parse(folder_id)
        # A book's deletions are all in scope; a group's feed reports every card of the book.
        self.deletes_in_scope_only = not self._scope.group
        self._book = AddressBook(dav, self._scope)

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

    # --- writing ------------------------------------------------------------------------------

    def create(self, items: Sequence[NewContact]) -> list[WriteResult]:
        """One PUT per card, ``If-None-Match: *``, at ``<book>/<mapping id>.vcf``. In a group
        card's scope the cards' UIDs (made from their mapping ids: an attempt again makes the
        same) join the group card first, so that no card is ever made outside the group because
        the group's write failed: a card found by its tag after a lost answer is a member."""
        stop: ProviderError | None = None
        if self._scope.group.startswith("card:"):
            try:
                self._add_members([vcard_writing.uid_for(item.tag) for item in items])
            except (RateLimited, Transient) as exc:
                stop = exc
        results: list[WriteResult] = []
        category = self._scope.group.removeprefix("category:")
        categories = [category] if self._scope.group.startswith("category:") else []
        for item in items:
            if stop is not None:
                results.append(WriteResult(item.tag, error=stop))
                continue
            uid = vcard_writing.uid_for(item.tag)
            body = vcard_writing.new_card(
                item.contact, uid=uid, tag=item.tag, categories=categories
            )
            try:
                result = self._put_new(item.tag, body)
            except (RateLimited, Transient) as exc:
                stop = exc
                results.append(WriteResult(item.tag, error=exc))
                continue
            results.append(result)
        return results

    def _put_new(self, tag_value: str, body: str) -> WriteResult:
        path = self._book.path_for(tag_value)
        url = self._book.url(path)
        headers = {"If-None-Match": "*", "Content-Type": VCARD_TYPE}
        resp = self._dav.request("PUT", url, body=body.encode(), headers=headers, retry=False)
        if resp.status_code in (200, 201, 204):
            remote = self._written(path, body, resp.headers.get("ETag", ""))
            return WriteResult(tag_value, remote=remote)
        if resp.status_code == 412:
            # Something is there already: ours, if an earlier attempt's answer was lost.
            found = self._book.get([path]).get(path)
            if found is not None and found.tag == tag_value:
                return WriteResult(tag_value, remote=found)
        return WriteResult(
            tag_value, error=error_of(resp.status_code, "create a contact", write=True)
        )

    def update(self, items: Sequence[ContactUpdate]) -> list[WriteResult]:
        """Read each card, rewrite the fields that changed, PUT it back with ``If-Match``."""
        results: dict[int, WriteResult] = {}
        stop: ProviderError | None = None
        current: dict[str, tuple[str, str] | None] = {}
        try:
            current = self._book.bodies([item.id for item in items])
        except (RateLimited, Transient) as exc:
            stop = exc
        for i, item in enumerate(items):
            if stop is not None:
                results[i] = WriteResult(item.id, error=stop)
                continue
            if item.id not in current:
                left_out = Transient(
                    f"the CardDAV server left out a card it was asked for ({item.id})"
                )
                results[i] = WriteResult(item.id, error=left_out)
                continue
            got = current[item.id]
            if got is None:
                results[i] = WriteResult(item.id, error=NotFound("the contact is gone", status=404))
                continue
            text, etag = got
            if item.version and etag and item.version != etag:
                results[i] = WriteResult(
                    item.id, error=PreconditionFailed("the contact changed since it was read")
                )
                continue
            try:
                results[i] = self._put_update(item, text, etag)
            except (RateLimited, Transient) as exc:
                stop = exc
                results[i] = WriteResult(item.id, error=exc)
            except vcard.CardError as exc:
                results[i] = WriteResult(item.id, error=InvalidContact(str(exc)))
        return [results[i] for i in range(len(items))]

    def _put_update(self, item: ContactUpdate, text: str, etag: str) -> WriteResult:
        new_text = vcard_writing.updated_card(text, item.before, item.after)
        headers = {"Content-Type": VCARD_TYPE}
        if etag:
            headers["If-Match"] = etag
        resp = self._dav.request(
            "PUT", self._book.url(item.id), body=new_text.encode(), headers=headers
        )
        if resp.status_code in (200, 201, 204):
            return WriteResult(
                item.id, remote=self._written(item.id, new_text, resp.headers.get("ETag", ""))
            )
        return WriteResult(
            item.id, error=error_of(resp.status_code, "update a contact", write=True)
        )

    def delete(self, items: Sequence[ContactDelete]) -> list[WriteResult]:
        """One DELETE per card, ``If-Match`` its version; a card already gone counts as deleted."""
        results: list[WriteResult] = []
        stop: ProviderError | None = None
        for item in items:
            if stop is not None:
                results.append(WriteResult(item.id, error=stop))
                continue
            headers = {"If-Match": item.version} if item.version else {}
            try:
                resp = self._dav.request("DELETE", self._book.url(item.id), headers=headers)
            except (RateLimited, Transient) as exc:
                stop = exc
                results.append(WriteResult(item.id, error=exc))
                continue
            if resp.status_code in (200, 204, 404, 410):
                results.append(WriteResult(item.id))
            else:
                error = error_of(resp.status_code, "delete a contact", write=True)
                results.append(WriteResult(item.id, error=error))
        return results

    def _written(self, path: str, body: str, etag: str) -> RemoteContact:
        """The contact as we wrote it; a server that sent no ETag (it changed the card) is asked."""
        if not etag:
            found = self._book.get([path]).get(path)
            if found is not None:
                return found
        return self._book.remote(path, vcard.read(body), etag)

    def _add_members(self, uids: list[str]) -> None:
        """Put contacts in the chosen group card (re-read and written again when it changed
        under the write): Transient when it kept changing, the server's error when it refused."""
        group_path = self._scope.group.removeprefix("card:")
        for _ in range(3):
            got = self._book.group_card()
            if got is None:
                return
            text, etag = got
            for uid in uids:
                text = vcard_writing.with_member(text, uid, present=True)
            headers = {"Content-Type": VCARD_TYPE, **({"If-Match": etag} if etag else {})}
            resp = self._dav.request(
                "PUT", self._book.url(group_path), body=text.encode(), headers=headers
            )
            self._book.forget_members()
            if resp.status_code in (200, 201, 204):
                return
            if resp.status_code != 412:
                raise error_of(resp.status_code, "add contacts to the group", write=True)
        raise Transient("the contact group card kept changing under our write")
