"""The mass-change guard: a pass that would create or remove too much, counted with what the
passes before it applied in the same window, or that saw one side suddenly empty, is held."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from contactsync.engine.merge import Side
from contactsync.engine.plan import SIDE_NAMES, SIDES, ChangeWindow, GuardTrip, Outcome, PassInput


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


def guard_trip(inp: PassInput, outcomes: Sequence[Outcome]) -> GuardTrip | None:
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
