"""What push intake reads from the store, as ``sync.push`` asks for it: the records of Graph
subscriptions (to check a notification's clientState) and a CRM webhook's target (the secret it
must carry, the user it is for). The store is imported on first use: the webhook function's
Graph handshake answers before it."""

from __future__ import annotations

from collections.abc import Sequence

from contactsync.runtime.wiring import bind_store
from contactsync.sync import push


def find_subscriptions(subscription_ids: Sequence[str]) -> dict[str, push.SubscriptionRecord]:
    from contactsync.store.subscriptions import get_subscriptions  # noqa: PLC0415

    bind_store()
    return {
        sid: push.SubscriptionRecord(
            subscription_id=item.subscription_id,
            connection_id=item.connection_id,
            client_state_hash=item.client_state_hash,
        )
        for sid, item in get_subscriptions(subscription_ids).items()
    }


def crm_hook_target(connection_id: str) -> push.CrmHookTarget | None:
    from contactsync.store.connections import get_connection  # noqa: PLC0415

    bind_store()
    conn = get_connection(connection_id)
    if conn is None:
        return None
    return push.CrmHookTarget(secret_hash=conn.crm_webhook_secret_hash, owner_id=conn.user_id)
