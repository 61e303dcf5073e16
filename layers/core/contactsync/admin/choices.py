"""What a user chooses for a connection: the folder or group to sync (an existing one or a new
one made for it), the direction, the conflict policy, the phone region and the visibility of
the persons the sync creates in the CRM."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from contactsync.admin import access
from contactsync.admin.access import Caller
from contactsync.admin.context import AdminContext
from contactsync.admin.errors import ConflictError, InvalidRequest, UpstreamError
from contactsync.admin.views import VISIBILITIES, connection_view
from contactsync.providers.base import AuthExpired, ProviderError
from contactsync.store.connections import update_connection
from contactsync.sync.connection_states import RUNNING

DIRECTIONS = ("two_way", "to_crm", "to_provider")
CONFLICT_POLICIES = ("newest_wins", "crm_wins", "provider_wins")

T = TypeVar("T")


def groups(ctx: AdminContext, caller: Caller, connection_id: str) -> list[dict[str, str]]:
    """The account's folders (Outlook), contact groups (Google) or address books (CardDAV)."""
    conn = access.signed_in_connection(caller, connection_id)
    folders = _provider_call(lambda: ctx.wiring.list_groups(conn.connection_id, conn.provider))
    return [{"id": folder_id, "name": name} for folder_id, name in folders]


def create_group(
    ctx: AdminContext, caller: Caller, connection_id: str, name: str
) -> dict[str, str]:
    """A new folder or group in the account, made for the sync, to choose next."""
    conn = access.signed_in_connection(caller, connection_id)
    name = name.strip()
    if not name:
        raise InvalidRequest("give the new folder or group a name")
    existing = {n.casefold() for _, n in _provider_call(
        lambda: ctx.wiring.list_groups(connection_id, conn.provider))}  # fmt: skip
    if name.casefold() in existing:
        raise ConflictError(f"{name!r} exists already: choose it from the list")
    group_id, group_name = _provider_call(
        lambda: ctx.wiring.create_group(connection_id, conn.provider, name)
    )
    return {"id": group_id, "name": group_name}


def _provider_call(call: Callable[[], T]) -> T:
    try:
        return call()
    except AuthExpired as exc:
        raise ConflictError(f"sign in again: {exc.message}") from exc
    except ProviderError as exc:
        raise UpstreamError(f"the provider did not answer: {exc.message}") from exc


def update_settings(
    ctx: AdminContext, caller: Caller, connection_id: str, changes: dict[str, Any]
) -> dict[str, Any]:
    """Change what was given of the connection's settings; the folder only while stopped."""
    conn = access.connection_of(caller, connection_id)
    update: dict[str, Any] = {}
    if "direction" in changes and changes["direction"] is not None:
        update["direction"] = _one_of("direction", changes["direction"], DIRECTIONS)
    if "conflict_policy" in changes and changes["conflict_policy"] is not None:
        update["conflict_policy"] = _one_of(
            "conflict_policy", changes["conflict_policy"], CONFLICT_POLICIES
        )
    if changes.get("phone_region") is not None:
        import phonenumbers  # noqa: PLC0415 - only this check needs it in the admin API

        region = str(changes["phone_region"]).upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise InvalidRequest(
                f"phone_region {changes['phone_region']!r} is not a known region",
                details={"example": "US, GB, DE"},
            )
        update["phone_region"] = region
    if changes.get("visibility") is not None:
        chosen = _one_of("visibility", changes["visibility"], tuple(VISIBILITIES))
        update["visible_to"] = VISIBILITIES[chosen]
    folder_id = changes.get("folder_id")
    if folder_id is not None:
        if conn.state in RUNNING and folder_id != conn.folder_id:
            raise ConflictError("stop the sync before choosing another folder")
        folders = {f["id"]: f["name"] for f in groups(ctx, caller, connection_id)}
        if folder_id not in folders:
            raise InvalidRequest(
                f"folder {folder_id!r} does not exist in this account",
                details={"allowed": [{"id": k, "name": v} for k, v in folders.items()]},
            )
        update.update(folder_id=folder_id, folder_name=folders[folder_id])
    if update:
        update_connection(connection_id, **update)
    return connection_view(access.connection_of(caller, connection_id), ctx.clock())


def _one_of(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise InvalidRequest(
            f"{name} must be one of {', '.join(allowed)}", details={"allowed": list(allowed)}
        )
    return str(value)
