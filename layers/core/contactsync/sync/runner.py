"""What the reconciler does with one message: the pass, then what follows from its result."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from contactsync.providers.base import ProviderError
from contactsync.runtime.messages import SyncMessage
from contactsync.runtime.queue import PassQueue
from contactsync.store import repository as repo
from contactsync.store.models import iso
from contactsync.store.pass_store import DynamoPassStore
from contactsync.sync.polling import PollPolicy
from contactsync.sync.reconcile import PassContext, PassResult, run_pass
from contactsync.sync.sides import Wiring

RENEW_BEFORE = timedelta(hours=24)


@dataclass
class PassRunner:
    wiring: Wiring
    queue: PassQueue

    def context(self) -> PassContext:
        s = self.wiring.settings
        return PassContext(
            store=DynamoPassStore(),
            sides_for=self.wiring.sides_for,
            clock=self.wiring.clock,
            budget_seconds=s.pass_budget_seconds,
            lease_seconds=s.lease_seconds,
            polling=PollPolicy(
                s.poll_min_seconds, s.poll_max_seconds, s.safety_poll_seconds, s.poll_floor_seconds
            ),
        )

    def run(self, message: SyncMessage) -> PassResult:
        result = run_pass(message.connection_id, message, self.context())
        if result.status == "continue":
            self.queue.send(
                [SyncMessage(connection_id=message.connection_id, reason="continuation")]
            )
        if result.status in ("done", "continue"):
            self.keep_subscription(message)
        return result

    def keep_subscription(self, message: SyncMessage) -> None:
        """Renew a Graph subscription before it lapses, or recreate it when Graph dropped it."""
        conn = repo.get_connection(message.connection_id)
        if conn is None or conn.provider != "microsoft" or not conn.subscription_ids:
            return
        now = self.wiring.clock()
        for sub in repo.subscriptions_of(conn):
            expires = sub.expires_at_iso
            lapsing = expires <= iso(now + RENEW_BEFORE)
            asked = message.lifecycle_event in ("reauthorizationRequired", "subscriptionRemoved")
            if not (lapsing or asked):
                continue
            until = now + timedelta(minutes=self.wiring.settings.subscription_minutes)
            account = self.wiring.microsoft_account(conn.connection_id, conn.folder_id or "")
            try:
                new_expiry = account.renew_subscription(sub.subscription_id, until)
            except ProviderError:
                continue  # surfaced by the next pass's status; retried on the next message
            sub.expires_at_iso = iso(new_expiry)
            sub.save()
