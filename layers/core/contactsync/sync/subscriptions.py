"""Graph change-notification subscriptions: made at start, renewed before they lapse, made
anew when Graph removed one (a ``subscriptionRemoved`` lifecycle event, or a renewal that finds
it gone). A connection without a live subscription would fall back to its hourly safety poll.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Any

from contactsync.providers.base import NotFound, ProviderError
from contactsync.runtime.sides import Wiring
from contactsync.store.connections import update_connection
from contactsync.store.models import iso
from contactsync.store.subscriptions import delete_subscription, put_subscription, subscriptions_of
from contactsync.sync.connection_states import RUNNING
from contactsync.sync.push import graph_client_state, secret_hash

RENEW_BEFORE = timedelta(hours=24)
ASKED = ("reauthorizationRequired", "subscriptionRemoved")  # lifecycle events that need action


def subscribe(wiring: Wiring, conn: Any) -> str:
    """A new subscription to the connection's folder; only a hash of its clientState is kept."""
    client_state = graph_client_state(wiring.settings.webhook_key, conn.connection_id)
    base = wiring.settings.public_base_url
    account = wiring.microsoft_account(conn.connection_id, conn.folder_id or "")
    sub_id, expires_at = account.create_subscription(
        notification_url=f"{base}/webhooks/microsoft",
        lifecycle_url=f"{base}/webhooks/microsoft/lifecycle",
        client_state=client_state,
        expires_at=wiring.clock() + timedelta(minutes=wiring.settings.subscription_minutes),
    )
    put_subscription(
        subscription_id=sub_id,
        connection_id=conn.connection_id,
        client_state_hash=secret_hash(client_state),
        resource=f"me/contactFolders/{conn.folder_id}/contacts",
        expires_at=expires_at,
    )
    return sub_id


def keep_subscribed(wiring: Wiring, conn: Any, lifecycle_event: str = "") -> None:
    """Renew what lapses within a day (or what Graph asked to reauthorize); make anew what Graph
    removed, and what is missing altogether. Failures wait for the next pass."""
    if conn.provider != "microsoft" or conn.state not in RUNNING:
        return
    now = wiring.clock()
    until = now + timedelta(minutes=wiring.settings.subscription_minutes)
    kept: list[str] = []
    for sub in subscriptions_of(conn):
        lapsing = sub.expires_at_iso <= iso(now + RENEW_BEFORE)
        if not lapsing and lifecycle_event not in (
            "reauthorizationRequired",
            "subscriptionRemoved",
        ):
            kept.append(sub.subscription_id)
            continue
        if lifecycle_event != "subscriptionRemoved":
            account = wiring.microsoft_account(conn.connection_id, conn.folder_id or "")
            try:
                sub.expires_at_iso = iso(account.renew_subscription(sub.subscription_id, until))
                sub.save()
                kept.append(sub.subscription_id)
                continue
            except NotFound:
                pass  # Graph dropped it: make a new one below
            except ProviderError:
                kept.append(sub.subscription_id)
                continue
        delete_subscription(sub.subscription_id)
    if not kept:
        # If Graph refuses, the next pass tries again; the safety poll covers the gap.
        with contextlib.suppress(ProviderError):
            kept.append(subscribe(wiring, conn))
    if kept != list(conn.subscription_ids or []):
        update_connection(conn.connection_id, subscription_ids=kept)
