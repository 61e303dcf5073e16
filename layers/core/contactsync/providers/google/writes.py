"""How persons are written: the batch methods (create and update 200 contacts a call, delete
500), one at a time per side (Google asks for sequential mutations per user).

A batch fails as a whole and names the contacts at fault (``contactErrors``): those get a
per-contact error and the rest are sent again. An update first reads the current persons
(``people:batchGet``): Google wants the contact's ``metadata.sources`` and etag back, a stale
etag is a PreconditionFailed without writing, and the masked fields are rebuilt on the current
values (``mapping.rebuilt``). Creates are never sent twice blindly.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from typing import Any

from contactsync.providers.base import (
    ContactDelete,
    ContactUpdate,
    NewContact,
    NotFound,
    PreconditionFailed,
    ProviderError,
    RateLimited,
    Transient,
    WriteResult,
)
from contactsync.providers.google.errors import batch_error, contact_errors, error_of
from contactsync.providers.google.mapping import (
    TAG_KEY,
    person_fields_changed,
    rebuilt,
    tag_of,
    to_person,
)
from contactsync.providers.google.people_api import PeopleApi
from contactsync.providers.google.persons import PERSON_FIELDS, WRITE_BATCH, batch_get, written
from contactsync.providers.transport import answer_body, chunks

DELETE_BATCH = 500  # batchDeleteContacts


class PeopleWrites:
    """Creates, updates and deletes of the persons of one contact group, one batch at a time."""

    def __init__(self, api: PeopleApi, group: str) -> None:
        self._api = api
        self._group = group
        self._mutating = threading.Lock()  # Google wants one mutation at a time per user

    def create(self, items: Sequence[NewContact]) -> list[WriteResult]:
        """``people:batchCreateContacts``, 200 a call, in the chosen group, tagged."""
        results: dict[int, WriteResult] = {}
        with self._mutating:
            self._inchunks(
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
                self._inchunks(
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
            self._inchunks(
                list(range(len(items))),
                DELETE_BATCH,
                lambda chunk: self._delete_chunk(items, chunk, results),
                lambda i, error: results.__setitem__(i, WriteResult(items[i].id, error=error)),
            )
        return [results[i] for i in range(len(items))]

    def _inchunks(
        self,
        indexes: list[int],
        size: int,
        run: Callable[[list[int]], None],
        fail: Callable[[int, ProviderError], None],
    ) -> None:
        """Run ``run`` on chunks of ``size``. A throttle or an outage keeps what was done: that
        chunk and every later one get the error (so the caller records them and re-queues)."""
        stop: ProviderError | None = None
        for chunk in chunks(indexes, size):
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
            resp = self._api.send("POST", "/v1/people:batchCreateContacts", json=body, retry=False)
            if resp.status_code == 200:
                created = self._api.json(resp).get("createdPeople") or []
                by_tag = {tag_of(a.get("person") or {}): a for a in created}
                for n, i in enumerate(pending):
                    tag = items[i].tag
                    answer = by_tag.get(tag) or (created[n] if n < len(created) else {})
                    results[i] = written(tag, answer, self._group)
                return
            failed = contact_errors(resp, [str(n) for n in range(len(pending))])
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
        current = batch_get(self._api, [items[i].id for i in chunk], self._group)
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
            sendable[item.id] = rebuilt(person, to_person(item.after), mask)
            index[item.id] = i
        while sendable:
            body = {
                "contacts": sendable,
                "updateMask": ",".join(mask),
                "readMask": PERSON_FIELDS,
            }
            resp = self._api.send("POST", "/v1/people:batchUpdateContacts", json=body)
            if resp.status_code == 200:
                answers = self._api.json(resp).get("updateResult") or {}
                for rn in sendable:
                    results[index[rn]] = written(rn, answers.get(rn) or {}, self._group)
                return
            failed = contact_errors(resp, list(sendable))
            for rn, error in failed.items():
                results[index[rn]] = WriteResult(rn, error=error)
            sendable = {rn: p for rn, p in sendable.items() if rn not in failed}

    def _delete_chunk(
        self, items: Sequence[ContactDelete], chunk: list[int], results: dict[int, WriteResult]
    ) -> None:
        names = [items[i].id for i in chunk]
        resp = self._api.send(
            "POST", "/v1/people:batchDeleteContacts", json={"resourceNames": names}
        )
        if resp.status_code == 404:  # one of them was already gone: delete one by one
            for i in chunk:
                one = self._api.send("DELETE", f"/v1/{items[i].id}:deleteContact")
                ok = one.status_code in (200, 204, 404)
                error = None if ok else error_of(one.status_code, answer_body(one), write=True)
                results[i] = WriteResult(items[i].id, error=error)
            return
        if resp.status_code >= 400:
            error = batch_error(resp)
            for i in chunk:
                results[i] = WriteResult(items[i].id, error=error)
            return
        for i in chunk:
            results[i] = WriteResult(items[i].id)

    def _new_person(self, item: NewContact) -> dict[str, Any]:
        person = to_person(item.contact)
        person["memberships"] = [
            {"contactGroupMembership": {"contactGroupResourceName": self._group}}
        ]
        person["clientData"] = [{"key": TAG_KEY, "value": item.tag}]
        return person
