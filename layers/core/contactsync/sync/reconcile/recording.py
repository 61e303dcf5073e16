"""Recording what a pending write achieved: which mapping to keep (its ids, versions and the new
base) or to drop, and which audit entries say so. Pure, as the engine is: plain values in, plain
values out; the pass does the reads and writes this asks for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from contactsync.contacts.model import ALL_FIELDS, Contact
from contactsync.engine.plan import MappingState, Write
from contactsync.providers.base import NotFound, PreconditionFailed, ProviderError, WriteResult
from contactsync.store.pass_interface import AuditEntry
from contactsync.store.pending import PendingOp, plain_value


@dataclass(frozen=True)
class Recorded:
    """What one finished pending write leaves behind."""

    audit: tuple[AuditEntry, ...] = ()
    mapping: MappingState | None = None  # the pair's mapping to save
    drop: bool = False  # drop the pair's mapping: one of its contacts is gone, or it unlinked
    linked_change: int = 0  # how the connection's count of linked pairs moves (-1, 0, 1)
    recheck: tuple[tuple[str, str], ...] = ()  # (CRM id, provider id) to read again soon
    refusals: int = 0  # the pair's writes refused as stale in a row (when a write failed)
    made_in_crm: tuple[tuple[str, Contact], ...] = ()  # persons made in the CRM (id, as sent)
    tallies: dict[str, int] = field(default_factory=dict)  # writes done, "<side>_<kind>s"


def prior_to_read(
    op: PendingOp, results: Sequence[WriteResult], *, linked_instead: bool
) -> tuple[str, str] | None:
    """The (side, contact id) by which to read the pair's stored mapping for ``record``, if it
    needs it: a failed write keeps the old agreement, and so does a CRM create that linked to a
    person made meanwhile."""
    if any(r.error is not None for r in results):
        return ("crm", op.crm_id) if op.crm_id else None
    if linked_instead:
        return ("provider", op.provider_id) if op.provider_id else None
    return None


def record(
    op: PendingOp,
    results: Sequence[WriteResult],
    *,
    linked_instead: bool = False,
    prior: MappingState | None = None,
) -> Recorded:
    """What a pending write achieved, from the answers to its writes (one per write, in order).

    ``linked_instead``: its CRM create linked to a person made meanwhile rather than making one.
    ``prior``: the pair's mapping as stored, read as ``prior_to_read`` says (None: none, or not
    needed).
    """
    ids = {"crm": op.crm_id, "provider": op.provider_id}
    versions = {"crm": op.crm_version, "provider": op.provider_version}
    audit: list[AuditEntry] = []
    recheck: list[tuple[str, str]] = []
    made_in_crm: list[tuple[str, Contact]] = []
    tallies: dict[str, int] = {}
    failed = refused = False
    for write, result in zip(op.writes, results, strict=True):
        gone = isinstance(result.error, NotFound) and write.kind == "update"
        if isinstance(result.error, PreconditionFailed) or gone:
            # Refused as stale, or the contact is gone: a pass soon reads both contacts
            # again and plans afresh (the edit this write carried is not lost, and a
            # contact deleted meanwhile is seen deleted, not updated again and again).
            recheck.append((op.crm_id, op.provider_id))
            refused = True
        if result.error is not None:
            failed = True
            audit.append(_failed_entry(op, write, result.error, ids))
            continue
        if result.remote is not None:
            ids[write.side] = result.remote.id or ids[write.side]
            versions[write.side] = result.remote.version
        if linked_instead and write.side == "crm":
            audit.append(_linked_entry(op, ids))
            continue
        if write.kind == "delete":
            ids[write.side] = ""
        if write.kind == "create" and write.side == "crm":
            made_in_crm.append((ids["crm"], write.after))
        audit.append(_write_entry(op, write, ids))
        tally = f"{write.side}_{write.kind}s"
        tallies[tally] = tallies.get(tally, 0) + 1
    audit.extend(_conflict_entries(op, ids))
    if op.kind == "unlink":
        audit.append(
            AuditEntry(
                kind="unlink",
                mapping_id=op.mapping_id,
                crm_id=ids["crm"],
                provider_id=ids["provider"],
                message=op.reason or "left the sync scope",
            )
        )
    new_base, holds, refusals = op.new_base, op.holds, 0
    if linked_instead and not failed:
        # Both contacts hold edits the other lacks: keep the old agreement (none for a new
        # link) so the next pass, re-reading both, merges them as any two edits.
        new_base = prior.base if prior is not None and op.provider_id else Contact()
        recheck.append((ids["crm"], ids["provider"]))
    if failed:
        # Keep the old agreement so the next pass tries the failed write again; a brand-new
        # link gets an empty base, which merges both sides afresh next time.
        new_base = prior.base if prior is not None else Contact()
        holds = _held_after_failure(op, results, prior)
        refusals = (prior.refusals if prior is not None else 0) + refused
    mapping: MappingState | None = None
    drop = False
    linked = op.was_linked  # a mapping left untouched stays as it was
    if new_base is None or not ids["crm"] or not ids["provider"]:
        if op.crm_id and op.provider_id:
            drop, linked = True, False
    else:
        linked = not op.detached
        mapping = MappingState(
            mapping_id=op.mapping_id,
            crm_id=ids["crm"],
            provider_id=ids["provider"],
            base=new_base.only(set(ALL_FIELDS)),
            crm_version=versions["crm"],
            provider_version=versions["provider"],
            detached=op.detached,
            holds=holds,
            refusals=refusals,
        )
    return Recorded(
        audit=tuple(audit),
        mapping=mapping,
        drop=drop,
        linked_change=int(linked) - int(op.was_linked),
        recheck=tuple(recheck),
        refusals=refusals,
        made_in_crm=tuple(made_in_crm),
        tallies=tallies,
    )


def _held_after_failure(
    op: PendingOp, results: Sequence[WriteResult], prior: MappingState | None
) -> dict[str, Contact]:
    """What each side of a pair holds after some of its writes failed, where that is not the
    agreement kept: the value a write put there, what the pass read where its write failed or
    it had none (the merged value: it was not written because it held it).

    The pair keeps its old agreement, so these are what the next pass compares with. Without
    them a change read this pass would be forgotten once the feed moved past it, and a delete
    on one side would take the other's copy of it (the value this pass read there, or one of
    our writes that landed though its answer was lost) for an edit made since, and make the
    deleted contact again. A contact gone under an update may have held what we sent (an
    earlier try landed): an edit of those values on the other side does not undo its delete.
    """
    if prior is None:
        return {}
    holds = dict(prior.holds)
    if op.new_base is None or any(w.kind != "update" for w in op.writes):
        return holds  # a create or a delete: the next pass reads what is left
    written = dict.fromkeys(("crm", "provider"), False)
    for write, result in zip(op.writes, results, strict=True):
        written[write.side] = True
        gone = isinstance(result.error, NotFound)
        holds[write.side] = write.after if result.error is None or gone else write.before
    for side, was_written in written.items():
        if not was_written:
            holds[side] = op.holds.get(side, op.new_base)
    return {side: held for side, held in holds.items() if held != prior.base}


def unclaimed_entry(op: PendingOp) -> AuditEntry:
    """What an op says whose CRM person another sync of the user was making: nothing was sent."""
    return AuditEntry(
        kind="pass",
        side="crm",
        provider_id=op.provider_id,
        mapping_id=op.mapping_id,
        message="another sync of this user is making the same person in the "
        "CRM right now: not made here; planned again in a few seconds",
    )


def deleted_copy_entry(op: PendingOp) -> AuditEntry:
    """What an op says whose create's answer was lost and whose copy the user deleted since."""
    return AuditEntry(
        kind="pass",
        side="provider",
        crm_id=op.crm_id,
        mapping_id=op.mapping_id,
        message="made as its answer was lost, and deleted since (the change feed says so): "
        "not made again; the delete is followed",
    )


