"""Provider pushes: Graph change notifications and CRM webhooks become pass requests.

Handlers answer providers fast, so this only authenticates, validates and enqueues: the pass
itself reads the changes. A burst of pushes for one connection queues one pass, not one per
push: while a pass request waits on the queue, further pushes only ring the doorbell (their CRM
ids are remembered on the connection, and the waiting pass reads them).

Nothing here trusts the payload: a notification counts only when its ``clientState`` is our
signature of a connection id and its subscription is that connection's; a CRM delivery only with
the connection's basic-auth secret. Unauthenticated traffic stays cheap: a notification is
checked (subscription id shaped as a GUID, ``clientState`` signed with the server's webhook key)
before anything is read, and a request with more than a few that fail is refused at once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contactsync.runtime.messages import SyncMessage
from contactsync.runtime.queue import PassQueue, coalesce

M = TypeVar("M", bound=BaseModel)

LIFECYCLE_EVENTS = frozenset({"reauthorizationRequired", "subscriptionRemoved", "missed"})
GRAPH_SUBSCRIPTION_ID = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
# Graph batches only what is ours: a request with more notifications than this that are not
# (wrong shape, wrong signature) is refused without looking at the rest.
MAX_UNKNOWN_NOTIFICATIONS = 10


class Doorbell(Protocol):
    """Where a push notes that a connection wants a pass (the connection item, in production)."""

    def ring(self, connection_id: str, crm_ids: Sequence[str]) -> bool:
        """Remember ``crm_ids`` for the next pass. True when the caller should queue a pass;
        False when one already waits on the queue and will see this push too."""
        ...


class PushRejected(Exception):
    """The push is not ours or not well-formed: answered with ``status`` and nothing enqueued."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def same_secret(secret: str, expected_hash: str | None) -> bool:
    """Constant-time comparison of a presented secret with the stored hash."""
    if not expected_hash:
        return False
    return hmac.compare_digest(secret_hash(secret), expected_hash)


# --- Microsoft Graph -------------------------------------------------------------------------


def graph_client_state(webhook_key: str, connection_id: str) -> str:
    """The ``clientState`` of a connection's subscriptions: its id and our signature of it.

    Graph echoes it in every notification, so a notification is checked without a read. (The
    subscription id is not known before Graph answers the request that must carry the
    ``clientState``; the subscription is matched to the connection after the check.)
    """
    if not webhook_key:
        raise ValueError("no webhook key is configured")
    mac = hmac.new(webhook_key.encode(), f"graph:{connection_id}".encode(), hashlib.sha256)
    signature = base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()
    return f"{connection_id}.{signature}"


def signed_connection(webhook_key: str, client_state: str) -> str | None:
    """The connection id a ``clientState`` carries, if we signed it; None otherwise."""
    connection_id, dot, _ = client_state.rpartition(".")
    if not webhook_key or not dot or not connection_id:
        return None
    expected = graph_client_state(webhook_key, connection_id)
    return connection_id if hmac.compare_digest(expected, client_state) else None


class GraphNotification(BaseModel):
    model_config = ConfigDict(extra="allow")

    subscription_id: str = Field(alias="subscriptionId", min_length=1, max_length=200)
    client_state: str = Field(default="", alias="clientState", max_length=256)
    change_type: str = Field(default="", alias="changeType", max_length=100)
    lifecycle_event: str = Field(default="", alias="lifecycleEvent", max_length=100)


class GraphNotificationBatch(BaseModel):
    value: list[GraphNotification] = Field(min_length=1, max_length=1000)


@dataclass(frozen=True)
class SubscriptionRecord:
    subscription_id: str
    connection_id: str
    client_state_hash: str


@dataclass(frozen=True)
class PushOutcome:
    accepted: int
    rejected: int
    enqueued: int


def handle_graph_notifications(
    body: str | bytes | None,
    *,
    webhook_key: str,
    find_subscriptions: Callable[[Sequence[str]], Mapping[str, SubscriptionRecord]],
    queue: PassQueue,
    doorbell: Doorbell,
    lifecycle: bool = False,
) -> PushOutcome:
    batch = _parse(GraphNotificationBatch, body)
    signed: list[tuple[GraphNotification, str]] = []
    rejected = 0
    for note in batch.value:
        connection_id = (
            signed_connection(webhook_key, note.client_state)
            if GRAPH_SUBSCRIPTION_ID.fullmatch(note.subscription_id)
            else None
        )
        if connection_id is None:
            rejected += 1
            if rejected > MAX_UNKNOWN_NOTIFICATIONS:
                raise PushRejected(403, "too many notifications in the request are not ours")
            continue
        signed.append((note, connection_id))
    if not signed:
        raise PushRejected(403, "no notification in the request belongs to a known subscription")
    # One read for the signed ones: is the subscription still the connection's?
    records = find_subscriptions([note.subscription_id for note, _ in signed])
    messages: list[SyncMessage] = []
    for note, connection_id in signed:
        record = records.get(note.subscription_id)
        if record is None or record.connection_id != connection_id:
            rejected += 1
            continue
        if lifecycle:
            if note.lifecycle_event not in LIFECYCLE_EVENTS:
                rejected += 1
                continue
            messages.append(
                SyncMessage(
                    connection_id=connection_id,
                    reason="lifecycle",
                    lifecycle_event=note.lifecycle_event,
                )
            )
        else:
            messages.append(SyncMessage(connection_id=connection_id, reason="provider_push"))
    if not messages:
        raise PushRejected(403, "no notification in the request belongs to a known subscription")
    enqueued = _request_passes(messages, queue, doorbell)
    return PushOutcome(accepted=len(messages), rejected=rejected, enqueued=enqueued)


