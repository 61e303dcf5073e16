"""Who owns the persons that are not the user's: their owner ids, learned as persons are read,
and the owners' names (asked once per adapter), so that a look-up says by whom."""

from __future__ import annotations

from dataclasses import replace

from contactsync.providers.base import NotFound, RemoteContact
from contactsync.providers.pipedrive.api import PipedriveApi


class Owners:
    """The owners of other users' persons, as one adapter has read them."""

    def __init__(self, api: PipedriveApi) -> None:
        self._api = api
        self._owners: dict[str, int] = {}  # person id -> owner id, for persons not the user's
        self._user_names: dict[int, str] = {}

    def learn(self, person_id: str, owner: int) -> None:
        self._owners[person_id] = owner

    def named(self, remote: RemoteContact) -> RemoteContact:
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
