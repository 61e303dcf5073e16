"""The functions the rest of contactsync calls to read and write the table.

They take plain values and return the PynamoDB model instances of ``contactsync.store.models``
(or ``None`` when an item is absent). Every access is by key or index; nothing scans the table.

Connections are written two ways, so that neither clobbers the other:

- ``save_connection`` writes what the user and the passes change (state, progress, tokens ...)
  under optimistic locking (``version``): a stale copy raises ``VersionConflict``.
- The lease (``acquire_lease`` / ``release_lease``) and the schedule (``set_next_run``) are
  single conditional updates that neither check nor bump ``version``, and ``save_connection``
  never writes them. So the scheduler can reschedule a connection while a pass holds it.

``now`` parameters take an aware ``datetime``; when omitted the current UTC time is used.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import json
import random
import re
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from pynamodb.attributes import VersionAttribute
from pynamodb.exceptions import PynamoDBException
from pynamodb.expressions.condition import Condition, size
from pynamodb.expressions.update import Action

from contactsync.contacts.model import Contact
from contactsync.store.models import (
    DUE_SHARDS,
    AuditEntry,
    AuditMention,
    Connection,
    CrmAuthorization,
    CrmGrant,
    Cursor,
    DuplicateCluster,
    KeyClaim,
    Mapping,
    PassOutcomes,
    PendingWrite,
    ReviewHold,
    Subscription,
    iso,
    utcnow,
)

AUDIT_RETENTION_DAYS = 90  # the default of the ACTIVITY_RETENTION_DAYS setting
_audit_retention = timedelta(days=AUDIT_RETENTION_DAYS)
CRM_AUTHORIZATION_LIFETIME = timedelta(hours=1)
CONNECTION_SK = "CONNECTION"
# Written only by their own conditional updates, never by save_connection (webhooks change the
# last two while a pass holds the connection).
_LEASE_AND_SCHEDULE = frozenset(
    {
        "lease_owner",
        "lease_until",
        "due_shard",
        "next_run_at",
        "pending_crm_ids",
        "pending_provider_ids",
        "wake_queued_at",
    }
)
# Contacts remembered per side for the next pass to re-read; beyond it, pushes carry their own.
MAX_HINTS_PER_SIDE = 1000
_audit_seq = itertools.count()


class VersionConflict(Exception):
    """The connection changed since it was read: read it again and re-apply the change."""


class InvalidPageCursor(ValueError):
    """A paging cursor that this module did not hand out."""


def _conditional_failure(error: PynamoDBException) -> bool:
    return error.cause_response_code == "ConditionalCheckFailedException"


def _now(now: datetime | None) -> datetime:
    return now or utcnow()


def conn_pk(connection_id: str) -> str:
    return f"CONN#{connection_id}"


def due_shard(connection_id: str) -> str:
    """The DueIndex partition of a connection: a stable hash of its id over ``DUE_SHARDS``."""
    digest = hashlib.sha256(connection_id.encode()).digest()
    return f"DUE#{int.from_bytes(digest[:4], 'big') % DUE_SHARDS}"


# Ids from outside (a token's user and company, a provider's subscription id) become parts of keys
# joined with "#": one that holds a "#" could reach another owner's items (user "a#b" under the
# prefix "USER#a#"). Visible ASCII without "#", as long as a key part may be.
OWNER_ID_PATTERN = r"^[\x21\x22\x24-\x7e]{1,128}$"
_OWNER_ID = re.compile(OWNER_ID_PATTERN)


def owner_id(value: str, what: str = "id") -> str:
    """``value`` if it can be a part of a key; ValueError (naming ``what``) otherwise."""
    if not _OWNER_ID.fullmatch(value):
        raise ValueError(f"{what} must be 1 to 128 visible ASCII characters other than '#'")
    return value


def user_pk(company_id: str, user_id: str) -> str:
    return f"USER#{owner_id(company_id, 'company id')}#{owner_id(user_id, 'user id')}"


def keep_activity_for(days: int) -> None:
    """How long the activity log keeps an entry (the table's TTL then deletes it)."""
    global _audit_retention  # noqa: PLW0603 - one setting, set once per cold start
    _audit_retention = timedelta(days=days)


def hash_secret(secret: str) -> str:
    """sha256 hex of a shared secret (Graph clientState, CRM webhook password): what we store."""
    return hashlib.sha256(secret.encode()).hexdigest()


# --- connections --------------------------------------------------------------------------------


def create_connection(
    *,
    company_id: str,
    user_id: str,
    provider: str,
    connection_id: str | None = None,
    state: str = "configuring",
    direction: str = "two_way",
    conflict_policy: str = "newest_wins",
    folder_id: str | None = None,
    folder_name: str | None = None,
    phone_region: str = "US",
    oauth_state: bytes | None = None,
    now: datetime | None = None,
) -> Connection:
    """Store a new connection (unscheduled); fails if the id is already taken."""
    connection_id = connection_id or uuid.uuid4().hex
    stamp = iso(_now(now))
    conn = Connection(
        conn_pk(connection_id),
        CONNECTION_SK,
        gsi1pk=f"COMPANY#{owner_id(company_id, 'company id')}",
        gsi1sk=f"USER#{owner_id(user_id, 'user id')}#CONN#{owner_id(connection_id)}",
        connection_id=connection_id,
        company_id=company_id,
        user_id=user_id,
        provider=provider,
        state=state,
        direction=direction,
        conflict_policy=conflict_policy,
        folder_id=folder_id,
        folder_name=folder_name,
        phone_region=phone_region,
        oauth_state=oauth_state,
        created_at=stamp,
        updated_at=stamp,
    )
    conn.save()  # the version condition (must not exist yet) refuses a duplicate id
    return conn


def get_connection(connection_id: str) -> Connection | None:
    try:
        return Connection.get(conn_pk(connection_id), CONNECTION_SK, consistent_read=True)
    except Connection.DoesNotExist:
        return None


def list_connections(company_id: str, user_id: str | None = None) -> list[Connection]:
    """A company's connections (GSI1), or only one user's."""
    prefix = f"USER#{owner_id(user_id, 'user id')}#CONN#" if user_id is not None else "USER#"
    condition = Connection.gsi1sk.startswith(prefix)  # (CRM grants share the index)
    return list(
        Connection.by_owner.query(f"COMPANY#{owner_id(company_id, 'company id')}", condition)
    )


def save_connection(conn: Connection, *, now: datetime | None = None) -> Connection:
    """Write ``conn`` if nobody changed it since it was read (raises ``VersionConflict``).

    Lease and schedule attributes are left as stored; ``conn`` is refreshed from the table.
    """
    conn.updated_at = iso(_now(now))
    actions: list[Action] = []
    for name, attribute in Connection.get_attributes().items():
        skip = attribute.is_hash_key or attribute.is_range_key or name in _LEASE_AND_SCHEDULE
        if skip or isinstance(attribute, VersionAttribute):
            continue
        value = getattr(conn, name)
        actions.append(attribute.remove() if value is None else attribute.set(value))
    try:
        conn.update(actions=actions, condition=Connection.pk.exists())
    except PynamoDBException as error:
        if _conditional_failure(error):
            raise VersionConflict(f"connection {conn.connection_id} changed") from error
        raise
    return conn


def update_connection(
    connection_id: str, *, now: datetime | None = None, **changes: Any
) -> Connection:
    """Read, set the named attributes, save; retries once on a version conflict.

    ``next_run_at`` (a datetime, ISO string or None) is passed on to ``set_next_run``.
    """
    if "next_run_at" in changes:
        at = changes.pop("next_run_at")
        set_next_run(connection_id, datetime.fromisoformat(at) if isinstance(at, str) else at)
    unknown = set(changes) - set(Connection.get_attributes())
    if unknown or _LEASE_AND_SCHEDULE & set(changes):
        raise ValueError(f"cannot update connection attributes {sorted(changes)}")
    for attempt in range(2):
        conn = get_connection(connection_id)
        if conn is None:
            raise LookupError(f"connection {connection_id} not found")
        for name, value in changes.items():
            setattr(conn, name, value)
        try:
            return save_connection(conn, now=now)
        except VersionConflict:
            if attempt == 1:
                raise
    raise AssertionError("unreachable")


def _update_connection_item(
    connection_id: str, actions: Sequence[Action], condition: Condition
) -> bool:
    """One conditional UpdateItem that leaves ``version`` alone. False if the condition failed.

    PynamoDB's ``Model.update`` always bumps the version, so this goes one level down to the
    model's table connection.
    """
    try:
        Connection._get_connection().update_item(
            conn_pk(connection_id), CONNECTION_SK, actions=actions, condition=condition
        )
    except PynamoDBException as error:
        if _conditional_failure(error):
            return False
        raise
    return True


def acquire_lease(connection_id: str, owner: str, seconds: float, now: datetime) -> bool:
    """Take the connection for ``seconds`` if the lease is free, expired or already ours."""
    until = iso(now + timedelta(seconds=seconds))
    free = (
        Connection.lease_until.does_not_exist()
        | (Connection.lease_until <= iso(now))
        | (Connection.lease_owner == owner)
    )
    return _update_connection_item(
        connection_id,
        [Connection.lease_owner.set(owner), Connection.lease_until.set(until)],
        Connection.pk.exists() & free,
    )


def release_lease(connection_id: str, owner: str) -> bool:
    """Give the lease back; False if ``owner`` no longer held it."""
    return _update_connection_item(
        connection_id,
        [Connection.lease_owner.remove(), Connection.lease_until.remove()],
        Connection.lease_owner == owner,
    )


def set_next_run(connection_id: str, at: datetime | None) -> bool:
    """Schedule the next pass (puts the connection in DueIndex) or, with None, unschedule it."""
    actions: list[Action]
    if at is None:
        actions = [Connection.due_shard.remove(), Connection.next_run_at.remove()]
    else:
        actions = [
            Connection.due_shard.set(due_shard(connection_id)),
            Connection.next_run_at.set(iso(at)),
        ]
    return _update_connection_item(connection_id, actions, Connection.pk.exists())


def _hints(side: str) -> Any:
    return Connection.pending_crm_ids if side == "crm" else Connection.pending_provider_ids


def add_hints(connection_id: str, ids: Sequence[str], side: str = "crm") -> bool:
    """Remember contacts of ``side`` for the next pass to re-read. False when the connection is
    gone or already remembers MAX_HINTS_PER_SIDE (then the request must carry them itself)."""
    if not ids:
        return True
    hints = _hints(side)
    room = hints.does_not_exist() | (size(hints) < MAX_HINTS_PER_SIDE)  # type: ignore[no-untyped-call]
    return _update_connection_item(
        connection_id,
        [hints.add(set(ids)), Connection.hints_added.add(1)],
        Connection.pk.exists() & room,
    )


def drop_hints(connection_id: str, ids: dict[str, Sequence[str]], added: int) -> bool:
    """Forget the hints a pass has read (``ids`` by side), in one update, only if no hint was
    added since the pass found ``hints_added`` at ``added``: a push for a contact the pass had
    already read adds the same id again, and must not be forgotten with it. False when hints
    were added meanwhile (all stay; the pass their push queued re-reads them)."""
    actions = [_hints(side).delete(set(values)) for side, values in ids.items() if values]
    if not actions:
        return True
    unchanged = (
        Connection.hints_added.does_not_exist() if added == 0 else Connection.hints_added == added
    )
    return _update_connection_item(connection_id, actions, Connection.pk.exists() & unchanged)


def ring(connection_id: str, now: datetime, stale_after: timedelta) -> bool:
    """Note that a push asks for a pass. True when the caller should queue one: none is waiting
    (or the one that was has waited past ``stale_after``, e.g. parked in the dead-letter queue)."""
    free = Connection.wake_queued_at.does_not_exist() | (
        Connection.wake_queued_at < iso(now - stale_after)
    )
    return _update_connection_item(
        connection_id,
        [Connection.wake_queued_at.set(iso(now))],
        Connection.pk.exists() & free,
    )


def answer_ring(connection_id: str) -> Connection | None:
    """A pass begins: pushes from now on queue a new request. Returns the connection as it is
    after that, so the hints it holds are all that arrived before."""
    _update_connection_item(
        connection_id, [Connection.wake_queued_at.remove()], Connection.pk.exists()
    )
    return get_connection(connection_id)


def due_connections(now: datetime, limit: int = 100) -> list[str]:
    """Ids of scheduled connections whose next run is at or before ``now``, earliest first.

    Queries every DueIndex shard (the index is sparse, so only scheduled connections are read).
    """
    due: list[tuple[str, str]] = []
    for shard in range(DUE_SHARDS):
        for conn in Connection.due.query(
            f"DUE#{shard}",
            Connection.next_run_at <= iso(now),
            limit=limit,
            attributes_to_get=["connection_id", "next_run_at"],
        ):
            due.append((conn.next_run_at or "", conn.connection_id))
    return [connection_id for _, connection_id in sorted(due)[:limit]]


def forget_sync_state(connection_id: str) -> None:
    """Delete a connection's cursors, mappings and pending writes (its audit log stays).

    For a connection that now points at another account: nothing links to the old contacts.
    """
    pk = conn_pk(connection_id)
    with Cursor.batch_write() as cursors:
        for cursor in Cursor.query(pk, Cursor.sk.startswith("CURSOR#")):
            cursors.delete(cursor)
    with Mapping.batch_write() as mappings:
        for mapping in Mapping.query(pk, Mapping.sk.startswith("MAP#")):
            mappings.delete(mapping)
    with PendingWrite.batch_write() as pending:
        for op in PendingWrite.query(pk, PendingWrite.sk.startswith("OP#")):
            pending.delete(op)
    replace_review_holds(connection_id, [])
    replace_duplicate_clusters(connection_id, [])


def delete_connection(connection_id: str) -> None:
    """Delete a connection with everything under it, its audit log (mentions included) and its
    subscriptions."""
    forget_sync_state(connection_id)
    with AuditEntry.batch_write() as audit:
        for entry in AuditEntry.query(conn_pk(connection_id), AuditEntry.sk.startswith("LOG#")):
            audit.delete(entry)
    with AuditMention.batch_write() as mentions:
        for mention in AuditMention.query(_mention_pk(connection_id)):
            mentions.delete(mention)
    conn = get_connection(connection_id)
    if conn is not None:
        for subscription in subscriptions_of(conn):
            subscription.delete()
        conn.delete(add_version_condition=False)


# --- cursors ------------------------------------------------------------------------------------


def get_cursor(connection_id: str, side: str) -> Cursor | None:
    try:
        return Cursor.get(conn_pk(connection_id), f"CURSOR#{side}", consistent_read=True)
    except Cursor.DoesNotExist:
        return None


def put_cursor(
    connection_id: str,
    side: str,
    position: str,
    complete: bool,
    full: bool,
    *,
    now: datetime | None = None,
    taken_at: datetime | None = None,
) -> Cursor:
    """Store where ``side``'s change feed continues from (``taken_at`` defaults to now)."""
    moment = _now(now)
    cursor = Cursor(
        conn_pk(connection_id),
        f"CURSOR#{side}",
        side=side,
        position=position,
        complete=complete,
        full=full,
        taken_at=iso(taken_at or moment),
        updated_at=iso(moment),
    )
    cursor.save()
    return cursor


def delete_cursor(connection_id: str, side: str) -> None:
    """Forget a side's cursor: its next read is a full listing."""
    Cursor(conn_pk(connection_id), f"CURSOR#{side}").delete()


# --- mappings -----------------------------------------------------------------------------------


def get_mapping(connection_id: str, mapping_id: str) -> Mapping | None:
    try:
        return Mapping.get(conn_pk(connection_id), f"MAP#{mapping_id}", consistent_read=True)
    except Mapping.DoesNotExist:
        return None


def mapping_by_crm_id(connection_id: str, crm_id: str) -> Mapping | None:
    """The mapping of a CRM person (GSI1; eventually consistent like every index)."""
    hash_key = f"CONN#{connection_id}#CRM#{crm_id}"
    return next(iter(Mapping.by_crm_id.query(hash_key, Mapping.gsi1sk == "MAP", limit=1)), None)


def mapping_by_provider_id(connection_id: str, provider_id: str) -> Mapping | None:
    """The mapping of a provider contact (GSI2)."""
    hash_key = f"CONN#{connection_id}#PRV#{provider_id}"
    query = Mapping.by_provider_id.query(hash_key, Mapping.gsi2sk == "MAP", limit=1)
    return next(iter(query), None)


def put_mapping(
    connection_id: str,
    *,
    crm_id: str,
    provider_id: str,
    base: Contact,
    crm_version: str = "",
    provider_version: str = "",
    mapping_id: str | None = None,
    detached: str = "",
    holds: dict[str, Contact] | None = None,
    refusals: int = 0,
    now: datetime | None = None,
) -> Mapping:
    """Create or replace a mapping (a new id when ``mapping_id`` is None); keeps ``created_at``."""
    mapping_id = mapping_id or uuid.uuid4().hex
    stamp = iso(_now(now))
    mapping = Mapping(conn_pk(connection_id), f"MAP#{mapping_id}")
    mapping.update(
        actions=[
            Mapping.gsi1pk.set(f"CONN#{connection_id}#CRM#{crm_id}"),
            Mapping.gsi1sk.set("MAP"),
            Mapping.gsi2pk.set(f"CONN#{connection_id}#PRV#{provider_id}"),
            Mapping.gsi2sk.set("MAP"),
            Mapping.mapping_id.set(mapping_id),
            Mapping.connection_id.set(connection_id),
            Mapping.crm_id.set(crm_id),
            Mapping.provider_id.set(provider_id),
            Mapping.base.set(json.dumps(base.to_dict(), sort_keys=True)),
            Mapping.crm_version.set(crm_version),
            Mapping.provider_version.set(provider_version),
            Mapping.detached.set(detached),
            Mapping.holds.set(
                json.dumps({k: c.to_dict() for k, c in holds.items()}, sort_keys=True)
            )
            if holds
            else Mapping.holds.remove(),
            Mapping.refusals.set(refusals),
            Mapping.created_at.set(Mapping.created_at | stamp),
            Mapping.updated_at.set(stamp),
        ]
    )
    return mapping


def delete_mapping(connection_id: str, mapping_id: str) -> None:
    Mapping(conn_pk(connection_id), f"MAP#{mapping_id}").delete()


def iter_mappings(connection_id: str, page_size: int = 500) -> Iterator[Mapping]:
    """Every mapping of a connection, read a page at a time."""
    pk = conn_pk(connection_id)
    yield from Mapping.query(pk, Mapping.sk.startswith("MAP#"), page_size=page_size)


def count_mappings(connection_id: str) -> int:
    """Linked pairs: mappings not detached (a detached pair syncs nothing)."""
    pk = conn_pk(connection_id)
    linked = Mapping.detached.does_not_exist() | (Mapping.detached == "")
    return Mapping.count(pk, Mapping.sk.startswith("MAP#"), filter_condition=linked)


# --- pending writes -----------------------------------------------------------------------------


def put_pending(
    connection_id: str,
    *,
    side: str,
    kind: str,
    mapping_id: str,
    payload: dict[str, Any],
    target_id: str = "",
    op_id: str | None = None,
    now: datetime | None = None,
) -> PendingWrite:
    """Record a write before it is sent, so a crash can be recovered without a duplicate."""
    op_id = op_id or uuid.uuid4().hex
    pending = PendingWrite(
        conn_pk(connection_id),
        f"OP#{op_id}",
        op_id=op_id,
        side=side,
        kind=kind,
        mapping_id=mapping_id,
        target_id=target_id,
        payload=json.dumps(payload, sort_keys=True),
        created_at=iso(_now(now)),
    )
    pending.save()
    return pending


def list_pending(connection_id: str) -> list[PendingWrite]:
    """The connection's pending writes, oldest first."""
    pk = conn_pk(connection_id)
    items = list(PendingWrite.query(pk, PendingWrite.sk.startswith("OP#"), consistent_read=True))
    return sorted(items, key=lambda p: (p.created_at, p.op_id))


def delete_pending(connection_id: str, op_id: str) -> None:
    PendingWrite(conn_pk(connection_id), f"OP#{op_id}").delete()


def delete_pending_many(connection_id: str, op_ids: Sequence[str]) -> None:
    """Delete several pending writes in batches of 25."""
    with PendingWrite.batch_write() as batch:
        for op_id in op_ids:
            batch.delete(PendingWrite(conn_pk(connection_id), f"OP#{op_id}"))


# --- subscriptions ------------------------------------------------------------------------------


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
        created_at=iso(_now(now)),
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


# --- audit --------------------------------------------------------------------------------------


def about_contact(connection_id: str, side: str, contact_id: str) -> str:
    """The AuditIndex key of the entries about one contact (a CRM person, a provider contact)."""
    return f"{conn_pk(connection_id)}#{'CRM' if side == 'crm' else 'PRV'}#{contact_id}"


def about_duplicates(connection_id: str) -> str:
    """The AuditIndex key of a connection's duplicate findings."""
    return f"{conn_pk(connection_id)}#DUPLICATES"


def _mention_pk(connection_id: str) -> str:
    return f"{conn_pk(connection_id)}#MENTION"


def _abouts(
    connection_id: str, kind: str, crm_id: str | None, provider_id: str | None, details: Any
) -> list[str]:
    """Where an entry is found in AuditIndex, its own key first.

    A pair's entries are all under its CRM person (whichever id support asks by, the mapping
    leads to it), an entry naming no CRM person under its provider contact, a duplicate
    finding under the connection's findings. Contacts its details list (a finding's persons
    and contacts, a merged person) are mentioned too: one more index item each.
    """
    abouts = [about_duplicates(connection_id)] if kind == "duplicate" else []
    if crm_id:
        abouts.append(about_contact(connection_id, "crm", crm_id))
    elif provider_id:
        abouts.append(about_contact(connection_id, "provider", provider_id))
    listed = details if isinstance(details, dict) else {}
    for side, key in (("crm", "crm_ids"), ("provider", "provider_ids")):
        ids = listed.get(key)
        for contact_id in ids if isinstance(ids, list) else []:
            abouts.append(about_contact(connection_id, side, str(contact_id)))
    if listed.get("merged"):
        abouts.append(about_contact(connection_id, "crm", str(listed["merged"])))
    return list(dict.fromkeys(abouts))


def audit_items(
    connection_id: str,
    kind: str,
    message: str,
    *,
    side: str | None = None,
    crm_id: str | None = None,
    provider_id: str | None = None,
    mapping_id: str | None = None,
    before: Any = None,
    after: Any = None,
    details: Any = None,
    now: datetime | None = None,
) -> tuple[AuditEntry, list[AuditMention]]:
    """An audit entry and its mentions, not yet written (see ``add_audit``)."""
    moment = _now(now)
    at = iso(moment)
    expires = moment + _audit_retention
    abouts = _abouts(connection_id, kind, crm_id, provider_id, details)
    entry = AuditEntry(
        conn_pk(connection_id),
        f"LOG#{at}#{next(_audit_seq) % 1_000_000:06d}",
        connection_id=connection_id,
        at=at,
        kind=kind,
        side=side,
        crm_id=crm_id,
        provider_id=provider_id,
        mapping_id=mapping_id,
        message=message,
        before=before,
        after=after,
        details=details,
        expires_at=expires,
        about=abouts[0] if abouts else None,
    )
    mentions = [
        AuditMention(
            _mention_pk(connection_id),
            f"{entry.sk}#{n}",
            about=about,
            kind=kind,
            at=at,
            message=message,
            expires_at=expires,
        )
        for n, about in enumerate(abouts[1:], start=1)
    ]
    return entry, mentions


def add_audit(
    connection_id: str,
    kind: str,
    message: str,
    *,
    side: str | None = None,
    crm_id: str | None = None,
    provider_id: str | None = None,
    mapping_id: str | None = None,
    before: Any = None,
    after: Any = None,
    details: Any = None,
    now: datetime | None = None,
) -> AuditEntry:
    """Append an audit entry (kept for the activity retention, 90 days unless configured).
    ``before``/``after``/``details`` are JSON-ready."""
    entry, mentions = audit_items(
        connection_id,
        kind,
        message,
        side=side,
        crm_id=crm_id,
        provider_id=provider_id,
        mapping_id=mapping_id,
        before=before,
        after=after,
        details=details,
        now=now,
    )
    entry.save()
    if mentions:
        with AuditMention.batch_write() as batch:
            for mention in mentions:
                batch.save(mention)
    return entry


def audit_about(about: str, limit: int = 1000) -> list[AuditEntry]:
    """What AuditIndex holds under ``about`` (see ``about_contact``), newest first, at most
    ``limit``: one Query. Rows carry only kind, at, side, message and details; a mention's row
    stands for its entry (``audit_entries`` reads the whole entries)."""
    return list(AuditEntry.by_about.query(about, scan_index_forward=False, limit=limit))


def audit_entries(rows: Sequence[AuditEntry]) -> list[AuditEntry]:
    """The whole entries behind AuditIndex rows, in the rows' order (one BatchGetItem per 100
    keys). An entry gone meanwhile (expired, erased) is left out."""
    keys = list(dict.fromkeys(_entry_key(row) for row in rows))
    found = {(e.pk, e.sk): e for e in AuditEntry.batch_get(keys)} if keys else {}
    return [found[key] for key in keys if key in found]


def _entry_key(row: AuditEntry) -> tuple[str, str]:
    """The key of the entry an AuditIndex row stands for (itself, or the one it mentions)."""
    if row.pk.endswith("#MENTION"):
        return row.pk.removesuffix("#MENTION"), row.sk.rsplit("#", 1)[0]
    return row.pk, row.sk


def _encode_page_cursor(key: dict[str, Any] | None) -> str | None:
    if not key:
        return None
    return base64.urlsafe_b64encode(json.dumps(key, sort_keys=True).encode()).decode()


def _decode_page_cursor(cursor: str | None, pk: str) -> dict[str, Any] | None:
    if not cursor:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (binascii.Error, ValueError) as error:
        raise InvalidPageCursor("not a page cursor") from error
    if not isinstance(key, dict) or key.get("PK") != {"S": pk}:
        raise InvalidPageCursor("page cursor of another listing")
    return key


def list_audit(
    connection_id: str, limit: int = 50, cursor: str | None = None
) -> tuple[list[AuditEntry], str | None]:
    """A page of the audit log, newest first, and the cursor of the next page (None at the end)."""
    pk = conn_pk(connection_id)
    results = AuditEntry.query(
        pk,
        AuditEntry.sk.startswith("LOG#"),
        scan_index_forward=False,
        limit=limit,
        last_evaluated_key=_decode_page_cursor(cursor, pk),
    )
    entries = list(results)
    return entries, _encode_page_cursor(results.last_evaluated_key)


def list_audit_page(
    connection_id: str,
    *,
    limit: int = 50,
    cursor: str | None = None,
    kind: str | None = None,
    max_read: int = 1000,
) -> tuple[list[AuditEntry], str | None]:
    """A page of the audit log, newest first, optionally of one ``kind``, and the next cursor.

    One key-condition query on the connection's partition. With a ``kind`` at most ``max_read``
    entries are looked at per call, so a rare kind may give a short (even empty) page with a
    cursor to go on from; the cursor is None only at the end of the log.
    """
    pk = conn_pk(connection_id)
    results = AuditEntry.query(
        pk,
        AuditEntry.sk.startswith("LOG#"),
        scan_index_forward=False,
        limit=max(limit, max_read) if kind else limit,
        page_size=min(max(limit, 50), 200) if kind else limit,
        last_evaluated_key=_decode_page_cursor(cursor, pk),
    )
    entries: list[AuditEntry] = []
    for entry in results:
        if kind is None or entry.kind == kind:
            entries.append(entry)
            if len(entries) == limit:
                break
    # PynamoDB resumes from the last entry handed out when it stopped inside a page.
    return entries, _encode_page_cursor(results.last_evaluated_key)


_AUDIT_ENTRY_ID = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z-\d{6}$")
AUDIT_ENTRY_ID_PATTERN = _AUDIT_ENTRY_ID.pattern


def audit_entry_id(entry: AuditEntry) -> str:
    """An audit entry's id in URLs: its sort key without ``LOG#``, ``#`` written as ``-``."""
    return entry.sk.removeprefix("LOG#").replace("#", "-")


def get_audit_entry(connection_id: str, entry_id: str) -> AuditEntry | None:
    """The audit entry with this id (see ``audit_entry_id``), or None."""
    if not _AUDIT_ENTRY_ID.match(entry_id):
        return None
    sk = f"LOG#{entry_id[:-7]}#{entry_id[-6:]}"
    try:
        return AuditEntry.get(conn_pk(connection_id), sk, consistent_read=True)
    except AuditEntry.DoesNotExist:
        return None


# --- pass outcomes (the status page) ------------------------------------------------------------

PASS_OUTCOME_SHARDS = 4  # items per provider per minute; a pass adds to one picked at random
PASS_OUTCOME_RETENTION = timedelta(days=1)


def _minute(moment: datetime) -> str:
    return iso(moment)[:16]  # "2025-03-01T12:34"


def claim_key(
    company_id: str,
    user_id: str,
    key: str,
    *,
    owner: str,
    seconds: float,
    now: datetime | None = None,
) -> bool:
    """Claim a normalised contact key for ``owner`` (a connection) among the user's connections,
    for ``seconds``: a conditional put that succeeds when the key is free, lapsed, or already
    ``owner``'s. False when another connection holds it."""
    moment = _now(now)
    claim = KeyClaim(
        f"CLAIM#{company_id}#{user_id}",
        f"KEY#{key}",
        owner=owner,
        until=iso(moment + timedelta(seconds=seconds)),
        expires_at=moment + timedelta(seconds=seconds) + timedelta(hours=1),
    )
    free = KeyClaim.pk.does_not_exist() | (KeyClaim.until <= iso(moment))
    try:
        claim.save(condition=free | (KeyClaim.owner == owner))
    except PynamoDBException as error:
        if _conditional_failure(error):
            return False
        raise
    return True


def release_key(company_id: str, user_id: str, key: str, *, owner: str) -> None:
    """Let go of one key ``owner`` claimed (a conditional delete: another's claim stays)."""
    try:
        KeyClaim(f"CLAIM#{company_id}#{user_id}", f"KEY#{key}").delete(
            condition=KeyClaim.owner == owner
        )
    except PynamoDBException as error:
        if not _conditional_failure(error):
            raise


def release_claims(company_id: str, user_id: str, owner: str) -> None:
    """Forget the key claims ``owner`` (a connection) holds: they name contacts' keys."""
    claims = KeyClaim.query(f"CLAIM#{company_id}#{user_id}", KeyClaim.sk.startswith("KEY#"))
    with KeyClaim.batch_write() as batch:
        for claim in claims:
            if claim.owner == owner:
                batch.delete(claim)


def review_holds(connection_id: str, side: str, contact_ids: Sequence[str]) -> set[str]:
    """Which of ``contact_ids`` are held for review (a batch get by key, 100 at a time)."""
    keys = [(conn_pk(connection_id), f"HOLD#{side}#{c}") for c in dict.fromkeys(contact_ids)]
    return {hold.contact_id for hold in ReviewHold.batch_get(keys)}


def replace_review_holds(
    connection_id: str, holds: Sequence[tuple[str, str, str]], now: datetime | None = None
) -> None:
    """The holds a full listing found, (side, contact id, reason), replacing the earlier ones."""
    pk = conn_pk(connection_id)
    with ReviewHold.batch_write() as batch:
        for old in ReviewHold.query(pk, ReviewHold.sk.startswith("HOLD#")):
            batch.delete(old)
    stamp = iso(_now(now))
    with ReviewHold.batch_write() as batch:
        for side, contact_id, reason in holds:
            batch.save(
                ReviewHold(
                    pk,
                    f"HOLD#{side}#{contact_id}",
                    side=side,
                    contact_id=contact_id,
                    reason=reason,
                    created_at=stamp,
                )
            )


def _clusters_pk(connection_id: str) -> str:
    return f"{conn_pk(connection_id)}#CLUSTERS"


def replace_duplicate_clusters(
    connection_id: str,
    clusters: Sequence[tuple[Sequence[str], Sequence[str]]],
    now: datetime | None = None,
) -> None:
    """The clusters a full listing of the CRM found, (crm ids, shared keys), replacing the
    earlier ones; a cluster found again unchanged is not written again."""
    pk = _clusters_pk(connection_id)
    wanted = {f"CLUSTER#{ids[0]}": (list(ids), list(keys)) for ids, keys in clusters if ids}
    stamp = iso(_now(now))
    with DuplicateCluster.batch_write() as batch:
        for old in DuplicateCluster.query(pk, DuplicateCluster.sk.startswith("CLUSTER#")):
            if wanted.get(old.sk) == (list(old.crm_ids), list(old.keys)):
                del wanted[old.sk]
            elif old.sk not in wanted:
                batch.delete(old)
        for sk, (ids, keys) in wanted.items():
            batch.save(DuplicateCluster(pk, sk, crm_ids=ids, keys=keys, found_at=stamp))


def list_duplicate_clusters(connection_id: str) -> list[DuplicateCluster]:
    """The clusters the last full listing of the CRM found (one Query, by cluster)."""
    pk = _clusters_pk(connection_id)
    return list(DuplicateCluster.query(pk, DuplicateCluster.sk.startswith("CLUSTER#")))


def record_pass_outcome(provider: str, ok: bool, error_code: str | None, at: datetime) -> None:
    """Count one pass that touched ``provider`` in the minute of ``at`` (one atomic update)."""
    add_pass_outcomes(provider, at, 1, 0 if ok else 1, {error_code} if error_code else set())


def add_pass_outcomes(  # one provider's counts of one minute
    provider: str, at: datetime, passes: int, errors: int, error_codes: set[str]
) -> None:
    """Add ``passes`` (``errors`` of them failed) to ``provider``'s counts of the minute of
    ``at``: one atomic update, whatever the numbers."""
    minute = _minute(at)
    shard = random.randrange(PASS_OUTCOME_SHARDS)  # noqa: S311 - spreading writes, not a secret
    item = PassOutcomes(f"STATUS#{provider}#{minute}#{shard}", "COUNTS")
    actions: list[Action] = [
        PassOutcomes.provider.set(provider),
        PassOutcomes.minute.set(minute),
        PassOutcomes.passes.add(passes),
        PassOutcomes.expires_at.set(at + PASS_OUTCOME_RETENTION),
    ]
    if errors:
        actions.append(PassOutcomes.errors.add(errors))
    if error_codes:
        actions.append(PassOutcomes.error_codes.add(set(error_codes)))
    item.update(actions=actions)


def pass_outcomes(providers: Sequence[str], now: datetime, minutes: int) -> list[PassOutcomes]:
    """The outcome counters of ``providers`` for the last ``minutes`` minutes up to ``now``.

    Read by key (batch get): providers x minutes x shards items, absent ones skipped.
    """
    keys = [
        (f"STATUS#{provider}#{_minute(now - timedelta(minutes=back))}#{shard}", "COUNTS")
        for provider in providers
        for back in range(minutes)
        for shard in range(PASS_OUTCOME_SHARDS)
    ]
    return list(PassOutcomes.batch_get(keys)) if keys else []


# --- CRM grants ---------------------------------------------------------------------------------


def put_crm_grant(
    company_id: str,
    user_id: str,
    tokens: bytes,
    *,
    replacing: str | None = None,
    now: datetime | None = None,
) -> bool:
    """Store a user's CRM tokens; ``tokens`` must already be sealed by the vault.

    With ``replacing`` (the ``updated_at`` of the grant they were refreshed from), only if
    nobody stored newer ones meanwhile: False then, and nothing is written. Two connections of
    a user share one grant, and a rotated refresh token must never be overwritten by a stale one.
    """
    grant = CrmGrant(
        user_pk(company_id, user_id),
        "CRM",
        company_id=company_id,
        user_id=user_id,
        tokens=tokens,
        updated_at=iso(_now(now)),
        gsi1pk=f"COMPANY#{company_id}",
        gsi1sk=f"CRM#USER#{user_id}",
    )
    try:
        grant.save(condition=CrmGrant.updated_at == replacing if replacing else None)
    except PynamoDBException as error:
        if replacing and _conditional_failure(error):
            return False
        raise
    return True


def crm_grant_users(company_id: str) -> list[str]:
    """The users of a company who connected their CRM account (GSI1)."""
    key = f"COMPANY#{owner_id(company_id, 'company id')}"
    grants = CrmGrant.by_company.query(key, CrmGrant.gsi1sk.startswith("CRM#USER#"))
    return [grant.user_id for grant in grants]


def get_crm_grant(company_id: str, user_id: str) -> CrmGrant | None:
    try:
        return CrmGrant.get(user_pk(company_id, user_id), "CRM", consistent_read=True)
    except CrmGrant.DoesNotExist:
        return None


def delete_crm_grant(company_id: str, user_id: str) -> None:
    CrmGrant(user_pk(company_id, user_id), "CRM").delete()


def _crm_sign_in_pk(state: str) -> str:
    # The state travels in URLs; the table keeps only its hash.
    return f"CRMAUTH#{hashlib.sha256(state.encode()).hexdigest()}"


def put_crm_sign_in(company_id: str, user_id: str, state: str, sealed_flow: bytes) -> None:
    """Keep a CRM sign-in in flight (it expires in an hour), found again by its state alone."""
    moment = utcnow()
    CrmAuthorization(
        _crm_sign_in_pk(state),
        "CRM_AUTH",
        company_id=owner_id(company_id, "company id"),
        user_id=owner_id(user_id, "user id"),
        oauth_state=sealed_flow,
        created_at=iso(moment),
        expires_at=moment + CRM_AUTHORIZATION_LIFETIME,
    ).save()


def get_crm_sign_in(state: str) -> CrmAuthorization | None:
    """The CRM sign-in this state started, unless there is none or it expired."""
    try:
        item = CrmAuthorization.get(_crm_sign_in_pk(state), "CRM_AUTH", consistent_read=True)
    except CrmAuthorization.DoesNotExist:
        return None
    if item.expires_at <= utcnow():  # TTL deletion is lazy: check the time ourselves
        return None
    return item


def delete_crm_sign_in(state: str) -> None:
    CrmAuthorization(_crm_sign_in_pk(state), "CRM_AUTH").delete()
