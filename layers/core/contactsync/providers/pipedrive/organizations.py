"""Pipedrive organizations by name: the names of those persons belong to, read in hundreds and
kept per adapter, and the id for a name, found by its normalised name or created."""

from __future__ import annotations

from collections.abc import Iterable

from contactsync.providers.pipedrive.api import PipedriveApi
from contactsync.providers.pipedrive.mapping import normalize_org_name
from contactsync.providers.transport import chunks

IDS_PER_REQUEST = 100  # the v2 ``ids`` filter takes at most 100 ids


class Organizations:
    """The organizations of one company, as one user sees and creates them."""

    def __init__(self, api: PipedriveApi, owner_id: int) -> None:
        self._api = api
        self.owner_id = owner_id
        self.names: dict[int, str] = {}
        self._ids: dict[str, int] = {}

    def learn_names(self, ids: Iterable[int]) -> None:
        unknown = [str(i) for i in dict.fromkeys(ids) if i not in self.names]
        for chunk in chunks(unknown, IDS_PER_REQUEST):
            params = {"ids": ",".join(chunk), "limit": IDS_PER_REQUEST}
            orgs = self._api.call("GET", "/api/v2/organizations", params=params).get("data") or []
            for org in orgs:
                self.names[int(org["id"])] = org.get("name") or ""
            for missing in chunk:
                self.names.setdefault(int(missing), "")  # deleted or not visible

    def id_for(self, name: str) -> int:
        """Find the organization by normalised name, or create it (needs "add organizations")."""
        key = normalize_org_name(name)
        if key in self._ids:
            return self._ids[key]
        params = {"term": name.strip(), "fields": "name", "exact_match": "true", "limit": 10}
        body = self._api.call("GET", "/api/v2/organizations/search", params=params)
        for item in (body.get("data") or {}).get("items") or []:
            org = item.get("item") or {}
            if normalize_org_name(org.get("name") or "") == key:
                return self._remember(int(org["id"]), org["name"])
        payload = {"name": " ".join(name.split()), "owner_id": self.owner_id}
        created = self._api.call("POST", "/api/v2/organizations", json_body=payload)["data"]
        return self._remember(int(created["id"]), created["name"])

    def _remember(self, org_id: int, name: str) -> int:
        self._ids[normalize_org_name(name)] = org_id
        self.names[org_id] = name
        return org_id
