"""What a plan found besides writes, kept for the support questions: possible duplicates (in the
audit log, and held for review) and, from a full listing of the CRM, the user's persons that look
like one person (the duplicates page)."""

from __future__ import annotations

from contactsync.engine.matching import duplicate_clusters
from contactsync.engine.plan import Plan
from contactsync.store.pass_interface import AuditEntry
from contactsync.sync.reconcile.context import PassScope
from contactsync.sync.reconcile.feeds import SideChanges


def record_findings(
    scope: PassScope,
    plan: Plan,
    *,
    full_listing: bool,
    found_ids: set[tuple[str, str]],
    counts: dict[str, int],
) -> None:
    """Duplicate candidates and contacts left alone, in the audit log, so 'explain' can
    answer for them. Only on full listings (incremental passes would repeat them), and for
    what a look-up found (``found_ids``): a new contact held because it exists on the other
    side."""
    duplicates = plan.duplicates
    if not full_listing:
        duplicates = tuple(
            d
            for d in plan.duplicates
            if found_ids & {*(("crm", i) for i in d.crm_ids),
                            *(("provider", i) for i in d.provider_ids)}
        )  # fmt: skip
    entries = [
        AuditEntry(
            kind="duplicate",
            message=d.reason,
            details={
                "crm_ids": list(d.crm_ids),
                "provider_ids": list(d.provider_ids),
                "key": d.key,
            },
        )
        for d in duplicates
    ]
    if not full_listing:
        if entries:
            scope.store.audit(scope.cid, entries)
        return
    counts["duplicates"] = len(plan.duplicates)
    counts["skipped"] = len(plan.skipped)
    if entries:
        scope.store.audit(scope.cid, entries)
    holds = [
        (side, contact_id, d.reason)
        for d in plan.duplicates
        for side, ids in (("crm", d.crm_ids), ("provider", d.provider_ids))
        for contact_id in ids
    ]
    scope.store.replace_review_holds(scope.cid, holds)


def record_clusters(scope: PassScope, crm: SideChanges) -> None:
    """The user's CRM persons that look like one person, from a full listing of the CRM:
    the duplicates page starts from these, and never lists the CRM itself."""
    persons = [r for r in crm.contacts.values() if r.in_scope]
    groups = duplicate_clusters(persons, scope.settings.phone_region)
    scope.store.replace_duplicate_clusters(scope.cid, [(g.items, g.keys) for g in groups])
