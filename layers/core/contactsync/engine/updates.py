"""Planning a pair both sides hold: the merge, the updates it needs, the new base.

Each update keeps a side's own spelling of every value that did not change, and a side the
direction does not write keeps its values in the base (see ``engine.plan``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from contactsync.contacts.model import ALL_FIELDS, LIST_FIELDS, Contact
from contactsync.contacts.normalize import element_identity, element_state, field_key
from contactsync.engine.merge import Side, SyncSettings, merge
from contactsync.engine.plan import SIDES, Outcome, Write
from contactsync.providers.base import RemoteContact


def _same(a: Contact, b: Contact, fields: frozenset[str], region: str) -> bool:
    return all(field_key(a, f, region) == field_key(b, f, region) for f in fields)


def _as_written(merged: Contact, held: Contact, fields: frozenset[str], region: str) -> Contact:
    """``merged`` for a side, keeping the side's own spelling of every value that did not change.

    So a write never reformats a phone number or an email the user did not touch.
    """
    values: dict[str, object] = {}
    for field in fields:
        if field_key(merged, field, region) == field_key(held, field, region):
            values[field] = getattr(held, field)
        elif field in LIST_FIELDS:
            own = {(element_identity(e, region), element_state(e)): e for e in getattr(held, field)}
            values[field] = tuple(
                own.get((element_identity(e, region), element_state(e)), e)
                for e in getattr(merged, field)
            )
        else:
            values[field] = getattr(merged, field)
    return merged.only(fields).with_fields(**values)


def _update(
    side: Side, merged: Contact, held: RemoteContact, settings: SyncSettings
) -> tuple[Write, ...]:
    """An update of ``side`` to ``merged``, if the direction allows one and it changes anything."""
    fields = settings.carried(side)
    region = settings.phone_region
    if not settings.may_write(side) or _same(merged, held.contact, fields, region):
        return ()
    before = held.contact.only(fields)
    after = _as_written(merged, held.contact, fields, region)
    return (Write(side, "update", held.id, held.version, before, after),)


def _agreed(
    merged: Contact, crm: RemoteContact, provider: RemoteContact, settings: SyncSettings
) -> Contact:
    """The new base: the merged contact, except what a side we may not write still holds."""
    base = merged.only(settings.crm_fields | settings.provider_fields)
    for side, held in zip(SIDES, (crm, provider), strict=True):
        if not settings.may_write(side):
            kept = settings.carried(side)
            base = base.with_fields(**{f: getattr(held.contact, f) for f in kept})
    return base


def _changed_fields(before: Contact, after: Contact, region: str) -> str:
    names = [f for f in ALL_FIELDS if field_key(before, f, region) != field_key(after, f, region)]
    return "changed: " + ", ".join(names) if names else "no change"


def merged_outcome(
    mapping_id: str,
    base: Contact,
    crm: RemoteContact,
    provider: RemoteContact,
    settings: SyncSettings,
    *,
    kind: Literal["merge", "link"],
    reason: str = "",
    remembered: dict[str, Contact] | None = None,
) -> Outcome:
    """The outcome of merging a pair (``remembered``: a linked pair's holds, see ``merge``)."""
    merged, conflicts = merge(
        base,
        crm.contact,
        provider.contact,
        settings,
        crm.modified_at,
        provider.modified_at,
        linking=kind == "link",
        remembered=remembered,
    )
    writes = _update("crm", merged, crm, settings) + _update("provider", merged, provider, settings)
    if kind == "merge" and not writes and not conflicts:
        kind_out: Literal["merge", "link", "noop"] = "noop"
    else:
        kind_out = kind
    new_base = _agreed(merged, crm, provider, settings)
    return Outcome(
        mapping_id=mapping_id,
        crm_id=crm.id,
        provider_id=provider.id,
        new_base=new_base,
        writes=writes,
        conflicts=conflicts,
        kind=kind_out,
        reason=reason or _changed_fields(base, merged, settings.phone_region),
        holds=_holds_after(new_base, {"crm": crm, "provider": provider}, writes, settings),
    )


def _holds_after(
    new_base: Contact,
    held: dict[str, RemoteContact],
    writes: Sequence[Write],
    settings: SyncSettings,
) -> dict[str, Contact]:
    """What each side will hold after ``writes``, for the sides where that is not the base."""
    written = {w.side: w.after for w in writes if w.kind == "update"}
    holds: dict[str, Contact] = {}
    for side in SIDES:
        fields = settings.carried(side)
        after = written.get(side, held[side].contact.only(fields))
        if not _same(after, new_base, fields, settings.phone_region):
            holds[side] = after.only(fields)
    return holds
