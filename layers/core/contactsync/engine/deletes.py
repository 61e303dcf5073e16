"""Planning a delete on one side of a linked pair: delete the other, or make it again there if
the other side was edited since (the edit wins)."""

from __future__ import annotations

from dataclasses import replace

from contactsync.contacts.model import Contact
from contactsync.contacts.normalize import field_key
from contactsync.engine.merge import Side, SyncSettings, merge
from contactsync.engine.plan import SIDE_NAMES, MappingState, Outcome, Write
from contactsync.providers.base import RemoteContact


def one_side_gone(
    mapping: MappingState, gone: Side, survivor: RemoteContact, settings: SyncSettings
) -> Outcome:
    """One side deleted its contact: delete the other, or recreate it if the other was edited."""
    kept: Side = "provider" if gone == "crm" else "crm"
    region = settings.phone_region
    drop = Outcome(mapping.mapping_id, mapping.crm_id, mapping.provider_id, None, ())
    # Edited since the last pass: compared with what it held then (in a one-way connection
    # that may differ from the base). A value the deleted side held too (a write to it whose
    # answer was lost) is no edit it had not seen: the delete was made knowing it.
    known = mapping.holds.get(kept, mapping.base)
    seen = mapping.holds.get(gone, known)
    edited = any(
        field_key(survivor.contact, f, region)
        not in (
            field_key(known, f, region),
            field_key(seen if f in settings.carried(gone) else known, f, region),
        )
        for f in settings.carried(kept)
    )
    if not edited:
        reason = f"deleted in {SIDE_NAMES[gone]}"
        if not settings.may_write(kept):
            # The fed side's delete stays, and the pair is kept, detached on that side: else the
            # source's contact would look new to the next full listing and be copied back.
            why = (
                f"{reason}; direction {settings.direction} does not write {SIDE_NAMES[kept]}: "
                f"the contact in {SIDE_NAMES[kept]} is left alone"
            )
            return replace(
                drop,
                new_base=mapping.base,
                kind="unlink",
                reason=why,
                detached=gone,
                holds=mapping.holds,
            )
        before = survivor.contact.only(settings.carried(kept))
        write = Write(kept, "delete", survivor.id, survivor.version, before, Contact())
        return replace(drop, writes=(write,), kind="delete", reason=reason)
    reason = f"deleted in {SIDE_NAMES[gone]} but edited in {SIDE_NAMES[kept]}: the edit wins"
    if not settings.may_write(gone):
        why = f"{reason}, but direction {settings.direction} does not write {SIDE_NAMES[gone]}"
        return replace(drop, kind="unlink", reason=why)
    # The deleted side counts as unchanged, so what only it carried comes back from the base.
    if kept == "crm":
        merged, _ = merge(mapping.base, survivor.contact, mapping.base, settings)
    else:
        merged, _ = merge(mapping.base, mapping.base, survivor.contact, settings)
    after = merged.only(settings.carried(gone))
    create = Write(gone, "create", "", "", Contact(), after)
    return Outcome(
        mapping_id=mapping.mapping_id,
        crm_id=survivor.id if kept == "crm" else "",
        provider_id=survivor.id if kept == "provider" else "",
        new_base=merged.only(settings.crm_fields | settings.provider_fields),
        writes=(create,),
        kind="merge",
        reason=f"{reason}, recreated in {SIDE_NAMES[gone]}",
    )


def back_and_deleted(
    mapping: MappingState, away: Side, gone: Side, survivor: RemoteContact, settings: SyncSettings
) -> Outcome:
    """A detached pair whose away contact came back in scope as one of the two was deleted: the
    pair is linked again and the delete is dealt with as on any linked pair."""
    outcome = one_side_gone(mapping, gone, survivor, settings)
    return replace(outcome, reason=f"back in scope in {SIDE_NAMES[away]}; {outcome.reason}")
