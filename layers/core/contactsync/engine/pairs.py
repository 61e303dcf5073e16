"""Planning one mapped pair: a merge, a delete, or a change of scope (a contact leaving the
sync scope detaches the pair; coming back links it again)."""

from __future__ import annotations

from dataclasses import replace

from contactsync.contacts.model import Contact
from contactsync.engine.deletes import back_and_deleted, one_side_gone
from contactsync.engine.merge import Side, SyncSettings
from contactsync.engine.plan import (
    SIDE_NAMES,
    SIDES,
    MappingState,
    Outcome,
    PairInput,
    Unchanged,
    other_side,
)
from contactsync.engine.updates import merged_outcome
from contactsync.providers.base import RemoteContact


def held_now(
    reported: RemoteContact | Unchanged | None, mapping: MappingState, side: Side
) -> RemoteContact | None:
    """What a side holds now; an unchanged side holds the base."""
    if not isinstance(reported, Unchanged):
        return reported
    holds = mapping.holds.get(side, mapping.base)
    if side == "crm":
        return RemoteContact(mapping.crm_id, holds, version=mapping.crm_version)
    return RemoteContact(mapping.provider_id, holds, version=mapping.provider_version)


def detached_pair(pair: PairInput, settings: SyncSettings) -> Outcome:
    """A pair whose contact on one side left scope: nothing syncs until it comes back."""
    mapping = pair.mapping
    away: Side = "crm" if mapping.detached == "crm" else "provider"
    stayed: Side = "provider" if away == "crm" else "crm"
    reported = {"crm": pair.crm, "provider": pair.provider}
    keep = Outcome(
        mapping.mapping_id,
        mapping.crm_id,
        mapping.provider_id,
        new_base=mapping.base,
        writes=(),
        kind="noop",
        detached=away,
        holds=mapping.holds,
    )
    back = reported[away]
    returned = isinstance(back, RemoteContact) and back.in_scope
    if reported[stayed] is None and returned:
        # Back in scope, and its partner deleted, both since the last pass.
        assert isinstance(back, RemoteContact)
        return back_and_deleted(mapping, away, stayed, back, settings)
    if reported[stayed] is None:
        reason = f"deleted in {SIDE_NAMES[stayed]}; its partner is out of scope: forgotten"
        return replace(keep, new_base=None, kind="unlink", reason=reason, detached="")
    if reported[away] is None and away in settings.deletes_in_scope_only:
        # That side reports deletions only of contacts in scope: the away contact came back and
        # was deleted, both since the last pass.
        kept = held_now(reported[stayed], mapping, stayed)
        assert kept is not None
        return back_and_deleted(mapping, away, away, kept, settings)
    if reported[away] is None:
        # Its partner left scope and was then deleted there: this one stays left alone, and the
        # pair is kept so it is never copied over again (a person handed to a colleague who then
        # deleted it must not come back as the user's own).
        return keep
    if returned:
        crm = held_now(pair.crm, mapping, "crm")
        provider = held_now(pair.provider, mapping, "provider")
        assert crm is not None and provider is not None
        merged = merged_outcome(
            mapping.mapping_id,
            mapping.base,
            crm,
            provider,
            settings,
            kind="merge",
            reason=f"back in scope in {SIDE_NAMES[away]}: linked again",
            remembered=_may_have_landed(mapping),
        )
        return replace(merged, kind="merge")  # saved even with nothing to write: it relinks
    return keep


def plan_pair(pair: PairInput, settings: SyncSettings) -> Outcome:
    """The outcome for one mapped pair with a change on at least one side."""
    mapping = pair.mapping
    if mapping.detached:
        return detached_pair(pair, settings)
    for side, reported in zip(SIDES, (pair.crm, pair.provider), strict=True):
        if isinstance(reported, RemoteContact) and not reported.in_scope:
            partner = pair.provider if side == "crm" else pair.crm
            if partner is None:  # the other one was deleted: nothing left to link
                return Outcome(
                    mapping.mapping_id,
                    mapping.crm_id,
                    mapping.provider_id,
                    new_base=None,
                    writes=(),
                    kind="unlink",
                    reason=f"deleted in {SIDE_NAMES[other_side(side)]}; "
                    f"left the sync scope in {SIDE_NAMES[side]}",
                )
            return Outcome(
                mapping.mapping_id,
                mapping.crm_id,
                mapping.provider_id,
                new_base=mapping.base,
                writes=(),
                kind="unlink",
                reason=(reported.scope_reason or "out of scope")
                + f"; the contact in {SIDE_NAMES[other_side(side)]} is left alone",
                detached=side,
                holds=mapping.holds,
            )
    crm = held_now(pair.crm, mapping, "crm")
    provider = held_now(pair.provider, mapping, "provider")
    if crm is None and provider is None:
        return Outcome(
            mapping.mapping_id,
            mapping.crm_id,
            mapping.provider_id,
            new_base=None,
            writes=(),
            kind="delete",
            reason="deleted on both sides",
        )
    if crm is None:
        assert provider is not None
        return one_side_gone(mapping, "crm", provider, settings)
    if provider is None:
        return one_side_gone(mapping, "provider", crm, settings)
    return merged_outcome(
        mapping.mapping_id,
        mapping.base,
        crm,
        provider,
        settings,
        kind="merge",
        remembered=_may_have_landed(mapping),
    )


def _may_have_landed(mapping: MappingState) -> dict[str, Contact] | None:
    """The pair's holds, unless its last write was refused as stale: that write never landed,
    so a change on its side since the pass read it may be older than the source's (a read can
    lag behind), and the source wins (see ``merge.later_on_fed``)."""
    return None if mapping.refusals else mapping.holds
