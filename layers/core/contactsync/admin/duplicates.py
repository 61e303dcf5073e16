"""Duplicates: clusters of the user's CRM persons that look like one person, the ambiguous
matches passes left unlinked, and merging persons with the CRM's own merge.

The clustering is the engine's (``duplicate_clusters``). The CRM is never listed for a request:
each full listing of it (the first sync, the daily one) keeps the clusters it found, and the page
reads the persons of those clusters again by id and clusters them anew, so a person merged,
deleted or edited apart since drops out. What a request costs grows with the duplicates, not with
the book; a new twin shows from the next full listing on (a pass that holds it as a possible
duplicate lists it among the ambiguous matches at once).

A merge holds the connection's lease, fixes the links so the provider side never brings a
merged-away person back, and queues a pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from contactsync.admin import access
from contactsync.admin.access import Caller
from contactsync.admin.context import AdminContext
from contactsync.admin.errors import ConflictError, InvalidRequest, NotFoundError, provider_errors
from contactsync.admin.lease import holding_lease
from contactsync.admin.views import HISTORY_READ
from contactsync.engine.matching import duplicate_clusters
from contactsync.providers.base import ContactDelete, ContactSide, NotFound, RemoteContact
from contactsync.providers.pipedrive import PipedrivePersons
from contactsync.store.audit import about_duplicates, add_audit, audit_about
from contactsync.store.duplicates import list_duplicate_clusters
from contactsync.store.mappings import (
    delete_mapping,
    mapping_by_crm_id,
    mapping_by_provider_id,
    put_mapping,
)
from contactsync.store.models import Connection, Mapping
from contactsync.sync.reconcile import Sides


def duplicates(ctx: AdminContext, caller: Caller, connection_id: str) -> dict[str, Any]:
    """Clusters of the user's CRM persons that look like one person, and the ambiguous
    matches passes recorded (left unlinked until someone decides)."""
    conn = access.connection_of(caller, connection_id)
    kept = list_duplicate_clusters(connection_id)
    ids = sorted({i for cluster in kept for i in cluster.crm_ids}, key=_numeric_first)
    found: dict[str, RemoteContact | None] = {}
    if ids:
        with provider_errors("the CRM"):
            found = ctx.sides(conn).crm.fetch(ids)
    persons = [p for i in ids if (p := found.get(i)) is not None and p.in_scope]
    by_id = {p.id: p for p in persons}
    clusters = []
    for group in duplicate_clusters(persons, conn.phone_region):
        members = [by_id[i] for i in sorted(group.items, key=_numeric_first)]
        listed = []
        for person in members:
            mapping = mapping_by_crm_id(connection_id, person.id)
            listed.append(
                {
                    "id": person.id,
                    "name": person.contact.full_name,
                    "linked_to": mapping.provider_id if mapping else None,
                }
            )
        keep = next((m["id"] for m in listed if m["linked_to"]), listed[0]["id"])
        clusters.append(
            {
                "crm_ids": [m["id"] for m in listed],
                "keys": sorted(group.keys),
                "persons": listed,
                "suggested_keep": keep,
            }
        )
    findings = audit_about(about_duplicates(connection_id), limit=HISTORY_READ)
    ambiguous: dict[str, dict[str, Any]] = {}
    for entry in findings:
        if not isinstance(entry.details, dict):
            continue
        key = str(entry.details.get("key", ""))
        ambiguous.setdefault(
            key,
            {
                "key": key,
                "crm_ids": list(entry.details.get("crm_ids") or []),
                "provider_ids": list(entry.details.get("provider_ids") or []),
                "message": entry.message,
                "seen_at": entry.at,
            },
        )
    return {"clusters": clusters, "ambiguous_matches": list(ambiguous.values())}


def merge_duplicates(
    ctx: AdminContext, caller: Caller, connection_id: str, keep: str, merge: Sequence[str]
) -> dict[str, Any]:
    """Merge CRM persons into ``keep`` with the CRM's own merge, then fix the links so the
    provider side never brings a merged-away person back."""
    losers = list(dict.fromkeys(merge))
    if not losers or keep in losers:
        raise InvalidRequest("name the person to keep and at least one other to merge into it")
    conn = access.connection_of(caller, connection_id)
    sides = ctx.sides(conn)
    crm = sides.crm
    if not isinstance(crm, PipedrivePersons):
        raise ConflictError("this CRM cannot merge persons")
    results: list[dict[str, str]] = []
    with holding_lease(connection_id, ctx.clock):
        with provider_errors("the CRM"):
            found = crm.fetch([keep, *losers])
        for person_id in (keep, *losers):
            person = found.get(person_id)
            if person is None:
                raise NotFoundError(f"no CRM person {person_id!r}")
            if not person.in_scope:
                raise InvalidRequest(
                    f"CRM person {person_id} is not in this sync ({person.scope_reason})"
                )
        keeper_link = mapping_by_crm_id(connection_id, keep)
        for loser in losers:
            with provider_errors("the CRM"):
                crm.merge_persons(keep, loser)
            keeper_link, link = _relink(ctx, conn, sides, keeper_link, keep=keep, loser=loser)
            add_audit(
                connection_id,
                "merge",
                f"CRM person {loser} merged into {keep}: {link}",
                side="crm",
                crm_id=keep,
                details={"kept": keep, "merged": loser, "link": link},
                now=ctx.clock(),
            )
            results.append({"crm_id": loser, "link": link})
        if keeper_link is None:
            settled = _settle_ambiguous(ctx, conn, sides, keep, {keep, *losers})
            if settled:
                add_audit(
                    connection_id,
                    "merge",
                    f"CRM person {keep} linked to provider contact {settled}: "
                    "the ambiguous match is settled",
                    side="crm",
                    crm_id=keep,
                    provider_id=settled,
                    now=ctx.clock(),
                )
    ctx.queue_pass(connection_id, "schedule", crm_ids=[keep, *losers])
    return {"kept": keep, "merged": results}


def _relink(
    ctx: AdminContext,
    conn: Connection,
    sides: Sides,
    keeper_link: Mapping | None,
    *,
    keep: str,
    loser: str,
) -> tuple[Mapping | None, str]:
    """After a merge: a linked loser either hands its link to an unlinked keeper, or (the
    keeper being linked already) is unlinked and its provider contact deleted."""
    cid = conn.connection_id
    loser_link = mapping_by_crm_id(cid, loser)
    if loser_link is None:
        return keeper_link, "it was not linked"
    if keeper_link is None:
        moved = put_mapping(
            cid,
            mapping_id=loser_link.mapping_id,
            crm_id=keep,
            provider_id=loser_link.provider_id,
            base=loser_link.base_contact,
            crm_version="",  # the kept person changed: the next pass merges it afresh
            provider_version=loser_link.provider_version,
            now=ctx.clock(),
        )
        return moved, f"its link to provider contact {loser_link.provider_id} moved to {keep}"
    delete_mapping(cid, loser_link.mapping_id)
    with provider_errors("the provider"):
        _delete_now(sides.provider, loser_link.provider_id)
    return keeper_link, f"unlinked; provider contact {loser_link.provider_id} deleted"


def _settle_ambiguous(
    ctx: AdminContext, conn: Connection, sides: Sides, keep: str, merged: set[str]
) -> str | None:
    """Link the kept person to the one provider contact a pass found ambiguous because of
    the persons now merged into it. Left to the next pass, it would not be matched (only
    the changed person is read) but copied: a duplicate in the address book."""
    cid = conn.connection_id
    for entry in audit_about(about_duplicates(cid), limit=HISTORY_READ):
        details = entry.details if isinstance(entry.details, dict) else {}
        crm_ids = {str(i) for i in details.get("crm_ids") or []}
        provider_ids = [str(i) for i in details.get("provider_ids") or []]
        if keep not in crm_ids or not crm_ids <= merged or len(provider_ids) != 1:
            continue
        provider_id = provider_ids[0]
        if mapping_by_provider_id(cid, provider_id) is not None:
            continue
        with provider_errors("the provider"):
            remote = sides.provider.fetch([provider_id]).get(provider_id)
        if remote is None or not remote.in_scope:
            continue
        put_mapping(
            cid,
            crm_id=keep,
            provider_id=provider_id,
            base=remote.contact,  # the kept person's values win on the next pass
            crm_version="",
            provider_version=remote.version,
            now=ctx.clock(),
        )
        return provider_id
    return None


def _delete_now(side: ContactSide, contact_id: str) -> None:
    """Delete a contact at its current version (it may have changed since it was linked)."""
    current = side.fetch([contact_id]).get(contact_id)
    if current is None:
        return
    result = side.delete([ContactDelete(contact_id, current.version)])[0]
    if result.error is not None and not isinstance(result.error, NotFound):
        raise result.error


def _numeric_first(contact_id: str) -> tuple[int, str]:
    return (int(contact_id), "") if contact_id.isdigit() else (0, contact_id)
