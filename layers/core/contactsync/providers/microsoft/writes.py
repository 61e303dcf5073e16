"""How contacts are written: JSON ``$batch`` (20 requests per batch, through ``graph``), a
create tagged with our mapping id, an update that patches only the changed properties with
``If-Match``, a delete with ``If-Match`` (a contact already gone counts as deleted)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from contactsync.providers.base import ContactDelete, ContactUpdate, NewContact, WriteResult
from contactsync.providers.microsoft.graph import GraphApi
from contactsync.providers.microsoft.items import TAG_PROPERTY_ID, remote_of, with_tag
from contactsync.providers.microsoft.mapping import changed_properties, to_graph


class ContactWrites:
    """Creates, updates and deletes of the contacts of one Outlook folder."""

    def __init__(self, graph: GraphApi, folder: str) -> None:
        self._graph = graph
        self._folder = folder

    def create(self, items: Sequence[NewContact]) -> list[WriteResult]:
        requests: list[dict[str, Any]] = []
        for i, item in enumerate(items):
            body = to_graph(item.contact)
            body["singleValueExtendedProperties"] = [{"id": TAG_PROPERTY_ID, "value": item.tag}]
            requests.append(
                {
                    "id": str(i),
                    "method": "POST",
                    "url": f"/me/contactFolders/{self._folder}/contacts",
                    "headers": {"Content-Type": "application/json"},
                    "body": body,
                }
            )
        results = []
        for answer in self._graph.batch(requests, writes=True, retry=False):
            tag = items[int(answer.id)].tag
            if answer.status in (200, 201):
                remote = remote_of(answer.body, self._folder)
                results.append(WriteResult(tag, remote=with_tag(remote, tag)))
            else:
                results.append(WriteResult(tag, error=answer.failure()))
        return results

    def update(self, items: Sequence[ContactUpdate]) -> list[WriteResult]:
        results: list[WriteResult] = []
        requests: list[dict[str, Any]] = []
        pending: list[str] = []
        for item in items:
            patch = changed_properties(item.before, item.after)
            if not patch:  # nothing Graph holds differs: no request at all
                results.append(WriteResult(item.id))
                continue
            headers = {"Content-Type": "application/json"}
            if item.version:
                headers["If-Match"] = item.version
            requests.append(
                {
                    "id": str(len(requests)),
                    "method": "PATCH",
                    "url": f"/me/contacts/{item.id}",
                    "headers": headers,
                    "body": patch,
                }
            )
            pending.append(item.id)
        for answer in self._graph.batch(requests, writes=True):
            cid = pending[int(answer.id)]
            if answer.status == 200:
                results.append(WriteResult(cid, remote=remote_of(answer.body, self._folder)))
            else:
                results.append(WriteResult(cid, error=answer.failure()))
        return results

    def delete(self, items: Sequence[ContactDelete]) -> list[WriteResult]:
        """Delete with If-Match; a contact already gone counts as deleted."""
        requests: list[dict[str, Any]] = []
        for i, item in enumerate(items):
            request: dict[str, Any] = {
                "id": str(i),
                "method": "DELETE",
                "url": f"/me/contacts/{item.id}",
            }
            if item.version:
                request["headers"] = {"If-Match": item.version}
            requests.append(request)
        results = []
        for answer in self._graph.batch(requests, writes=True):
            cid = items[int(answer.id)].id
            if answer.error is None and answer.status in (200, 204, 404):
                results.append(WriteResult(cid))
            else:
                results.append(WriteResult(cid, error=answer.failure()))
        return results
