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
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import quote, unquote, urljoin, urlsplit

from contactsync.contacts.model import ALL_FIELDS, Contact
from contactsync.contacts.normalize import email_key, name_key
from contactsync.providers.base import (
    AuthExpired,
    ChangePage,
    ContactDelete,
    ContactUpdate,
    CursorExpired,
    InvalidContact,
    NewContact,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    ProviderError,
    RateLimited,
    RemoteContact,
    Transient,
    WriteResult,
)
from contactsync.providers.carddav import vcard
from contactsync.providers.carddav.dav import (
    CARDDAV,
    DAV,
    DavClient,
    Response,
    addressbook_query_body,
    href_of,
    multiget_body,
    parse_multistatus,
    sync_collection_body,
    tag,
)
from contactsync.providers.transport import chunks

MULTIGET = 200  # cards per addressbook-multiget
QUERY = 120  # filters per addressbook-query: 30 contacts with an email, a phone and a name
PAGE = 500  # contacts per page of a listing
CONTINUES = "{"  # a position continuing a listing is JSON; sync tokens are URIs
NOT_IN_GROUP = "not in the contact group"
A_GROUP = "a contact group card, not a contact"
UNREADABLE = "not a vCard the sync can read"
VCARD_TYPE = "text/vcard; charset=utf-8"
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class Scope:
    """Where a connection's contacts live: an address book, and optionally a group in it."""

    book_url: str
    group: str = ""  # "card:<path>" or "category:<name>"

    @classmethod
    def parse(cls, folder_id: str) -> Scope:
        book, _, group = folder_id.partition("#")
        return cls(book if book.endswith("/") else book + "/", unquote(group))

    @property
    def folder_id(self) -> str:
        return self.book_url + (f"#{quote(self.group, safe=':/')}" if self.group else "")

    @property
    def book_path(self) -> str:
        return unquote(urlsplit(self.book_url).path)


