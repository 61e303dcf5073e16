"""The store's item modules against DynamoDB Local, on a fresh table per test (``table``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from contactsync.contacts.model import Contact, Email
from contactsync.store.audit import (
    AUDIT_RETENTION_DAYS,
    InvalidPageCursor,
    about_contact,
    about_duplicates,
    add_audit,
    audit_about,
    audit_entries,
    keep_activity_for,
    list_audit,
)
from contactsync.store.connections import (
    MAX_HINTS_PER_SIDE,
    VersionConflict,
    acquire_lease,
    add_hints,
    answer_ring,
    claim_due,
    create_connection,
    delete_connection,
    drop_hints,
    due_connections,
    due_shard,
    forget_sync_state,
    get_connection,
    list_connections,
    release_lease,
    ring,
    save_connection,
    set_next_run,
    update_connection,
)
from contactsync.store.credentials import credentials_of, put_credentials
from contactsync.store.crm_grants import (
    crm_grant_users,
    delete_crm_grant,
    delete_crm_sign_in,
    get_crm_grant,
    get_crm_sign_in,
    put_crm_grant,
    put_crm_sign_in,
)
from contactsync.store.cursors import delete_cursor, get_cursor, put_cursor
from contactsync.store.duplicates import (
    list_duplicate_clusters,
    replace_duplicate_clusters,
    replace_review_holds,
    review_holds,
)
from contactsync.store.key_claims import claim_key, claimed_person, settle_key
from contactsync.store.mappings import (
    count_mappings,
    delete_mapping,
    get_mapping,
    iter_mappings,
    mapping_by_crm_id,
    mapping_by_provider_id,
    put_mapping,
)
from contactsync.store.models import DUE_SHARDS, MODELS, AuditEntryItem, Connection, iso
from contactsync.store.pending_items import (
    delete_pending,
    delete_pending_many,
    list_pending,
    put_pending,
)
from contactsync.store.subscriptions import (
    delete_subscription,
    get_subscriptions,
    put_subscription,
    subscriptions_of,
)
from contactsync.sync.push import secret_hash

pytestmark = pytest.mark.usefixtures("table")

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def a_connection(company: str = "c1", user: str = "u1", **fields: Any) -> Connection:
    return create_connection(
        company_id=company, user_id=user, provider="microsoft", now=NOW, **fields
    )


@pytest.fixture
def dynamodb_operations() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Every DynamoDB operation the store sends, with its parameters."""
    calls: list[tuple[str, dict[str, Any]]] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        calls.append((model.name, dict(params)))

    clients = {id(c): c for c in (m._get_connection().connection.client for m in MODELS)}
    for client in clients.values():
        client.meta.events.register("before-parameter-build.dynamodb", record)
    yield calls
    for client in clients.values():
        client.meta.events.unregister("before-parameter-build.dynamodb", record)


# --- connections --------------------------------------------------------------------------------


def test_a_created_connection_is_read_back_and_an_unknown_id_is_none() -> None:
    # Given a stored connection
    created = a_connection(folder_id="f1", direction="to_crm")
    # When it is read by id
    found = get_connection(created.connection_id)
    # Then every field is there, at version 1, and an unknown id gives None
    assert found is not None
    assert (found.company_id, found.user_id, found.provider) == ("c1", "u1", "microsoft")
    assert (found.state, found.direction, found.folder_id) == ("configuring", "to_crm", "f1")
    assert found.version == 1
    assert found.created_at == iso(NOW)
    assert get_connection("nope") is None


def test_a_connection_id_cannot_be_created_twice() -> None:
    a_connection(connection_id="same")
    with pytest.raises(Exception, match="ConditionalCheckFailed"):
        a_connection(connection_id="same")


def test_connections_are_listed_by_company_and_by_user() -> None:
    # Given connections of two users of one company and one of another company
    mine = a_connection(user="u1")
    theirs = a_connection(user="u2")
    a_connection(company="other", user="u1")
    # When listing
    company = {c.connection_id for c in list_connections("c1")}
    user = {c.connection_id for c in list_connections("c1", "u1")}
    # Then the company sees both of its own, the user only theirs
    assert company == {mine.connection_id, theirs.connection_id}
    assert user == {mine.connection_id}


def test_saving_a_stale_copy_is_a_version_conflict() -> None:
    # Given two copies of one connection read at the same version
    conn = a_connection()
    first = get_connection(conn.connection_id)
    second = get_connection(conn.connection_id)
    assert first is not None and second is not None
    # When the first is saved, then the second
    first.state = "active"
    save_connection(first)
    second.state = "paused"
    # Then the second is refused and the first change stands
    with pytest.raises(VersionConflict):
        save_connection(second)
    stored = get_connection(conn.connection_id)
    assert stored is not None
    assert (stored.state, stored.version) == ("active", 2)


