"""Where a Pipedrive listing stands: the position a read returns and the next read takes.

Persons are listed by ``update_time``, which has one-second precision: each read lists again
the last second before its high mark and skips the persons it returned then, unchanged (same
``update_time`` and same contents).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

from contactsync.providers.base import CursorExpired
from contactsync.providers.pipedrive.mapping import JSON

OVERLAP = timedelta(seconds=1)  # re-read the last second: update_time has second precision
EPOCH_MARK = "1970-01-01T00:00:00Z"
MAX_SKIP = 1000  # beyond this many same-second persons, re-read them rather than bloat the position


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def seen(person: JSON) -> str:
    """A person as we returned it: its ``update_time`` and a short digest of its contents."""
    body = json.dumps(person, sort_keys=True, default=str).encode()
    return f"{person.get('update_time')} {hashlib.blake2b(body, digest_size=4).hexdigest()}"


def parse_time(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def decode_position(position: str | None) -> JSON:
    """Decode our position. While a listing is under way it is ``{"phase", "cursor",
    "since", "high", "edge", "skip"}``; once complete, ``{"mark", "skip"}``: list
    ``updated_since=mark`` next, skipping ``skip`` (id -> ``seen``) already returned.
    Anything unreadable means start over with a full listing."""
    blank: JSON = {"phase": "full", "cursor": None, "since": None, "high": None}
    if position is None:
        return {**blank, "edge": {}, "skip": {}}
    try:
        state = json.loads(position)
        if "mark" in state:
            parse_time(state["mark"])
            skip = {str(k): str(v) for k, v in (state.get("skip") or {}).items()}
            return {**blank, "phase": "since", "since": state["mark"], "edge": {}, "skip": skip}
        if state["phase"] in ("full", "since"):
            return {
                **blank,
                **state,
                "edge": dict(state.get("edge") or {}),
                "skip": dict(state.get("skip") or {}),
            }
    except (ValueError, TypeError, KeyError, AttributeError):
        pass
    raise CursorExpired("unreadable Pipedrive position; a full listing is needed")


def after_page(
    state: JSON, persons: list[JSON], next_cursor: str | None
) -> tuple[list[JSON], str, bool]:
    """What one listed page means for the listing at ``state``: the persons to return, the
    position to read next (``next_cursor`` continues this listing), and whether it is complete.
    """
    # Persons re-read only because of the overlap, unchanged since we returned them: skip.
    # Unchanged means the same contents, not only the same update_time: a second edit in
    # the same second keeps the time.
    skip: dict[str, str] = state["skip"]
    fresh = [p for p in persons if skip.get(str(p["id"])) != seen(p)]
    high: str | None = state["high"]
    edge: dict[str, str] = state["edge"]
    for person in persons:
        stamp = person.get("update_time")
        if not stamp:
            continue
        if high is None or stamp > high:
            high = stamp
        edge[str(person["id"])] = seen(person)
    if high is not None:  # keep only the persons inside the overlap below the high mark
        floor_mark = iso(parse_time(high) - OVERLAP)
        edge = {i: t for i, t in edge.items() if t.split()[0] >= floor_mark}
    if next_cursor:
        more = {**state, "cursor": next_cursor, "high": high, "edge": edge}
        return fresh, json.dumps(more), False
    since = state["since"] or EPOCH_MARK
    if high is None:
        done = {"mark": since, "skip": skip}
    else:
        mark = max(since, iso(parse_time(high) - OVERLAP))
        done = {"mark": mark, "skip": edge if len(edge) <= MAX_SKIP else {}}
    return fresh, json.dumps(done), True
