"""CRM webhooks: each event asks for one re-read; only a redelivery of the same event is a
duplicate."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable

import pytest
from contactsync.runtime.messages import SyncMessage
from contactsync.sync.push import PushRejected, handle_crm_webhook, secret_hash


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


def deliver(queue: Recorder, event_id: str, action: str, *, password: str = "pw") -> int:
    body = {
        "meta": {
            "id": event_id,
            "action": action,
            "entity": "person",
            "entity_id": 7,
            "webhook_id": 3,
            "timestamp": "2026-11-25T10:00:00Z",  # the same second for every event here
        },
        "data": {"id": 7},
    }
    auth = "Basic " + base64.b64encode(f"conn1:{password}".encode()).decode()
    outcome = handle_crm_webhook(
        json.dumps(body), auth, webhook_secret_hash=lambda _c: secret_hash("pw"), queue=queue
    )
    return outcome.enqueued


def test_an_edit_then_a_delete_in_the_same_second_are_two_requests() -> None:
    queue = Recorder()
    # Given the person is edited and then deleted within one second
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


def test_wrong_credentials_queue_nothing() -> None:
    queue = Recorder()
    with pytest.raises(PushRejected):
        deliver(queue, "evt-1", "change", password="guess")
    assert queue.sent == []