def test_a_save_leaves_the_lease_and_the_schedule_alone() -> None:
    # Given a copy read before the connection was leased and scheduled
    conn = a_connection()
    copy = get_connection(conn.connection_id)
    assert copy is not None
    assert acquire_lease(conn.connection_id, "worker-1", 60, NOW)
    assert set_next_run(conn.connection_id, NOW)
    # When that copy is saved
    copy.folder_name = "Contacts"
    save_connection(copy)
    # Then the save went through and the lease and schedule survived it
    stored = get_connection(conn.connection_id)
    assert stored is not None
    assert stored.folder_name == "Contacts"
    assert (stored.lease_owner, stored.next_run_at) == ("worker-1", iso(NOW))


def test_update_connection_sets_maps_lists_tokens_and_the_schedule() -> None:
    # Given a connection
    conn = a_connection()
    # When several kinds of attribute are updated at once
    update_connection(
        conn.connection_id,
        state="syncing_initial",
        progress={"phase": "listing", "done": 3, "total": 10},
        last_error={"code": "throttled", "message": "slow down", "at": iso(NOW)},
        counts={"created": 2},
        held_plan={"deletes": 40},
        subscription_ids=["s1"],
        credentials=b"\x01sealed",
        next_run_at=NOW + timedelta(minutes=5),
    )
    # Then they all read back
    stored = get_connection(conn.connection_id)
    assert stored is not None and stored.progress is not None and stored.last_error is not None
    assert (stored.progress.phase, stored.progress.done, stored.progress.total) == (
        "listing",
        3,
        10,
    )
    assert stored.last_error.code == "throttled"
    assert stored.counts is not None and stored.counts.as_dict() == {"created": 2}
    assert stored.held_plan == {"deletes": 40}
    assert stored.subscription_ids == ["s1"]
    assert credentials_of(stored) == b"\x01sealed"
    assert stored.next_run_at == iso(NOW + timedelta(minutes=5))
    # And clearing works too
    update_connection(conn.connection_id, last_error=None, next_run_at=None)
    cleared = get_connection(conn.connection_id)
    assert cleared is not None
    assert cleared.last_error is None and cleared.next_run_at is None and cleared.due_shard is None


def test_update_connection_refuses_the_lease_fields() -> None:
    conn = a_connection()
    with pytest.raises(ValueError, match="lease_owner"):
        update_connection(conn.connection_id, lease_owner="me")


# --- the doorbell: pushes coalesced into one pass request -----------------------------------------


def test_pushes_ring_once_until_a_pass_answers_and_their_hints_add_up() -> None:
    conn_id = a_connection().connection_id
    # Given a push queues a pass; more pushes come before the pass begins
    assert add_hints(conn_id, ["1"])
    assert ring(conn_id, NOW, timedelta(minutes=15))
    assert add_hints(conn_id, ["2", "1"])
    assert not ring(conn_id, NOW + timedelta(seconds=5), timedelta(minutes=15))
    # When the pass begins it sees every hint; a push after that queues a pass again
    seen = answer_ring(conn_id)
    assert seen is not None and seen.pending_crm_ids == {"1", "2"}
    # And when it ends with no push meanwhile, it forgets what it read
    assert drop_hints(conn_id, {"crm": ["1", "2"]}, int(seen.hints_added or 0))
    stored = get_connection(conn_id)
    assert stored is not None and not stored.pending_crm_ids


def test_a_push_for_a_contact_the_running_pass_read_is_not_forgotten() -> None:
    conn_id = a_connection().connection_id
    # Given a pass began with person 1 to re-read
    assert add_hints(conn_id, ["1"])
    assert ring(conn_id, NOW, timedelta(minutes=15))
    seen = answer_ring(conn_id)
    assert seen is not None and seen.pending_crm_ids == {"1"}
    # When person 1 is edited again while the pass runs (the push adds the same id again)
    assert add_hints(conn_id, ["1"])
    assert ring(conn_id, NOW + timedelta(seconds=1), timedelta(minutes=15))
    # Then the pass ending does not forget it: the pass that push queued re-reads it
    assert not drop_hints(conn_id, {"crm": ["1"]}, int(seen.hints_added or 0))
    stored = get_connection(conn_id)
    assert stored is not None and stored.pending_crm_ids == {"1"}


def test_a_pass_request_that_waited_too_long_no_longer_holds_pushes_back() -> None:
    conn_id = a_connection().connection_id
    assert ring(conn_id, NOW, timedelta(minutes=15))
    # e.g. the request went to the dead-letter queue: a push 16 minutes later queues a new one
    assert ring(conn_id, NOW + timedelta(minutes=16), timedelta(minutes=15))


def test_hints_are_capped_and_a_missing_connection_takes_none() -> None:
    conn_id = a_connection().connection_id
    assert add_hints(conn_id, [str(i) for i in range(MAX_HINTS_PER_SIDE)])
    # Then one more does not fit: the caller sends it in its own request instead
    assert not add_hints(conn_id, ["one-more"])
    assert not add_hints("no-such-connection", ["1"])
    assert not ring("no-such-connection", NOW, timedelta(minutes=15))


