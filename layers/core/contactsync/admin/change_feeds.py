"""The change feeds a running connection listens to: CRM webhooks for every connection, Graph
change notifications for Microsoft (Google has no contact push: its connections are polled)."""

from __future__ import annotations

import contextlib
import secrets
from typing import TYPE_CHECKING

from contactsync.admin.context import AdminContext
from contactsync.admin.errors import UpstreamError
from contactsync.providers.base import ProviderError
from contactsync.store.connections import update_connection
from contactsync.store.models import Connection
from contactsync.store.subscriptions import delete_subscription
from contactsync.sync.push import secret_hash
from contactsync.sync.subscriptions import subscribe

if TYPE_CHECKING:
    from contactsync.providers.pipedrive import PipedrivePersons


def subscribe_to_changes(ctx: AdminContext, conn: Connection, crm: PipedrivePersons) -> None:
    """Subscribe to both sides' changes, keeping what is needed to check and remove them."""
    base = ctx.wiring.settings.public_base_url
    sub_ids: list[str] = []
    try:
        if conn.provider == "microsoft":
            sub_ids.append(subscribe(ctx.wiring, conn))
        password = secrets.token_urlsafe(32)
        hook_id = crm.create_webhook(
            url=f"{base}/webhooks/pipedrive", user=conn.connection_id, password=password
        )
    except ProviderError as exc:
        raise UpstreamError(f"could not subscribe to changes: {exc.message}") from exc
    update_connection(
        conn.connection_id,
        subscription_ids=sub_ids,
        crm_webhook_ids=[hook_id],
        crm_webhook_secret_hash=secret_hash(password),
    )


def unsubscribe(ctx: AdminContext, conn: Connection) -> None:
    """Remove the connection's subscriptions and webhooks (best effort on the providers' side)."""
    if conn.provider == "microsoft" and conn.subscription_ids:
        account = ctx.wiring.microsoft_account(conn.connection_id)
        for sub_id in list(conn.subscription_ids or []):
            # If Graph will not answer, the subscription lapses on its own within three days.
            with contextlib.suppress(ProviderError):
                account.delete_subscription(sub_id)
            delete_subscription(sub_id)
    crm = ctx.wiring.crm_side(conn.company_id, conn.user_id)
    for hook_id in list(conn.crm_webhook_ids or []):
        with contextlib.suppress(ProviderError):
            crm.delete_webhook(hook_id)
    update_connection(
        conn.connection_id,
        subscription_ids=[],
        crm_webhook_ids=[],
        crm_webhook_secret_hash=None,
    )
