"""How cards are written: one PUT / DELETE per card (CardDAV has no batch).

A create is PUT at ``<book>/<mapping id>.vcf`` with ``If-None-Match: *`` and carries our mapping
id in ``X-CONTACTSYNC-ID``, so a create whose answer was lost is found again (a second attempt
gets 412 and finds its own card there), never made twice. An update reads the card first and
writes it back with ``If-Match``: a card whose ETag is not the one the change was planned
against, or a 412, is PreconditionFailed. Only the fields that changed are rewritten. A card
created in a group card's scope joins the group card before it is made, never after.
"""

from __future__ import annotations

from collections.abc import Sequence

from contactsync.providers.base import (
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
from contactsync.providers.carddav.book import AddressBook
from contactsync.providers.carddav.dav import DavClient
from contactsync.providers.carddav.errors import error_of
from contactsync.providers.carddav.scope import Scope

VCARD_TYPE = "text/vcard; charset=utf-8"


class CardWrites:
    """Creates, updates and deletes of the cards of one address book (or a group in it)."""

    def __init__(self, dav: DavClient, book: AddressBook, scope: Scope) -> None:
        self._dav = dav
        self._book = book
        self._scope = scope

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