def test_a_save_leaves_pushed_hints_alone() -> None:
    # Given a copy read before a push noted itself on the connection
    conn = a_connection()
    copy = get_connection(conn.connection_id)
    assert copy is not None
    assert add_hints(conn.connection_id, ["9"])
    assert ring(conn.connection_id, NOW, timedelta(minutes=15))
    # When the stale copy is saved, the push is still there
    copy.folder_name = "Contacts"
    save_connection(copy)
    stored = get_connection(conn.connection_id)
    assert stored is not None
    assert (stored.pending_crm_ids, stored.wake_queued_at) == ({"9"}, iso(NOW))


# --- the lease ----------------------------------------------------------------------------------


def test_a_lease_is_exclusive_until_it_expires_or_is_released() -> None:
    # Given a connection leased by worker 1 for 60 seconds
    conn_id = a_connection().connection_id
    assert acquire_lease(conn_id, "worker-1", 60, NOW)
    # Then worker 2 cannot take it while it runs; worker 1 may renew it
    assert not acquire_lease(conn_id, "worker-2", 60, NOW + timedelta(seconds=30))
    assert acquire_lease(conn_id, "worker-1", 60, NOW + timedelta(seconds=30))
    # And once it has expired, worker 2 can take it
    assert acquire_lease(conn_id, "worker-2", 60, NOW + timedelta(seconds=91))
    # And only the owner can release it, after which anyone can take it
    assert not release_lease(conn_id, "worker-1")
    assert release_lease(conn_id, "worker-2")
    assert acquire_lease(conn_id, "worker-3", 60, NOW + timedelta(seconds=92))


def test_a_key_claim_is_shared_by_a_users_connections_and_lapses() -> None:
    def claim(owner: str, seconds_later: float, user: str = "u1") -> bool:
        moment = NOW + timedelta(seconds=seconds_later)
        return claim_key("c1", user, "email:ada@x.com", owner=owner, seconds=300, now=moment)

    # Given the user's Google connection claims Ada's email
    assert claim("google-conn", 0)
    # Then the user's Outlook connection cannot, in the same instant or minutes later
    assert not claim("outlook-conn", 0)
    assert not claim("outlook-conn", 299)
    # While the Google one may claim it again (a pass finishing a crashed one), and another user
    assert claim("google-conn", 10)
    assert claim("outlook-conn", 0, user="u2")
    # And once it lapsed (the table's TTL removes it later), the Outlook connection can
    assert claim("outlook-conn", 311)
    assert not claim("google-conn", 312)


def test_a_settled_claim_names_its_person_until_that_person_is_gone() -> None:
    key = "email:byron@x.com"
    # Given the Google connection made Byron under its claim, and settled the claim on him
    assert claim_key("c1", "u1", key, owner="google-conn", seconds=300, now=NOW)
    assert claimed_person("c1", "u1", key) == ""  # being made
    settle_key("c1", "u1", key, owner="outlook-conn", made="p9")  # not its claim: no effect
    settle_key("c1", "u1", key, owner="google-conn", made="p7")
    # Then the claim names him, and still keeps the Outlook connection from making him too
    assert claimed_person("c1", "u1", key) == "p7"
    assert not claim_key("c1", "u1", key, owner="outlook-conn", seconds=300, now=NOW)
    assert not claim_key(
        "c1", "u1", key, owner="outlook-conn", seconds=300, now=NOW, replacing="p8"
    )
    # And once he is gone, the Outlook connection may take the claim over to make him again
    assert claim_key("c1", "u1", key, owner="outlook-conn", seconds=300, now=NOW, replacing="p7")
    assert claimed_person("c1", "u1", key) == ""
    assert not claim_key("c1", "u1", key, owner="google-conn", seconds=300, now=NOW, replacing="p7")


def test_key_claims_race_to_one_winner() -> None:
    # Given eight connections claiming the same key at once, each on its own client thread
    with ThreadPoolExecutor(max_workers=8) as pool:
        won = list(
            pool.map(
                lambda i: claim_key(
                    "c1", "u1", "phone:+14155550100", owner=f"conn-{i}", seconds=300, now=NOW
                ),
                range(8),
            )
        )
    # Then exactly one of them has it
    assert won.count(True) == 1


def test_a_lease_on_a_missing_connection_is_refused() -> None:
    assert not acquire_lease("missing", "worker-1", 60, NOW)


def test_the_lease_does_not_change_the_version() -> None:
    conn = a_connection()
    acquire_lease(conn.connection_id, "worker-1", 60, NOW)
    release_lease(conn.connection_id, "worker-1")
    stored = get_connection(conn.connection_id)
    assert stored is not None and stored.version == 1


