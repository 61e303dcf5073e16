"""Pass outcome counters: how many passes per provider and minute ended, and how many in error
(the status page)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime, timedelta

from pynamodb.expressions.update import Action

from contactsync.store.models import PassOutcomes, iso

PASS_OUTCOME_SHARDS = 4  # items per provider per minute; a pass adds to one picked at random
PASS_OUTCOME_RETENTION = timedelta(days=1)


def _minute(moment: datetime) -> str:
    return iso(moment)[:16]  # "2025-03-01T12:34"


def record_pass_outcome(provider: str, ok: bool, error_code: str | None, at: datetime) -> None:
    """Count one pass that touched ``provider`` in the minute of ``at`` (one atomic update)."""
    add_pass_outcomes(provider, at, 1, 0 if ok else 1, {error_code} if error_code else set())


def add_pass_outcomes(  # one provider's counts of one minute
    provider: str, at: datetime, passes: int, errors: int, error_codes: set[str]
) -> None:
    """Add ``passes`` (``errors`` of them failed) to ``provider``'s counts of the minute of
    ``at``: one atomic update, whatever the numbers."""
    minute = _minute(at)
    shard = random.randrange(PASS_OUTCOME_SHARDS)  # noqa: S311 - spreading writes, not a secret
    item = PassOutcomes(f"STATUS#{provider}#{minute}#{shard}", "COUNTS")
    actions: list[Action] = [
        PassOutcomes.provider.set(provider),
        PassOutcomes.minute.set(minute),
        PassOutcomes.passes.add(passes),
        PassOutcomes.expires_at.set(at + PASS_OUTCOME_RETENTION),
    ]
    if errors:
        actions.append(PassOutcomes.errors.add(errors))
    if error_codes:
        actions.append(PassOutcomes.error_codes.add(set(error_codes)))
    item.update(actions=actions)


def pass_outcomes(providers: Sequence[str], now: datetime, minutes: int) -> list[PassOutcomes]:
    """The outcome counters of ``providers`` for the last ``minutes`` minutes up to ``now``.

    Read by key (batch get): providers x minutes x shards items, absent ones skipped.
    """
    keys = [
        (f"STATUS#{provider}#{_minute(now - timedelta(minutes=back))}#{shard}", "COUNTS")
        for provider in providers
        for back in range(minutes)
        for shard in range(PASS_OUTCOME_SHARDS)
    ]
    return list(PassOutcomes.batch_get(keys)) if keys else []
