"""Coalescing queued requests: one pass per connection that does what every request asked."""

from __future__ import annotations

import itertools

from contactsync.runtime.messages import WEIGHT, SyncMessage
from contactsync.runtime.queue import coalesce


def msg(reason: str, **kw: object) -> SyncMessage:
    return SyncMessage(connection_id="c1", reason=reason, **kw)  # type: ignore[arg-type]


def test_a_confirm_is_never_lost_to_a_webhook_in_the_same_batch() -> None:
    # Given a webhook and the user's confirmation for one connection, in either order
    for first, second in (("crm_push", "confirm"), ("confirm", "crm_push")):
        # When they are coalesced into one pass
        (merged,) = coalesce([msg(first, crm_ids=["7"]), msg(second)])
        # Then that pass is the confirmation, and still re-reads the hinted person
        assert merged.reason == "confirm"
        assert merged.crm_ids == ["7"]


def test_the_weightier_reason_wins_whatever_the_order() -> None:
    # Given any two reasons
    for a, b in itertools.permutations(WEIGHT, 2):
        (merged,) = coalesce([msg(a), msg(b)])
        # Then the coalesced pass keeps the one listed first in WEIGHT
        assert merged.reason == min(a, b, key=WEIGHT.index)


def test_a_full_listing_asked_by_either_is_kept_and_ids_are_unioned() -> None:
    polled = msg("schedule", crm_ids=["1", "2"])
    resync = msg("resync", full=True, crm_ids=["2", "3"])
    (merged,) = coalesce([polled, resync])
    assert merged.full and merged.reason == "resync"
    assert merged.crm_ids == ["1", "2", "3"]


def test_every_reason_has_a_weight() -> None:
    reasons = SyncMessage.model_fields["reason"].annotation.__args__  # type: ignore[union-attr]
    assert sorted(reasons) == sorted(WEIGHT)
