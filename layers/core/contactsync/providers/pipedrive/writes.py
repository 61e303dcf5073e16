"""How persons are written: one request each (Pipedrive has no batch), and the same-second check
that stands in for an etag next to ``update_time``."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from contactsync.providers.base import (
    AuthExpired,
    ContactUpdate,
    ProviderError,
    RateLimited,
    RemoteContact,
    Transient,
    WriteResult,
)
from contactsync.providers.pipedrive.mapping import normalize_org_name, person_fields
from contactsync.providers.pipedrive.position import parse_time

# A person updated this recently may hold a second edit with the same update_time (clock skew
# between Pipedrive and us included): writes over it compare contents, not only the time.
SAME_SECOND_WINDOW = timedelta(seconds=5)

Item = TypeVar("Item")


def one_by_one(
    items: Sequence[Item],
    key: Callable[[Item], str],
    write: Callable[[Item], RemoteContact | None],
) -> list[WriteResult]:
    """Write items one by one. A per-item rejection is recorded and the rest go on; a
    side-wide failure (rate limit, auth, outage) is recorded for every item left."""
    results: list[WriteResult] = []
    for index, item in enumerate(items):
        try:
            results.append(WriteResult(key(item), remote=write(item)))
        except (RateLimited, AuthExpired, Transient) as exc:
            results += [WriteResult(key(rest), error=exc) for rest in items[index:]]
            break
        except ProviderError as exc:
            results.append(WriteResult(key(item), error=exc))
    return results


def changed_this_second(item: ContactUpdate, now: RemoteContact) -> bool:
    """Same ``update_time`` as read, but updated so recently that a second edit may share
    it: then what the person holds is compared with what the pass read."""
    with contextlib.suppress(ValueError):
        if datetime.now(UTC) - parse_time(now.version) > SAME_SECOND_WINDOW:
            return False
    read, held = item.before, now.contact
    return person_fields(read) != person_fields(held) or (
        normalize_org_name(read.organization) != normalize_org_name(held.organization)
    )
