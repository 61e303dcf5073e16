"""Table 4: the webhooks function in process: a Graph notification batch of 100 and a CRM webhook.

Each request goes through ``lambda_handler`` as API Gateway would hand it over, with the store on
DynamoDB Local and a counting queue (so the timing leaves the SQS call out). Warm requests only:
the first one after import is shown apart. Between requests a pass begins (untimed), so each push
finds none waiting and asks for one; the "burst" row leaves the request waiting instead, as a
burst of pushes finds it, and must queue nothing more.
"""

from __future__ import annotations

import os
import secrets
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from contactsync.store.connections import CONNECTION_SK, create_connection, update_connection
from contactsync.store.keys import conn_pk
from contactsync.store.subscriptions import put_subscription
from contactsync.sync.push import graph_client_state, secret_hash

from bench.handlers import CountingQueue, basic, context, handler_with_queue, http_event
from bench.meters import DynamoMeter
from bench.report import Table, median, ms, percentile, scaled, verdict
from bench.world import World

RUNS = 200
BATCH = 100
P99_TARGET = 0.020
FUNCTION = "functions.webhooks.app"


def _connection_with_subscription() -> tuple[str, str, str, str]:
    """A connection with a Graph subscription and a CRM webhook secret: (cid, sub id, Graph
    clientState, CRM secret)."""
    conn = create_connection(
        company_id="1", user_id=str(secrets.randbelow(10**6)), provider="microsoft", state="active"
    )
    state = graph_client_state(_webhook_key(), conn.connection_id)
    sub_id = str(uuid.uuid4())
    put_subscription(
        subscription_id=sub_id,
        connection_id=conn.connection_id,
        client_state_hash=secret_hash(state),
        resource="me/contactFolders/f/contacts",
        expires_at=datetime.now(UTC) + timedelta(days=2),
    )
    webhook_secret = secrets.token_urlsafe(16)
    update_connection(conn.connection_id, crm_webhook_secret_hash=secret_hash(webhook_secret))
    return conn.connection_id, sub_id, state, webhook_secret


def _webhook_key() -> str:
    """The key the webhooks function signs clientStates with (one per bench run if unset)."""
    return os.environ.setdefault("WEBHOOK_KEY", secrets.token_urlsafe(32))


def _graph_batch(subs: list[tuple[str, str]], per_sub: int) -> dict[str, Any]:
    notes = [
        {
            "subscriptionId": sub_id,
            "clientState": state,
            "changeType": "updated",
            "resource": f"Users/u/Contacts/c{i}",
            "resourceData": {"id": f"c{i}", "@odata.type": "#Microsoft.Graph.Contact"},
            "tenantId": "t",
        }
        for sub_id, state in subs
        for i in range(per_sub)
    ]
    return http_event("POST", "/webhooks/microsoft", {"value": notes})


def _crm_hook(connection_id: str, secret: str, n: int) -> dict[str, Any]:
    body = {
        "meta": {
            "action": "change",
            "entity": "person",
            "entity_id": str(1000 + n),
            "webhook_id": "42",
            "timestamp": f"2025-01-01T00:00:{n % 60:02d}Z",
            "version": "2.0",
        },
        "data": {"id": 1000 + n, "name": "Ann Lee"},
        "previous": {"name": "Ann Le"},
    }
    return http_event(
        "POST",
        "/webhooks/pipedrive",
        body,
        headers={"authorization": basic(connection_id, secret)},
    )


def _timed(
    handler: Callable[..., Any],
    make_event: Callable[[int], dict[str, Any]],
    runs: int,
    between: Callable[[], None],
) -> tuple[float, list[float]]:
    """(first call, warm calls) in seconds; every answer must be a 2xx."""
    times = []
    for n in range(runs + 1):
        between()
        event = make_event(n)
        started = time.perf_counter()
        answer = handler(event, context("WebhooksFunction"))
        times.append(time.perf_counter() - started)
        if not 200 <= int(answer["statusCode"]) < 300:
            raise RuntimeError(f"webhook answered {answer['statusCode']}: {answer.get('body')}")
    return times[0], times[1:]


def run(world: World) -> Table:
    runs = scaled(RUNS, minimum=10)
    table = Table(
        "webhook",
        f"4. Webhook handler in process ({runs} warm requests each, queue call excluded)",
        ["request", "first", "p50", "p99", "store calls", "messages", "target", "met"],
    )
    table_name = world.fresh_table("webhook")
    try:
        subs = []
        for _ in range(10):
            subs.append(_connection_with_subscription())
        cases: list[tuple[str, Callable[[int], dict[str, Any]], int]] = [
            (
                "Graph: 1 notification (one edit)",
                lambda _n: _graph_batch([(subs[0][1], subs[0][2])], 1),
                1,
            ),
            (
                f"Graph batch: {BATCH} notifications, 1 connection",
                lambda _n: _graph_batch([(subs[0][1], subs[0][2])], BATCH),
                1,
            ),
            (
                f"Graph batch: {BATCH} notifications, 10 connections",
                lambda _n: _graph_batch([(s[1], s[2]) for s in subs], BATCH // 10),
                10,
            ),
            ("CRM webhook: 1 person change", lambda n: _crm_hook(subs[0][0], subs[0][3], n), 1),
            (
                "CRM webhook burst: 1 person change each, a pass request already waiting",
                lambda n: _crm_hook(subs[0][0], subs[0][3], n),
                0,
            ),
        ]
        meter = DynamoMeter()
        dynamodb = world.aws.client("dynamodb")  # not metered: the pass's work, not the push's

        def pass_begins() -> None:
            for cid, *_ in subs:
                dynamodb.update_item(
                    TableName=table_name,
                    Key={"PK": {"S": conn_pk(cid)}, "SK": {"S": CONNECTION_SK}},
                    UpdateExpression="REMOVE wake_queued_at",
                )

        for label, case_event, connections in cases:
            queue = CountingQueue()
            between = (lambda: None) if "burst" in label else pass_begins
            with handler_with_queue(FUNCTION, queue) as module:
                first, warm = _timed(module.lambda_handler, case_event, 0, between)
                queue.messages.clear()
                meter.attach()
                before = meter.snapshot()
                first_warm, warm = _timed(module.lambda_handler, case_event, runs - 1, between)
                warm = [first_warm, *warm]
                used = meter.snapshot().minus(before)
            per_request = used.total_calls / len(warm)
            messages = len(queue.messages) / len(warm)
            p99 = percentile(warm, 99)
            ok = p99 <= P99_TARGET and messages == connections
            table.add(
                label,
                ms(first),
                ms(median(warm)),
                ms(p99),
                f"{per_request:.0f}",
                f"{messages:.0f} per request",
                f"p99 ≤ 20 ms; {connections} message(s)",
                verdict(ok),
            )
            table.figures[label] = {
                "p50": median(warm),
                "p99": p99,
                "reads": per_request,
                "read_units": used.read_units / len(warm),
                "write_units": used.write_units / len(warm),
                "messages": messages,
                "sqs_requests": queue.requests / len(warm),
            }
        table.note(
            "store calls: DynamoDB calls per request: the subscription or connection lookups, "
            "and per connection the push noting itself (hints, then the doorbell)"
        )
    finally:
        world.drop_table(table_name)
    return table
