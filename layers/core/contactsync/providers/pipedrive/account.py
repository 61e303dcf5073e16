"""The calls that set a connection up: who the token's user is, what they may not do, the
company's person webhooks, and merging two persons."""

from __future__ import annotations

import contextlib
from typing import Any

from contactsync.providers.base import NotFound
from contactsync.providers.pipedrive.api import PipedriveApi

PERMISSION_NAMES = {"can_add_people": "add people", "can_add_organizations": "add organizations"}


def whoami(api: PipedriveApi) -> dict[str, Any]:
    """The token's user: ``id``, ``name``, ``email``, ``company_id``."""
    data = api.call("GET", "/api/v1/users/me")["data"]
    return {k: data.get(k) for k in ("id", "name", "email", "company_id")}


def missing_permissions(api: PipedriveApi, owner_id: int) -> list[str]:
    """What the owner lacks to seed contact sync, in plain words; ``[]`` if nothing known.
    A permission the answer does not list is unknown, not denied: the 403 of a real write
    (PermissionDenied naming it) is the truth."""
    data = api.call("GET", f"/api/v1/users/{owner_id}/permissions")["data"]
    return [words for key, words in PERMISSION_NAMES.items() if data.get(key) is False]


def create_webhook(api: PipedriveApi, owner_id: int, *, url: str, user: str, password: str) -> str:
    """Subscribe to every person event (webhooks v2), delivered with HTTP basic auth."""
    body = {
        "subscription_url": url,
        "event_action": "*",
        "event_object": "person",
        "http_auth_user": user,
        "http_auth_password": password,
        "version": "2.0",
        "name": "contactsync",
        "user_id": owner_id,
    }
    data = api.call("POST", "/api/v1/webhooks", json_body=body)["data"]
    return str(data["id"])


def delete_webhook(api: PipedriveApi, webhook_id: str) -> None:
    with contextlib.suppress(NotFound):
        api.call("DELETE", f"/api/v1/webhooks/{int(webhook_id)}")


def merge_persons(api: PipedriveApi, keep_id: str, merge_id: str) -> str:
    """Merge ``merge_id`` into ``keep_id``; Pipedrive keeps ``merge_with_id`` (= keep_id)."""
    body = {"merge_with_id": int(keep_id)}
    data = api.call("PUT", f"/api/v1/persons/{int(merge_id)}/merge", json_body=body)
    return str(data["data"]["id"])
