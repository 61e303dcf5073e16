"""The Microsoft 365 side: one Outlook contact folder, read and written through Microsoft Graph.

Reads use the folder's contacts delta (``Prefer: odata.maxpagesize``), writes go through JSON
``$batch`` (20 requests per batch). Every request goes through ``graph`` (the transport under
Graph's rules, ``errors.GRAPH``, and the batches, whose sub-requests a busy mailbox answered 429
are sent again after their short Retry-After). 410 on delta is CursorExpired, 412 a per-item
PreconditionFailed. The mapping to the canonical contact is in ``mapping``, an item as a
RemoteContact (our tag in an extended property) in ``items``; writes are in ``writes``,
change notifications in ``subscriptions``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import httpx

from contactsync.contacts.model import ALL_FIELDS, Contact
from contactsync.providers.base import (
    ChangePage,
    ContactDelete,
    ContactUpdate,
    NewContact,
    ProviderError,
    RemoteContact,
    WriteResult,
)
from contactsync.providers.microsoft import subscriptions
from contactsync.providers.microsoft.errors import error_of
from contactsync.providers.microsoft.graph import BATCH_SIZE, GraphApi
from contactsync.providers.microsoft.items import (
    TAG_EXPAND,
    TAG_EXPAND_QUERY,
    TAG_PROPERTY_ID,
    remote_of,
)
from contactsync.providers.microsoft.lookup import lookup_requests
from contactsync.providers.microsoft.writes import ContactWrites

FULL = "full|"  # prefix of a position that continues a full listing


class MicrosoftContacts:
    """A ``ContactSide`` over one Outlook contact folder of the signed-in user."""

    name = "microsoft"
    carries = frozenset(ALL_FIELDS)
    limits: tuple[str, ...] | None = ()  # nothing this account cannot sync
    deletes_in_scope_only = True  # the folder's delta reports only what was in the folder
    listing_lag = timedelta(0)
    lost_copy_proof = "unseen"  # folder delta, immutable ids: see ``sync.reconcile.lost_copies``
    creates_per_request = BATCH_SIZE  # a ``$batch``

    def __init__(
        self,
        *,
        base_url: str,
        token: Callable[[bool], str],
        folder_id: str,
        client: httpx.Client | None = None,
        page_size: int = 500,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._folder = folder_id
        self._graph = GraphApi(
            base_url=base_url,
            token=token,
            client=client or httpx.Client(timeout=httpx.Timeout(30.0, connect=5.0)),
        )
        self._page_size = page_size
        self._writes = ContactWrites(self._graph, folder_id)

    # --- reading ------------------------------------------------------------------------------

    def read(self, position: str | None) -> ChangePage:
        """One delta page; ``None`` starts a full listing. Removed items are looked up (20 per
        $batch): gone means deleted, still there means moved out of the folder (out of scope).
        A position continuing a full listing is marked ``full|`` so later pages stay ``full``."""
        full = position is None or position.startswith(FULL)
        if position is None:
            url = f"{self._base}/me/contactFolders/{self._folder}/contacts/delta"
        else:
            url = position.removeprefix(FULL)
        prefer = {"Prefer": f"odata.maxpagesize={self._page_size}"}
        body = self._graph.json(self._graph.send("GET", url, headers=prefer), cursor=True)
        contacts: list[RemoteContact] = []
        removed: list[str] = []
        for item in body.get("value", []):
            if "@removed" in item:
                removed.append(str(item["id"]))
            else:
                contacts.append(self._remote(item))
        deleted: list[str] = []
        for cid, current in self.fetch(removed).items():
            if current is None:
                deleted.append(cid)
            else:  # still exists: it left the folder (or came back to it)
                contacts.append(current)
        next_link = body.get("@odata.nextLink")
        if next_link:
            return ChangePage(contacts, deleted, (FULL if full else "") + next_link, False, full)
        return ChangePage(contacts, deleted, str(body.get("@odata.deltaLink", "")), True, full)

    def fetch(self, ids: Sequence[str]) -> dict[str, RemoteContact | None]:
        """Current state (with our tag) of these ids, 20 GETs per $batch; None when gone."""
        requests = [
            {"id": str(i), "method": "GET", "url": f"/me/contacts/{cid}?{TAG_EXPAND_QUERY}"}
            for i, cid in enumerate(ids)
        ]
        found: dict[str, RemoteContact | None] = {}
        for answer in self._graph.batch(requests):
            cid = ids[int(answer.id)]
            if answer.status == 404:
                found[cid] = None
            elif answer.status == 200:
                found[cid] = self._remote(answer.body)
            else:
                raise error_of(answer.status, answer.body, default=ProviderError)
        return found

    def id_for_tag(self, tag: str) -> str:
        return ""  # the side chooses its ids

    def find_tagged(self, tag: str) -> RemoteContact | None:
        """The contact carrying ``tag``: in the sync folder, or, if the user moved it since we
        made it, in another folder of the mailbox (then it is reported out of scope)."""
        quoted = tag.replace("'", "''")
        params = {
            "$filter": f"singleValueExtendedProperties/Any(ep: ep/id eq '{TAG_PROPERTY_ID}' "
            f"and ep/value eq '{quoted}')",
            "$expand": TAG_EXPAND,
            "$top": "1",
        }
        for url in self._contact_lists():
            items = self._graph.json(self._graph.send("GET", url, params=params)).get("value", [])
            if items:
                return self._remote(items[0])
        return None

    def lookup(self, contacts: Sequence[Contact]) -> list[RemoteContact]:
        """Contacts of the sync folder with one of these email addresses or display names: one
        ``$filter`` GET each, 20 per ``$batch``. (Graph filters ``emailAddresses`` only with
        ``any``/``eq`` on the address, and phones not at all: a phone-only twin is not found.)"""
        requests = lookup_requests(contacts, self._folder)
        found: dict[str, RemoteContact] = {}
        for answer in self._graph.batch(requests):
            if answer.status != 200:
                raise error_of(answer.status, answer.body, default=ProviderError)
            for item in (answer.body or {}).get("value", []):
                remote = self._remote(item)
                found[remote.id] = remote
        return list(found.values())

    def _contact_lists(self) -> Iterator[str]:
        """The sync folder's contacts first, then the default folder's, then every other folder's
        (top-level folders: those a user moves contacts to)."""
        yield f"{self._base}/me/contactFolders/{self._folder}/contacts"
        yield f"{self._base}/me/contacts"
        listed = self._graph.json(self._graph.send("GET", f"{self._base}/me/contactFolders"))
        for folder in listed.get("value", []):
            if str(folder.get("id")) != self._folder:
                yield f"{self._base}/me/contactFolders/{folder['id']}/contacts"

    # --- writing (``writes``) ----------------------------------------------------------------

    def create(self, items: Sequence[NewContact]) -> list[WriteResult]:
        return self._writes.create(items)

    def update(self, items: Sequence[ContactUpdate]) -> list[WriteResult]:
        return self._writes.update(items)

    def delete(self, items: Sequence[ContactDelete]) -> list[WriteResult]:
        return self._writes.delete(items)

    # --- account, folders, subscriptions ------------------------------------------------------

    def whoami(self) -> tuple[str, str]:
        me = self._graph.json(self._graph.send("GET", f"{self._base}/me"))
        return str(me["id"]), str(me.get("mail") or me.get("userPrincipalName") or "")

    def list_folders(self) -> list[tuple[str, str]]:
        """The default Contacts folder first, then the folders Graph lists under it."""
        default = self._graph.json(
            self._graph.send("GET", f"{self._base}/me/contactFolders/contacts")
        )
        folders = [(str(default["id"]), str(default.get("displayName") or "Contacts"))]
        url: str | None = f"{self._base}/me/contactFolders?$top=100"
        while url:
            page = self._graph.json(self._graph.send("GET", url))
            folders += [(str(f["id"]), str(f.get("displayName", ""))) for f in page["value"]]
            url = page.get("@odata.nextLink")
        return folders

    def create_folder(self, name: str) -> tuple[str, str]:
        """A new contact folder for the sync (the CRM's advice: not the whole address book)."""
        body = {"displayName": name}
        folder = self._graph.json(
            self._graph.send("POST", f"{self._base}/me/contactFolders", json=body)
        )
        return str(folder["id"]), str(folder.get("displayName") or name)

    def create_subscription(
        self, *, notification_url: str, lifecycle_url: str, client_state: str, expires_at: datetime
    ) -> tuple[str, datetime]:
        return subscriptions.create(
            self._graph,
            self._base,
            self._folder,
            notification_url=notification_url,
            lifecycle_url=lifecycle_url,
            client_state=client_state,
            expires_at=expires_at,
        )

    def renew_subscription(self, sub_id: str, expires_at: datetime) -> datetime:
        return subscriptions.renew(self._graph, self._base, sub_id, expires_at)

    def delete_subscription(self, sub_id: str) -> None:
        subscriptions.delete(self._graph, self._base, sub_id)

    def _remote(self, item: dict[str, Any]) -> RemoteContact:
        return remote_of(item, self._folder)
