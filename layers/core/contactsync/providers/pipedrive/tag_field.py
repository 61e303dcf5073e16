"""Where our mapping id lives in Pipedrive: a custom person field named "contactsync id", found
through ``/api/v1/personFields`` or created on first use."""

from __future__ import annotations

from contactsync.providers.pipedrive.api import PipedriveApi

TAG_FIELD_NAME = "contactsync id"


class TagField:
    """The "contactsync id" person field of one company."""

    def __init__(self, api: PipedriveApi, key: str | None = None) -> None:
        self._api = api
        self._key = key  # known from an earlier pass: saves a personFields call

    def key(self) -> str:
        """The hash key of our "contactsync id" custom field, created on first use."""
        if self._key is not None:
            return self._key
        start = 0
        while True:
            params = {"start": start, "limit": 500}
            body = self._api.call("GET", "/api/v1/personFields", params=params)
            for field in body.get("data") or []:
                if (field.get("name") or "").strip().casefold() == TAG_FIELD_NAME:
                    self._key = str(field["key"])
                    return self._key
            pagination = (body.get("additional_data") or {}).get("pagination") or {}
            if not pagination.get("more_items_in_collection"):
                break
            start = int(pagination.get("next_start", start + 500))
        body = {"name": TAG_FIELD_NAME, "field_type": "varchar"}
        self._key = str(
            self._api.call("POST", "/api/v1/personFields", json_body=body)["data"]["key"]
        )
        return self._key
