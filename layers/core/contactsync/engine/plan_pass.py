"""Planning a whole pass: changed pairs, then links, then creations, then the guard."""

from __future__ import annotations

from collections.abc import Callable

from contactsync.engine.guard import guard_trip
from contactsync.engine.matching import match_unmapped
from contactsync.engine.merge import Side
from contactsync.engine.new_contacts import (
    copy_new,
    key_index,
    link_match,
    made_again_elsewhere,
    taken_elsewhere,
)
from contactsync.engine.pairs import plan_pair
from contactsync.engine.plan import SIDE_NAMES, SIDES, PassInput, Plan
from contactsync.providers.base import RemoteContact


def plan_pass(inp: PassInput, *, new_mapping_id: Callable[[], str]) -> Plan:
    """Everything one pass should do, in the order: changed pairs, links, creations."""
    settings = inp.settings
    outcomes = [plan_pair(pair, settings) for pair in inp.pairs]
    unmapped: dict[Side, list[RemoteContact]] = {
        "crm": list(inp.unmapped_crm),
        "provider": list(inp.unmapped_provider),
    }
    made_again_elsewhere(inp.pairs, outcomes, unmapped, settings)
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
    outcomes.extend(link_match(match, settings, new_mapping_id()) for match in found.matches)
    skipped = [s for s in found.skipped if not any((n, s[0]) in looked_up for n in SIDES)]
    duplicates = list(found.duplicates)
    indexes = {side: key_index(blockers[side], settings.phone_region) for side in SIDES}
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
            taken = taken_elsewhere(remote, source, indexes[target], inp)
            if taken is not None:
                duplicates.append(taken)
                skipped.append((remote.id, taken.reason))
                continue
            outcomes.append(copy_new(source, remote, settings, new_mapping_id))
    return Plan(
        outcomes=tuple(outcomes),
        duplicates=tuple(duplicates),
        skipped=tuple(skipped),
        held=guard_trip(inp, outcomes),
    )
