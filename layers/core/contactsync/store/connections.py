"""Connection items: create, read, save, and the updates that leave ``version`` alone.

Connections are written two ways, so that neither clobbers the other:

- ``save_connection`` writes what the user and the passes change (state, progress, tokens ...)
  under optimistic locking (``version``): a stale copy raises ``VersionConflict``.
- The lease (``acquire_lease`` / ``release_lease``) and the schedule (``set_next_run``) are
  single conditional updates that neither check nor bump ``version``, and ``save_connection``
  never writes them. So the scheduler can reschedule a connection while a pass holds it.

``now`` parameters take an aware ``datetime``; when omitted the current UTC time is used.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from pynamodb.attributes import VersionAttribute
from pynamodb.exceptions import PynamoDBException
from pynamodb.expressions.condition import Condition, size
from pynamodb.expressions.update import Action

from contactsync.store.audit import delete_audit
from contactsync.store.credentials import delete_credentials, put_credentials
from contactsync.store.cursors import delete_cursors
from contactsync.store.duplicates import replace_duplicate_clusters, replace_review_holds
from contactsync.store.keys import conn_pk, owner_id
from contactsync.store.mappings import delete_mappings
from contactsync.store.models import DUE_SHARDS, Connection, conditional_failure, iso, utcnow
from contactsync.store.pending_items import delete_all_pending
from contactsync.store.subscriptions import subscriptions_of

CONNECTION_SK = "CONNECTION"
# Written only by their own conditional updates, never by save_connection (webhooks change the
# last two while a pass holds the connection).
_LEASE_AND_SCHEDULE = frozenset(
    {
        "lease_owner",
        "lease_until",
        "due_shard",
        "next_run_at",
        "claimed_until",
        "pending_crm_ids",
        "pending_provider_ids",
        "wake_queued_at",
    }
)
# Contacts remembered per side for the next pass to re-read; beyond it, pushes carry their own.
MAX_HINTS_PER_SIDE = 1000


class VersionConflict(Exception):
    """The connection changed since it was read: read it again and re-apply the change."""


def due_shard(connection_id: str) -> str:
    """The DueIndex partition of a connection: a stable hash of its id over ``DUE_SHARDS``."""
    digest = hashlib.sha256(connection_id.encode()).digest()
    return f"DUE#{int.from_bytes(digest[:4], 'big') % DUE_SHARDS}"


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
    stamp = iso(now or utcnow())
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
    found = Connection.by_owner.query(f"COMPANY#{owner_id(company_id, 'company id')}", condition)
    keys = [(conn.pk, conn.sk) for conn in found]  # the index holds keys only
    by_key = {(c.pk, c.sk): c for c in Connection.batch_get(keys)} if keys else {}
    return [by_key[key] for key in keys if key in by_key]


def save_connection(conn: Connection, *, now: datetime | None = None) -> Connection:
    """Write ``conn`` if nobody changed it since it was read (raises ``VersionConflict``).

    Lease and schedule attributes are left as stored; ``conn`` is refreshed from the table.
    """
    conn.updated_at = iso(now or utcnow())
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
        if conditional_failure(error):
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
    if "credentials" in changes:  # sealed tokens: an item of their own
        if get_connection(connection_id) is None:
            raise LookupError(f"connection {connection_id} not found")
        put_credentials(connection_id, changes.pop("credentials"), now=now)
        if not changes:
            conn = get_connection(connection_id)
            assert conn is not None
            return conn
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
        if conditional_failure(error):
            return False
        raise
    return True


def acquire_lease(
    connection_id: str, owner: str, seconds: float, now: datetime, *, answer_ring: bool = False
) -> bool:
    """Take the connection for ``seconds`` if the lease is free, expired or already ours.

    ``answer_ring``: a pass begins, so pushes from now on queue another one (``answer_ring``,
    in the same write).
    """
    until = iso(now + timedelta(seconds=seconds))
    free = (
        Connection.lease_until.does_not_exist()
        | (Connection.lease_until <= iso(now))
        | (Connection.lease_owner == owner)
    )
    actions: list[Action] = [Connection.lease_owner.set(owner), Connection.lease_until.set(until)]
    if answer_ring:
        actions.append(Connection.wake_queued_at.remove())
    return _update_connection_item(connection_id, actions, Connection.pk.exists() & free)


def release_lease(
    connection_id: str, owner: str, *, now: datetime | None = None, **changes: Any
) -> bool:
    """Give the lease back, setting ``changes`` (as ``set_attributes``) in the same write; False
    if ``owner`` no longer held it (then ``changes`` are written on their own)."""
    actions: list[Action] = [Connection.lease_owner.remove(), Connection.lease_until.remove()]
    if changes:
        actions += _attribute_actions(connection_id, changes, now)
    if _update_connection_item(connection_id, actions, Connection.lease_owner == owner):
        return True
    if changes:
        set_attributes(connection_id, now=now, **changes)
    return False


def _attribute_actions(
    connection_id: str, changes: dict[str, Any], now: datetime | None
) -> list[Action]:
    """SET (or REMOVE, for None) of each named attribute, ``updated_at``, and ``version`` moved
    on so that a copy read before fails ``save_connection``. ``next_run_at`` (a datetime, ISO
    string or None) moves the connection in DueIndex as ``set_next_run`` does."""
    actions: list[Action] = []
    if "next_run_at" in changes:
        at = changes.pop("next_run_at")
        moment = datetime.fromisoformat(at) if isinstance(at, str) else at
        actions += _schedule_actions(connection_id, moment)
    attributes = Connection.get_attributes()
    unknown = set(changes) - set(attributes)
    if unknown or _LEASE_AND_SCHEDULE & set(changes):
        raise ValueError(f"cannot update connection attributes {sorted(changes)}")
    for name, value in changes.items():
        attribute = attributes[name]
        if value is None:
            actions.append(attribute.remove())
        else:
            actions.append(attribute.set(value))
    actions.append(Connection.updated_at.set(iso(now or utcnow())))
    actions.append(Connection.version.add(1))
    return actions


def set_attributes(connection_id: str, *, now: datetime | None = None, **changes: Any) -> bool:
    """Set the named attributes (None removes one) in one UpdateItem, without reading the item
    first; False when the connection is gone. The attributes not named stay as stored."""
    if not changes:
        return True
    actions = _attribute_actions(connection_id, dict(changes), now)
    return _update_connection_item(connection_id, actions, Connection.pk.exists())


def _schedule_actions(connection_id: str, at: datetime | None) -> list[Action]:
    """A new schedule; it lets go of the scheduler's claim on the last one."""
    if at is None:
        return [
            Connection.due_shard.remove(),
            Connection.next_run_at.remove(),
            Connection.claimed_until.remove(),
        ]
    return [
        Connection.due_shard.set(due_shard(connection_id)),
        Connection.next_run_at.set(iso(at)),
        Connection.claimed_until.remove(),
    ]


