"""The support services and their store queries against DynamoDB Local (a fresh table per test).

Both sides are in-memory fakes of our own ``ContactSide``; passes are real passes over the real
store, so what support reads (mappings, audit log, held passes) is what a pass wrote.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from contactsync.admin import duplicates as duplicate_pages
from contactsync.admin import explain as explanations
from contactsync.admin import held as held_passes
from contactsync.admin import preview as previews
from contactsync.admin import undo as history
from contactsync.admin.access import Caller
from contactsync.admin.context import AdminContext
from contactsync.admin.errors import ConflictError, InvalidRequest, NotFoundError
from contactsync.admin.health import service_status
from contactsync.admin.views import HISTORY_READ
from contactsync.contacts.model import Contact, Email
from contactsync.runtime.messages import SyncMessage
from contactsync.runtime.settings import Settings
from contactsync.store.audit import (
    InvalidPageCursor,
    add_audit,
    audit_entry_id,
    audit_items,
    get_audit_entry,
    list_audit_page,
)
from contactsync.store.connections import create_connection, get_connection, update_connection
from contactsync.store.mappings import count_mappings
from contactsync.store.models import AuditEntryItem
from contactsync.store.pass_interface import ConnectionView
from contactsync.store.pass_outcomes import record_pass_outcome
from contactsync.sync.reconcile import Sides, run_pass
from contactsync.sync.runner import PassRunner

from tests.fakes import InMemorySide

pytestmark = pytest.mark.usefixtures("table")

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
OWNER = Caller(user_id="u1", company_id="c1")


@dataclass
class ListQueue:
    """Our PassQueue interface, keeping what was sent."""

    sent: list[SyncMessage] = field(default_factory=list)

    def send(self, messages: Iterable[SyncMessage], *, dedup_key: str | None = None) -> int:
        batch = list(messages)
        self.sent.extend(batch)
        return len(batch)

    def retry_later(self, receipt_handle: str, seconds: float) -> None:
        pass


@dataclass
class MemoryWiring:
    """What the support services use of ``Wiring``: settings, a clock and the two sides."""

    sides: Sides
    settings: Settings = field(default_factory=Settings)
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)  # passes audit at the real time

    def sides_for(self, view: ConnectionView) -> Sides:
        return self.sides


@dataclass
class World:
    crm: InMemorySide
    provider: InMemorySide
    queue: ListQueue
    admin: AdminContext
    connection_id: str

    def run_pass(self, reason: str = "schedule", full: bool = False) -> str:
        runner = PassRunner(self.admin.wiring, self.queue)
        message = SyncMessage(connection_id=self.connection_id, reason=reason, full=full)
        return run_pass(self.connection_id, message, runner.context()).status


def person(name: str, email: str, **values: Any) -> Contact:
    given, family = name.split(" ", 1)
    return Contact(given_name=given, family_name=family, emails=(Email(email),), **values)


@pytest.fixture
def world() -> World:
    # Given a started connection with two linked-by-email people and one on each side alone
    crm, provider = InMemorySide(name="crm"), InMemorySide(name="prv")
    crm.put(person("Ann Able", "ann@x.example", job_title="Boss"), contact_id="101")
    crm.put(person("Crm Only", "crm.only@x.example"), contact_id="102")
    provider.put(person("Ann Able", "ann@x.example", job_title="Boss"), contact_id="p-ann")
    provider.put(person("Prv Only", "prv.only@x.example"), contact_id="p-only")
    conn = create_connection(
        company_id="c1", user_id="u1", provider="microsoft", folder_id="f1", now=NOW
    )
    update_connection(conn.connection_id, credentials=b"sealed", state="syncing_initial")
    queue = ListQueue()
    wiring = MemoryWiring(Sides(crm=crm, provider=provider))
    admin = AdminContext(wiring, queue)
    return World(crm, provider, queue, admin, conn.connection_id)


# --- the audit log, paged ------------------------------------------------------------------------


def test_activity_pages_newest_first_and_filters_by_kind() -> None:
    # Given ten audit entries of two kinds
    for i in range(10):
        kind = "write" if i % 3 else "conflict"
        add_audit("c-log", kind, f"entry {i}", now=NOW + timedelta(seconds=i))
    # When read two at a time
    first, cursor = list_audit_page("c-log", limit=2)
    second, _ = list_audit_page("c-log", limit=2, cursor=cursor)
    # Then newest first, the second page going on where the first stopped
    assert [e.message for e in first + second] == ["entry 9", "entry 8", "entry 7", "entry 6"]
    # And a kind gives only that kind, and pages on as well
    conflicts, cursor = list_audit_page("c-log", limit=3, kind="conflict")
    rest, end = list_audit_page("c-log", limit=3, kind="conflict", cursor=cursor)
    assert [e.message for e in conflicts + rest] == ["entry 9", "entry 6", "entry 3", "entry 0"]
    assert end is None


def test_a_page_cursor_of_another_connection_is_refused() -> None:
    for i in range(3):
        add_audit("c-a", "write", f"a {i}", now=NOW)
    _, cursor = list_audit_page("c-a", limit=1)
    with pytest.raises(InvalidPageCursor):
        list_audit_page("c-b", cursor=cursor)


def test_an_audit_entry_is_found_by_its_id() -> None:
    entry = add_audit("c-id", "write", "one", now=NOW)
    entry_id = audit_entry_id(entry)
    found = get_audit_entry("c-id", entry_id)
    assert found is not None and found.message == "one"
    assert get_audit_entry("c-other", entry_id) is None
    assert get_audit_entry("c-id", "LOG#not-an-id") is None


# --- the status page -----------------------------------------------------------------------------


def test_status_counts_the_last_fifteen_minutes_and_flags_a_degraded_provider() -> None:
    # Given 2 errors in 5 Google passes, 2 in 10 Microsoft ones, 4 in 4 Pipedrive ones
    outcomes = {"google": (5, 2), "microsoft": (10, 2), "pipedrive": (4, 4)}
    for provider, (passes, errors) in outcomes.items():
        for i in range(passes):
            failed = i < errors
            code = "Transient" if failed else None
            record_pass_outcome(provider, not failed, code, NOW - timedelta(minutes=i))
    # And an old burst of errors outside the window
    for _ in range(10):
        record_pass_outcome("microsoft", False, "Old", NOW - timedelta(minutes=20))
    # When the status page is read
    status = service_status(NOW)
    by_provider = {p["provider"]: p for p in status["providers"]}
    # Then over 20 % of at least 5 passes is degraded; exactly 20 %, or too few passes, is not
    assert (by_provider["google"]["passes"], by_provider["google"]["errors"]) == (5, 2)
    assert by_provider["google"]["degraded"] is True
    assert by_provider["microsoft"]["degraded"] is False
    assert by_provider["microsoft"]["error_codes"] == ["Transient"]
    assert by_provider["pipedrive"]["degraded"] is False
    assert status["degraded"] is True


# --- preview and explain -------------------------------------------------------------------------


def test_preview_counts_and_writes_nothing(world: World) -> None:
    preview = previews.preview(world.admin, OWNER, world.connection_id)
    assert (preview["linked"], preview["created_in_crm"], preview["created_in_provider"]) == (
        1,
        1,
        1,
    )
    assert count_mappings(world.connection_id) == 0
    assert sorted(world.crm.contacts) == ["101", "102"]
    assert world.provider.calls.get("create") is None


def test_explain_says_why_a_contact_syncs_or_not(world: World) -> None:
    assert world.run_pass("start", full=True) == "done"
    cid = world.connection_id
    # A linked person syncs
    linked = explanations.explain(world.admin, OWNER, cid, crm_person_id="101")
    assert linked["syncing"] is True
    assert linked["mapping"]["provider_id"] == "p-ann"
    # A person added after the last pass was never seen
    world.crm.put(person("New Person", "new@x.example"), contact_id="103")
    new = explanations.explain(world.admin, OWNER, cid, crm_person_id="103")
    assert new["syncing"] is False
    assert any("no sync pass has seen it yet" in r for r in new["reasons"]), new
    # A contact moved out of the folder is out of scope
    world.provider.put(
        world.provider.contacts["p-only"].contact, contact_id="p-only", in_scope=False
    )
    moved = explanations.explain(world.admin, OWNER, cid, provider_contact_id="p-only")
    assert any("outside the sync scope" in r for r in moved["reasons"]), moved
    # A one-way direction is named
    update_connection(cid, direction="to_crm")
    one_way = explanations.explain(world.admin, OWNER, cid, crm_person_id="103")
    assert any("direction is to_crm" in r for r in one_way["reasons"]), one_way
    # Exactly one id must be given
    with pytest.raises(InvalidRequest):
        explanations.explain(world.admin, OWNER, cid)


def test_explain_says_when_a_change_settles_or_is_held(world: World) -> None:
    assert world.run_pass("start", full=True) == "done"
    cid = world.connection_id
    # When a linked contact is deleted in the provider, its delete waits for the rest of a burst
    world.provider.remove("p-ann")
    assert world.run_pass("provider_push") == "settling"
    settling = explanations.explain(world.admin, OWNER, cid, crm_person_id="101")
    assert any("for the rest of its burst" in r for r in settling["reasons"]), settling
    # And while a held pass waits for the user, explain says it is part of it
    update_connection(cid, state="needs_attention", held_plan={"message": "too many"})
    held = explanations.explain(world.admin, OWNER, cid, crm_person_id="101")
    assert any("part of the pass held" in r for r in held["reasons"]), held


def test_explain_reads_a_contacts_history_by_either_id_however_long_the_log(
    world: World,
) -> None:
    # Given Ann linked, then her job title changed in the provider and copied to the CRM
    assert world.run_pass("start", full=True) == "done"
    cid = world.connection_id
    ann = world.provider.contacts["p-ann"]
    world.provider.put(ann.contact.with_fields(job_title="Chief"), contact_id="p-ann")
    assert world.run_pass() == "done"
    # And after it, more entries about other contacts than explain ever read of the log
    with AuditEntryItem.batch_write() as batch:
        for i in range(HISTORY_READ + 200):
            entry, _ = audit_items(cid, "write", "update on crm", crm_id=f"9{i}")
            batch.save(entry)
    # When support asks about Ann by either id
    by_crm = explanations.explain(world.admin, OWNER, cid, crm_person_id="101")
    by_provider = explanations.explain(world.admin, OWNER, cid, provider_contact_id="p-ann")
    # Then both show her history, newest first: the update copied to the CRM
    assert by_crm["history"] == by_provider["history"]
    newest = by_crm["history"][0]
    assert (newest["kind"], newest["crm_id"], newest["after"]["job_title"]) == (
        "write",
        "101",
        "Chief",
    )
    assert all(h["crm_id"] == "101" for h in by_crm["history"])


def test_explain_says_a_contact_held_as_a_possible_duplicate_is_one(world: World) -> None:
    # Given two CRM persons with the email of one provider contact
    world.crm.put(person("Bo Bee", "bo@x.example"), contact_id="201")
    world.crm.put(person("Bob Bee", "bo@x.example"), contact_id="202")
    world.provider.put(person("Bo Bee", "bo@x.example"), contact_id="p-bo")
    assert world.run_pass("start", full=True) == "done"
    # When support asks about the provider contact and about one of the persons
    for asked in ({"provider_contact_id": "p-bo"}, {"crm_person_id": "202"}):
        answer = explanations.explain(world.admin, OWNER, world.connection_id, **asked)
        # Then each is a possible duplicate, with the finding in its history
        assert not answer["syncing"]
        assert any("possible duplicate" in r for r in answer["reasons"]), answer
        assert answer["history"][0]["details"]["key"] == "email:bo@x.example"


def test_duplicates_start_from_the_last_full_listing_never_listing_the_crm(
    world: World,
) -> None:
    # Given two of the user's CRM persons sharing an email, and one provider contact with it
    world.crm.put(person("Bo Bee", "bo@x.example"), contact_id="201")
    world.crm.put(person("Bob Bee", "bo@x.example"), contact_id="202")
    world.provider.put(person("Bo Bee", "bo@x.example"), contact_id="p-bo")
    assert world.run_pass("start", full=True) == "done"
    cid = world.connection_id
    listings = world.crm.calls["read"]
    # When support asks for the duplicates
    found = duplicate_pages.duplicates(world.admin, OWNER, cid)
    # Then the twins are one cluster, and the ambiguous match names all three
    [cluster] = found["clusters"]
    assert (cluster["crm_ids"], cluster["keys"]) == (["201", "202"], ["email:bo@x.example"])
    assert [p["name"] for p in cluster["persons"]] == ["Bo Bee", "Bob Bee"]
    [ambiguous] = found["ambiguous_matches"]
    assert (ambiguous["crm_ids"], ambiguous["provider_ids"]) == (["201", "202"], ["p-bo"])
    # And the CRM was asked for the two persons only, never listed
    assert world.crm.calls["read"] == listings
    # And a twin deleted since drops out at once, before any full listing
    world.crm.remove("202")
    assert duplicate_pages.duplicates(world.admin, OWNER, cid)["clusters"] == []


def test_another_company_and_another_user_find_nothing(world: World) -> None:
    for caller in (Caller("u1", "c2"), Caller("u2", "c1"), Caller("u9", "c2", is_admin=True)):
        with pytest.raises(NotFoundError):
            history.activity(world.admin, caller, world.connection_id)
    # But the company admin does
    admin = Caller("u9", "c1", is_admin=True)
    assert history.activity(world.admin, admin, world.connection_id)["entries"] == []


# --- undo ----------------------------------------------------------------------------------------


def test_an_update_is_undone_on_the_side_it_wrote(world: World) -> None:
    world.run_pass("start", full=True)
    cid = world.connection_id
    # Given the provider changed a job title and a pass copied it to the CRM
    ann = world.provider.contacts["p-ann"]
    world.provider.put(ann.contact.with_fields(job_title="Chief"), contact_id="p-ann")
    assert world.run_pass() == "done"
    assert world.crm.contacts["101"].contact.job_title == "Chief"
    writes = history.activity(world.admin, OWNER, cid, kind="write")["entries"]
    update = next(e for e in writes if e["side"] == "crm" and e["undoable"])
    # When the user undoes it
    result = history.undo(world.admin, OWNER, cid, update["id"])
    # Then the CRM holds the old title again, the undo is audited and a pass is queued
    assert result["restored"] == ["job_title"]
    assert world.crm.contacts["101"].contact.job_title == "Boss"
    assert result["entry"]["kind"] == "undo"
    assert world.queue.sent[-1].crm_ids == ["101"]
    # And a create cannot be undone, nor an unknown entry
    create = next(e for e in writes if not e["undoable"])
    with pytest.raises(ConflictError):
        history.undo(world.admin, OWNER, cid, create["id"])
    with pytest.raises(NotFoundError):
        history.undo(world.admin, OWNER, cid, "2000-01-01T00:00:00.000000Z-000000")


# --- a held pass ---------------------------------------------------------------------------------


def test_a_held_pass_is_discarded_or_confirmed_only_when_there_is_one(world: World) -> None:
    world.run_pass("start", full=True)
    cid = world.connection_id
    with pytest.raises(ConflictError):
        held_passes.confirm(world.admin, OWNER, cid)
    with pytest.raises(ConflictError):
        held_passes.discard(world.admin, OWNER, cid)
    # Given a pass the guard held
    held = {"message": "this pass would delete 30 of 40 linked contacts", "deletes": 30}
    update_connection(cid, state="needs_attention", held_plan=held)
    # When it is confirmed, a confirmed pass is queued
    held_passes.confirm(world.admin, OWNER, cid)
    assert world.queue.sent[-1].reason == "confirm"
    # When it is discarded instead, the connection is active again with nothing held
    answer = held_passes.discard(world.admin, OWNER, cid)
    assert answer["connection"]["state"] == "active"
    conn = get_connection(cid)
    assert conn is not None and conn.held_plan is None
    kinds = [e["kind"] for e in history.activity(world.admin, OWNER, cid)["entries"]]
    assert kinds[:2] == ["discard", "confirm"]
