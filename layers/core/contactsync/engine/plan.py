"""The sync plan: what one pass should write, computed first and applied second.

``plan_pass`` is pure. It takes what changed on each side since the last pass (and the mappings
those contacts belong to) and returns a ``Plan``: one ``Outcome`` per pair, each with at most one
``Write`` per side and the new base to store. The reconciler applies it, or applies nothing when
the plan is ``held`` by the mass-change guard.

Direction. A one-way connection never writes the side it does not feed. The merge still runs as
in two-way, but for the side that cannot be written the new base keeps *that side's* current
values. So the base stays the truth of what that side holds: the other side's unsent edits keep
showing as changes against it, and once the direction is switched back to two-way the next pass
that touches the pair sends them. (Storing the merged result instead would make the stale side
look "edited back" and undo them.) What the written side holds then differs from the base: the
mapping keeps it (``holds``), so a pass that sees no change there still knows what is there —
the ``before`` of its next write, and its edits that the base does not have.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from contactsync.contacts.model import ALL_FIELDS, LIST_FIELDS, Contact
from contactsync.contacts.normalize import (
    element_identity,
    element_state,
    field_key,
)
from contactsync.engine.matching import (
    MATCH_KEYS,
    DuplicateCandidate,
    Match,
    email_keys,
    match_unmapped,
)
from contactsync.engine.merge import (
    Conflict,
    ConflictPolicy,
    Direction,
    Side,
    SyncSettings,
    merge,
)
from contactsync.providers.base import RemoteContact

__all__ = [
    "UNCHANGED",
    "ChangeWindow",
    "Conflict",
    "ConflictPolicy",
    "Direction",
    "DuplicateCandidate",
    "GuardTrip",
    "MappingState",
    "Outcome",
    "PairInput",
    "PassInput",
    "Plan",
    "Side",
    "SyncSettings",
    "Unchanged",
    "Write",
    "plan_pair",
    "plan_pass",
    "preview",
    "structural",
]

SIDES: tuple[Side, Side] = ("crm", "provider")
SIDE_NAMES: dict[Side, str] = {"crm": "the CRM", "provider": "the provider"}


@dataclass(frozen=True)
class MappingState:
    """What the store keeps per linked pair."""

    mapping_id: str
    crm_id: str
    provider_id: str
    base: Contact  # the canonical snapshot both sides agreed on after the last pass
    crm_version: str = ""
    provider_version: str = ""
    # The side whose contact left the sync scope ("" while linked). A detached pair syncs
    # nothing; it remembers that the two contacts are one person, so the one still in scope is
    # not copied again, and the pair links again when the other comes back into scope.
    detached: str = ""
    # What a side holds where it differs from the base (side -> contact; only that side's
    # fields). Only one-way connections make such pairs: see the module's docstring.
    holds: dict[str, Contact] = dataclasses.field(default_factory=dict)
    refusals: int = 0  # writes to this pair refused in a row as stale (reset by a success)


class Unchanged:
    """The type of ``UNCHANGED``: "this side reported no change" (its state is the base)."""

    _instance: Unchanged | None = None

    def __new__(cls) -> Unchanged:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED = Unchanged()


@dataclass(frozen=True)
class PairInput:
    mapping: MappingState
    crm: RemoteContact | Unchanged | None  # None = deleted on the CRM side
    provider: RemoteContact | Unchanged | None  # None = deleted on the provider side


@dataclass(frozen=True)
class ChangeWindow:
    """What the connection's passes applied since its last quiet or confirmed moment.

    The guard judges each plan together with it, so a mass change that arrives in ten passes is
    held as surely as one that arrives in one.
    """

    reference: int = 0  # linked pairs when the window opened: the share is taken of these
    creates: int = 0
    deletes: int = 0
    unlinks: int = 0  # linked pairs that left the sync scope, or lost their partner one-way


@dataclass(frozen=True)
class PassInput:
    settings: SyncSettings
    pairs: Sequence[PairInput]  # mapped pairs with a change on at least one side
    unmapped_crm: Sequence[RemoteContact]  # changed/new CRM contacts with no mapping
    unmapped_provider: Sequence[RemoteContact]  # changed/new provider contacts with no mapping
    mapped_total: int  # how many mappings the connection has in all
    full_listing: bool = False  # both unmapped lists are complete listings
    confirmed: bool = False  # the user confirmed a guard-held pass
    initial: bool = False  # the connection's first sync is still running (creating is its job)
    # Unlinked contacts ("crm"/"provider", id) a full listing found to be possible duplicates:
    # matched if a match appears, but never copied to the other side while they wait for review.
    on_hold: frozenset[tuple[str, str]] = frozenset()
    # What earlier passes applied lately (None: nothing, the window is closed).
    window: ChangeWindow | None = None
    # Contacts a look-up found in each side's whole book (``ContactSide.lookup``) by the keys of
    # those this pass would copy there. They are matched against, never copied. One that is
    # linked already (``found_linked``: ("crm"/"provider", id)) or out of scope (a CRM person
    # owned by another user) is never linked either: a new contact sharing a key with it is held.
    found_crm: Sequence[RemoteContact] = ()
    found_provider: Sequence[RemoteContact] = ()
    found_linked: frozenset[tuple[str, str]] = frozenset()


@dataclass(frozen=True)
class Write:
    """One intended write on one side."""

    side: Side
    kind: Literal["create", "update", "delete"]
    target_id: str  # "" for create
    version: str  # version the write is based on ("" for create)
    before: Contact  # what the side holds now (Contact() for create)
    after: Contact  # what it should hold (Contact() for delete); only the side's carried fields


@dataclass(frozen=True)
class Outcome:
    """What to do for one pair (existing mapping, new link, or new contact).

    ``kind`` "noop" means nothing to write; the reconciler may still store the new base and the
    sides' new versions.
    """

    mapping_id: str
    crm_id: str  # "" until created
    provider_id: str  # "" until created
    new_base: Contact | None  # the agreed snapshot after the writes; None = drop the mapping
    writes: tuple[Write, ...]  # at most one per side
    conflicts: tuple[Conflict, ...] = ()
    kind: Literal["merge", "link", "create", "delete", "unlink", "noop"] = "merge"
    reason: str = ""  # plain words for the audit log ("removed from folder", ...)
    detached: str = ""  # with new_base: keep the mapping, detached on this side
    holds: dict[str, Contact] = dataclasses.field(default_factory=dict)  # see MappingState


@dataclass(frozen=True)
class GuardTrip:
    creates: int
    deletes: int
    mapped_total: int
    message: str  # "this pass would delete 340 of 1,200 contacts in Outlook ..."
    unlinks: int = 0


@dataclass(frozen=True)
class Plan:
    outcomes: tuple[Outcome, ...]
    duplicates: tuple[DuplicateCandidate, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()  # (contact id, plain-words reason) left alone
    held: GuardTrip | None = None  # set => apply NOTHING, ask the user


# --- Writes ---------------------------------------------------------------------------------------


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


def _merged_outcome(
    mapping_id: str,
    base: Contact,
    crm: RemoteContact,
    provider: RemoteContact,
    settings: SyncSettings,
    *,
    kind: Literal["merge", "link"],
    reason: str = "",
) -> Outcome:
    merged, conflicts = merge(
        base,
        crm.contact,
        provider.contact,
        settings,
        crm.modified_at,
        provider.modified_at,
        linking=kind == "link",
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


# --- Pairs ----------------------------------------------------------------------------------------


def _other(side: Side) -> Side:
    return "provider" if side == "crm" else "crm"


def _held_now(
    reported: RemoteContact | Unchanged | None, mapping: MappingState, side: Side
) -> RemoteContact | None:
    """What a side holds now; an unchanged side holds the base."""
    if not isinstance(reported, Unchanged):
        return reported
    holds = mapping.holds.get(side, mapping.base)
    if side == "crm":
        return RemoteContact(mapping.crm_id, holds, version=mapping.crm_version)
    return RemoteContact(mapping.provider_id, holds, version=mapping.provider_version)


def _one_side_gone(
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


def _back_and_deleted(
    mapping: MappingState, away: Side, gone: Side, survivor: RemoteContact, settings: SyncSettings
) -> Outcome:
    """A detached pair whose away contact came back in scope as one of the two was deleted: the
    pair is linked again and the delete is dealt with as on any linked pair."""
    outcome = _one_side_gone(mapping, gone, survivor, settings)
    return replace(outcome, reason=f"back in scope in {SIDE_NAMES[away]}; {outcome.reason}")


def _detached_pair(pair: PairInput, settings: SyncSettings) -> Outcome:
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
        return _back_and_deleted(mapping, away, stayed, back, settings)
    if reported[stayed] is None:
        reason = f"deleted in {SIDE_NAMES[stayed]}; its partner is out of scope: forgotten"
        return replace(keep, new_base=None, kind="unlink", reason=reason, detached="")
    if reported[away] is None and away in settings.deletes_in_scope_only:
        # That side reports deletions only of contacts in scope: the away contact came back and
        # was deleted, both since the last pass.
        kept = _held_now(reported[stayed], mapping, stayed)
        assert kept is not None
        return _back_and_deleted(mapping, away, away, kept, settings)
    if reported[away] is None:
        # Its partner left scope and was then deleted there: this one stays left alone, and the
        # pair is kept so it is never copied over again (a person handed to a colleague who then
        # deleted it must not come back as the user's own).
        return keep
    if returned:
        crm = _held_now(pair.crm, mapping, "crm")
        provider = _held_now(pair.provider, mapping, "provider")
        assert crm is not None and provider is not None
        merged = _merged_outcome(
            mapping.mapping_id,
            mapping.base,
            crm,
            provider,
            settings,
            kind="merge",
            reason=f"back in scope in {SIDE_NAMES[away]}: linked again",
        )
        return replace(merged, kind="merge")  # saved even with nothing to write: it relinks
    return keep


def plan_pair(pair: PairInput, settings: SyncSettings) -> Outcome:
    """The outcome for one mapped pair with a change on at least one side."""
    mapping = pair.mapping
    if mapping.detached:
        return _detached_pair(pair, settings)
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
                    reason=f"deleted in {SIDE_NAMES[_other(side)]}; "
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
                + f"; the contact in {SIDE_NAMES[_other(side)]} is left alone",
                detached=side,
                holds=mapping.holds,
            )
    crm = _held_now(pair.crm, mapping, "crm")
    provider = _held_now(pair.provider, mapping, "provider")
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
        return _one_side_gone(mapping, "crm", provider, settings)
    if provider is None:
        return _one_side_gone(mapping, "provider", crm, settings)
    return _merged_outcome(mapping.mapping_id, mapping.base, crm, provider, settings, kind="merge")


# --- New contacts ---------------------------------------------------------------------------------


def _link(match: Match, settings: SyncSettings, mapping_id: str) -> Outcome:
    """Two unmapped contacts found to be one person: merge them over an empty base."""
    reason = f"matched by {match.key}"
    return _merged_outcome(
        mapping_id, Contact(), match.crm, match.provider, settings, kind="link", reason=reason
    )


def _copy(
    source: Side, remote: RemoteContact, settings: SyncSettings, new_mapping_id: Callable[[], str]
) -> Outcome:
    """A contact new on ``source`` with no match: create it on the other side."""
    target: Side = "provider" if source == "crm" else "crm"
    base = remote.contact.only(settings.carried(source))
    write = Write(target, "create", "", "", Contact(), base.only(settings.carried(target)))
    return Outcome(
        mapping_id=new_mapping_id(),
        crm_id=remote.id if source == "crm" else "",
        provider_id=remote.id if source == "provider" else "",
        new_base=base,
        writes=(write,),
        kind="create",
        reason=f"new in {SIDE_NAMES[source]}",
    )


# --- Guard ----------------------------------------------------------------------------------------


def _listed_empty(inp: PassInput, side: Side) -> bool:
    """A full listing found nothing on ``side`` although contacts are linked there.

    The side is empty when it listed no unmapped contact and every mapping's contact on it was
    reported deleted.
    """
    if not inp.full_listing or inp.mapped_total == 0:
        return False
    unmapped = inp.unmapped_crm if side == "crm" else inp.unmapped_provider
    deleted = sum(1 for p in inp.pairs if (p.crm if side == "crm" else p.provider) is None)
    return not unmapped and deleted >= inp.mapped_total


def structural(outcome: Outcome) -> bool:
    """An outcome that adds or removes a contact or a link: a create, a delete or an unlink
    (what the guard counts), as opposed to an update, a link of two contacts or a no-op."""
    return outcome.kind in ("delete", "unlink") or any(
        w.kind in ("create", "delete") for w in outcome.writes
    )


def counted(inp: PassInput, outcomes: Sequence[Outcome]) -> ChangeWindow:
    """What the guard counts in ``outcomes``: creates and deletes written, and linked pairs
    unlinked (a pair that was already detached and is now forgotten is not one)."""
    writes = Counter(w.kind for o in outcomes for w in o.writes)
    linked = {p.mapping.mapping_id for p in inp.pairs if not p.mapping.detached}
    unlinks = sum(1 for o in outcomes if o.kind == "unlink" and o.mapping_id in linked)
    return ChangeWindow(
        reference=inp.mapped_total,
        creates=writes["create"],
        deletes=writes["delete"],
        unlinks=unlinks,
    )


def _guard(inp: PassInput, outcomes: Sequence[Outcome]) -> GuardTrip | None:
    """Hold a pass that would create or remove too much, counted with what the passes before it
    applied in the same window, or that saw one side suddenly empty."""
    if inp.confirmed:
        return None
    writes = Counter((w.kind, w.side) for o in outcomes for w in o.writes)
    now = counted(inp, outcomes)
    creates, deletes, unlinks = now.creates, now.deletes, now.unlinks
    before = inp.window or ChangeWindow(reference=inp.mapped_total)
    settings, total = inp.settings, inp.mapped_total
    reference = before.reference
    limit = max(settings.guard_share * reference, settings.guard_min)
    problems = [
        f"{SIDE_NAMES[side]} listed no contacts at all while {total:,} are linked"
        for side in SIDES
        if _listed_empty(inp, side)
    ]
    removed_before = before.deletes + before.unlinks
    if deletes + unlinks and removed_before + deletes + unlinks > limit:
        parts = []
        if deletes:
            parts.append(
                f"delete {deletes:,} of {total:,} linked contacts "
                f"({writes['delete', 'crm']:,} in the CRM, "
                f"{writes['delete', 'provider']:,} in the provider)"
            )
        if unlinks:
            parts.append(
                f"unlink {unlinks:,} of {total:,} linked contacts that left the sync scope at "
                "once (moved out of the folder or group, or the folder or group emptied or "
                "removed)"
            )
        problem = "this pass would " + " and ".join(parts)
        if removed_before:
            problem += (
                f", on top of {removed_before:,} deleted or unlinked by the passes just before "
                f"it (of {reference:,} linked when they began)"
            )
        problems.append(problem)
    creates_before = before.creates
    if reference > 0 and creates and creates_before + creates > limit and not inp.initial:
        # An initial sync creates: that is its job.
        problem = (
            f"this pass would create {creates:,} contacts next to {total:,} linked ones "
            f"({writes['create', 'crm']:,} in the CRM, "
            f"{writes['create', 'provider']:,} in the provider)"
        )
        if creates_before:
            problem += f", on top of {creates_before:,} created by the passes just before it"
        problems.append(problem)
    if not problems:
        return None
    message = "; ".join(problems) + ". Nothing was changed: confirm to go ahead."
    return GuardTrip(
        creates=creates, deletes=deletes, mapped_total=total, message=message, unlinks=unlinks
    )


# --- The pass -------------------------------------------------------------------------------------


def _made_again_elsewhere(
    pairs: Sequence[PairInput],
    outcomes: list[Outcome],
    unmapped: dict[Side, list[RemoteContact]],
    settings: SyncSettings,
) -> None:
    """A contact deleted on one side but edited on the other is made again where it was deleted
    (the edit wins). Another connection over the same CRM may have made it again already: then
    it is here, new and unmapped, with the same email, and is linked instead of made a second
    time. Changes ``outcomes`` and ``unmapped`` in place."""
    for i, (pair, outcome) in enumerate(zip(pairs, outcomes, strict=True)):
        if outcome.kind != "merge" or [w.kind for w in outcome.writes] != ["create"]:
            continue
        gone = outcome.writes[0].side
        survivor = pair.provider if gone == "crm" else pair.crm
        if not isinstance(survivor, RemoteContact):
            continue
        emails = email_keys(survivor.contact)
        twins = [r for r in unmapped[gone] if r.in_scope and emails & email_keys(r.contact)]
        if len(twins) != 1:
            continue  # none, or not clear which: made again as planned
        twin = twins[0]
        unmapped[gone].remove(twin)
        crm, provider = (twin, survivor) if gone == "crm" else (survivor, twin)
        merged = _merged_outcome(
            pair.mapping.mapping_id, pair.mapping.base, crm, provider, settings, kind="merge"
        )
        reason = f"{outcome.reason.split(', recreated')[0]}; made again in {SIDE_NAMES[gone]} "
        reason += "meanwhile (by another sync): linked to it"
        outcomes[i] = replace(merged, kind="merge", reason=reason)  # saved: the pair moves


_KeyIndex = list[dict[str, list[RemoteContact]]]  # per MATCH_KEYS function: key -> holders


def _index(contacts: Sequence[RemoteContact], region: str) -> _KeyIndex:
    index: _KeyIndex = [{} for _ in MATCH_KEYS]
    for remote in contacts:
        for by_key, keys_of in zip(index, MATCH_KEYS, strict=True):
            for key in keys_of(remote.contact, region):
                by_key.setdefault(key, []).append(remote)
    return index


def _taken(
    remote: RemoteContact, source: Side, blockers: _KeyIndex, inp: PassInput
) -> DuplicateCandidate | None:
    """A contact about to be copied that shares a match key with a contact the look-up found on
    the other side which cannot be linked to it (linked already, or out of scope): held."""
    region = inp.settings.phone_region
    target = _other(source)
    for by_key, keys_of in zip(blockers, MATCH_KEYS, strict=True):
        shared = sorted(k for k in keys_of(remote.contact, region) if k in by_key)
        if not shared:
            continue
        key = shared[0]
        hits = list({b.id: b for k in shared for b in by_key[k]}.values())
        why = [
            "linked to another contact already"
            if (target, b.id) in inp.found_linked
            else (b.scope_reason or "out of scope")
            for b in hits
        ]
        reason = f"exists in {SIDE_NAMES[target]}, {'; '.join(dict.fromkeys(why))} ({key})"
        ids = {source: (remote.id,), target: tuple(b.id for b in hits)}
        return DuplicateCandidate(ids["crm"], ids["provider"], key, reason)
    return None


def plan_pass(inp: PassInput, *, new_mapping_id: Callable[[], str]) -> Plan:
    """Everything one pass should do, in the order: changed pairs, links, creations."""
    settings = inp.settings
    outcomes = [plan_pair(pair, settings) for pair in inp.pairs]
    unmapped: dict[Side, list[RemoteContact]] = {
        "crm": list(inp.unmapped_crm),
        "provider": list(inp.unmapped_provider),
    }
    _made_again_elsewhere(inp.pairs, outcomes, unmapped, settings)
    # What the look-up found: free contacts are matched as if changed; the others hold.
    looked_up: set[tuple[Side, str]] = set()
    blockers: dict[Side, list[RemoteContact]] = {"crm": [], "provider": []}
    for side, found_here in zip(SIDES, (inp.found_crm, inp.found_provider), strict=True):
        known = {r.id for r in unmapped[side]}
        for remote in found_here:
            if remote.id in known or (side, remote.id) in looked_up:
                continue
            looked_up.add((side, remote.id))
            if remote.in_scope and (side, remote.id) not in inp.found_linked:
                unmapped[side].append(remote)
            else:
                blockers[side].append(remote)
    # The look-up leaves out what the pass read: a CRM person it read that is not the user's (a
    # push named it, e.g. just handed to a colleague) holds a new contact sharing a key as one
    # the look-up found would.
    blockers["crm"].extend(r for r in unmapped["crm"] if not r.in_scope)
    found = match_unmapped(unmapped["crm"], unmapped["provider"], settings.phone_region)
    outcomes.extend(_link(match, settings, new_mapping_id()) for match in found.matches)
    skipped = [s for s in found.skipped if not any((n, s[0]) in looked_up for n in SIDES)]
    duplicates = list(found.duplicates)
    indexes = {side: _index(blockers[side], settings.phone_region) for side in SIDES}
    for source, left in zip(SIDES, (found.unmatched_crm, found.unmatched_provider), strict=True):
        target: Side = "provider" if source == "crm" else "crm"
        unmatched = [r for r in left if (source, r.id) not in looked_up]
        if not settings.may_write(target):
            reason = f"direction {settings.direction} does not write {SIDE_NAMES[target]}"
            skipped.extend((remote.id, reason) for remote in unmatched)
            continue
        held = [r for r in unmatched if (source, r.id) in inp.on_hold]
        skipped.extend((r.id, "a possible duplicate, waiting for review") for r in held)
        for remote in unmatched:
            if (source, remote.id) in inp.on_hold:
                continue
            taken = _taken(remote, source, indexes[target], inp)
            if taken is not None:
                duplicates.append(taken)
                skipped.append((remote.id, taken.reason))
                continue
            outcomes.append(_copy(source, remote, settings, new_mapping_id))
    return Plan(
        outcomes=tuple(outcomes),
        duplicates=tuple(duplicates),
        skipped=tuple(skipped),
        held=_guard(inp, outcomes),
    )


HELD_SHOWN = 100  # contacts a held pass lists by name (the counts say how many in all)


def held_changes(plan: Plan) -> list[dict[str, str]]:
    """What a held pass would create, delete or unlink, contact by contact (the first
    ``HELD_SHOWN``), so the person asked to confirm sees who, not only how many."""
    shown: list[dict[str, str]] = []
    for outcome in plan.outcomes:
        changes: list[tuple[str, str, Contact]] = [
            (w.kind, w.side, w.before if w.kind == "delete" else w.after) for w in outcome.writes
        ]
        if outcome.kind == "unlink":
            changes.append(("unlink", outcome.detached or "crm", outcome.new_base or Contact()))
        for kind, side, contact in changes:
            if kind == "update":
                continue
            email = next((e.value for e in contact.emails if e.value.strip()), "")
            name = contact.full_name.strip() or email or "(no name)"
            shown.append({"change": kind, "side": side, "name": name, "email": email})
            if len(shown) >= HELD_SHOWN:
                return shown
    return shown


_PREVIEW_NAMES = {"create": "created_in_", "update": "updated_", "delete": "deleted_"}


def preview(plan: Plan) -> dict[str, object]:
    """Counts of what a plan would do, for the admin API and the audit log."""
    counts: Counter[str] = Counter()
    for outcome in plan.outcomes:
        counts["linked"] += outcome.kind == "link"
        counts["unlinked"] += outcome.kind == "unlink"
        counts["conflicts"] += len(outcome.conflicts)
        for write in outcome.writes:
            counts[_PREVIEW_NAMES[write.kind] + write.side] += 1
    names = [
        "linked",
        "created_in_crm",
        "created_in_provider",
        "updated_crm",
        "updated_provider",
        "deleted_crm",
        "deleted_provider",
        "unlinked",
        "conflicts",
    ]
    result: dict[str, object] = {name: counts[name] for name in names}
    result["duplicates"] = len(plan.duplicates)
    result["skipped"] = dict(Counter(reason for _, reason in plan.skipped))
    result["held"] = plan.held.message if plan.held else None
    return result