def _failed_entry(
    op: PendingOp, write: Write, error: ProviderError, ids: dict[str, str]
) -> AuditEntry:
    return AuditEntry(
        kind="error",
        side=write.side,
        crm_id=ids["crm"],
        provider_id=ids["provider"],
        mapping_id=op.mapping_id,
        message=f"{write.kind} on {write.side} failed: {error.message}",
    )


def _linked_entry(op: PendingOp, ids: dict[str, str]) -> AuditEntry:
    return AuditEntry(
        kind="link",
        side="crm",
        crm_id=ids["crm"],
        provider_id=ids["provider"],
        mapping_id=op.mapping_id,
        message="made in the CRM meanwhile (by another sync or by hand): linked "
        "to it instead of creating it again" + (f" ({op.reason})" if op.reason else ""),
    )


def _write_entry(op: PendingOp, write: Write, ids: dict[str, str]) -> AuditEntry:
    return AuditEntry(
        kind="write",
        side=write.side,
        crm_id=ids["crm"],
        provider_id=ids["provider"],
        mapping_id=op.mapping_id,
        message=f"{write.kind} on {write.side}" + (f": {op.reason}" if op.reason else ""),
        before=write.before.to_dict() if write.kind != "create" else None,
        after=write.after.to_dict() if write.kind != "delete" else None,
    )


def _conflict_entries(op: PendingOp, ids: dict[str, str]) -> list[AuditEntry]:
    return [
        AuditEntry(
            kind="conflict",
            mapping_id=op.mapping_id,
            crm_id=ids["crm"],
            provider_id=ids["provider"],
            message=f"{conflict.field}: {conflict.reason}",
            details={
                "field": conflict.field,
                "winner": conflict.winner,
                "loser": conflict.loser,
                "loser_value": plain_value(conflict.loser_value),
                "winner_value": plain_value(conflict.winner_value),
            },
        )
        for conflict in op.conflicts
    ]
