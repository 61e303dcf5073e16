"""The CRM side: Pipedrive persons owned by one user, behind the ContactSide interface.

Reads use the v2 persons list (cursor pages of up to 500, ``owner_id`` filter, sorted by
``update_time``); incremental reads ask for ``updated_since`` a high-water mark. Deletes and
persons that change owner never show up in that listing: they arrive as webhook hints and the
reconciler calls ``fetch``. There is no batch create, so every write is one request.

Our mapping id lives in a custom person field (``tag_field``). Organization names are resolved
and cached per adapter instance (``organizations``). Where a listing stands is ``position``; what
a look-up searches for is ``lookup``; how writes go one by one is ``writes``.

Every request goes through ``api`` (the transport under Pipedrive's rules, ``errors.PIPEDRIVE``,
paced below the burst limit); the mapping to the canonical contact is in ``mapping``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

import httpx

from contactsync.contacts.model import Contact
from contactsync.providers.base import (
    ChangePage,
    ContactDelete,
    ContactUpdate,
    CursorExpired,
    InvalidContact,
    NewContact,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    RemoteContact,
    WriteResult,
)
from contactsync.providers.pipedrive.api import PipedriveApi, person_path
from contactsync.providers.pipedrive.errors import PIPEDRIVE
from contactsync.providers.pipedrive.lookup import LOOKUP_LIST_FROM, may_be_one_of, search_terms
from contactsync.providers.pipedrive.mapping import (
    CONTACT_SYNC_ONLY,
    JSON,
    NAME_KEYS,
    contact_of,
    normalize_org_name,
    person_fields,
)
from contactsync.providers.pipedrive.organizations import IDS_PER_REQUEST, Organizations
from contactsync.providers.pipedrive.position import after_page, decode_position
from contactsync.providers.pipedrive.tag_field import TagField
from contactsync.providers.pipedrive.writes import changed_this_second, one_by_one
from contactsync.providers.transport import chunks

PERMISSION_NAMES = {"can_add_people": "add people", "can_add_organizations": "add organizations"}


NO_CONTACT_SYNC = (
    "the CRM company has contact sync turned off: job title, birthday, notes and postal "
    "address are not synced with the CRM (turn contact sync on in the CRM to sync them)"
)


class PipedrivePersons:
    """Persons owned by ``owner_id``, as one side of a connection."""

    name = "pipedrive"
    deletes_in_scope_only = False  # delete webhooks come for the whole company's persons
    listing_lag = timedelta(0)
    lost_copy_proof = ""  # a person deleted is never taken for one whose answer was lost
    # job_title, birthday, addresses and notes are returned by v2 only when contact sync is on
    # for the company (see sandbox/pipedrive/README.md).
    carries = frozenset(
        {
            "given_name",
            "family_name",
            "display_name",
            "emails",
            "phones",
            "organization",
            "job_title",
            "birthday",
            "addresses",
            "notes",
        }
    )

    limits: tuple[str, ...] | None = None  # what it cannot sync (status); None: not known yet

    def __init__(
        self,
        *,
        base_url: str,
        token: Callable[[bool], str],
        owner_id: int,
        client: httpx.Client | None = None,
        page_size: int = 500,
        max_attempts: int = 3,
        backoff_s: float = 0.2,
        burst_wait_s: float = 0.0,
        tag_field_key: str | None = None,
        burst_limit: int = 36,
        visible_to: int | None = None,
    ) -> None:
        self.owner_id = owner_id
        # A 429 asking for at most ``burst_wait_s`` seconds is waited out once, in the transport
        # (the burst window is 2 s); anything longer, or a second 429, is RateLimited for the
        # reconciler.
        rules = replace(
            PIPEDRIVE,
            attempts=max(1, max_attempts),
            backoff=replace(PIPEDRIVE.backoff, first=backoff_s),
            wait_out=burst_wait_s,
        )
        self._api = PipedriveApi(
            base_url=base_url,
            token=token,
            client=client or httpx.Client(timeout=20.0),
            rules=rules,
            burst_limit=burst_limit,
        )
        self._orgs = Organizations(self._api, owner_id)
        self._tag = TagField(self._api, tag_field_key)
        self._page_size = min(max(page_size, 1), 500)
        self._visible_to = visible_to  # who sees the persons we create; None: the CRM's default
        self._owners: dict[str, int] = {}  # person id -> owner id, for persons not the user's
        self._user_names: dict[int, str] = {}
        # Whether the company has contact sync on (None: not known yet). Without it the v2 API
        # leaves its fields out of every person and refuses (403) a write that sets one.
        self.contact_sync: bool | None = None

    # --- ContactSide: reading ------------------------------------------------------------------

    def read(self, position: str | None) -> ChangePage:
        state = decode_position(position)
        full = state["phase"] == "full"
        params: JSON = {
            "owner_id": self.owner_id,
            "limit": self._page_size,
            "sort_by": "update_time",
            "sort_direction": "asc",
        }
        if state["cursor"]:
            params["cursor"] = state["cursor"]
        if not full:
            params["updated_since"] = state["since"]
        try:
            body = self._api.call("GET", "/api/v2/persons", params=params)
        except InvalidContact as exc:  # a cursor or mark the API no longer accepts
            raise CursorExpired(f"Pipedrive rejected the listing position: {exc.message}") from exc
        persons: list[JSON] = body.get("data") or []
        next_cursor = (body.get("additional_data") or {}).get("next_cursor")
        fresh, next_position, complete = after_page(state, persons, next_cursor)
        return ChangePage(self._remotes(fresh), [], next_position, complete=complete, full=full)

    def fetch(self, ids: Sequence[str]) -> dict[str, RemoteContact | None]:
        """These persons, 100 per ``ids=`` listing. A listing leaves deleted persons out, but
        a 200 that leaves an id out does not say why: each one left out is asked for alone,
        and only its 404 says deleted (None). A non-numeric id cannot exist: None."""
        found: dict[str, RemoteContact | None] = {i: None for i in ids if not i.isdigit()}
        numeric = [i for i in dict.fromkeys(ids) if i.isdigit()]
        for chunk in chunks(numeric, IDS_PER_REQUEST):
            params = {"ids": ",".join(chunk), "limit": IDS_PER_REQUEST}
            persons = self._api.call("GET", "/api/v2/persons", params=params).get("data") or []
            for remote in self._remotes(persons):
                found[remote.id] = remote
            for person_id in chunk:
                if person_id not in found:
                    found[person_id] = self._one(person_id)
        return {i: found[i] for i in ids}

    def _one(self, person_id: str) -> RemoteContact | None:
        """One person by id; None on 404 (deleted or never there)."""
        try:
            body = self._api.call("GET", person_path(person_id))
        except NotFound:
            return None
        return self._remote(body["data"])

    def id_for_tag(self, tag: str) -> str:
        return ""  # the side chooses its ids

    def find_tagged(self, tag: str) -> RemoteContact | None:
        if not tag.strip():
            return None
        params = {"term": tag, "fields": "custom_fields", "exact_match": "true", "limit": 10}
        body = self._api.call("GET", "/api/v2/persons/search", params=params)
        items = (body.get("data") or {}).get("items") or []
        ids = [str(item["item"]["id"]) for item in items if item.get("item")]
        candidates = [r for r in self.fetch(ids).values() if r is not None and r.tag == tag]
        candidates.sort(key=lambda r: (not r.in_scope, int(r.id)))
        return candidates[0] if candidates else None

    def lookup(self, contacts: Sequence[Contact]) -> list[RemoteContact]:
        """The company's persons (any owner) that may be one of ``contacts``: one exact-match
        search per email, phone and name, then one ``ids`` read per 100 hits. When that many
        searches would cost more than listing the whole company (an initial sync's creates),
        the company is listed instead, at most one page per search it replaces."""
        terms = search_terms(contacts)
        if not terms:
            return []
        listed = self._list_company(len(terms)) if len(terms) > LOOKUP_LIST_FROM else None
        if listed is not None:
            hits = [r for r in listed if may_be_one_of(r.contact, terms)]
        else:
            ids: list[str] = []
            for field, term in terms:
                params = {"term": term, "fields": field, "exact_match": "true", "limit": 50}
                body = self._api.call("GET", "/api/v2/persons/search", params=params)
                items = (body.get("data") or {}).get("items") or []
                ids += [str(item["item"]["id"]) for item in items if item.get("item")]
            hits = [r for r in self.fetch(list(dict.fromkeys(ids))).values() if r is not None]
        return [self._owner_named(r) for r in hits]

    def _list_company(self, pages: int) -> list[RemoteContact] | None:
        """Every person of the company, if that takes at most ``pages`` pages; else None."""
        found: list[JSON] = []
        params: JSON = {"limit": 500}
        for _ in range(pages):
            body = self._api.call("GET", "/api/v2/persons", params=params)
            found += body.get("data") or []
            cursor = (body.get("additional_data") or {}).get("next_cursor")
            if not cursor:
                return self._remotes(found)
            params = {"limit": 500, "cursor": cursor}
        return None

    def _owner_named(self, remote: RemoteContact) -> RemoteContact:
        """A person owned by someone else says by whom ("owned by Bo Chen")."""
        owner = self._owners.get(remote.id)
        if remote.in_scope or owner is None:
            return remote
        if owner not in self._user_names:
            try:
                user = self._api.call("GET", f"/api/v1/users/{owner}").get("data") or {}
                self._user_names[owner] = str(user.get("name") or f"user {owner}")
            except NotFound:
                self._user_names[owner] = f"user {owner}"
        return replace(remote, scope_reason=f"owned by {self._user_names[owner]}")

    def search(self, term: str, limit: int = 20) -> list[RemoteContact]:
        """Persons of the company this user may see whose name or email contains ``term``
        (owned by anyone: support asks why one that is not the user's does not sync)."""
        if len(term.strip()) < 2:
            return []
        params = {"term": term.strip(), "fields": "name,email", "limit": limit}
        body = self._api.call("GET", "/api/v2/persons/search", params=params)
        items = (body.get("data") or {}).get("items") or []
        ids = [str(item["item"]["id"]) for item in items if item.get("item")]
        found = self.fetch(ids)
        return [r for i in ids if (r := found.get(i)) is not None]

    # --- ContactSide: writing ------------------------------------------------------------------

    def create(self, items: Sequence[NewContact]) -> list[WriteResult]:
        def create_one(item: NewContact) -> RemoteContact:
            payload = self._fit(person_fields(item.contact))
            payload["owner_id"] = self.owner_id
            payload["custom_fields"] = {self._tag.key(): item.tag}
            if self._visible_to is not None:
                payload["visible_to"] = self._visible_to
            if item.contact.organization.strip():
                payload["org_id"] = self._orgs.id_for(item.contact.organization)
            try:
                body = self._write("POST", "/api/v2/persons", payload, retry=False)
            except PermissionDenied as exc:  # the write's 403 is the truth about permissions
                raise PermissionDenied(
                    "you need the CRM permission to add people: ask a CRM admin for it "
                    f"({exc.message})",
                    missing=["add people"],
                ) from exc
            return self._remote(body["data"])

        return one_by_one(items, lambda i: i.tag, create_one)

    def update(self, items: Sequence[ContactUpdate]) -> list[WriteResult]:
        """PATCH only what differs between ``before`` and ``after``.

        Pipedrive has no etag, so the version (``update_time``) is checked just before writing:
        a person edited in the CRM since the pass read it is refused as a stale write, and the
        next pass merges that edit instead of overwriting it. ``update_time`` has one-second
        precision, so a person updated in the last few seconds is also compared field by field
        with what the pass read: an edit in the same second as that read is not overwritten.
        """
        current = self.fetch([i.id for i in items if i.version])

        def update_one(item: ContactUpdate) -> RemoteContact | None:
            now = current.get(item.id)
            if item.version and now is not None and now.version != item.version:
                raise PreconditionFailed("the person changed in the CRM since it was read")
            if item.version and now is not None and changed_this_second(item, now):
                raise PreconditionFailed("the person changed in the CRM as it was read")
            old, new = person_fields(item.before), person_fields(item.after)
            changes = {k: v for k, v in new.items() if old.get(k) != v}
            if any(k in changes for k in NAME_KEYS):
                changes.update({k: new[k] for k in NAME_KEYS})  # keep the three consistent
            org_before = normalize_org_name(item.before.organization)
            if normalize_org_name(item.after.organization) != org_before:
                org = item.after.organization
                changes["org_id"] = self._orgs.id_for(org) if org.strip() else None
            changes = self._fit(changes)
            if not changes:
                return None  # nothing Pipedrive holds differs: no request
            body = self._write("PATCH", person_path(item.id), changes)
            return self._remote(body["data"])

        return one_by_one(items, lambda i: i.id, update_one)

    def delete(self, items: Sequence[ContactDelete]) -> list[WriteResult]:
        def delete_one(item: ContactDelete) -> None:
            with contextlib.suppress(NotFound):  # already gone: the goal is reached
                self._api.call("DELETE", person_path(item.id))

        return one_by_one(items, lambda i: i.id, delete_one)

    # --- connection set-up ---------------------------------------------------------------------

    def whoami(self) -> dict[str, Any]:
        """The token's user: ``id``, ``name``, ``email``, ``company_id``."""
        data = self._api.call("GET", "/api/v1/users/me")["data"]
        return {k: data.get(k) for k in ("id", "name", "email", "company_id")}

    def missing_permissions(self) -> list[str]:
        """What the owner lacks to seed contact sync, in plain words; ``[]`` if nothing known.
        A permission the answer does not list is unknown, not denied: the 403 of a real write
        (PermissionDenied naming it) is the truth."""
        data = self._api.call("GET", f"/api/v1/users/{self.owner_id}/permissions")["data"]
        return [words for key, words in PERMISSION_NAMES.items() if data.get(key) is False]

    def create_webhook(self, *, url: str, user: str, password: str) -> str:
        """Subscribe to every person event (webhooks v2), delivered with HTTP basic auth."""
        body = {
            "subscription_url": url,
            "event_action": "*",
            "event_object": "person",
            "http_auth_user": user,
            "http_auth_password": password,
            "version": "2.0",
            "name": "contactsync",
            "user_id": self.owner_id,
        }
        data = self._api.call("POST", "/api/v1/webhooks", json_body=body)["data"]
        return str(data["id"])

    def delete_webhook(self, webhook_id: str) -> None:
        with contextlib.suppress(NotFound):
            self._api.call("DELETE", f"/api/v1/webhooks/{int(webhook_id)}")

    def merge_persons(self, keep_id: str, merge_id: str) -> str:
        """Merge ``merge_id`` into ``keep_id``; Pipedrive keeps ``merge_with_id`` (= keep_id)."""
        body = {"merge_with_id": int(keep_id)}
        data = self._api.call("PUT", f"/api/v1/persons/{int(merge_id)}/merge", json_body=body)
        return str(data["data"]["id"])

    # --- mapping -------------------------------------------------------------------------------

    def _remotes(self, persons: list[JSON]) -> list[RemoteContact]:
        self._orgs.learn_names(p["org_id"] for p in persons if p.get("org_id"))
        return [self._remote(p) for p in persons]

    def _remote(self, person: JSON) -> RemoteContact:
        if self.contact_sync is None:  # v2 leaves these keys out when contact sync is off
            self._learn_contact_sync("job_title" in person)
        if person.get("org_id"):
            self._orgs.learn_names([person["org_id"]])
        org = person.get("org_id")
        owner = person.get("owner_id")
        in_scope = owner == self.owner_id
        if isinstance(owner, int) and not in_scope:
            self._owners[str(person["id"])] = owner
        tag = (person.get("custom_fields") or {}).get(self._tag.key())
        return RemoteContact(
            id=str(person["id"]),
            contact=contact_of(person, self._orgs.names.get(person["org_id"], "") if org else ""),
            version=str(person.get("update_time") or ""),
            modified_at=str(person.get("update_time") or ""),
            in_scope=in_scope,
            scope_reason="" if in_scope else "owned by another user",
            tag=str(tag) if tag else "",
        )

    def _learn_contact_sync(self, enabled: bool) -> None:
        """Once known: without contact sync its fields are neither carried nor sent."""
        self.contact_sync = enabled
        self.limits = () if enabled else (NO_CONTACT_SYNC,)
        if not enabled:
            self.carries = type(self).carries - set(CONTACT_SYNC_ONLY.values())

    def _fit(self, payload: JSON) -> JSON:
        """``payload`` without the contact-sync fields when the company has contact sync off."""
        if self.contact_sync is not False:
            return payload
        return {k: v for k, v in payload.items() if k not in CONTACT_SYNC_ONLY}

    def _write(self, method: str, path: str, payload: JSON, *, retry: bool = True) -> JSON:
        """A person write; a 403 for the contact-sync fields (nothing was written) teaches us
        the company has it off, and the write goes again without them."""
        try:
            return self._api.call(method, path, json_body=payload, retry=retry)
        except PermissionDenied as exc:
            sent = set(payload) & set(CONTACT_SYNC_ONLY)
            if not sent or "contact sync" not in exc.message.lower():
                raise
            self._learn_contact_sync(False)
            return self._api.call(method, path, json_body=self._fit(payload), retry=retry)

    @property
    def tag_field_key(self) -> str:
        """The "contactsync id" field's hash key (store it to pass it to the next adapter)."""
        return self._tag.key()
