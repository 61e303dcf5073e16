"""What a plan would do, told to people: counts for the admin API and the audit log, and the
contacts a held pass would create, delete or unlink."""

from __future__ import annotations

from collections import Counter

from contactsync.contacts.model import Contact
from contactsync.engine.plan import Plan

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