def test_sealed_tokens_live_apart_from_the_connection_item_and_move_there_when_resealed() -> None:
    # Given a connection item that still carries its tokens, as items did before
    conn = a_connection()
    conn.legacy_credentials = b"\x01old"
    save_connection(conn)
    stored = get_connection(conn.connection_id)
    assert stored is not None and credentials_of(stored) == b"\x01old"
    # When the tokens are sealed anew
    put_credentials(conn.connection_id, b"\x01new" * 400)
    # Then they are read from their own item, and the connection item stays small
    stored = get_connection(conn.connection_id)
    assert stored is not None and stored.legacy_credentials is None
    assert credentials_of(stored) == b"\x01new" * 400
    # And deleting the connection deletes them
    delete_connection(conn.connection_id)
    assert credentials_of(stored) is None


# --- the schedule -------------------------------------------------------------------------------


def test_due_connections_are_only_the_due_ones_earliest_first(
    dynamodb_operations: list[tuple[str, dict[str, Any]]],
) -> None:
    # Given connections due in the past, due now, due later and not scheduled at all
    ids = [a_connection(user=f"u{i}").connection_id for i in range(12)]
    for minutes, conn_id in zip(range(-10, 0), ids[:10], strict=True):
        set_next_run(conn_id, NOW + timedelta(minutes=minutes))
    set_next_run(ids[10], NOW + timedelta(minutes=5))  # later
    # ids[11] never scheduled; and one that was scheduled, then unscheduled:
    set_next_run(ids[9], None)
    dynamodb_operations.clear()
    # When the scheduler asks what is due
    due = due_connections(NOW, limit=100)
    # Then it gets exactly the due ones, earliest first
    assert due == ids[:9]
    # And it read them from every shard of the DueIndex, never scanning the table
    operations = [name for name, _ in dynamodb_operations]
    assert "Scan" not in operations
    assert operations == ["Query"] * DUE_SHARDS
    assert {params["IndexName"] for _, params in dynamodb_operations} == {"DueIndex"}


def test_due_connections_honours_the_limit() -> None:
    ids = [a_connection(user=f"u{i}").connection_id for i in range(5)]
    for minutes, conn_id in enumerate(ids):
        set_next_run(conn_id, NOW - timedelta(minutes=10 - minutes))
    assert due_connections(NOW, limit=2) == ids[:2]


def test_a_claim_holds_a_due_connection_until_it_lapses_or_a_new_schedule_ends_it() -> None:
    conn_id = a_connection().connection_id
    set_next_run(conn_id, NOW - timedelta(minutes=1))
    # The scheduler claims a due connection once; a second tick finds it claimed
    assert claim_due(conn_id, NOW, NOW + timedelta(minutes=5))
    assert not claim_due(conn_id, NOW + timedelta(minutes=1), NOW + timedelta(minutes=6))
    # It stays due (its pass never came): once the claim lapses, it is claimed again
    assert due_connections(NOW + timedelta(minutes=5)) == [conn_id]
    assert claim_due(conn_id, NOW + timedelta(minutes=5), NOW + timedelta(minutes=10))
    # A new schedule (its pass finished) ends the claim; it is claimed when due again
    set_next_run(conn_id, NOW + timedelta(minutes=6))
    assert not claim_due(conn_id, NOW + timedelta(minutes=5, seconds=30), NOW)
    assert claim_due(conn_id, NOW + timedelta(minutes=6), NOW + timedelta(minutes=11))
    # An unscheduled or gone connection is never claimed
    set_next_run(conn_id, None)
    assert not claim_due(conn_id, NOW + timedelta(hours=1), NOW + timedelta(hours=2))
    assert not claim_due("gone", NOW, NOW + timedelta(minutes=5))


def test_due_shards_are_stable_and_spread() -> None:
    shards = {due_shard(f"conn-{i}") for i in range(200)}
    assert due_shard("abc") == due_shard("abc")
    assert shards == {f"DUE#{i}" for i in range(DUE_SHARDS)}


# --- cursors ------------------------------------------------------------------------------------


def test_a_cursor_is_stored_per_side_and_replaced() -> None:
    conn_id = a_connection().connection_id
    assert get_cursor(conn_id, "crm") is None
    put_cursor(conn_id, "crm", "page-2", False, True, now=NOW)
    put_cursor(conn_id, "provider", "delta-1", True, False, now=NOW)
    put_cursor(conn_id, "crm", "since-2025", True, False, now=NOW + timedelta(hours=1))
    crm = get_cursor(conn_id, "crm")
    provider = get_cursor(conn_id, "provider")
    assert crm is not None and provider is not None
    assert (crm.position, crm.complete, crm.full) == ("since-2025", True, False)
    assert crm.taken_at == iso(NOW + timedelta(hours=1))
    assert provider.position == "delta-1"
    delete_cursor(conn_id, "crm")
    assert get_cursor(conn_id, "crm") is None