class CardDavContacts:
    """A ``ContactSide`` over one CardDAV address book (or a group in it)."""

    name = "carddav"
    carries = frozenset(ALL_FIELDS)
    limits: tuple[str, ...] | None = ()  # nothing a CardDAV account cannot sync
    listing_lag = timedelta(0)  # sync-collection reports a write at once

    def __init__(self, *, dav: DavClient, folder_id: str) -> None:
        self._dav = dav
        self._scope = Scope.parse(folder_id)
        # A book's deletions are all in scope; a group's feed reports every card of the book.
        self.deletes_in_scope_only = not self._scope.group
        self._members: frozenset[str] | None = None  # the group card's members, read once a read

    # --- reading ------------------------------------------------------------------------------

    def read(self, position: str | None) -> ChangePage:
        """One page of a full listing (from ``None``) or of the changes since a sync token."""
        if position and position.startswith(CONTINUES):
            state = json.loads(position)
            return self._page(list(state["left"]), [], str(state["token"]), bool(state["full"]))
        self._members = None
        token = position or ""
        changed, deleted, new_token = self._sync(token)
        if token and self._scope.group.startswith("card:"):
            group_path = self._scope.group.removeprefix("card:")
            if group_path in changed or group_path in deleted:
                # Who is in the group may have changed without any member's card changing.
                return self.read(None)
        return self._page(changed, deleted, new_token, full=not token)

    def _page(self, left: list[str], deleted: list[str], token: str, full: bool) -> ChangePage:
        now, later = left[:PAGE], left[PAGE:]
        contacts = [r for r in self._get(now, listing=True).values() if r is not None]
        if later:
            state = json.dumps({"token": token, "left": later, "full": full})
            return ChangePage(contacts, deleted, state, complete=False, full=full)
        return ChangePage(contacts, deleted, token, complete=True, full=full)

    def _sync(self, token: str) -> tuple[list[str], list[str], str]:
        """Paths changed and deleted since ``token`` ("" lists all), and the new token."""
        changed: dict[str, None] = {}
        deleted: dict[str, None] = {}
        while True:
            resp = self._dav.report(self._scope.book_url, sync_collection_body(token))
            if resp.status_code != 207:
                if token and _invalid_token(resp.status_code, resp.text):
                    raise CursorExpired(
                        f"the CardDAV server no longer knows the sync token ({resp.status_code})",
                        status=resp.status_code,
                    )
                raise _error(resp.status_code, "list the address book")
            responses, token = parse_multistatus(resp.content, self._scope.book_url)
            truncated = False
            for r in responses:
                if self._is_book(r.href):
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

    def fetch(self, ids: Sequence[str]) -> dict[str, RemoteContact | None]:
        """Current state of these cards (multiget); None for a card that is gone."""
        self._members = None
        return self._get(list(ids))

    def find_tagged(self, tag_value: str) -> RemoteContact | None:
        """The card carrying our mapping id: where we create it (``<book>/<tag>.vcf``), else
        anywhere in the book (a server that files cards under its own names)."""
        found = self._get([self._path_for(tag_value)]).get(self._path_for(tag_value))
        if found is not None and found.tag == tag_value:
            return found
        changed, _, _ = self._sync("")
        for chunk in chunks(changed, MULTIGET):
            for remote in self._get(chunk, listing=True).values():
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
        wanted = _Wanted.of(contacts)
        if not wanted:
            return []
        cards: dict[str, tuple[str, str] | None] = {}
        for chunk in chunks(_query_filters(contacts), QUERY):
            answer = self._query(chunk)
            if answer is None:
                return self._lookup_in_listing(wanted)
            cards.update(answer)
        found = self._cards(cards, listing=True).values()
        return [r for r in found if r is not None and wanted.shares_with(r.contact)]

    def _query(
        self, filters: list[tuple[str, tuple[str, ...]]]
    ) -> dict[str, tuple[str, str] | None] | None:
        """The cards matching any of ``filters`` (path -> vCard text, ETag); None when the server
        cannot answer the query (it refuses it, or truncates the answer: 507 on the book)."""
        resp = self._dav.report(self._scope.book_url, addressbook_query_body(filters))
        if resp.status_code in (404, 410):
            raise _error(resp.status_code, "search the address book")
        if resp.status_code != 207:
            return None
        responses, _ = parse_multistatus(resp.content, self._scope.book_url)
        if any(self._is_book(r.href) and r.status == 507 for r in responses):
            return None
        return _card_bodies(r for r in responses if not self._is_book(r.href))

    def _lookup_in_listing(self, wanted: _Wanted) -> list[RemoteContact]:
        """The look-up by listing the book (one sync-collection, a multiget per 200 cards)."""
        changed, _, _ = self._sync("")
        found: list[RemoteContact] = []
        for chunk in chunks(changed, MULTIGET):
            for remote in self._get(chunk, listing=True).values():
                if remote is not None and wanted.shares_with(remote.contact):
                    found.append(remote)
        return found

    def _get(self, paths: list[str], *, listing: bool = False) -> dict[str, RemoteContact | None]:
        """The cards at these paths: None for one the server says is gone (404)."""
        cards = self._bodies(paths)
        for path in paths:
            if path not in cards:
                raise Transient(f"the CardDAV server left out a card it was asked for ({path})")
        return self._cards({path: cards[path] for path in paths}, listing=listing)

    def _cards(
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
            out[path] = self._remote(path, card, etag)
        return out

    def _bodies(self, paths: list[str]) -> dict[str, tuple[str, str] | None]:
        """path -> (vCard text, ETag), or None for a card the server says does not exist;
        200 cards a multiget."""
        out: dict[str, tuple[str, str] | None] = {}
        for chunk in chunks(paths, MULTIGET):
            resp = self._dav.report(self._scope.book_url, multiget_body(chunk))
            if resp.status_code != 207:
                raise _error(resp.status_code, "read contacts")
            responses, _ = parse_multistatus(resp.content, self._scope.book_url)
            out.update(_card_bodies(responses))
        return out

    def _remote(self, path: str, card: vcard.Card, etag: str) -> RemoteContact:
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
        group = self._scope.group
        if not group:
            return True
        if group.startswith("category:"):
            return group.removeprefix("category:") in card.categories
        return card.uid in self._group_members()

    def _group_members(self) -> frozenset[str]:
        if self._members is None:
            got = self._group_card()
            self._members = vcard.read(got[0]).members if got is not None else frozenset()
        return self._members

    def _group_card(self) -> tuple[str, str] | None:
        """The chosen group card's (vCard text, ETag); None when it is gone. A server that
        leaves it out of its answer is Transient: no member would otherwise be in scope."""
        group_path = self._scope.group.removeprefix("card:")
        got = self._bodies([group_path])
        if group_path not in got:
            raise Transient(f"the CardDAV server left out the group card ({group_path})")
        return got[group_path]

    def list_groups(self) -> list[tuple[str, str]]:
        """(folder id, name) of the groups in this address book: group cards, then categories."""
        cards: dict[str, str] = {}
        categories: set[str] = set()
        changed, _, _ = self._sync("")
        for chunk in chunks(changed, MULTIGET):
            for path, got in self._bodies(chunk).items():
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
                self._add_members([vcard.uid_for(item.tag) for item in items])
            except (RateLimited, Transient) as exc:
                stop = exc
        results: list[WriteResult] = []
        category = self._scope.group.removeprefix("category:")
        categories = [category] if self._scope.group.startswith("category:") else []
        for item in items:
            if stop is not None:
                results.append(WriteResult(item.tag, error=stop))
                continue
            uid = vcard.uid_for(item.tag)
            body = vcard.new_card(item.contact, uid=uid, tag=item.tag, categories=categories)
            try:
                result = self._put_new(item.tag, body)
            except (RateLimited, Transient) as exc:
                stop = exc
                results.append(WriteResult(item.tag, error=exc))
                continue
            results.append(result)
        return results

    def _put_new(self, tag_value: str, body: str) -> WriteResult:
        path = self._path_for(tag_value)
        url = self._url(path)
        headers = {"If-None-Match": "*", "Content-Type": VCARD_TYPE}
        resp = self._dav.request("PUT", url, body=body.encode(), headers=headers, retry=False)
        if resp.status_code in (200, 201, 204):
            remote = self._written(path, body, resp.headers.get("ETag", ""))
            return WriteResult(tag_value, remote=remote)
        if resp.status_code == 412:
            # Something is there already: ours, if an earlier attempt's answer was lost.
            found = self._get([path]).get(path)
            if found is not None and found.tag == tag_value:
                return WriteResult(tag_value, remote=found)
        return WriteResult(
            tag_value, error=_error(resp.status_code, "create a contact", write=True)
        )

    def update(self, items: Sequence[ContactUpdate]) -> list[WriteResult]:
        """Read each card, rewrite the fields that changed, PUT it back with ``If-Match``."""
        results: dict[int, WriteResult] = {}
        stop: ProviderError | None = None
        current: dict[str, tuple[str, str] | None] = {}
        try:
            current = self._bodies([item.id for item in items])
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
        new_text = vcard.updated_card(text, item.before, item.after)
        headers = {"Content-Type": VCARD_TYPE}
        if etag:
            headers["If-Match"] = etag
        resp = self._dav.request("PUT", self._url(item.id), body=new_text.encode(), headers=headers)
        if resp.status_code in (200, 201, 204):
            return WriteResult(
                item.id, remote=self._written(item.id, new_text, resp.headers.get("ETag", ""))
            )
        return WriteResult(item.id, error=_error(resp.status_code, "update a contact", write=True))

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
                resp = self._dav.request("DELETE", self._url(item.id), headers=headers)
            except (RateLimited, Transient) as exc:
                stop = exc
                results.append(WriteResult(item.id, error=exc))
                continue
            if resp.status_code in (200, 204, 404, 410):
                results.append(WriteResult(item.id))
            else:
                error = _error(resp.status_code, "delete a contact", write=True)
                results.append(WriteResult(item.id, error=error))
        return results

    def _written(self, path: str, body: str, etag: str) -> RemoteContact:
        """The contact as we wrote it; a server that sent no ETag (it changed the card) is asked."""
        if not etag:
            found = self._get([path]).get(path)
            if found is not None:
                return found
        return self._remote(path, vcard.read(body), etag)

    def _add_members(self, uids: list[str]) -> None:
        """Put contacts in the chosen group card (re-read and written again when it changed
        under the write): Transient when it kept changing, the server's error when it refused."""
        group_path = self._scope.group.removeprefix("card:")
        for _ in range(3):
            got = self._group_card()
            if got is None:
                return
            text, etag = got
            for uid in uids:
                text = vcard.with_member(text, uid, present=True)
            headers = {"Content-Type": VCARD_TYPE, **({"If-Match": etag} if etag else {})}
            resp = self._dav.request(
                "PUT", self._url(group_path), body=text.encode(), headers=headers
            )
            self._members = None
            if resp.status_code in (200, 201, 204):
                return
            if resp.status_code != 412:
                raise _error(resp.status_code, "add contacts to the group", write=True)
        raise Transient("the contact group card kept changing under our write")

    # --- pieces -------------------------------------------------------------------------------

    def _is_book(self, path: str) -> bool:
        return path.rstrip("/") == self._scope.book_path.rstrip("/")

    def _path_for(self, tag_value: str) -> str:
        return f"{self._scope.book_path}{_SAFE_NAME.sub('_', tag_value)}.vcf"

    def _url(self, path: str) -> str:
        return urljoin(self._scope.book_url, href_of(path))


@dataclass(frozen=True)
class _Wanted:
    """What a look-up compares cards by: the contacts' email keys, phones' digits and name keys.
    Phones by their digits: the adapter does not know the connection's phone region, and a
    look-up may return too much (the engine compares normalised keys), never too little."""

    emails: frozenset[str]
    phones: frozenset[str]
    names: frozenset[str]

    @classmethod
    def of(cls, contacts: Sequence[Contact]) -> _Wanted:
        return cls(
            frozenset(k for c in contacts for e in c.emails if (k := email_key(e.value))),
            frozenset(k for c in contacts for p in c.phones if (k := _digits(p.value))),
            frozenset(k for c in contacts if (k := name_key(c.full_name))),
        )

    def __bool__(self) -> bool:
        return bool(self.emails or self.phones or self.names)

    def shares_with(self, card: Contact) -> bool:
        return bool(
            {email_key(e.value) for e in card.emails} & self.emails
            or {_digits(p.value) for p in card.phones} & self.phones
            or name_key(card.full_name) in self.names
        )


def _query_filters(contacts: Sequence[Contact]) -> list[tuple[str, tuple[str, ...]]]:
    """The addressbook-query filters that find the cards a look-up wants, each once: EMAIL
    containing an email; TEL containing a phone's last four digits (the part most ways of
    writing a number keep together); FN, and N, containing every word of a name (words, not the
    name: FN "Cy  Park" is found, and so is N "Park;Cy;Middle" for "Cy Middle Park"). Texts
    are sent as typed: the server compares them without case."""
    filters: dict[tuple[str, tuple[str, ...]], None] = {}
    for contact in contacts:
        for email in contact.emails:
            if email.value.strip():
                filters[("EMAIL", (email.value.strip(),))] = None
        for phone in contact.phones:
            if digits := _digits(phone.value)[-4:]:
                filters[("TEL", (digits,))] = None
        if words := tuple(contact.full_name.split()):
            filters[("FN", words)] = None
            filters[("N", words)] = None
    return list(filters)


def _card_bodies(responses: Iterable[Response]) -> dict[str, tuple[str, str] | None]:
    """path -> (vCard text, ETag) of the cards in a multistatus answer; None for one gone."""
    out: dict[str, tuple[str, str] | None] = {}
    for r in responses:
        data = r.text(tag(CARDDAV, "address-data"))
        if r.status in (404, 410):
            out[r.href] = None
        elif r.status == 200 and data:
            out[r.href] = (data, r.text(tag(DAV, "getetag")))
    return out


def _invalid_token(status: int, text: str) -> bool:
    """RFC 6578: an unknown token fails the DAV:valid-sync-token precondition (403); servers
    also answer 400, 409, 410 or 412 for it."""
    return "valid-sync-token" in text or status in (400, 409, 410, 412)


def _error(status: int, doing: str, *, write: bool = False) -> ProviderError:
    message = f"the CardDAV server refused to {doing} ({status})"
    if status == 401:
        return AuthExpired(message, status=401)
    if status == 403:
        return PermissionDenied(message, missing=["write access to the address book"])
    if status in (404, 410):
        return NotFound(message, status=status)
    if status == 412:
        return PreconditionFailed(message, status=412)
    if status >= 500:
        return Transient(message, status=status)
    if write and 400 <= status < 500:
        return InvalidContact(message, status=status)
    return ProviderError(message, status=status)


def _digits(phone: str) -> str:
    """A phone's last ten digits (how the lookup compares numbers written differently)."""
    return "".join(ch for ch in phone if ch.isdigit())[-10:]
