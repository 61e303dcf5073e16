"""Provider health is counted in memory and written once per provider and minute, not per pass."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from contactsync.sync.health import HealthTally

T0 = datetime(2026, 12, 4, 12, 0, 5, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_passes_of_one_minute_are_written_as_one_update_when_the_minute_is_over() -> None:
    # Given a tally that writes at most every 30 s
    writes: list[tuple[str, datetime, int, int, set[str]]] = []
    clock = Clock()
    tally = HealthTally(lambda *row: writes.append(row), flush_seconds=30, monotonic=clock)
    # When 40 passes talk to Google within one minute, two of them throttled
    for i in range(40):
        clock.now = i * 0.5
        tally.add("google", "RateLimited" if i in (3, 7) else None, T0 + timedelta(seconds=i))
    # Then nothing was written yet
    assert writes == []
    # When the next minute's first pass comes
    tally.add("google", None, T0 + timedelta(minutes=1))
    # Then the first minute is one write with its counts
    assert writes == [("google", T0.replace(second=0), 40, 2, {"RateLimited"})]


def test_counts_are_written_at_the_latest_after_flush_seconds() -> None:
    writes: list[tuple[str, datetime, int, int, set[str]]] = []
    clock = Clock()
    tally = HealthTally(lambda *row: writes.append(row), flush_seconds=30, monotonic=clock)
    tally.add("microsoft", None, T0)
    clock.now = 29.0
    tally.add("microsoft", None, T0 + timedelta(seconds=1))
    assert writes == []
    # When a pass comes 30 s after the first unwritten one, everything is written
    clock.now = 30.0
    tally.add("pipedrive", "Transient", T0 + timedelta(seconds=2))
    assert sorted(writes) == [
        ("microsoft", T0.replace(second=0), 2, 0, set()),
        ("pipedrive", T0.replace(second=0), 1, 1, {"Transient"}),
    ]
    # And with flush_seconds 0 (the local stack) every pass is written at once
    at_once: list[tuple[str, datetime, int, int, set[str]]] = []
    HealthTally(lambda *row: at_once.append(row), flush_seconds=0).add("google", None, T0)
    assert len(at_once) == 1