# --- mappings -----------------------------------------------------------------------------------


BASE = Contact(given_name="Ada", family_name="Lovelace", emails=(Email("ada@example.com"),))


def test_a_mapping_is_found_by_id_by_crm_id_and_by_provider_id() -> None:
    # Given a mapping in one connection and one with the same ids in another
    conn_id = a_connection().connection_id
    other_id = a_connection(user="u2").connection_id
    mapping = put_mapping(
        conn_id, crm_id="p-1", provider_id="AAMk-1", base=BASE, crm_version="3", now=NOW
    )
    put_mapping(other_id, crm_id="p-1", provider_id="AAMk-1", base=Contact())
    # When looked up each way
    by_id = get_mapping(conn_id, mapping.mapping_id)
    by_crm = mapping_by_crm_id(conn_id, "p-1")
    by_provider = mapping_by_provider_id(conn_id, "AAMk-1")
    # Then each finds this connection's mapping, with its base intact
    for found in (by_id, by_crm, by_provider):
        assert found is not None
        assert found.mapping_id == mapping.mapping_id
        assert found.base_contact == BASE
        assert found.crm_version == "3"
    assert mapping_by_crm_id(conn_id, "p-2") is None
    assert mapping_by_provider_id(conn_id, "unknown") is None


def test_replacing_a_mapping_keeps_created_at_and_moves_the_index_keys() -> None:
    conn_id = a_connection().connection_id
    first = put_mapping(conn_id, crm_id="p-1", provider_id="g-1", base=BASE, now=NOW)
    later = NOW + timedelta(days=1)
    put_mapping(
        conn_id, crm_id="p-9", provider_id="g-1", base=BASE, mapping_id=first.mapping_id, now=later
    )
    stored = get_mapping(conn_id, first.mapping_id)
    assert stored is not None
    assert (stored.created_at, stored.updated_at) == (iso(NOW), iso(later))
    assert mapping_by_crm_id(conn_id, "p-1") is None
    assert mapping_by_crm_id(conn_id, "p-9") is not None


def test_mappings_are_iterated_across_pages_counted_and_deleted() -> None:
    # Given 7 mappings and a cursor item under the same connection
    conn_id = a_connection().connection_id
    made = {
        put_mapping(conn_id, crm_id=f"p{i}", provider_id=f"g{i}", base=BASE).mapping_id
        for i in range(7)
    }
    put_cursor(conn_id, "crm", "x", True, False)
    # When iterated three at a time
    seen = {m.mapping_id for m in iter_mappings(conn_id, page_size=3)}
    # Then all 7 and only mappings come back, and they count as 7
    assert seen == made
    assert count_mappings(conn_id) == 7
    delete_mapping(conn_id, made.pop())
    assert count_mappings(conn_id) == 6


# --- pending ops --------------------------------------------------------------------------------


def test_pending_writes_are_listed_oldest_first_and_deleted() -> None:
    conn_id = a_connection().connection_id
    first = put_pending(
        conn_id, side="provider", kind="create", mapping_id="m1", payload={"a": 1}, now=NOW
    )
    second = put_pending(
        conn_id,
        side="crm",
        kind="update",
        mapping_id="m2",
        target_id="p-2",
        payload={"b": 2},
        now=NOW + timedelta(seconds=1),
    )
    third = put_pending(conn_id, side="crm", kind="delete", mapping_id="m3", payload={}, now=NOW)
    listed = list_pending(conn_id)
    assert [p.op_id for p in listed][-1] == second.op_id
    assert {p.op_id for p in listed} == {first.op_id, second.op_id, third.op_id}
    assert listed[-1].target_id == "p-2" and listed[-1].payload == '{"b": 2}'
    delete_pending(conn_id, first.op_id)
    delete_pending_many(conn_id, [second.op_id])
    assert [p.op_id for p in list_pending(conn_id)] == [third.op_id]


# --- subscriptions ------------------------------------------------------------------------------


def test_subscriptions_are_found_by_id_and_through_their_connection() -> None:
    conn = a_connection()
    expires = NOW + timedelta(days=3)
    for sub_id in ("s1", "s2"):
        put_subscription(
            subscription_id=sub_id,
            connection_id=conn.connection_id,
            client_state_hash=secret_hash("secret"),
            resource="me/contactFolders/f1/contacts",
            expires_at=expires,
        )
    conn = update_connection(conn.connection_id, subscription_ids=["s1", "s2"])
    found = get_subscriptions(["s1"]).get("s1")
    assert found is not None
    assert found.connection_id == conn.connection_id
    assert found.client_state_hash == secret_hash("secret") != "secret"
    assert found.expires_at_iso == iso(expires)
    assert {s.subscription_id for s in subscriptions_of(conn)} == {"s1", "s2"}
    # And a batch of ids, repeated or unknown among them, is read in one go
    assert set(get_subscriptions(["s2", "nope", "s1", "s2"])) == {"s1", "s2"}
    assert get_subscriptions([]) == {}
    delete_subscription("s1")
    assert get_subscriptions(["s1"]).get("s1") is None


