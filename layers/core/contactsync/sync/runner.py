"""What the reconciler does with one message: the pass, then what follows from its result."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

from contactsync.providers.base import ContactSide, ProviderError
from contactsync.runtime.messages import SyncMessage
from contactsync.runtime.observability import PROVIDER_ERRORS, PROVIDER_THROTTLES, count
from contactsync.runtime.queue import PassQueue
from contactsync.runtime.sides import Wiring
from contactsync.store.connections import get_connection
from contactsync.store.pass_interface import ConnectionView
from contactsync.store.pass_outcomes import add_pass_outcomes
from contactsync.store.pass_store import DynamoPassStore
from contactsync.sync.health import HealthTally
from contactsync.sync.polling import PollPolicy
from contactsync.sync.reconcile import PassContext, PassResult, Sides, run_pass
from contactsync.sync.subscriptions import keep_subscribed


class WatchedSide:
    """A side that notes which provider failed the pass, for the service's status page."""

    def __init__(self, inner: ContactSide, provider: str, failures: dict[str, str | None]) -> None:
        self._inner = inner
        self._provider = provider
        self._failures = failures

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)
        if not callable(target):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return target(*args, **kwargs)
            except ProviderError as exc:
                self._failures[self._provider] = type(exc).__name__
                raise

        return call


@dataclass
class PassRunner:
    wiring: Wiring
    queue: PassQueue
    # Test hook, handed to every pass: called before each step that can crash (chaos tests).
    crash_point: Callable[[str], None] = field(default=lambda _point: None)
    health: HealthTally = field(init=False)

    def __post_init__(self) -> None:
        self.health = HealthTally(add_pass_outcomes, self.wiring.settings.health_flush_seconds)

    def context(
        self, failures: dict[str, str | None] | None = None, budget_seconds: float | None = None
    ) -> PassContext:
        """``failures`` gets every provider the pass talks to (None) and the error it failed
        with, if any. ``budget_seconds`` bounds the pass's budget below the setting."""
        s = self.wiring.settings
        seen = failures if failures is not None else {}

        def sides_for(view: ConnectionView) -> Sides:
            sides = self.wiring.sides_for(view)
            for provider in ("pipedrive", view.provider):
                seen.setdefault(provider, None)
            return Sides(
                crm=cast(ContactSide, WatchedSide(sides.crm, "pipedrive", seen)),
                provider=cast(ContactSide, WatchedSide(sides.provider, view.provider, seen)),
            )

        return PassContext(
            store=DynamoPassStore(),
            sides_for=sides_for,
            crash_point=self.crash_point,
            clock=self.wiring.clock,
            budget_seconds=min(s.pass_budget_seconds, budget_seconds or s.pass_budget_seconds),
            lease_seconds=s.lease_seconds,
            full_listing_every=timedelta(seconds=s.full_listing_seconds),
            settle_seconds=s.change_settle_seconds,
            polling=PollPolicy(
                s.poll_min_seconds, s.poll_max_seconds, s.safety_poll_seconds, s.poll_floor_seconds
            ),
        )

    def budget(self, remaining_seconds: float) -> float | None:
        """The budget of a pass that must end within ``remaining_seconds`` (the invocation's
        time left), or None when too little is left to start one."""
        s = self.wiring.settings
        budget = min(s.pass_budget_seconds, remaining_seconds - s.pass_margin_seconds)
        return budget if budget >= s.pass_min_seconds else None

    def run(self, message: SyncMessage, budget_seconds: float | None = None) -> PassResult:
        failures: dict[str, str | None] = {}
        context = self.context(failures, budget_seconds)
        result = run_pass(message.connection_id, message, context)
        if result.status not in ("skipped", "busy"):
            self.record_health(failures)
        if result.status == "continue":
            self.queue.send(
                [SyncMessage(connection_id=message.connection_id, reason=result.continue_as)]
            )
        if result.status in ("done", "continue", "recheck", "settling"):
            self.keep_subscription(message)
        return result

    def record_health(self, failures: dict[str, str | None]) -> None:
        """Count this pass for each provider it talked to, failed or not (``GET /status``), and
        the provider errors and throttles as metrics."""
        now = self.wiring.clock()
        for provider, error in failures.items():
            self.health.add(provider, error, now)
            if error is not None:
                count(PROVIDER_THROTTLES if error == "RateLimited" else PROVIDER_ERRORS)

    def keep_subscription(self, message: SyncMessage) -> None:
        """Graph subscriptions renewed before they lapse, made anew when Graph removed them."""
        conn = get_connection(message.connection_id)
        if conn is not None:
            keep_subscribed(self.wiring, conn, message.lifecycle_event)
