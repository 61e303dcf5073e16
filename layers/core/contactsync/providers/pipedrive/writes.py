"""How persons are written: one request each (Pipedrive has no batch), and the same-second check
that stands in for an etag next to ``update_time``. A person is created owned by the user,
tagged with our mapping id; an update PATCHes only what differs; a delete of a person already
gone counts as done."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from contactsync.providers.base import (
    AuthExpired,
    ContactDelete,
    ContactUpdate,
    NewContact,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    ProviderError,
    RateLimited,
    RemoteContact,
    Transient,
    WriteResult,
)
from contactsync.providers.pipedrive.api import PipedriveApi, person_path
from contactsync.providers.pipedrive.contact_sync import ContactSync
from contactsync.providers.pipedrive.mapping import NAME_KEYS, normalize_org_name, person_fields
from contactsync.providers.pipedrive.organizations import Organizations
from contactsync.providers.pipedrive.persons import Persons
from contactsync.providers.pipedrive.position import parse_time
from contactsync.providers.pipedrive.tag_field import TagField

# A person updated this recently may hold a second edit with the same update_time (clock skew
# between Pipedrive and us included): writes over it compare contents, not only the time.
SAME_SECOND_WINDOW = timedelta(seconds=5)

Item = TypeVar("Item")


def one_by_one(
    items: Sequence[Item],
    key: Callable[[Item], str],
    write: Callable[[Item], RemoteContact | None],
) -> list[WriteResult]:
    """Write items one by one. A per-item rejection is recorded and the rest go on; a
    side-wide failure (rate limit, auth, outage) is recorded for every item left."""
    results: list[WriteResult] = []
    for index, item in enumerate(items):
        try:
            results.append(WriteResult(key(item), remote=write(item)))
        except (RateLimited, AuthExpired, Transient) as exc:
            results += [WriteResult(key(rest), error=exc) for rest in items[index:]]
            break
        except ProviderError as exc:
            results.append(WriteResult(key(item), error=exc))
    return results


def changed_this_second(item: ContactUpdate, now: RemoteContact) -> bool:
    """Same ``update_time`` as read, but updated so recently that a second edit may share
    it: then what the person holds is compared with what the pass read."""
    with contextlib.suppress(ValueError):
        if datetime.now(UTC) - parse_time(now.version) > SAME_SECOND_WINDOW:
            return False
    read, held = item.before, now.contact
    return person_fields(read) != person_fields(held) or (
        normalize_org_name(read.organization) != normalize_org_name(held.organization)
    )


class PersonWrites:
    """Creates, updates and deletes of the persons one user owns, one request each."""

    def __init__(
        self,
        api: PipedriveApi,
        owner_id: int,
        *,
        persons: Persons,
        orgs: Organizations,
        tag: TagField,
        contact_sync: ContactSync,
        visible_to: int | None,
    ) -> None:
        self._api = api
        self._owner_id = owner_id
        self._persons = persons
        self._orgs = orgs
        self._tag = tag
        self._contact_sync = contact_sync
        self._visible_to = visible_to  # who sees the persons we create; None: the CRM's default

    def create(self, items: Sequence[NewContact]) -> list[WriteResult]:
        def create_one(item: NewContact) -> RemoteContact:
            payload = self._contact_sync.fit(person_fields(item.contact))
            payload["owner_id"] = self._owner_id
            payload["custom_fields"] = {self._tag.key(): item.tag}
            if self._visible_to is not None:
                payload["visible_to"] = self._visible_to
            if item.contact.organization.strip():
                payload["org_id"] = self._orgs.id_for(item.contact.organization)
            try:
                body = self._contact_sync.write("POST", "/api/v2/persons", payload, retry=False)
            except PermissionDenied as exc:  # the write's 403 is the truth about permissions
                raise PermissionDenied(
                    "you need the CRM permission to add people: ask a CRM admin for it "
                    f"({exc.message})",
                    missing=["add people"],
                ) from exc
            return self._persons.remote(body["data"])

        return one_by_one(items, lambda i: i.tag, create_one)

    def update(self, items: Sequence[ContactUpdate]) -> list[WriteResult]:
        """PATCH only what differs between ``before`` and ``after``.

        Pipedrive has no etag, so the version (``update_time``) is checked just before writing:
        a person edited in the CRM since the pass read it is refused as a stale write, and the
        next pass merges that edit instead of overwriting it. ``update_time`` has one-second
        precision, so a person updated in the last few seconds is also compared field by field
        with what the pass read: an edit in the same second as that read is not overwritten.
        """
        current = self._persons.fetch([i.id for i in items if i.version])

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
            changes = self._contact_sync.fit(changes)
            if not changes:
                return None  # nothing Pipedrive holds differs: no request
            body = self._contact_sync.write("PATCH", person_path(item.id), changes)
            return self._persons.remote(body["data"])

        return one_by_one(items, lambda i: i.id, update_one)

    def delete(self, items: Sequence[ContactDelete]) -> list[WriteResult]:
        def delete_one(item: ContactDelete) -> None:
            with contextlib.suppress(NotFound):  # already gone: the goal is reached
                self._api.call("DELETE", person_path(item.id))

        return one_by_one(items, lambda i: i.id, delete_one)