# --- audit --------------------------------------------------------------------------------------


def test_the_audit_log_pages_newest_first() -> None:
    # Given five entries a minute apart
    conn_id = a_connection().connection_id
    for i in range(5):
        add_audit(
            conn_id,
            "write",
            f"entry {i}",
            side="crm",
            before={"n": i},
            now=NOW + timedelta(minutes=i),
        )
    # When read two at a time
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        entries, cursor = list_audit(conn_id, limit=2, cursor=cursor)
        pages.append([e.message for e in entries])
        if cursor is None:
            break
    # Then the newest come first and every entry appears once
    flat = [m for page in pages for m in page]
    assert flat == [f"entry {i}" for i in (4, 3, 2, 1, 0)]
    assert pages[0] == ["entry 4", "entry 3"]


def test_audit_entries_expire_after_90_days_and_keep_their_details() -> None:
    conn_id = a_connection().connection_id
    entry = add_audit(
        conn_id, "conflict", "both changed", after={"x": [1]}, details={"k": "v"}, now=NOW
    )
    (stored,), _ = list_audit(conn_id)
    assert stored.sk == entry.sk
    assert stored.expires_at == NOW + timedelta(days=90)
    assert (stored.kind, stored.after, stored.details) == ("conflict", {"x": [1]}, {"k": "v"})


def test_an_entrys_contacts_are_stored_compressed_and_entries_from_before_still_read() -> None:
    conn_id = a_connection().connection_id
    contact = {"given_name": "Ada", "notes": "met at the conference " * 40}
    entry = add_audit(conn_id, "write", "updated", before=contact, after=contact, now=NOW)
    client = AuditEntryItem._get_connection().connection.client
    key = {"PK": {"S": entry.pk}, "SK": {"S": entry.sk}}
    raw = client.get_item(TableName=AuditEntryItem.Meta.table_name, Key=key)["Item"]
    # Stored compressed: the entry stays under 1 KB (one write unit)
    assert "B" in raw["after"] and len(raw["after"]["B"]) < 200
    # An entry written before (its contacts as JSON text) reads the same
    raw["after"] = {"S": json.dumps(contact)}
    raw["before"] = {"S": "null"}
    client.put_item(TableName=AuditEntryItem.Meta.table_name, Item=raw)
    (stored,), _ = list_audit(conn_id)
    assert (stored.before, stored.after) == (None, contact)


def test_a_foreign_page_cursor_is_refused() -> None:
    mine = a_connection().connection_id
    theirs = a_connection(user="u2").connection_id
    for conn_id in (mine, theirs):
        add_audit(conn_id, "pass", "one", now=NOW)
        add_audit(conn_id, "pass", "two", now=NOW + timedelta(seconds=1))
    _, their_cursor = list_audit(theirs, limit=1)
    with pytest.raises(InvalidPageCursor):
        list_audit(mine, cursor=their_cursor)
    with pytest.raises(InvalidPageCursor):
        list_audit(mine, cursor="%%not-base64%%")


def test_one_contacts_entries_are_one_query_of_the_audit_index(
    dynamodb_operations: list[tuple[str, dict[str, Any]]],
) -> None:
    # Given a pair's entries, a provider contact's own, a duplicate finding, a merge, and an
    # entry about no contact
    cid = a_connection().connection_id
    pair = {"crm_id": "1", "provider_id": "p1", "mapping_id": "m1"}
    finding = {"crm_ids": ["1", "3"], "provider_ids": ["p3"], "key": "email:a@x.example"}
    for seconds, (kind, message, fields) in enumerate(
        [
            ("write", "update on provider", {**pair, "before": {"job_title": "A"}}),
            ("conflict", "job_title: newest wins", {**pair, "details": {"field": "job_title"}}),
            ("error", "create on crm failed", {"provider_id": "p2", "mapping_id": "m2"}),
            ("duplicate", "2 CRM and 1 provider contacts share", {"details": finding}),
            ("merge", "CRM person 4 merged into 1", {"crm_id": "1", "details": {"merged": "4"}}),
            ("error", "the CRM could not be reached", {}),
        ]
    ):
        add_audit(cid, kind, message, now=NOW + timedelta(seconds=seconds), **fields)
    dynamodb_operations.clear()
    # When one CRM person's entries are asked for
    rows = audit_about(about_contact(cid, "crm", "1"))
    # Then they come newest first from one Query of the audit index, carrying what picks them
    assert [r.kind for r in rows] == ["merge", "duplicate", "conflict", "write"]
    assert [(op, params.get("IndexName")) for op, params in dynamodb_operations] == [
        ("Query", "AuditIndex")
    ]
    assert rows[2].details == {"field": "job_title"}
    assert rows[3].before is None  # not in the index
    # And the whole entries follow, in that order (one BatchGetItem), the finding's too: its row
    # here is a mention, the entry itself is under the connection's findings
    dynamodb_operations.clear()
    entries = audit_entries(rows)
    assert [e.message for e in entries] == [r.message for r in rows]
    assert entries[1].details == finding and entries[3].before == {"job_title": "A"}
    assert [op for op, _ in dynamodb_operations] == ["BatchGetItem"]

    # And every other contact an entry names finds it under its own id; a provider contact
    # named without a CRM person too; the connection's findings are together
    def kinds(side: str, contact_id: str) -> list[str]:
        return [r.kind for r in audit_about(about_contact(cid, side, contact_id))]

    assert (kinds("crm", "3"), kinds("provider", "p3"), kinds("crm", "4")) == (
        ["duplicate"],
        ["duplicate"],
        ["merge"],
    )
    assert kinds("provider", "p2") == ["error"]
    assert kinds("provider", "p1") == []  # a pair's entries are under its CRM person
    findings = audit_about(about_duplicates(cid))
    assert [r.details for r in findings] == [finding]
    # And the entry about no contact is in no index row (the index is sparse)
    (newest,), _ = list_audit(cid, limit=1)
    assert (newest.kind, newest.about) == ("error", None)


