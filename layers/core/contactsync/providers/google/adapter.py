"""The Google side: one contact group of the signed-in user, read and written with the People API.

Reads list ``people/me/connections`` with a sync token (no push exists for contacts): a full
listing asks for ``requestSyncToken``, later reads send the token and get only changes, deleted
persons flagged ``metadata.deleted``. An expired token is CursorExpired. Every connection is
listed; a person outside the chosen group comes back ``in_scope=False``.

Writes go in batches, one at a time per adapter (``writes``); persons are read as
``RemoteContact``s, and by resource name, in ``persons``.

Every request goes through ``people_api`` (the transport under Google's rules,
``errors.GOOGLE``); creates are never sent twice blindly. What a failed batch says of its
contacts is read in ``errors``; the mapping to the canonical contact is in ``mapping``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import httpx

from contactsync.contacts.model import ALL_FIELDS, Contact
from contactsync.providers.base import (
    ChangePage,
    ContactDelete,
    ContactUpdate,
    NewContact,
    RemoteContact,
    WriteResult,
)
from contactsync.providers.google.mapping import is_primary, tag_of
from contactsync.providers.google.people_api import PeopleApi
from contactsync.providers.google.persons import (
    PERSON_FIELDS,
    WRITE_BATCH,
    batch_get,
    remote_of,
)
from contactsync.providers.google.writes import PeopleWrites

MY_CONTACTS = "contactGroups/myContacts"
CONTINUES = "{"  # a position continuing a listing is JSON; a sync token never starts so


class GoogleContacts:
    """A ``ContactSide`` over one contact group of the signed-in user's Google contacts."""

    name = "google"
    carries = frozenset(ALL_FIELDS)
    limits: tuple[str, ...] | None = ()  # nothing this account cannot sync
    deletes_in_scope_only = False  # sync results carry deleted contacts of every group
    # A deleted person comes back as its resource name alone, of any group, and resource names
    # change: a deletion cannot be told to be of a copy whose answer was lost.
    lost_copy_proof = ""
    creates_per_request = WRITE_BATCH  # people:batchCreateContacts

    def __init__(
        self,
        *,
        base_url: str,
        token: Callable[[bool], str],
        group_id: str,
        client: httpx.Client,
        page_size: int = 1000,
        listing_lag: timedelta = timedelta(minutes=5),
    ) -> None:
        self.listing_lag = listing_lag  # Google: writes reach sync listings minutes later
        self._api = PeopleApi(base_url=base_url, token=token, client=client)
        self._group = group_id
        self._page_size = page_size
        self._writes = PeopleWrites(self._api, group_id)

    # --- reading ------------------------------------------------------------------------------

    def read(self, position: str | None) -> ChangePage:
        """One page of connections: a full listing from ``None``, changes from a sync token.

        A position in the middle of a listing is JSON holding the page token and, for a change
        listing, its sync token (Google wants every other parameter repeated with a page token).
        """
        page_token, sync_token = "", ""
        if position and position.startswith(CONTINUES):
            state = json.loads(position)
            page_token, sync_token = str(state["page"]), str(state.get("sync") or "")
        elif position:
            sync_token = position
        full = not sync_token
        params = {
            "personFields": PERSON_FIELDS,
            "pageSize": str(self._page_size),
            "requestSyncToken": "true",
        }
        if sync_token:
            params["syncToken"] = sync_token
        if page_token:
            params["pageToken"] = page_token
        resp = self._api.send("GET", "/v1/people/me/connections", params=params)
        body = self._api.json(resp, cursor=bool(sync_token))
        contacts: list[RemoteContact] = []
        deleted: list[str] = []
        for person in body.get("connections") or []:
            if (person.get("metadata") or {}).get("deleted"):
                deleted.append(str(person["resourceName"]))
            else:
                contacts.append(self._remote(person))
        next_page = body.get("nextPageToken")
        if next_page:
            state_out = json.dumps({"page": next_page, "sync": sync_token or None})
            return ChangePage(contacts, deleted, state_out, complete=False, full=full)
        return ChangePage(contacts, deleted, str(body.get("nextSyncToken") or ""), True, full)

    def fetch(self, ids: Sequence[str]) -> dict[str, RemoteContact | None]:
        """Current state of these persons (``people:batchGet``, 200 a call); None when Google
        says NOT_FOUND. A person the answer leaves out is left out here too (unknown)."""
        found = batch_get(self._api, ids, self._group)
        return {rn: None if p is None else self._remote(p) for rn, p in found.items()}

    def id_for_tag(self, tag: str) -> str:
        return ""  # the side chooses its ids

    def find_tagged(self, tag: str) -> RemoteContact | None:
        """The person whose clientData carries ``tag``.

        Google cannot search clientData, so this lists every connection (1000 a page). That is
        expensive, but it only runs to recover a create whose answer was lost. Google also says
        writes may take minutes to show up in listings, so a very recent create can be missed
        (the caller then creates again; the duplicate is matched by its tag later)."""
        params = {"personFields": PERSON_FIELDS, "pageSize": str(self._page_size)}
        while True:
            body = self._api.json(self._api.send("GET", "/v1/people/me/connections", params=params))
            for person in body.get("connections") or []:
                if tag_of(person) == tag:
                    return self._remote(person)
            if not body.get("nextPageToken"):
                return None
            params = {**params, "pageToken": str(body["nextPageToken"])}

    def lookup(self, contacts: Sequence[Contact]) -> list[RemoteContact]:
        """Contacts of the group sharing an email, a phone or a name with these:
        ``people:searchContacts``, once with an empty query (the warm-up Google asks for before
        searching, which refreshes its search cache), then once per email, phone and name."""
        terms = list(
            dict.fromkeys(
                value.strip()
                for contact in contacts
                for value in (
                    *(e.value for e in contact.emails),
                    *(p.value for p in contact.phones),
                    contact.full_name,
                )
                if value.strip()
            )
        )
        if not terms:
            return []
        found: dict[str, RemoteContact] = {}
        for query in ["", *terms]:
            params = {"query": query, "readMask": PERSON_FIELDS, "pageSize": "30"}
            body = self._api.json(self._api.send("GET", "/v1/people:searchContacts", params=params))
            for result in body.get("results") or []:
                if not (result.get("person") or {}).get("resourceName"):
                    continue
                remote = self._remote(result["person"])
                if remote.in_scope:
                    found[remote.id] = remote
        return list(found.values())

    # --- writing (``writes``) ----------------------------------------------------------------

    def create(self, items: Sequence[NewContact]) -> list[WriteResult]:
        return self._writes.create(items)

    def update(self, items: Sequence[ContactUpdate]) -> list[WriteResult]:
        return self._writes.update(items)

    def delete(self, items: Sequence[ContactDelete]) -> list[WriteResult]:
        return self._writes.delete(items)

    # --- account and groups -------------------------------------------------------------------

    def whoami(self) -> tuple[str, str]:
        """("people/<id>", email) of the signed-in user."""
        params = {"personFields": "emailAddresses,names"}
        me = self._api.json(self._api.send("GET", "/v1/people/me", params=params))
        emails = me.get("emailAddresses") or []
        primary = [e for e in emails if is_primary(e)] or emails
        return str(me["resourceName"]), str(primary[0].get("value", "")) if primary else ""

    def create_group(self, name: str) -> tuple[str, str]:
        """A new contact group for the sync (the CRM's advice: not "My Contacts")."""
        body = {"contactGroup": {"name": name}}
        group = self._api.json(self._api.send("POST", "/v1/contactGroups", json=body, retry=False))
        return str(group["resourceName"]), str(group.get("name") or name)

    def list_groups(self) -> list[tuple[str, str]]:
        """My Contacts first, then the user's own groups by name."""
        mine = "My Contacts"
        groups: list[tuple[str, str]] = []
        params = {"pageSize": "1000", "groupFields": "name,groupType"}
        while True:
            body = self._api.json(self._api.send("GET", "/v1/contactGroups", params=params))
            for group in body.get("contactGroups") or []:
                name = str(group.get("formattedName") or group.get("name") or "")
                if group.get("resourceName") == MY_CONTACTS:
                    mine = name or mine
                elif group.get("groupType") == "USER_CONTACT_GROUP":
                    groups.append((str(group["resourceName"]), name))
            if not body.get("nextPageToken"):
                break
            params = {**params, "pageToken": str(body["nextPageToken"])}
        return [(MY_CONTACTS, mine), *sorted(groups, key=lambda g: (g[1].casefold(), g[0]))]

    def _remote(self, person: dict[str, Any]) -> RemoteContact:
        return remote_of(person, self._group)
