"""When a connection is due again after a pass: adaptive for polled providers, a safety net for
pushed ones.

Google has no contact push, so a Google connection is polled: soon after activity on either
side, backing off (doubling) while nothing happens, within configurable bounds. Microsoft pushes
change notifications, so its poll is only a safety net for notifications that never came. A CRM
change for any connection enqueues a pass at once (the CRM webhook), whatever the interval.
"""

from __future__ import annotations

from dataclasses import dataclass

PUSHED_PROVIDERS = frozenset({"microsoft"})

# People API read quota is per user per minute; one poll costs one connections.list call (plus
# one per further page of changes), so polling every 30 seconds at most stays far inside it.
QUOTA_FLOOR_SECONDS = 30


@dataclass(frozen=True)
class PollPolicy:
    min_seconds: int = 60
    max_seconds: int = 900
    safety_seconds: int = 3600
    floor_seconds: int = QUOTA_FLOOR_SECONDS  # lowered only by the local stack's fast tests

    def next_interval(self, provider: str, previous: int, active: bool) -> int:
        """Seconds until the next pass for a connection whose last interval was ``previous``."""
        if provider in PUSHED_PROVIDERS:
            return self.safety_seconds
        low = max(self.min_seconds, self.floor_seconds)
        high = max(self.max_seconds, low)
        if active or previous <= 0:
            return low
        return min(max(previous, low) * 2, high)
