"""CRM webhooks: each event asks for a re-read; only a redelivery of the same event is a
duplicate, and a burst of events while a pass request waits queues no more requests."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from typing import Any

import pytest
from contactsync.runtime.messages import SyncMessage
from contactsync.sync.push import CrmHookTarget, PushRejected, handle_crm_webhook, secret_hash

from tests.fakes import InMemoryStore


class Recorder:
    """A PassQueue that keeps what it was asked to send, and honours dedup keys as SQS does."""

    def __init__(self) -> None:
        self.sent: list[SyncMessage] = []
        self.keys: set[str] = set()

    def send(self, messages: Iterable[SyncMessage], *, dedup_key: str | None = None) -> int:
        if dedup_key is not None and dedup_key in self.keys:
            return 0
        if dedup_key is not None:
            self.keys.add(dedup_key)
        batch = list(messages)
        self.sent.extend(batch)
        return len(batch)


OWNER = "5"  # the connection's CRM user


def store() -> InMemoryStore:
    made = InMemoryStore()
    made.add_connection("conn1")
    return made


def deliver(
    queue: Recorder,
    event_id: str,
    action: str,
    *,
    doorbell: InMemoryStore | None = None,
    password: str = "pw",
    person: int = 7,
    data: dict[str, Any] | None = None,
    previous: dict[str, Any] | None = None,
) -> int:
    body = {
        "meta": {
            "id": event_id,
            "action": action,
            "entity": "person",
            "entity_id": person,
            "webhook_id": 3,
            "timestamp": "2026-11-25T10:00:00Z",  # the same second for every event here
        },
        "data": {"id": 7} if data is None else data,
        "previous": previous,
    }
    auth = "Basic " + base64.b64encode(f"conn1:{password}".encode()).decode()
    outcome = handle_crm_webhook(
        json.dumps(body),
        auth,
        target=lambda _c: CrmHookTarget(secret_hash("pw"), owner_id=OWNER),
        queue=queue,
        doorbell=doorbell if doorbell is not None else store(),
    )
    return outcome.enqueued


def test_an_edit_then_a_delete_in_the_same_second_are_two_requests() -> None:
    queue = Recorder()
    # Given the person is edited and then deleted within one second (no pass waiting between)
    assert deliver(queue, "evt-1", "change") == 1
    # Then the delete still asks for its own re-read (it must not be dropped as a duplicate)
    assert deliver(queue, "evt-2", "delete") == 1
    assert [m.crm_ids for m in queue.sent] == [["7"], ["7"]]


def test_a_redelivered_event_is_dropped_as_a_duplicate() -> None:
    queue = Recorder()
    deliver(queue, "evt-1", "change")
    # When the CRM delivers the same event again (it retries on timeouts)
    # Then nothing more is queued
    assert deliver(queue, "evt-1", "change") == 0


def test_a_burst_while_a_pass_waits_queues_one_pass_that_reads_every_person() -> None:
    queue, doorbell = Recorder(), store()
    # Given a pass request already waits on the queue for the connection
    assert deliver(queue, "evt-1", "change", doorbell=doorbell, person=1) == 1
    # When fifty more persons change before that pass begins
    later = [deliver(queue, f"e{p}", "change", doorbell=doorbell, person=p) for p in range(2, 52)]
    # Then no more requests are queued, and the connection remembers every person for the pass
    assert sum(later) == 0
    assert len(queue.sent) == 1
    pending = doorbell.load_connection("conn1")
    assert pending is not None
    assert set(pending.pending_crm_ids) == {str(p) for p in range(1, 52)}


def test_a_push_after_the_pass_began_queues_a_new_pass() -> None:
    queue, doorbell = Recorder(), store()
    deliver(queue, "evt-1", "change", doorbell=doorbell)
    # When the waiting pass begins (it answers the doorbell) and then another change comes
    doorbell.answer_ring("conn1")
    # Then that change queues a pass of its own: the running pass may have read past it
    assert deliver(queue, "evt-2", "change", doorbell=doorbell, person=8) == 1


def test_wrong_credentials_queue_nothing() -> None:
    queue, doorbell = Recorder(), store()
    with pytest.raises(PushRejected):
        deliver(queue, "evt-1", "change", doorbell=doorbell, password="guess")
    assert queue.sent == []
    assert doorbell.connections["conn1"].get("pending_crm_ids") is None


@pytest.mark.parametrize(
    ("action", "data", "previous", "asks"),
    [
        ("change", {"id": 7, "owner_id": 9}, {"job_title": "CTO"}, False),  # a colleague's
        ("delete", None, {"id": 7, "owner_id": 9}, False),  # a colleague's, deleted
        ("change", {"id": 7, "owner_id": 9}, {"owner_id": 5}, True),  # handed over by the user
        ("change", {"id": 7, "owner_id": 5}, {"owner_id": 9}, True),  # handed to the user
        ("delete", None, {"id": 7, "owner_id": 5}, True),  # the user's, deleted
        ("change", {"id": 7, "owner_id": {"id": 9, "name": "Colin"}}, None, False),  # v1 shape
        ("change", {"id": 7}, {"name": "Ann"}, True),  # no owner named: asked to be sure
    ],
)
def test_only_events_for_the_users_own_persons_ask_for_a_pass(
    action: str, data: dict[str, Any] | None, previous: dict[str, Any] | None, asks: bool
) -> None:
    # Given the CRM sends the user's webhook for every person of the company the user can see
    queue = Recorder()
    # When an event comes for a person owned (now, or before the change) by someone else, or not
    enqueued = deliver(queue, "evt-1", action, data=data, previous=previous)
    # Then only a person the user owned before or after the change asks for a pass
    assert enqueued == (1 if asks else 0)
