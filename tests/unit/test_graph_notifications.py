"""Graph change notifications: a notification is checked (GUID-shaped subscription id, a
clientState we signed) before anything is read, so unauthenticated traffic costs no reads."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence

import pytest
from contactsync.sync.push import (
    MAX_UNKNOWN_NOTIFICATIONS,
    PushRejected,
    SubscriptionRecord,
    graph_client_state,
    handle_graph_notifications,
    signed_connection,
)

from tests.fakes import InMemoryStore
from tests.unit.test_crm_webhooks import Recorder

KEY = "server-webhook-key"


class Subscriptions:
    """The subscription items, counting how often and for how many ids they are read."""

    def __init__(self, records: Sequence[SubscriptionRecord]) -> None:
        self.records = {r.subscription_id: r for r in records}
        self.reads: list[int] = []

    def __call__(self, ids: Sequence[str]) -> Mapping[str, SubscriptionRecord]:
        self.reads.append(len(ids))
        return {i: self.records[i] for i in ids if i in self.records}


def ours() -> tuple[str, Subscriptions]:
    sub_id = str(uuid.uuid4())
    record = SubscriptionRecord(sub_id, "conn1", client_state_hash="")
    return sub_id, Subscriptions([record])


def notify(subs: Subscriptions, notes: list[dict[str, str]], key: str = KEY) -> Recorder:
    queue = Recorder()
    doorbell = InMemoryStore()
    doorbell.add_connection("conn1")
    handle_graph_notifications(
        json.dumps({"value": notes}),
        webhook_key=key,
        find_subscriptions=subs,
        queue=queue,
        doorbell=doorbell,
    )
    return queue


def note(sub_id: str, client_state: str) -> dict[str, str]:
    return {"subscriptionId": sub_id, "clientState": client_state, "changeType": "updated"}


def test_a_signed_notification_of_a_known_subscription_asks_for_a_pass() -> None:
    sub_id, subs = ours()
    queue = notify(subs, [note(sub_id, graph_client_state(KEY, "conn1"))])
    assert [m.connection_id for m in queue.sent] == ["conn1"]
    assert subs.reads == [1]


def test_a_thousand_random_notifications_cost_no_read() -> None:
    # Given a batch of 1,000 random GUIDs with made-up clientStates
    _, subs = ours()
    notes = [note(str(uuid.uuid4()), f"conn1.{uuid.uuid4().hex}") for _ in range(1000)]
    # When it arrives, Then it is refused without a single read
    with pytest.raises(PushRejected) as refused:
        notify(subs, notes)
    assert refused.value.status == 403
    assert subs.reads == []


def test_more_unknown_notifications_than_the_cap_refuse_the_whole_request() -> None:
    # Given one genuine notification after more forged ones than the cap allows
    sub_id, subs = ours()
    forged = [note(str(uuid.uuid4()), "x") for _ in range(MAX_UNKNOWN_NOTIFICATIONS + 1)]
    real = note(sub_id, graph_client_state(KEY, "conn1"))
    # Then the request is refused before the genuine one is even read
    with pytest.raises(PushRejected, match="too many"):
        notify(subs, [*forged, real])
    assert subs.reads == []
    # But a few unknown ones beside it do not hide it
    queue = notify(subs, [*forged[:MAX_UNKNOWN_NOTIFICATIONS], real])
    assert [m.connection_id for m in queue.sent] == ["conn1"]


@pytest.mark.parametrize("sub_id", ["sub-1", "", "not-a-guid-at-all-0000000000000000", "1" * 36])
def test_a_subscription_id_not_shaped_as_a_guid_is_refused_unread(sub_id: str) -> None:
    _, subs = ours()
    with pytest.raises(PushRejected):
        notify(subs, [note(sub_id, graph_client_state(KEY, "conn1"))])
    assert subs.reads == []


def test_a_client_state_signed_with_another_key_or_for_another_connection_is_refused() -> None:
    sub_id, subs = ours()
    for client_state in (
        graph_client_state("another-key", "conn1"),
        graph_client_state(KEY, "conn1") + "x",
        "conn1." + graph_client_state(KEY, "conn2").split(".", 1)[1],
    ):
        with pytest.raises(PushRejected):
            notify(subs, [note(sub_id, client_state)])
    assert subs.reads == []


def test_a_signed_notification_for_a_subscription_of_another_connection_is_refused() -> None:
    # Given a genuine signature of conn2, presented with conn1's subscription
    sub_id, subs = ours()
    with pytest.raises(PushRejected):
        notify(subs, [note(sub_id, graph_client_state(KEY, "conn2"))])


def test_without_a_key_nothing_is_signed_nor_accepted() -> None:
    with pytest.raises(ValueError, match="webhook key"):
        graph_client_state("", "conn1")
    assert signed_connection("", "conn1.abc") is None
    sub_id, subs = ours()
    with pytest.raises(PushRejected):
        notify(subs, [note(sub_id, graph_client_state(KEY, "conn1"))], key="")


def test_a_client_state_fits_graphs_limit() -> None:
    assert len(graph_client_state(KEY, "c" * 64)) <= 128
