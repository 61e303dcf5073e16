"""Subscription items: provider push subscriptions, found by id when a notification arrives."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from contactsync.store.models import Connection, Subscription, iso, utcnow


def put_subscription(
    *,
    subscription_id: str,
    connection_id: str,
    client_state_hash: str,
    resource: str,
    expires_at: datetime,
    now: datetime | None = None,
) -> Subscription:
    """Store a provider subscription. The caller adds its id to ``conn.subscription_ids``."""
    subscription = Subscription(
        f"SUB#{subscription_id}",
        "SUBSCRIPTION",
        subscription_id=subscription_id,
        connection_id=connection_id,
        client_state_hash=client_state_hash,
        resource=resource,
        expires_at_iso=iso(expires_at),
        created_at=iso(now or utcnow()),
    )
    subscription.save()
    return subscription


def get_subscriptions(subscription_ids: Sequence[str]) -> dict[str, Subscription]:
    """The stored subscriptions among these ids, by id (BatchGetItem, 100 keys a call)."""
    keys = [(f"SUB#{sid}", "SUBSCRIPTION") for sid in dict.fromkeys(subscription_ids)]
    return {s.subscription_id: s for s in Subscription.batch_get(keys)} if keys else {}


def delete_subscription(subscription_id: str) -> None:
    Subscription(f"SUB#{subscription_id}", "SUBSCRIPTION").delete()


def subscriptions_of(conn: Connection) -> list[Subscription]:
    """The stored subscriptions whose ids the connection lists (one batch read)."""
    keys = [(f"SUB#{sid}", "SUBSCRIPTION") for sid in conn.subscription_ids or []]
    return list(Subscription.batch_get(keys)) if keys else []
