"""A Google person as the side reports it: a ``RemoteContact`` (in scope when a member of the
chosen group), one answer of a batch as a ``WriteResult``, and persons read by resource name
(``people:batchGet``, 200 a call)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from contactsync.providers.base import NotFound, ProviderError, RemoteContact, WriteResult
from contactsync.providers.google.errors import status_error
from contactsync.providers.google.mapping import MODELLED, from_person, tag_of
from contactsync.providers.google.people_api import PeopleApi
from contactsync.providers.transport import chunks

NOT_IN_GROUP = "not in the contact group"
PERSON_FIELDS = ",".join((*MODELLED, "memberships", "clientData", "metadata"))
WRITE_BATCH = 200  # batchCreateContacts / batchUpdateContacts / people:batchGet


def remote_of(person: dict[str, Any], group: str) -> RemoteContact:
    """A person as a ``RemoteContact``: in scope when it is a member of ``group``."""
    groups = {
        (m.get("contactGroupMembership") or {}).get("contactGroupResourceName")
        for m in person.get("memberships") or []
    }
    in_scope = group in groups
    sources = (person.get("metadata") or {}).get("sources") or []
    modified = next((s.get("updateTime") for s in sources if s.get("type") == "CONTACT"), "")
    return RemoteContact(
        id=str(person["resourceName"]),
        contact=from_person(person),
        version=str(person.get("etag") or ""),
        modified_at=str(modified or ""),
        in_scope=in_scope,
        scope_reason="" if in_scope else NOT_IN_GROUP,
        tag=tag_of(person),
        # A contact linked to a profile gets a new resource name; the pass moves its link.
        previous_ids=tuple(
            str(n) for n in (person.get("metadata") or {}).get("previousResourceNames") or []
        ),
    )


def written(key: str, answer: dict[str, Any], group: str) -> WriteResult:
    """One PersonResponse of a batch answer as a WriteResult."""
    status = answer.get("status") or {}
    code = int(answer.get("httpStatusCode") or 200)
    if (status and int(status.get("code") or 0) != 0) or code >= 400:
        return WriteResult(key, error=status_error(status or {"httpStatusCode": code}))
    person = answer.get("person")
    if not person:
        return WriteResult(key, error=ProviderError("Google answered without the person"))
    return WriteResult(key, remote=remote_of(person, group))


def batch_get(api: PeopleApi, ids: Sequence[str], group: str) -> dict[str, dict[str, Any] | None]:
    """Raw persons by resource name, 200 per ``people:batchGet``; None when Google says
    NOT_FOUND; absent when the answer left it out (a 200 that omits a name says nothing)."""
    found: dict[str, dict[str, Any] | None] = {}
    for chunk in chunks(list(ids), WRITE_BATCH):
        params: dict[str, str | list[str]] = {
            "personFields": PERSON_FIELDS,
            "resourceNames": chunk,
        }
        resp = api.send("GET", "/v1/people:batchGet", params=params)
        body = api.json(resp)
        for answer in body.get("responses") or []:
            person = answer.get("person")
            rn = str(answer.get("requestedResourceName") or (person or {}).get("resourceName"))
            result = written(rn, answer, group)
            if isinstance(result.error, NotFound):
                found[rn] = None
            elif result.error is not None:
                raise result.error
            else:
                found[rn] = person
    return {rn: found[rn] for rn in ids if rn in found}
