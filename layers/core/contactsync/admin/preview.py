"""What a full pass would do right now, computed without writing anything."""

from __future__ import annotations

from typing import Any

from contactsync.admin import access
from contactsync.admin.access import Caller
from contactsync.admin.context import AdminContext
from contactsync.admin.errors import ConflictError, provider_errors
from contactsync.engine.plan import Plan
from contactsync.engine.plan_summary import preview as plan_counts
from contactsync.sync.reconcile import preview_pass
from contactsync.sync.runner import PassRunner


def preview(ctx: AdminContext, caller: Caller, connection_id: str) -> dict[str, Any]:
    """The counts of what a full pass would write, and the duplicates it would leave alone."""
    conn = access.signed_in_connection(caller, connection_id)
    if not conn.folder_id:
        raise ConflictError("choose a contact folder or group before previewing the sync")
    context = PassRunner(ctx.wiring, ctx.queue).context()
    with provider_errors("the CRM or the provider"):
        plan: Plan = preview_pass(connection_id, context)
    counts = plan_counts(plan)
    left_out = counts.pop("skipped")
    return {
        **counts,
        "left_out": left_out,
        "duplicate_candidates": [
            {
                "crm_ids": list(d.crm_ids),
                "provider_ids": list(d.provider_ids),
                "key": d.key,
                "reason": d.reason,
            }
            for d in plan.duplicates
        ],
    }