# --- Pipedrive webhooks ----------------------------------------------------------------------


class CrmWebhookMeta(BaseModel):
    model_config = ConfigDict(extra="allow")

    action: str = Field(min_length=1, max_length=40)
    entity: str = Field(min_length=1, max_length=40)
    entity_id: str | int
    webhook_id: str | int | None = None
    id: str | None = Field(default=None, max_length=100)  # unique per event (redeliveries keep it)
    timestamp: str | None = Field(default=None, max_length=64)


class CrmWebhook(BaseModel):
    model_config = ConfigDict(extra="allow")

    meta: CrmWebhookMeta
    data: dict[str, Any] | None = None
    previous: dict[str, Any] | None = None


def basic_auth(header: str | None) -> tuple[str, str]:
    if not header or not header.lower().startswith("basic "):
        raise PushRejected(401, "basic authentication is required")
    try:
        raw = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise PushRejected(401, "malformed basic authentication") from exc
    user, sep, password = raw.partition(":")
    if not sep:
        raise PushRejected(401, "malformed basic authentication")
    return user, password


@dataclass(frozen=True)
class CrmHookTarget:
    """What a CRM delivery is checked against: the connection's webhook secret (hashed) and its
    CRM user, whose persons (owned now, or before the change) are the only ones it syncs."""

    secret_hash: str | None
    owner_id: str


def handle_crm_webhook(
    body: str | bytes | None,
    authorization: str | None,
    *,
    target: Callable[[str], CrmHookTarget | None],
    queue: PassQueue,
    doorbell: Doorbell,
) -> PushOutcome:
    """The basic-auth user is the connection id; its password the connection's webhook secret.

    The CRM sends a user's webhooks for every person the user can see, the whole company's: an
    event for a person owned by someone else, before and after it, asks for no pass."""
    connection_id, password = basic_auth(authorization)
    found = target(connection_id) if len(connection_id) <= 64 else None
    if found is None or not same_secret(password, found.secret_hash):
        raise PushRejected(401, "unknown webhook credentials")
    hook = _parse(CrmWebhook, body)
    if hook.meta.entity != "person":
        return PushOutcome(accepted=1, rejected=0, enqueued=0)  # organizations: nothing to do
    owners = {o for o in (_owner(hook.data), _owner(hook.previous)) if o}
    if owners and found.owner_id not in owners:
        return PushOutcome(accepted=1, rejected=0, enqueued=0)  # another user's person
    message = SyncMessage(
        connection_id=connection_id, reason="crm_push", crm_ids=[str(hook.meta.entity_id)]
    )
    # Only a redelivery of the same event is dropped as a duplicate: two events in the same
    # second (an edit, then the delete) are two requests, or the second one would be lost.
    dedup = f"{hook.meta.webhook_id}:{hook.meta.id}" if hook.meta.id else None
    enqueued = _request_passes([message], queue, doorbell, dedup_key=dedup)
    return PushOutcome(accepted=1, rejected=0, enqueued=enqueued)


def _owner(person: dict[str, Any] | None) -> str:
    """The owner named in a webhook's person (``data`` or ``previous``; v2 gives the id, v1 an
    object holding it); "" when it names none (a change that left the owner alone)."""
    owner = (person or {}).get("owner_id")
    if isinstance(owner, dict):
        owner = owner.get("id", owner.get("value"))
    return str(owner) if isinstance(owner, (int, str)) and str(owner) else ""


def _request_passes(
    messages: Sequence[SyncMessage],
    queue: PassQueue,
    doorbell: Doorbell,
    *,
    dedup_key: str | None = None,
) -> int:
    """Queue a pass for each connection that has none waiting; lifecycle events always go (the
    pass acts on the event itself)."""
    wanted = [
        m
        for m in coalesce(messages)
        if m.reason == "lifecycle" or doorbell.ring(m.connection_id, m.crm_ids)
    ]
    return queue.send(wanted, dedup_key=dedup_key) if wanted else 0


def _parse(model: type[M], body: str | bytes | None) -> M:
    if not body:
        raise PushRejected(400, "the request has no body")
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise PushRejected(400, f"malformed payload: {problems}") from exc


__all__: Sequence[str] = (
    "CrmHookTarget",
    "Doorbell",
    "PushOutcome",
    "PushRejected",
    "SubscriptionRecord",
    "graph_client_state",
    "handle_crm_webhook",
    "handle_graph_notifications",
    "same_secret",
    "secret_hash",
    "signed_connection",
)