# --- CRM grants and sign-ins --------------------------------------------------------------------


def test_a_crm_grant_is_stored_per_user() -> None:
    assert get_crm_grant("c1", "u1") is None
    put_crm_grant("c1", "u1", b"sealed-1")
    put_crm_grant("c1", "u2", b"sealed-2")
    grant = get_crm_grant("c1", "u1")
    assert grant is not None and grant.tokens == b"sealed-1"
    delete_crm_grant("c1", "u1")
    assert get_crm_grant("c1", "u1") is None


def test_the_activity_log_keeps_entries_for_the_configured_days() -> None:
    from contactsync.runtime.settings import Settings

    assert Settings().activity_retention_days == AUDIT_RETENTION_DAYS == 90
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    try:
        keep_activity_for(
            Settings.from_env({"ACTIVITY_RETENTION_DAYS": "7"}).activity_retention_days
        )
        entry = add_audit("c-ret", "write", "kept a week", now=moment)
    finally:
        keep_activity_for(AUDIT_RETENTION_DAYS)
    assert entry.expires_at == moment + timedelta(days=7)
    assert add_audit("c-ret", "write", "default", now=moment).expires_at == moment + timedelta(
        days=90
    )


def test_a_refreshed_crm_grant_never_overwrites_a_newer_one() -> None:
    # Given a grant two connections of the user share
    put_crm_grant("c1", "u1", b"sealed-0")
    first = get_crm_grant("c1", "u1")
    assert first is not None
    # When one connection stores its refresh over it, Then it is written
    assert put_crm_grant("c1", "u1", b"sealed-1", replacing=first.updated_at)
    # And the other connection's refresh, made from the same (now stale) grant, is not
    assert not put_crm_grant("c1", "u1", b"sealed-stale", replacing=first.updated_at)
    latest = get_crm_grant("c1", "u1")
    assert latest is not None and latest.tokens == b"sealed-1"


def test_a_companys_crm_grants_are_listed_by_user() -> None:
    put_crm_grant("c1", "u1", b"sealed-1")
    put_crm_grant("c1", "u2", b"sealed-2")
    put_crm_grant("c2", "u3", b"sealed-3")
    create_connection(company_id="c1", user_id="u1", provider="google", connection_id="x")
    assert sorted(crm_grant_users("c1")) == ["u1", "u2"]
    # And the company's connection listing holds connections only
    assert [c.connection_id for c in list_connections("c1")] == ["x"]


def test_a_crm_sign_in_is_found_by_its_state_alone_until_deleted() -> None:
    # Given a sign-in started by a user of a company whose id holds dots
    assert get_crm_sign_in("crm.nonce") is None
    put_crm_sign_in("acme.eu", "u.1", "crm.nonce", b"sealed-state")
    # Then its state finds who started it, and another state finds nothing
    found = get_crm_sign_in("crm.nonce")
    assert found is not None
    assert (found.company_id, found.user_id, found.oauth_state) == (
        "acme.eu",
        "u.1",
        b"sealed-state",
    )
    assert get_crm_sign_in("crm.other") is None
    delete_crm_sign_in("crm.nonce")
    assert get_crm_sign_in("crm.nonce") is None


