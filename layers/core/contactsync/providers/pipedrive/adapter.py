"""The CRM side: Pipedrive persons owned by one user, behind the ContactSide interface.

Reads use the v2 persons list (cursor pages of up to 500, ``owner_id`` filter, sorted by
``update_time``); incremental reads ask for ``updated_since`` a high-water mark. Deletes and
persons that change owner never show up in that listing: they arrive as webhook hints and the
reconciler calls ``fetch``. There is no batch create, so every write is one request.

Our mapping id lives in a custom person field (``tag_field``). Organization names are resolved
and cached per adapter instance (``organizations``), owners of others' persons in ``owners``.
Where a listing stands is ``position``; a person as a RemoteContact and persons by id are
``persons``; searches and look-ups (what they search for: ``lookup``) are ``search``; how writes
go one by one is ``writes``, what contact sync lets them send ``contact_sync``; the set-up calls
(user, permissions, webhooks, merges) are ``account``.

Every request goes through ``api`` (the transport under Pipedrive's rules, ``errors.PIPEDRIVE``,
paced below the burst limit); the mapping to the canonical contact is in ``mapping``.
"""

from __future__ import annotations

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
    RemoteContact,
    WriteResult,
)
from contactsync.providers.pipedrive import account
from contactsync.providers.pipedrive.api import PipedriveApi
from contactsync.providers.pipedrive.contact_sync import ContactSync
from contactsync.providers.pipedrive.errors import PIPEDRIVE
from contactsync.providers.pipedrive.mapping import CONTACT_SYNC_ONLY, JSON
from contactsync.providers.pipedrive.organizations import Organizations
from contactsync.providers.pipedrive.owners import Owners
from contactsync.providers.pipedrive.persons import Persons
from contactsync.providers.pipedrive.position import after_page, decode_position
from contactsync.providers.pipedrive.search import PersonSearch
from contactsync.providers.pipedrive.tag_field import TagField
from contactsync.providers.pipedrive.writes import PersonWrites

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
    creates_per_request = 1  # a POST each
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
        self._page_size = min(max(page_size, 1), 500)
        self._tag = TagField(self._api, tag_field_key)
        self._contact_sync = ContactSync(self._api, self._learn_contact_sync)
        orgs, owners = Organizations(self._api, owner_id), Owners(self._api)
        self._persons = Persons(
            self._api, owner_id, orgs=orgs, tag=self._tag, owners=owners,
            contact_sync=self._contact_sync,
        )  # fmt: skip
        self._search = PersonSearch(self._api, self._persons, owners)
        self._writes = PersonWrites(
            self._api, owner_id, persons=self._persons, orgs=orgs, tag=self._tag,
            contact_sync=self._contact_sync, visible_to=visible_to,
        )  # fmt: skip

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
        return ChangePage(
            self._persons.remotes(fresh), [], next_position, complete=complete, full=full
        )

    def fetch(self, ids: Sequence[str]) -> dict[str, RemoteContact | None]:
        return self._persons.fetch(ids)

    def id_for_tag(self, tag: str) -> str:
        return ""  # the side chooses its ids

    def find_tagged(self, tag: str) -> RemoteContact | None:
        return self._search.find_tagged(tag)

    def lookup(self, contacts: Sequence[Contact]) -> list[RemoteContact]:
        return self._search.lookup(contacts)

    def search(self, term: str, limit: int = 20) -> list[RemoteContact]:
        return self._search.search(term, limit)

    # --- ContactSide: writing (``writes``) -----------------------------------------------------

    def create(self, items: Sequence[NewContact]) -> list[WriteResult]:
        return self._writes.create(items)

    def update(self, items: Sequence[ContactUpdate]) -> list[WriteResult]:
        return self._writes.update(items)

    def delete(self, items: Sequence[ContactDelete]) -> list[WriteResult]:
        return self._writes.delete(items)

    # --- connection set-up ---------------------------------------------------------------------

    def whoami(self) -> dict[str, Any]:
        return account.whoami(self._api)

    def missing_permissions(self) -> list[str]:
        return account.missing_permissions(self._api, self.owner_id)

    def create_webhook(self, *, url: str, user: str, password: str) -> str:
        return account.create_webhook(
            self._api, self.owner_id, url=url, user=user, password=password
        )

    def delete_webhook(self, webhook_id: str) -> None:
        account.delete_webhook(self._api, webhook_id)

    def merge_persons(self, keep_id: str, merge_id: str) -> str:
        return account.merge_persons(self._api, keep_id, merge_id)

    # --- contact sync ------------------------------------------------------------------------

    @property
    def contact_sync(self) -> bool | None:
        """Whether the company has contact sync on (None: not known yet)."""
        return self._contact_sync.enabled

    def _learn_contact_sync(self, enabled: bool) -> None:
        """Once known: without contact sync its fields are neither carried nor sent."""
        self.limits = () if enabled else (NO_CONTACT_SYNC,)
        if not enabled:
            self.carries = type(self).carries - set(CONTACT_SYNC_ONLY.values())

    @property
    def tag_field_key(self) -> str:
        """The "contactsync id" field's hash key (store it to pass it to the next adapter)."""
        return self._tag.key()
