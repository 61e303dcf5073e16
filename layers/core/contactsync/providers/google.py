"""The Google side: one contact group of the signed-in user, read and written with the People API.

Reads list ``people/me/connections`` with a sync token (no push exists for contacts): a full
listing asks for ``requestSyncToken``, later reads send the token and get only changes, deleted
persons flagged ``metadata.deleted``. An expired token (400 FAILED_PRECONDITION, ErrorInfo reason
EXPIRED_SYNC_TOKEN) is CursorExpired. Every connection is listed; a person outside the chosen
group comes back ``in_scope=False``.

Writes use the batch methods (create and update 200 contacts a call, delete 500), one at a time
per adapter (Google asks for sequential mutations per user). A batch fails as a whole and names
the contacts at fault (``contactErrors``): those get a per-contact error and the rest are sent
again. An update first reads the current persons (``people:batchGet``): Google wants the
contact's ``metadata.sources`` and etag back, a stale etag is a PreconditionFailed without
writing, and the masked fields are rebuilt on the current values so sub-values we do not model
(an address's PO box, a custom email type, a second organization, a name prefix) survive.

HTTP errors come out as ``providers.base`` types: 401 refreshes the token once, 429 /
RESOURCE_EXHAUSTED is RateLimited (Retry-After or 30 s, never slept here), 5xx/timeouts are
retried twice briefly (creates are not: a retried create could create twice) then Transient,
403 is PermissionDenied.

Mapping notes:
- names: given/middle/family plus ``unstructuredName`` for the display name (Google keeps both
  as sent; we write the full name there when the contact has no display name, as Graph does).
- labels: Google ``type`` home/work/other/mobile map to the same label, workMobile to mobile,
  every other type (fax, pager, main, custom text) reads as "other"; an empty type too.
- primary: written as ``metadata.sourcePrimary`` (``primary`` is output only), read from either.
- organization/job title: the first organization. Birthday: ``date`` {year?, month, day};
  no year is "--MM-DD". Notes: the first biography (plain text). Websites: ``urls`` values.
"""

from __future__ import annotations

import functools
import json
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import httpx

from contactsync.contacts.model import ALL_FIELDS, Address, Contact, Email, Phone
from contactsync.contacts.normalize import own_display_name
from contactsync.providers.base import (
    MALFORMED,
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
    answer_body,
)

TAG_KEY = "contactsync.mapping"  # the clientData key carrying our mapping id
MY_CONTACTS = "contactGroups/myContacts"
NOT_IN_GROUP = "not in the contact group"
CONTACTS_SCOPE = "https://www.googleapis.com/auth/contacts"
# The person fields we model, in updatePersonFields names.
MODELLED = (
    "names",
    "emailAddresses",
    "phoneNumbers",
    "organizations",
    "addresses",
    "birthdays",
    "biographies",
    "urls",
)
PERSON_FIELDS = ",".join((*MODELLED, "memberships", "clientData", "metadata"))
WRITE_BATCH = 200  # batchCreateContacts / batchUpdateContacts / people:batchGet
DELETE_BATCH = 500  # batchDeleteContacts
RETRIES = 2  # for 5xx / timeouts / resets, on top of the first attempt
DEFAULT_RETRY_AFTER = 30.0  # Google sends no Retry-After with its 429s
CONTINUES = "{"  # a position continuing a listing is JSON; a sync token never starts so

# The keys of an entry we write (anything else a person holds is kept as it was), and the
# output-only keys we must not send back.
WRITTEN_KEYS = {
    "names": {"givenName", "middleName", "familyName", "unstructuredName"},
    "emailAddresses": {"value", "type"},
    "phoneNumbers": {"value", "type"},
    "organizations": {"name", "title"},
    "addresses": {"streetAddress", "city", "region", "postalCode", "country", "type"},
    "birthdays": {"date", "text"},
    "biographies": {"value", "contentType"},
    "urls": {"value", "type"},
}
OUTPUT_ONLY = {
    "metadata",
    "displayName",
    "displayNameLastFirst",
    "formattedType",
    "canonicalForm",
    "formattedValue",
    "phoneticFullName",
}
LABELS = {"home": "home", "work": "work", "other": "other", "mobile": "mobile"}
LABELS_MORE = {"workmobile": "mobile"}
# gRPC status names (the ``status`` of an error) and codes (a per-contact Status's ``code``).
GRPC_NAMES = {
    3: "INVALID_ARGUMENT",
    5: "NOT_FOUND",
    7: "PERMISSION_DENIED",
    8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION",
    10: "ABORTED",
    13: "INTERNAL",
    14: "UNAVAILABLE",
    16: "UNAUTHENTICATED",
}

