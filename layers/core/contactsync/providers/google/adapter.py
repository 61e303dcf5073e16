"""The Google side: one contact group of the signed-in user, read and written with the People API.

Reads list ``people/me/connections`` with a sync token (no push exists for contacts): a full
listing asks for ``requestSyncToken``, later reads send the token and get only changes, deleted
persons flagged ``metadata.deleted``. An expired token is CursorExpired. Every connection is
listed; a person outside the chosen group comes back ``in_scope=False``.

Writes use the batch methods (create and update 200 contacts a call, delete 500), one at a time
per adapter (Google asks for sequential mutations per user). A batch fails as a whole and names
the contacts at fault (``contactErrors``): those get a per-contact error and the rest are sent
again. An update first reads the current persons (``people:batchGet``): Google wants the
contact's ``metadata.sources`` and etag back, a stale etag is a PreconditionFailed without
writing, and the masked fields are rebuilt on the current values (``mapping.rebuilt``).

Every request goes through ``people_api`` (the transport under Google's rules,
``errors.GOOGLE``); creates are never sent twice blindly. What a failed batch says of its
contacts is read in ``errors``; the mapping to the canonical contact is in ``mapping``.
"""

from __future__ import annotations

import functools
import json
import threading
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
    NotFound,
    PreconditionFailed,
    ProviderError,
    RateLimited,
    RemoteContact,
    Transient,
    WriteResult,
)
from contactsync.providers.google.errors import (
    batch_error,
    contact_errors,
    error_of,
    status_error,
)
from contactsync.providers.google.mapping import (
    MODELLED,
    TAG_KEY,
    from_person,
    is_primary,
    person_fields_changed,
    rebuilt,
    tag_of,
    to_person,
)
from contactsync.providers.google.people_api import PeopleApi
from contactsync.providers.transport import answer_body, chunks

