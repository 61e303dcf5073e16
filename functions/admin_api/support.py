"""Routes: the support questions about a connection (what a pass would do, why a contact does
or does not sync, duplicates), its history and undo, and the pass the mass-change guard holds.

The preview, duplicates and activity routes import their services when first called: these bring
the engine, the CRM adapter and phonenumbers, which a cold start for any other route does without.
"""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from contactsync.admin import explain as explanations
from contactsync.admin import held

from .answers import (
    ActivityPage,
    Confirmed,
    Discarded,
    Duplicates,
    Explanation,
    Merged,
    PersonHits,
    Preview,
    Undone,
)
from .bodies import ConnectionId, DuplicateMerge, EntryId, ProviderContactId
from .context import caller, service
from .errors import answers

router = APIGatewayHttpRouter()
TROUBLESHOOTING = ["Troubleshooting"]
ACTIVITY = ["Activity"]
HELD = ["Held passes"]


@router.get(
    "/connections/<connection_id>/preview",
    tags=TROUBLESHOOTING,
    summary="Preview a pass",
    description="What a full pass would do right now (links, creates, updates, deletes, "
    "conflicts, duplicates left alone), computed without writing anything.",
    responses=answers("The counts of what a pass would do", 403, 404, 409, 503),
)
def preview(connection_id: ConnectionId) -> Preview:
    from contactsync.admin import preview as previews  # noqa: PLC0415 - on first call

    return Preview.model_validate(previews.preview(service(), caller(router), connection_id))


@router.get(
    "/connections/<connection_id>/explain",
    tags=TROUBLESHOOTING,
    summary="Explain one contact",
    description="Why one contact (a CRM person or a provider contact: give exactly one id) "
    "is, or is not, syncing, in plain words, with its link and history.",
    responses=answers("The reasons, the link and the history", 404),
)
def explain(
    connection_id: ConnectionId,
    crm_person_id: Annotated[
        str | None, Query(min_length=1, max_length=18, pattern=r"^[0-9]+$")
    ] = None,
    provider_contact_id: Annotated[
        str | None, Query(min_length=1, max_length=512, pattern=ProviderContactId)
    ] = None,
) -> Explanation:
    explained = explanations.explain(
        service(),
        caller(router),
        connection_id,
        crm_person_id=crm_person_id,
        provider_contact_id=provider_contact_id,
    )
    return Explanation.model_validate(explained)


@router.get(
    "/connections/<connection_id>/contacts",
    tags=TROUBLESHOOTING,
    summary="Find CRM persons",
    description="CRM persons by name or email (anyone's), each with whether it is linked: "
    "to pick one to explain.",
    responses=answers("The persons found", 403, 404, 409, 503),
)
def find_contacts(
    connection_id: ConnectionId,
    q: Annotated[str, Query(min_length=2, max_length=100)],
) -> PersonHits:
    return PersonHits.model_validate(explanations.find(service(), caller(router), connection_id, q))


@router.get(
    "/connections/<connection_id>/duplicates",
    tags=TROUBLESHOOTING,
    summary="List duplicates",
    description="Clusters of the user's CRM persons that look like one person (sharing an "
    "email, a phone, or a name at one organisation), and the ambiguous matches passes left "
    "unlinked until someone decides.",
    responses=answers("The clusters and the ambiguous matches", 403, 404, 409, 503),
)
def duplicates(connection_id: ConnectionId) -> Duplicates:
    from contactsync.admin import duplicates as duplicate_persons  # noqa: PLC0415 - on first call

    found = duplicate_persons.duplicates(service(), caller(router), connection_id)
    return Duplicates.model_validate(found)


@router.post(
    "/connections/<connection_id>/duplicates/merge",
    tags=TROUBLESHOOTING,
    summary="Merge duplicates",
    description="Merge CRM persons into the one to keep with the CRM's own merge, then fix "
    "the links so the provider side never brings a merged-away person back.",
    responses=answers("The person kept and what became of each link", 403, 404, 409, 503),
)
def merge_duplicates(connection_id: ConnectionId, body: DuplicateMerge) -> Merged:
    from contactsync.admin import duplicates as duplicate_persons  # noqa: PLC0415 - on first call

    merged = duplicate_persons.merge_duplicates(
        service(), caller(router), connection_id, body.keep, body.merge
    )
    return Merged.model_validate(merged)


@router.get(
    "/connections/<connection_id>/activity",
    tags=ACTIVITY,
    summary="Read the activity log",
    description="A page of what the sync changed and why, newest first (``kind`` keeps one "
    "kind of entry; ``cursor`` is the previous page's ``next_cursor``).",
    responses=answers("A page of entries", 404),
)
def activity(
    connection_id: ConnectionId,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(min_length=1, max_length=2048)] = None,
    kind: Annotated[str | None, Query(min_length=1, max_length=32, pattern=r"^[a-z_]+$")] = None,
) -> ActivityPage:
    from contactsync.admin import undo as history  # noqa: PLC0415 - on first call

    page = history.activity(
        service(), caller(router), connection_id, limit=limit, cursor=cursor, kind=kind
    )
    return ActivityPage.model_validate(page)


@router.post(
    "/connections/<connection_id>/activity/<entry_id>/undo",
    tags=ACTIVITY,
    summary="Undo an update",
    description="Put back the values one update replaced, on the side it wrote; a pass then "
    "carries the restored values to the other side. Only updates can be undone.",
    responses=answers("The fields restored and the new activity entry", 403, 404, 409, 503),
)
def undo(connection_id: ConnectionId, entry_id: EntryId) -> Undone:
    from contactsync.admin import undo as history  # noqa: PLC0415 - on first call

    return Undone.model_validate(history.undo(service(), caller(router), connection_id, entry_id))


@router.post(
    "/connections/<connection_id>/confirm",
    tags=HELD,
    summary="Confirm the held pass",
    description="Let the pass the mass-change guard held go ahead: it runs again, confirmed.",
    responses=answers("The pass is queued", 404, 409),
)
def confirm(connection_id: ConnectionId) -> Confirmed:
    return Confirmed.model_validate(held.confirm(service(), caller(router), connection_id))


@router.post(
    "/connections/<connection_id>/discard",
    tags=HELD,
    summary="Discard the held pass",
    description="Drop the held pass: nothing it planned is written. If its cause is still "
    "there the next pass is held again, so fix the cause first.",
    responses=answers("The pass is discarded", 404, 409),
)
def discard(connection_id: ConnectionId) -> Discarded:
    return Discarded.model_validate(held.discard(service(), caller(router), connection_id))
