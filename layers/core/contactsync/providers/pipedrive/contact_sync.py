"""Whether the company has contact sync on, and what that lets a write send.

Without contact sync the v2 API leaves its fields (job title, birthday, notes, postal address)
out of every person and refuses (403) a write that sets one. It is learned from the first person
read, or from such a refusal; from then on those fields are left out of what is sent.
"""

from __future__ import annotations

from collections.abc import Callable

from contactsync.providers.base import PermissionDenied
from contactsync.providers.pipedrive.api import PipedriveApi
from contactsync.providers.pipedrive.mapping import CONTACT_SYNC_ONLY, JSON


class ContactSync:
    """What one adapter knows of the company's contact sync; ``learned`` hears when it is known."""

    def __init__(self, api: PipedriveApi, learned: Callable[[bool], None]) -> None:
        self._api = api
        self._learned = learned
        self.enabled: bool | None = None  # None: not known yet

    def learn(self, enabled: bool) -> None:
        self.enabled = enabled
        self._learned(enabled)

    def fit(self, payload: JSON) -> JSON:
        """``payload`` without the contact-sync fields when the company has contact sync off."""
        if self.enabled is not False:
            return payload
        return {k: v for k, v in payload.items() if k not in CONTACT_SYNC_ONLY}

    def write(self, method: str, path: str, payload: JSON, *, retry: bool = True) -> JSON:
        """A person write; a 403 for the contact-sync fields (nothing was written) teaches us
        the company has it off, and the write goes again without them."""
        try:
            return self._api.call(method, path, json_body=payload, retry=retry)
        except PermissionDenied as exc:
            sent = set(payload) & set(CONTACT_SYNC_ONLY)
            if not sent or "contact sync" not in exc.message.lower():
                raise
            self.learn(False)
            return self._api.call(method, path, json_body=self.fit(payload), retry=retry)
