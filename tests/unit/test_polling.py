"""Adaptive polling: soon after activity, backing off while idle, a safety net for push."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from contactsync.runtime.messages import SyncMessage
from contactsync.sync.polling import QUOTA_FLOOR_SECONDS, PollPolicy
from contactsync.sync.reconcile import PassContext, Sides, run_pass

from tests.fakes import InMemorySide, InMemoryStore

POLICY = PollPolicy(min_seconds=60, max_seconds=900, safety_seconds=3600)


def test_a_polled_connection_backs_off_while_idle_up_to_the_maximum() -> None:
    # Given a Google connection that saw nothing for several passes
    intervals, previous = [], 0
    for _ in range(7):
        previous = POLICY.next_interval("google", previous, active=previous == 0)
        intervals.append(previous)
    # Then the interval doubles from the minimum and stops at the maximum
    assert intervals == [60, 120, 240, 480, 900, 900, 900]


def test_activity_brings_a_polled_connection_back_to_the_minimum() -> None:
    # Given a connection polled every 15 minutes
    # When a pass sees a change on either side
    # Then the next poll comes after the minimum interval
    assert POLICY.next_interval("google", 900, active=True) == 60


def test_a_pushed_provider_gets_only_the_safety_poll() -> None:
    # Given a Microsoft connection (Graph pushes change notifications)
    # Then activity or not, it is polled only as a safety net
    assert POLICY.next_interval("microsoft", 0, active=True) == 3600
    assert POLICY.next_interval("microsoft", 3600, active=False) == 3600


def test_the_minimum_never_goes_below_the_quota_floor() -> None:
    # Given a misconfigured minimum of one second
    policy = PollPolicy(min_seconds=1, max_seconds=5)
    # Then polls are still spaced by what the provider's per-user quota allows
    assert policy.next_interval("google", 0, active=True) == QUOTA_FLOOR_SECONDS
    assert policy.next_interval("google", QUOTA_FLOOR_SECONDS, active=False) == QUOTA_FLOOR_SECONDS


def test_a_pass_schedules_the_next_poll_from_what_it_saw() -> None:
    # Given an active Google connection with nothing to sync, polled every 2 minutes
    store = InMemoryStore()
    store.add_connection("c1", provider="google", state="active", poll_seconds=120)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    ctx = PassContext(
        store=store,
        sides_for=lambda _v: Sides(crm=InMemorySide(name="crm"), provider=InMemorySide()),
        clock=lambda: now,
        polling=POLICY,
    )
    # When an idle pass runs
    result = run_pass("c1", SyncMessage(connection_id="c1", reason="schedule"), ctx)
    # Then the connection is due again after twice the interval
    assert result.status == "done"
    assert store.connections["c1"]["poll_seconds"] == 240
    assert store.connections["c1"]["next_run_at"] == now + timedelta(seconds=240)