def claim_due(connection_id: str, now: datetime, until: datetime) -> bool:
    """The scheduler takes a due connection until ``until`` (its pass is queued): False if it is
    no longer due or already claimed. Set in place, leaving DueIndex alone: the connection stays
    due until its pass (or anything else) schedules it anew, and is claimed again once
    ``until`` has passed (a pass that never came)."""
    unclaimed = Connection.claimed_until.does_not_exist() | (Connection.claimed_until <= iso(now))
    return _update_connection_item(
        connection_id,
        [Connection.claimed_until.set(iso(until))],
        Connection.pk.exists() & (Connection.next_run_at <= iso(now)) & unclaimed,
    )


def set_next_run(connection_id: str, at: datetime | None) -> bool:
    """Schedule the next pass (puts the connection in DueIndex) or, with None, unschedule it."""
    return _update_connection_item(
        connection_id, _schedule_actions(connection_id, at), Connection.pk.exists()
    )


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
        ):  # keys only: the connection's id is its partition key's
            due.append((conn.next_run_at or "", conn.pk.removeprefix("CONN#")))
    return [connection_id for _, connection_id in sorted(due)[:limit]]


def forget_sync_state(connection_id: str) -> None:
    """Delete a connection's cursors, mappings and pending ops (its audit log stays).

    For a connection that now points at another account: nothing links to the old contacts.
    """
    delete_cursors(connection_id)
    delete_mappings(connection_id)
    delete_all_pending(connection_id)
    replace_review_holds(connection_id, [])
    replace_duplicate_clusters(connection_id, [])


def delete_connection(connection_id: str) -> None:
    """Delete a connection with everything under it, its audit log (mentions included) and its
    subscriptions."""
    forget_sync_state(connection_id)
    delete_audit(connection_id)
    conn = get_connection(connection_id)
    if conn is not None:
        for subscription in subscriptions_of(conn):
            subscription.delete()
        delete_credentials(connection_id)
        conn.delete(add_version_condition=False)
