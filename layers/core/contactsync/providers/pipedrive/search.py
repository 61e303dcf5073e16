"""Finding persons in the company: by our tag, by what a contact to copy holds (a look-up), or
by a term support types. Hits may be owned by anyone; one not the user's says by whom."""

from __future__ import annotations

from collections.abc import Sequence

from contactsync.contacts.model import Contact
from contactsync.providers.base import RemoteContact
from contactsync.providers.pipedrive.api import PipedriveApi
from contactsync.providers.pipedrive.lookup import LOOKUP_LIST_FROM, may_be_one_of, search_terms
from contactsync.providers.pipedrive.mapping import JSON
from contactsync.providers.pipedrive.owners import Owners
from contactsync.providers.pipedrive.persons import Persons


class PersonSearch:
    """Searches of one company's persons, as one user may see them."""

    def __init__(self, api: PipedriveApi, persons: Persons, owners: Owners) -> None:
        self._api = api
        self._persons = persons
        self._owners = owners

    def find_tagged(self, tag: str) -> RemoteContact | None:
        if not tag.strip():
            return None
        params = {"term": tag, "fields": "custom_fields", "exact_match": "true", "limit": 10}
        body = self._api.call("GET", "/api/v2/persons/search", params=params)
        items = (body.get("data") or {}).get("items") or []
        ids = [str(item["item"]["id"]) for item in items if item.get("item")]
        candidates = [
            r for r in self._persons.fetch(ids).values() if r is not None and r.tag == tag
        ]
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
            hits = [
                r for r in self._persons.fetch(list(dict.fromkeys(ids))).values() if r is not None
            ]
        return [self._owners.named(r) for r in hits]

    def _list_company(self, pages: int) -> list[RemoteContact] | None:
        """Every person of the company, if that takes at most ``pages`` pages; else None."""
        found: list[JSON] = []
        params: JSON = {"limit": 500}
        for _ in range(pages):
            body = self._api.call("GET", "/api/v2/persons", params=params)
            found += body.get("data") or []
            cursor = (body.get("additional_data") or {}).get("next_cursor")
            if not cursor:
                return self._persons.remotes(found)
            params = {"limit": 500, "cursor": cursor}
        return None

    def search(self, term: str, limit: int = 20) -> list[RemoteContact]:
        """Persons of the company this user may see whose name or email contains ``term``
        (owned by anyone: support asks why one that is not the user's does not sync)."""
        if len(term.strip()) < 2:
            return []
        params = {"term": term.strip(), "fields": "name,email", "limit": limit}
        body = self._api.call("GET", "/api/v2/persons/search", params=params)
        items = (body.get("data") or {}).get("items") or []
        ids = [str(item["item"]["id"]) for item in items if item.get("item")]
        found = self._persons.fetch(ids)
        return [r for i in ids if (r := found.get(i)) is not None]
