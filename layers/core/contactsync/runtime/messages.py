"""Messages on the sync queue. One message asks for one pass over one connection."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Reason = Literal[
    "start",  # the user started sync: initial listing and matching
    "resync",  # full re-listing with matching
    "provider_push",  # a Graph change notification
    "crm_push",  # a CRM webhook
    "schedule",  # the connection was due (polling, safety poll)
    "continuation",  # the previous pass ran out of time with work left
    "lifecycle",  # a Graph lifecycle event (missed, subscriptionRemoved, reauthorizationRequired)
    "confirm",  # the user released a pass held by the mass-change guard
]


class SyncMessage(BaseModel):
    connection_id: str = Field(min_length=1, max_length=64)
    reason: Reason
    crm_ids: list[str] = Field(default_factory=list, max_length=1000)  # CRM persons to re-read
    lifecycle_event: str = ""
    full: bool = False  # ask for a full listing on both sides

    def merged_with(self, other: SyncMessage) -> SyncMessage:
        """Coalesce two requests for the same connection into one that does what both asked:
        the weightier reason wins (a user's confirm or resync is never lost to a webhook)."""
        ids = list(dict.fromkeys([*self.crm_ids, *other.crm_ids]))[:1000]
        reason = min(self.reason, other.reason, key=WEIGHT.index)
        return self.model_copy(
            update={
                "reason": reason,
                "crm_ids": ids,
                "full": self.full or other.full,
                "lifecycle_event": self.lifecycle_event or other.lifecycle_event,
            }
        )


# Which reason a coalesced message keeps: the first of these that either message had.
WEIGHT: list[str] = [
    "confirm",
    "start",
    "resync",
    "lifecycle",
    "provider_push",
    "crm_push",
    "continuation",
    "schedule",
]