MY_CONTACTS = "contactGroups/myContacts"
NOT_IN_GROUP = "not in the contact group"
PERSON_FIELDS = ",".join((*MODELLED, "memberships", "clientData", "metadata"))
WRITE_BATCH = 200  # batchCreateContacts / batchUpdateContacts / people:batchGet
DELETE_BATCH = 500  # batchDeleteContacts
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
        self._mutating = threading.Lock()  # Google wants one mutation at a time per user

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
        return {rn: None if p is None else self._remote(p) for rn, p in self._persons(ids).items()}

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

    # --- writing ------------------------------------------------------------------------------

    def create(self, items: Sequence[NewContact]) -> list[WriteResult]:
        """``people:batchCreateContacts``, 200 a call, in the chosen group, tagged."""
        results: dict[int, WriteResult] = {}
        with self._mutating:
            self._inchunks(
                list(range(len(items))),
                WRITE_BATCH,
                lambda chunk: self._create_chunk(items, chunk, results),
                lambda i, error: results.__setitem__(i, WriteResult(items[i].tag, error=error)),
            )
        return [results[i] for i in range(len(items))]

    def update(self, items: Sequence[ContactUpdate]) -> list[WriteResult]:
        """``people:batchUpdateContacts`` with only the changed person fields in the mask.

        Google takes one mask per call, so contacts are grouped by the fields they change."""
        results: dict[int, WriteResult] = {}
        by_mask: dict[tuple[str, ...], list[int]] = {}
        for i, item in enumerate(items):
            mask = tuple(person_fields_changed(item.before, item.after))
            if mask:
                by_mask.setdefault(mask, []).append(i)
            else:  # nothing Google holds differs: no request at all
                results[i] = WriteResult(item.id)
        with self._mutating:
            for mask, indexes in by_mask.items():
                self._inchunks(
                    indexes,
                    WRITE_BATCH,
                    functools.partial(self._update_chunk, items, mask=mask, results=results),
                    lambda i, error: results.__setitem__(i, WriteResult(items[i].id, error=error)),
                )
        return [results[i] for i in range(len(items))]

    def delete(self, items: Sequence[ContactDelete]) -> list[WriteResult]:
        """``people:batchDeleteContacts``, 500 a call; a contact already gone counts as deleted.

        Google deletes without an etag check, so ``version`` is not used."""
        results: dict[int, WriteResult] = {}
        with self._mutating:
            self._inchunks(
                list(range(len(items))),
                DELETE_BATCH,
                lambda chunk: self._delete_chunk(items, chunk, results),
                lambda i, error: results.__setitem__(i, WriteResult(items[i].id, error=error)),
            )
        return [results[i] for i in range(len(items))]

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

    # --- batches ------------------------------------------------------------------------------

    def _inchunks(
        self,
        indexes: list[int],
        size: int,
        run: Callable[[list[int]], None],
        fail: Callable[[int, ProviderError], None],
    ) -> None:
        """Run ``run`` on chunks of ``size``. A throttle or an outage keeps what was done: that
        chunk and every later one get the error (so the caller records them and re-queues)."""
        stop: ProviderError | None = None
        for chunk in chunks(indexes, size):
            if stop is None:
                try:
                    run(chunk)
                    continue
                except (RateLimited, Transient) as exc:
                    stop = exc
            for i in chunk:
                fail(i, stop)

    def _create_chunk(
        self, items: Sequence[NewContact], chunk: list[int], results: dict[int, WriteResult]
    ) -> None:
        pending = list(chunk)
        while pending:
            contacts = [{"contactPerson": self._new_person(items[i])} for i in pending]
            body = {"contacts": contacts, "readMask": PERSON_FIELDS}
            resp = self._api.send("POST", "/v1/people:batchCreateContacts", json=body, retry=False)
            if resp.status_code == 200:
                created = self._api.json(resp).get("createdPeople") or []
                by_tag = {tag_of(a.get("person") or {}): a for a in created}
                for n, i in enumerate(pending):
                    tag = items[i].tag
                    answer = by_tag.get(tag) or (created[n] if n < len(created) else {})
                    results[i] = self._written(tag, answer)
                return
            failed = contact_errors(resp, [str(n) for n in range(len(pending))])
            for key, error in failed.items():
                i = pending[int(key)]
                results[i] = WriteResult(items[i].tag, error=error)
            pending = [i for n, i in enumerate(pending) if str(n) not in failed]

    def _update_chunk(
        self,
        items: Sequence[ContactUpdate],
        chunk: list[int],
        *,
        mask: tuple[str, ...],
        results: dict[int, WriteResult],
    ) -> None:
        current = self._persons([items[i].id for i in chunk])
        sendable: dict[str, dict[str, Any]] = {}
        index: dict[str, int] = {}
        for i in chunk:
            item = items[i]
            person = current.get(item.id)
            if person is None:
                error: ProviderError = NotFound(f"Google contact {item.id} no longer exists")
                results[i] = WriteResult(item.id, error=error)
                continue
            if item.version and person.get("etag") != item.version:
                error = PreconditionFailed(f"Google contact {item.id} changed since it was read")
                results[i] = WriteResult(item.id, error=error)
                continue
            sendable[item.id] = rebuilt(person, to_person(item.after), mask)
            index[item.id] = i
        while sendable:
            body = {
                "contacts": sendable,
                "updateMask": ",".join(mask),
                "readMask": PERSON_FIELDS,
            }
            resp = self._api.send("POST", "/v1/people:batchUpdateContacts", json=body)
            if resp.status_code == 200:
                answers = self._api.json(resp).get("updateResult") or {}
                for rn in sendable:
                    results[index[rn]] = self._written(rn, answers.get(rn) or {})
                return
            failed = contact_errors(resp, list(sendable))
            for rn, error in failed.items():
                results[index[rn]] = WriteResult(rn, error=error)
            sendable = {rn: p for rn, p in sendable.items() if rn not in failed}

    def _delete_chunk(
        self, items: Sequence[ContactDelete], chunk: list[int], results: dict[int, WriteResult]
    ) -> None:
        names = [items[i].id for i in chunk]
        resp = self._api.send(
            "POST", "/v1/people:batchDeleteContacts", json={"resourceNames": names}
        )
        if resp.status_code == 404:  # one of them was already gone: delete one by one
            for i in chunk:
                one = self._api.send("DELETE", f"/v1/{items[i].id}:deleteContact")
                ok = one.status_code in (200, 204, 404)
                error = None if ok else error_of(one.status_code, answer_body(one), write=True)
                results[i] = WriteResult(items[i].id, error=error)
            return
        if resp.status_code >= 400:
            error = batch_error(resp)
            for i in chunk:
                results[i] = WriteResult(items[i].id, error=error)
            return
        for i in chunk:
            results[i] = WriteResult(items[i].id)

    def _written(self, key: str, answer: dict[str, Any]) -> WriteResult:
        """One PersonResponse of a batch answer as a WriteResult."""
        status = answer.get("status") or {}
        code = int(answer.get("httpStatusCode") or 200)
        if (status and int(status.get("code") or 0) != 0) or code >= 400:
            return WriteResult(key, error=status_error(status or {"httpStatusCode": code}))
        person = answer.get("person")
        if not person:
            return WriteResult(key, error=ProviderError("Google answered without the person"))
        return WriteResult(key, remote=self._remote(person))

    def _new_person(self, item: NewContact) -> dict[str, Any]:
        person = to_person(item.contact)
        person["memberships"] = [
            {"contactGroupMembership": {"contactGroupResourceName": self._group}}
        ]
        person["clientData"] = [{"key": TAG_KEY, "value": item.tag}]
        return person

    def _persons(self, ids: Sequence[str]) -> dict[str, dict[str, Any] | None]:
        """Raw persons by resource name, 200 per ``people:batchGet``; None when Google says
        NOT_FOUND; absent when the answer left it out (a 200 that omits a name says nothing)."""
        found: dict[str, dict[str, Any] | None] = {}
        for chunk in chunks(list(ids), WRITE_BATCH):
            params: dict[str, str | list[str]] = {
                "personFields": PERSON_FIELDS,
                "resourceNames": chunk,
            }
            resp = self._api.send("GET", "/v1/people:batchGet", params=params)
            body = self._api.json(resp)
            for answer in body.get("responses") or []:
                person = answer.get("person")
                rn = str(answer.get("requestedResourceName") or (person or {}).get("resourceName"))
                written = self._written(rn, answer)
                if isinstance(written.error, NotFound):
                    found[rn] = None
                elif written.error is not None:
                    raise written.error
                else:
                    found[rn] = person
        return {rn: found[rn] for rn in ids if rn in found}

    def _remote(self, person: dict[str, Any]) -> RemoteContact:
        groups = {
            (m.get("contactGroupMembership") or {}).get("contactGroupResourceName")
            for m in person.get("memberships") or []
        }
        in_scope = self._group in groups
        sources = (person.get("metadata") or {}).get("sources") or []
        modified = next((s.get("updateTime") for s in sources if s.get("type") == "CONTACT"), "")
        return RemoteContact(
            id=str(person["resourceName"]),
            contact=from_person(person),
            version=str(person.get("etag") or ""),
            modified_at=str(modified or ""),
            in_scope=in_scope,
            scope_reason="" if in_scope else NOT_IN_GROUP,
            tag=tag_of(person),
            # A contact linked to a profile gets a new resource name; the pass moves its link.
            previous_ids=tuple(
                str(n) for n in (person.get("metadata") or {}).get("previousResourceNames") or []
            ),
        )