T = TypeVar("T")


class GoogleContacts:
    """A ``ContactSide`` over one contact group of the signed-in user's Google contacts."""

    name = "google"
    carries = frozenset(ALL_FIELDS)
    limits: tuple[str, ...] | None = ()  # nothing this account cannot sync
    deletes_in_scope_only = False  # sync results carry deleted contacts of every group

    def __init__(
        self,
        *,
        base_url: str,
        token: Callable[[bool], str],
        group_id: str,
        client: httpx.Client,
        page_size: int = 1000,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._token = token
        self._group = group_id
        self._http = client
        self._page_size = page_size
        self._bearer: str | None = None
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
        resp = self._send("GET", "/v1/people/me/connections", params=params)
        body = self._json(resp, cursor=bool(sync_token))
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

    def find_tagged(self, tag: str) -> RemoteContact | None:
        """The person whose clientData carries ``tag``.

        Google cannot search clientData, so this lists every connection (1000 a page). That is
        expensive, but it only runs to recover a create whose answer was lost. Google also says
        writes may take minutes to show up in listings, so a very recent create can be missed
        (the caller then creates again; the duplicate is matched by its tag later)."""
        params = {"personFields": PERSON_FIELDS, "pageSize": str(self._page_size)}
        while True:
            body = self._json(self._send("GET", "/v1/people/me/connections", params=params))
            for person in body.get("connections") or []:
                if _tag(person) == tag:
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
            body = self._json(self._send("GET", "/v1/people:searchContacts", params=params))
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
            self._in_chunks(
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
                self._in_chunks(
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
            self._in_chunks(
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
        me = self._json(self._send("GET", "/v1/people/me", params=params))
        emails = me.get("emailAddresses") or []
        primary = [e for e in emails if _is_primary(e)] or emails
        return str(me["resourceName"]), str(primary[0].get("value", "")) if primary else ""

    def create_group(self, name: str) -> tuple[str, str]:
        """A new contact group for the sync (the CRM's advice: not "My Contacts")."""
        body = {"contactGroup": {"name": name}}
        group = self._json(self._send("POST", "/v1/contactGroups", json=body, retry=False))
        return str(group["resourceName"]), str(group.get("name") or name)

    def list_groups(self) -> list[tuple[str, str]]:
        """My Contacts first, then the user's own groups by name."""
        mine = "My Contacts"
        groups: list[tuple[str, str]] = []
        params = {"pageSize": "1000", "groupFields": "name,groupType"}
        while True:
            body = self._json(self._send("GET", "/v1/contactGroups", params=params))
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

    def _in_chunks(
        self,
        indexes: list[int],
        size: int,
        run: Callable[[list[int]], None],
        fail: Callable[[int, ProviderError], None],
    ) -> None:
        """Run ``run`` on chunks of ``size``. A throttle or an outage keeps what was done: that
        chunk and every later one get the error (so the caller records them and re-queues)."""
        stop: ProviderError | None = None
        for chunk in _chunks(indexes, size):
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
            resp = self._send("POST", "/v1/people:batchCreateContacts", json=body, retry=False)
            if resp.status_code == 200:
                created = self._json(resp).get("createdPeople") or []
                by_tag = {_tag(a.get("person") or {}): a for a in created}
                for n, i in enumerate(pending):
                    tag = items[i].tag
                    answer = by_tag.get(tag) or (created[n] if n < len(created) else {})
                    results[i] = self._written(tag, answer)
                return
            failed = self._contact_errors(resp, [str(n) for n in range(len(pending))])
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
            sendable[item.id] = _rebuilt(person, to_person(item.after), mask)
            index[item.id] = i
        while sendable:
            body = {
                "contacts": sendable,
                "updateMask": ",".join(mask),
                "readMask": PERSON_FIELDS,
            }
            resp = self._send("POST", "/v1/people:batchUpdateContacts", json=body)
            if resp.status_code == 200:
                answers = self._json(resp).get("updateResult") or {}
                for rn in sendable:
                    results[index[rn]] = self._written(rn, answers.get(rn) or {})
                return
            failed = self._contact_errors(resp, list(sendable))
            for rn, error in failed.items():
                results[index[rn]] = WriteResult(rn, error=error)
            sendable = {rn: p for rn, p in sendable.items() if rn not in failed}

    def _delete_chunk(
        self, items: Sequence[ContactDelete], chunk: list[int], results: dict[int, WriteResult]
    ) -> None:
        names = [items[i].id for i in chunk]
        resp = self._send("POST", "/v1/people:batchDeleteContacts", json={"resourceNames": names})
        if resp.status_code == 404:  # one of them was already gone: delete one by one
            for i in chunk:
                one = self._send("DELETE", f"/v1/{items[i].id}:deleteContact")
                ok = one.status_code in (200, 204, 404)
                error = None if ok else self._error(one.status_code, _body(one), write=True)
                results[i] = WriteResult(items[i].id, error=error)
            return
        if resp.status_code >= 400:
            error = self._batch_error(resp)
            for i in chunk:
                results[i] = WriteResult(items[i].id, error=error)
            return
        for i in chunk:
            results[i] = WriteResult(items[i].id)

    def _contact_errors(self, resp: httpx.Response, keys: list[str]) -> dict[str, ProviderError]:
        """The contacts a failed batch names (``contactErrors``: index or resource name ->
        Status), or, when it names none, every key with the batch's own error. AuthExpired and
        PermissionDenied are about the whole connection and are raised."""
        body = _body(resp)
        named: dict[str, ProviderError] = {}
        for detail in _error_of(body).get("details") or []:
            for key, status in (detail.get("contactErrors") or {}).items():
                if str(key) in keys:
                    named[str(key)] = _status_error(status)
        if named:
            return named
        return dict.fromkeys(keys, self._batch_error(resp))

    def _batch_error(self, resp: httpx.Response) -> ProviderError:
        """A failed batch's own error. AuthExpired and PermissionDenied concern the whole
        connection, not these contacts: they are raised."""
        error = self._error(resp.status_code, _body(resp), write=True)
        if isinstance(error, AuthExpired | PermissionDenied):
            raise error
        return error

    def _written(self, key: str, answer: dict[str, Any]) -> WriteResult:
        """One PersonResponse of a batch answer as a WriteResult."""
        status = answer.get("status") or {}
        code = int(answer.get("httpStatusCode") or 200)
        if (status and int(status.get("code") or 0) != 0) or code >= 400:
            return WriteResult(key, error=_status_error(status or {"httpStatusCode": code}))
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
        for chunk in _chunks(list(ids), WRITE_BATCH):
            params: dict[str, str | list[str]] = {
                "personFields": PERSON_FIELDS,
                "resourceNames": chunk,
            }
            resp = self._send("GET", "/v1/people:batchGet", params=params)
            body = self._json(resp)
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

    # --- HTTP: auth, retries, errors ----------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str | list[str]] | None = None,
        retry: bool = True,
    ) -> httpx.Response:
        """One request: refresh the token once on 401, retry 5xx/timeouts briefly, raise
        RateLimited on 429 / RESOURCE_EXHAUSTED. Other statuses come back to the caller.

        ``retry=False`` (creates) retries only when the request never left (connection refused).
        """
        refreshed, attempt = False, 0
        while True:
            if self._bearer is None:
                self._bearer = self._token(False)
            headers = {"Authorization": f"Bearer {self._bearer}"}
            try:
                resp = self._http.request(
                    method, self._base + path, json=json, params=params, headers=headers
                )
            except httpx.TransportError as exc:
                unsent = isinstance(exc, httpx.ConnectError)
                if attempt < RETRIES and (retry or unsent):
                    attempt += 1
                    _pause(attempt)
                    continue
                raise Transient(f"Google unreachable: {type(exc).__name__}") from exc
            if resp.status_code == 401:
                if refreshed:
                    raise AuthExpired(_message(resp.status_code, _body(resp)), status=401)
                refreshed, self._bearer = True, self._token(True)
                continue
            if resp.status_code == 429 or _grpc_status(_body(resp)) == "RESOURCE_EXHAUSTED":
                raise RateLimited(
                    _message(resp.status_code, _body(resp)),
                    retry_after=_retry_after(resp.headers),
                    status=resp.status_code,
                )
            if resp.status_code >= 500:
                if attempt < RETRIES and retry:
                    attempt += 1
                    _pause(attempt)
                    continue
                raise Transient(_message(resp.status_code, _body(resp)), status=resp.status_code)
            return resp

    def _json(self, resp: httpx.Response, *, cursor: bool = False) -> dict[str, Any]:
        body = _body(resp)
        if resp.status_code >= 400:
            raise self._error(resp.status_code, body, cursor=cursor)
        if not isinstance(body, dict) or body.get(MALFORMED) is True:
            # Never read a cut-short answer as "no contacts": fail the pass and try again.
            raise Transient(f"Google sent a malformed answer ({len(resp.content)} bytes)")
        return body

    def _error(
        self, status: int, body: Any, *, cursor: bool = False, write: bool = False
    ) -> ProviderError:
        message = _message(status, body)
        grpc = _grpc_status(body)
        if cursor and "EXPIRED_SYNC_TOKEN" in _reasons(body):
            return CursorExpired(message, status=status)
        if cursor and status == 400 and "sync token" in message.lower():
            # A token Google no longer knows at all ("Sync token is invalid"): the same cure.
            return CursorExpired(message, status=status)
        if status == 401:
            return AuthExpired(message, status=401)
        if status == 403:
            return PermissionDenied(message, missing=[CONTACTS_SCOPE])
        if status == 404:
            return NotFound(message, status=404)
        if grpc in ("FAILED_PRECONDITION", "ABORTED") or status in (409, 412):
            return PreconditionFailed(message, status=status)
        if status >= 500:
            return Transient(message, status=status)
        if status == 400 and write:
            return InvalidContact(message, status=status)
        return ProviderError(message, status=status)

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
            tag=_tag(person),
            # A contact linked to a profile gets a new resource name; the pass moves its link.
            previous_ids=tuple(
                str(n) for n in (person.get("metadata") or {}).get("previousResourceNames") or []
            ),
        )


# --- mapping ----------------------------------------------------------------------------------


def to_person(c: Contact) -> dict[str, Any]:
    """Every person field we model, from a canonical contact (an empty field is ``[]``)."""
    name = {
        key: value
        for key, value in (
            ("givenName", c.given_name),
            ("middleName", c.middle_name),
            ("familyName", c.family_name),
            ("unstructuredName", c.display_name or c.full_name),
        )
        if value
    }
    organization = {k: v for k, v in (("name", c.organization), ("title", c.job_title)) if v}
    addresses = []
    for a in c.addresses:
        parts = (
            ("streetAddress", a.street),
            ("city", a.city),
            ("region", a.region),
            ("postalCode", a.postal_code),
            ("country", a.country),
            ("type", a.label),
        )
        addresses.append({k: v for k, v in parts if v})
    birthday = _google_date(c.birthday)
    return {
        "names": [name] if name else [],
        "emailAddresses": [_valued(e.value, e.label, e.primary) for e in c.emails],
        "phoneNumbers": [_valued(p.value, p.label, p.primary) for p in c.phones],
        "organizations": [organization] if organization else [],
        "addresses": addresses,
        "birthdays": [{"date": birthday}] if birthday else [],
        "biographies": [{"value": c.notes, "contentType": "TEXT_PLAIN"}] if c.notes else [],
        "urls": [{"value": w} for w in c.websites],
    }


def from_person(person: dict[str, Any]) -> Contact:
    """The canonical contact a person holds (fields we do not model are left out)."""
    names = person.get("names") or []
    name = next((n for n in names if _from_contact(n)), names[0] if names else {})
    organization = (person.get("organizations") or [{}])[0]
    addresses = tuple(
        Address(
            street=str(a.get("streetAddress") or ""),
            city=str(a.get("city") or ""),
            region=str(a.get("region") or ""),
            postal_code=str(a.get("postalCode") or ""),
            country=str(a.get("country") or ""),
            label=_label(a.get("type")),
        )
        for a in person.get("addresses") or []
    )
    biographies = person.get("biographies") or []
    return Contact(
        given_name=str(name.get("givenName") or ""),
        middle_name=str(name.get("middleName") or ""),
        family_name=str(name.get("familyName") or ""),
        display_name=own_display_name(
            str(name.get("unstructuredName") or name.get("displayName") or ""),
            str(name.get("givenName") or ""),
            str(name.get("middleName") or ""),
            str(name.get("familyName") or ""),
        ),
        emails=tuple(
            Email(str(e["value"]), _label(e.get("type")), _is_primary(e))
            for e in person.get("emailAddresses") or []
            if e.get("value")
        ),
        phones=tuple(
            Phone(str(p["value"]), _label(p.get("type")), _is_primary(p))
            for p in person.get("phoneNumbers") or []
            if p.get("value")
        ),
        organization=str(organization.get("name") or ""),
        job_title=str(organization.get("title") or ""),
        addresses=tuple(a for a in addresses if a != Address(label=a.label)),
        birthday=_canonical_birthday(person.get("birthdays") or []),
        notes=str(biographies[0].get("value") or "") if biographies else "",
        websites=tuple(str(u["value"]) for u in person.get("urls") or [] if u.get("value")),
    )


def person_fields_changed(before: Contact, after: Contact) -> list[str]:
    """The updatePersonFields names whose value differs between two contacts."""
    old, new = to_person(before), to_person(after)
    return [f for f in MODELLED if old[f] != new[f]]


def _rebuilt(
    current: dict[str, Any], wanted: dict[str, Any], mask: tuple[str, ...]
) -> dict[str, Any]:
    """The update body: the masked fields as we want them, built on the current entries so
    what we do not model stays, plus the etag and sources Google checks."""
    body: dict[str, Any] = {
        "resourceName": current["resourceName"],
        "etag": current.get("etag", ""),
        "metadata": {"sources": (current.get("metadata") or {}).get("sources") or []},
    }
    for field in mask:
        had = list(current.get(field) or [])
        if field in ("names", "organizations", "birthdays", "biographies"):
            # One entry is ours (the first); further organizations stay as they are.
            first = [_kept(field, had[0] if had else {}, w) for w in wanted[field][:1]]
            body[field] = first + (had[1:] if field == "organizations" else [])
        else:
            by_identity = {_identity(field, e): e for e in reversed(had)}
            body[field] = [
                _kept(field, by_identity.get(_identity(field, w), {}), w) for w in wanted[field]
            ]
    return body


def _kept(field: str, had: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    """``wanted`` on top of what ``had`` holds beyond our keys; a type that reads as the same
    label (workMobile for "mobile", a custom type for "other") is kept as the user set it."""
    entry = {k: v for k, v in had.items() if k not in WRITTEN_KEYS[field] | OUTPUT_ONLY}
    entry.update(wanted)
    if had.get("type") and _label(had["type"]) == _label(wanted.get("type")):
        entry["type"] = had["type"]
    return entry


def _identity(field: str, entry: dict[str, Any]) -> str:
    if field == "addresses":
        keys = ("streetAddress", "city", "postalCode", "country")
        return "|".join(str(entry.get(k) or "").strip().casefold() for k in keys)
    value = str(entry.get("value") or "")
    if field == "phoneNumbers":
        return "".join(ch for ch in value if ch.isdigit() or ch == "+")
    return value.strip().casefold()


def _valued(value: str, label: str, primary: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"value": value, "type": label}
    if primary:
        entry["metadata"] = {"sourcePrimary": True}
    return entry


def _label(google_type: Any) -> str:
    key = str(google_type or "").strip().lower()
    return LABELS.get(key) or LABELS_MORE.get(key) or "other"


def _is_primary(entry: dict[str, Any]) -> bool:
    metadata = entry.get("metadata") or {}
    return bool(metadata.get("primary") or metadata.get("sourcePrimary"))


def _from_contact(entry: dict[str, Any]) -> bool:
    source = (entry.get("metadata") or {}).get("source") or {}
    return source.get("type") == "CONTACT"


def _google_date(birthday: str) -> dict[str, int] | None:
    """A canonical birthday ("YYYY-MM-DD" or "--MM-DD") as a Google Date; no year, no key."""
    try:
        if birthday.startswith("--"):
            month, day = birthday[2:].split("-")
            return {"month": int(month), "day": int(day)}
        year, month, day = birthday.split("-")
        return {"year": int(year), "month": int(month), "day": int(day)}
    except ValueError:
        return None


def _canonical_birthday(birthdays: list[dict[str, Any]]) -> str:
    for entry in birthdays:
        date = entry.get("date") or {}
        month, day = int(date.get("month") or 0), int(date.get("day") or 0)
        if month and day:
            year = int(date.get("year") or 0)
            return f"{year:04d}-{month:02d}-{day:02d}" if year else f"--{month:02d}-{day:02d}"
    return ""


def _tag(person: dict[str, Any]) -> str:
    for data in person.get("clientData") or []:
        if data.get("key") == TAG_KEY:
            return str(data.get("value") or "")
    return ""


# --- small HTTP pieces ------------------------------------------------------------------------


def _status_error(status: dict[str, Any]) -> ProviderError:
    """A per-contact google.rpc.Status (or a bare HTTP status code) as an error."""
    code = status.get("code")
    name = str(status.get("status") or GRPC_NAMES.get(int(code or 0), ""))
    http = int(status.get("httpStatusCode") or 0)
    message = f"Google {name or http}: {status.get('message', '')}".strip()
    if name == "NOT_FOUND" or http == 404:
        return NotFound(message, status=404)
    if name in ("FAILED_PRECONDITION", "ABORTED") or http in (409, 412):
        return PreconditionFailed(message, status=400)
    if name == "RESOURCE_EXHAUSTED" or http == 429:
        return RateLimited(message, retry_after=DEFAULT_RETRY_AFTER)
    if name == "PERMISSION_DENIED" or http == 403:
        return PermissionDenied(message, missing=[CONTACTS_SCOPE])
    if name in ("INTERNAL", "UNAVAILABLE") or http >= 500:
        return Transient(message, status=http or 503)
    return InvalidContact(message, status=http or 400)


_body = answer_body


def _error_of(body: Any) -> dict[str, Any]:
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def _grpc_status(body: Any) -> str:
    return str(_error_of(body).get("status") or "")


def _reasons(body: Any) -> set[str]:
    return {str(d.get("reason")) for d in _error_of(body).get("details") or [] if "reason" in d}


def _message(status: int, body: Any) -> str:
    error = _error_of(body)
    if error:
        return f"Google {status} {error.get('status', '')}: {error.get('message', '')}".strip()
    return f"Google {status}"


def _retry_after(headers: httpx.Headers) -> float:
    """Seconds from a Retry-After header; 30 when absent or not a number."""
    value = headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value else DEFAULT_RETRY_AFTER
    except ValueError:
        return DEFAULT_RETRY_AFTER


def _pause(attempt: int) -> None:
    """Jittered backoff between retries of one request: short, never a long sleep."""
    time.sleep(min(1.0, 0.1 * 2**attempt) * random.uniform(0.5, 1.0))  # noqa: S311


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
