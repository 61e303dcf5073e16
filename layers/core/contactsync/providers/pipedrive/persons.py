"""Pipedrive persons as the side reports them: ``RemoteContact``s (in scope when the user owns
them, with their organization's name and our tag), and persons read by id."""

from __future__ import annotations

from collections.abc import Sequence

from contactsync.providers.base import NotFound, RemoteContact
from contactsync.providers.pipedrive.api import PipedriveApi, person_path
from contactsync.providers.pipedrive.contact_sync import ContactSync
from contactsync.providers.pipedrive.mapping import JSON, contact_of
from contactsync.providers.pipedrive.organizations import IDS_PER_REQUEST, Organizations
from contactsync.providers.pipedrive.owners import Owners
from contactsync.providers.pipedrive.tag_field import TagField
from contactsync.providers.transport import chunks


class Persons:
    """The persons one user sees, read as ``RemoteContact``s."""

    def __init__(
        self,
        api: PipedriveApi,
        owner_id: int,
        *,
        orgs: Organizations,
        tag: TagField,
        owners: Owners,
        contact_sync: ContactSync,
    ) -> None:
        self._api = api
        self._owner_id = owner_id
        self._orgs = orgs
        self._tag = tag
        self._owners = owners
        self._contact_sync = contact_sync

    def remotes(self, persons: list[JSON]) -> list[RemoteContact]:
        self._orgs.learn_names(p["org_id"] for p in persons if p.get("org_id"))
        return [self.remote(p) for p in persons]

    def remote(self, person: JSON) -> RemoteContact:
        if self._contact_sync.enabled is None:  # v2 leaves these keys out when it is off
            self._contact_sync.learn("job_title" in person)
        if person.get("org_id"):
            self._orgs.learn_names([person["org_id"]])
        org = person.get("org_id")
        owner = person.get("owner_id")
        in_scope = owner == self._owner_id
        if isinstance(owner, int) and not in_scope:
            self._owners.learn(str(person["id"]), owner)
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

    def fetch(self, ids: Sequence[str]) -> dict[str, RemoteContact | None]:
        """These persons, 100 per ``ids=`` listing. A listing leaves deleted persons out, but
        a 200 that leaves an id out does not say why: each one left out is asked for alone,
        and only its 404 says deleted (None). A non-numeric id cannot exist: None."""
        found: dict[str, RemoteContact | None] = {i: None for i in ids if not i.isdigit()}
        numeric = [i for i in dict.fromkeys(ids) if i.isdigit()]
        for chunk in chunks(numeric, IDS_PER_REQUEST):
            params = {"ids": ",".join(chunk), "limit": IDS_PER_REQUEST}
            persons = self._api.call("GET", "/api/v2/persons", params=params).get("data") or []
            for remote in self.remotes(persons):
                found[remote.id] = remote
            for person_id in chunk:
                if person_id not in found:
                    found[person_id] = self.one(person_id)
        return {i: found[i] for i in ids}

    def one(self, person_id: str) -> RemoteContact | None:
        """One person by id; None on 404 (deleted or never there)."""
        try:
            body = self._api.call("GET", person_path(person_id))
        except NotFound:
            return None
        return self.remote(body["data"])
