"""Graph change notifications for the sync folder: a subscription made, renewed and deleted."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from contactsync.providers.microsoft.graph import GraphApi


def create(
    graph: GraphApi,
    base: str,
    folder: str,
    *,
    notification_url: str,
    lifecycle_url: str,
    client_state: str,
    expires_at: datetime,
) -> tuple[str, datetime]:
    body = {
        "changeType": "created,updated,deleted",
        "notificationUrl": notification_url,
        "lifecycleNotificationUrl": lifecycle_url,
        "resource": f"me/contactFolders/{folder}/contacts",
        "expirationDateTime": _iso(expires_at),
        "clientState": client_state,
    }
    sub = graph.json(graph.send("POST", f"{base}/subscriptions", json=body))
    return str(sub["id"]), _parse_time(str(sub["expirationDateTime"]))


def renew(graph: GraphApi, base: str, sub_id: str, expires_at: datetime) -> datetime:
    body = {"expirationDateTime": _iso(expires_at)}
    sub = graph.json(graph.send("PATCH", f"{base}/subscriptions/{sub_id}", json=body))
    return _parse_time(str(sub["expirationDateTime"]))


def delete(graph: GraphApi, base: str, sub_id: str) -> None:
    resp = graph.send("DELETE", f"{base}/subscriptions/{sub_id}")
    if resp.status_code not in (200, 204, 404):
        graph.json(resp)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: str) -> datetime:
    """Graph times carry up to 7 fractional digits; Python reads at most 6."""
    text = re.sub(r"(\.\d{6})\d+", r"\1", text.replace("Z", "+00:00"))
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
