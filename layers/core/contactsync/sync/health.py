"""Provider health for ``GET /status``: pass outcomes counted in memory and written in batches.

A counter write per pass would make the health item the busiest key of the table. A reconciler
instead keeps its counts per provider and minute, and writes them as one update each when that
minute is over or ``flush_seconds`` have passed since the first unwritten pass (whichever comes
first, at its next pass). A container that goes quiet keeps at most that much unwritten: the
status page is a view of recent health, not a ledger.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

Write = Callable[
    [str, datetime, int, int, set[str]], None
]  # provider, minute, passes, errors, codes


@dataclass
class Counts:
    passes: int = 0
    errors: int = 0
    codes: set[str] = field(default_factory=set)


@dataclass
class HealthTally:
    write: Write
    flush_seconds: float = 30.0
    monotonic: Callable[[], float] = time.monotonic
    _counts: dict[tuple[str, datetime], Counts] = field(default_factory=dict)
    _since: float | None = None
    # Passes of one container may run at once (a batch's passes, or the local stack's
    # concurrent invocations): counting and taking what is due are one step each.
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, provider: str, error: str | None, at: datetime) -> None:
        """Count one pass that talked to ``provider``, and write what is due."""
        minute = at.replace(second=0, microsecond=0)
        with self._lock:
            counts = self._counts.setdefault((provider, minute), Counts())
            counts.passes += 1
            if error is not None:
                counts.errors += 1
                counts.codes.add(error)
            if self._since is None:
                self._since = self.monotonic()
        self.flush(minute)

    def flush(self, current: datetime | None = None) -> None:
        """Write the counts of minutes before ``current``; all of them once ``flush_seconds``
        have passed since the first unwritten one (or when ``current`` is None)."""
        with self._lock:
            overdue = (
                current is None
                or self._since is None
                or self.monotonic() - self._since >= self.flush_seconds
            )
            due = [k for k in self._counts if overdue or k[1] < (current or k[1])]
            taken = [(key, self._counts.pop(key)) for key in due]
            if not self._counts:
                self._since = None
        for (provider, minute), counts in taken:
            self.write(provider, minute, counts.passes, counts.errors, counts.codes)