@pytest.mark.parametrize("user_id", ["a#b", "a#", "", "a b", "x" * 129])
def test_an_id_that_could_reach_another_owners_keys_is_refused(user_id: str) -> None:
    # Given user "a" with a connection
    create_connection(company_id="c1", user_id="a", provider="google", connection_id="ca")
    # When an id with a key separator (or none at all) is used, Then nothing is stored or listed
    with pytest.raises(ValueError, match="user id"):
        create_connection(company_id="c1", user_id=user_id, provider="google")
    with pytest.raises(ValueError, match="user id"):
        list_connections("c1", user_id)
    with pytest.raises(ValueError, match="user id"):
        put_crm_grant("c1", user_id, b"sealed")
    assert [c.connection_id for c in list_connections("c1")] == ["ca"]


def test_one_users_listing_never_holds_a_user_whose_id_starts_like_it() -> None:
    # Given users "a" and "a.b" (a dot is allowed) of one company
    create_connection(company_id="c1", user_id="a", provider="google", connection_id="ca")
    create_connection(company_id="c1", user_id="a.b", provider="google", connection_id="cab")
    # Then each lists their own only
    assert [c.connection_id for c in list_connections("c1", "a")] == ["ca"]
    assert [c.connection_id for c in list_connections("c1", "a.b")] == ["cab"]


# --- forgetting and deleting --------------------------------------------------------------------


def test_forget_sync_state_keeps_the_connection_and_its_audit() -> None:
    conn_id = a_connection().connection_id
    put_cursor(conn_id, "crm", "x", True, False)
    put_mapping(conn_id, crm_id="p1", provider_id="g1", base=BASE)
    put_pending(conn_id, side="crm", kind="create", mapping_id="m", payload={})
    add_audit(conn_id, "pass", "done")
    forget_sync_state(conn_id)
    assert get_cursor(conn_id, "crm") is None
    assert count_mappings(conn_id) == 0
    assert list_pending(conn_id) == []
    assert len(list_audit(conn_id)[0]) == 1
    assert get_connection(conn_id) is not None


def test_delete_connection_removes_everything_of_it() -> None:
    conn = a_connection()
    conn_id = conn.connection_id
    put_mapping(conn_id, crm_id="p1", provider_id="g1", base=BASE)
    add_audit(conn_id, "pass", "done")
    put_subscription(
        subscription_id="s1",
        connection_id=conn_id,
        client_state_hash="h",
        resource="r",
        expires_at=NOW,
    )
    update_connection(conn_id, subscription_ids=["s1"])
    add_audit(conn_id, "duplicate", "twins", details={"crm_ids": ["p1", "p2"]})
    replace_duplicate_clusters(conn_id, [(["p1", "p2"], ["email:a@x.example"])])
    delete_connection(conn_id)
    assert get_connection(conn_id) is None
    assert count_mappings(conn_id) == 0
    assert list_audit(conn_id)[0] == []
    assert audit_about(about_contact(conn_id, "crm", "p2")) == []  # its mention too
    assert list_duplicate_clusters(conn_id) == []
    assert get_subscriptions(["s1"]).get("s1") is None


def test_review_holds_are_replaced_by_each_full_listing(table: str) -> None:
    # Given a full listing held three possible duplicates for review
    replace_review_holds(
        "c1", [("crm", "1", "twins"), ("crm", "2", "twins"), ("provider", "p9", "twins")]
    )
    # Then a later pass finds exactly those it asks about
    assert review_holds("c1", "crm", ["1", "2", "3"]) == {"1", "2"}
    assert review_holds("c1", "provider", ["p9"]) == {"p9"}
    # When the next full listing finds only one of them ambiguous
    replace_review_holds("c1", [("crm", "2", "still twins")])
    # Then the others are no longer held, and other connections never were
    assert review_holds("c1", "crm", ["1", "2"]) == {"2"}
    assert review_holds("c1", "provider", ["p9"]) == set()
    assert review_holds("c2", "crm", ["2"]) == set()


def test_duplicate_clusters_are_replaced_by_each_full_listing(
    dynamodb_operations: list[tuple[str, dict[str, Any]]],
) -> None:
    # Given a full listing found two clusters
    conn_id = a_connection().connection_id
    first = [(["1", "2"], ["email:a@x.example"]), (["5", "6", "7"], ["phone:+14155550100"])]
    replace_duplicate_clusters(conn_id, first, now=NOW)
    # When the next one finds the first again, the second without one of its persons
    dynamodb_operations.clear()
    replace_duplicate_clusters(
        conn_id, [(["1", "2"], ["email:a@x.example"]), (["5", "6"], ["phone:+14155550100"])]
    )
    # Then they are read back as found, the unchanged one not written again
    found = {tuple(c.crm_ids): list(c.keys) for c in list_duplicate_clusters(conn_id)}
    assert found == {("1", "2"): ["email:a@x.example"], ("5", "6"): ["phone:+14155550100"]}
    [(_, write)] = [(op, p) for op, p in dynamodb_operations if op == "BatchWriteItem"]
    assert len(next(iter(write["RequestItems"].values()))) == 1
    # And forgetting the sync state forgets them
    forget_sync_state(conn_id)
    assert list_duplicate_clusters(conn_id) == []
