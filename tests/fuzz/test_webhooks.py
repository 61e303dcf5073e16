"""Hostile webhook requests over HTTP on the local stack: each gets a 4xx, nothing is enqueued or
stored. ``FUZZ_EXAMPLES`` sets how many (150 for ``make test``; ``make fuzz`` sets more).
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from local.gateway import build_gateway
from local.stack import LocalStack, start_stack
from sandbox.server import serve
from tests.fuzz.webhook_requests import EXAMPLES, KnownSecrets, fuzz_webhooks
from tests.security.leaks import scan_table

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    running = start_stack(workdir=tmp_path_factory.mktemp("fuzz"), schedule_every=3600)
    # Nothing consumes the queue: whatever a webhook enqueued stays there to be counted.
    running.ticker.stop()
    running.poller.stop()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def known(stack: LocalStack) -> KnownSecrets:
    """A connection with a Graph subscription and a CRM webhook, secrets known to the test."""
    from contactsync.runtime.wiring import bind_store
    from contactsync.store.connections import create_connection, update_connection
    from contactsync.store.subscriptions import put_subscription
    from contactsync.sync.push import graph_client_state, secret_hash

    bind_store()
    password = secrets.token_urlsafe(32)
    conn = create_connection(
        company_id="c-fuzz", user_id="u-fuzz", provider="microsoft", state="active"
    )
    client_state = graph_client_state(stack.env["WEBHOOK_KEY"], conn.connection_id)
    update_connection(conn.connection_id, crm_webhook_secret_hash=secret_hash(password))
    subscription_id = str(uuid.uuid4())
    put_subscription(
        subscription_id=subscription_id,
        connection_id=conn.connection_id,
        client_state_hash=secret_hash(client_state),
        resource="me/contactFolders/f/contacts",
        expires_at=datetime.now(UTC) + timedelta(days=2),
    )
    return KnownSecrets(subscription_id, client_state, conn.connection_id, password)


def queue_depth(stack: LocalStack) -> int:
    attributes = stack.aws.client("sqs").get_queue_attributes(
        QueueUrl=stack.aws.queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return sum(int(v) for v in attributes.values())


def table_snapshot(stack: LocalStack) -> list[str]:
    items = scan_table(stack.aws.client("dynamodb"), stack.aws.table_name)
    return sorted(json.dumps(item, sort_keys=True, default=repr) for item in items)


def test_a_real_push_is_enqueued_so_the_depth_check_can_see_one(
    stack: LocalStack, known: KnownSecrets
) -> None:
    # Given the real credentials and a well-formed CRM delivery
    import httpx

    before = queue_depth(stack)
    body = {"meta": {"action": "updated", "entity": "person", "entity_id": 1, "timestamp": "t"}}
    response = httpx.post(
        f"{stack.api_url}/webhooks/pipedrive",
        json=body,
        auth=(known.connection_id, known.webhook_password),
    )
    # Then it is accepted and one message waits on the queue
    assert response.status_code == 200, response.text
    assert queue_depth(stack) == before + 1


def test_hostile_webhooks_get_a_4xx_and_change_nothing(
    stack: LocalStack, known: KnownSecrets, figure: Callable[[str], None]
) -> None:
    # Given the queue and the table as they are
    depth, snapshot = queue_depth(stack), table_snapshot(stack)
    # When hypothesis sends hostile requests to the three webhook routes
    report = fuzz_webhooks(stack.api_url, known, examples=EXAMPLES)
    figure(report.line())
    # Then each got a 4xx (or the Graph handshake echo), none a 5xx
    assert report.unexpected == [], "\n".join(report.unexpected[:10])
    assert report.server_errors == 0
    # And nothing was enqueued or stored
    assert queue_depth(stack) == depth
    after = table_snapshot(stack)
    assert after == snapshot, sorted(set(after) ^ set(snapshot))[:4]


def test_the_fuzz_checker_catches_a_handler_that_fails_on_bad_json(
    stack: LocalStack, known: KnownSecrets
) -> None:
    # Given a webhook handler variant that crashes on a body that is not JSON
    def crashes_on_bad_json(event: dict[str, Any], context: Any) -> dict[str, Any]:
        json.loads(event.get("body") or "")
        return {"statusCode": 400, "body": "{}"}

    gateway = build_gateway(stack.issuer.check, handlers={"WebhooksFunction": crashes_on_bad_json})
    # When the fuzz checker runs against it
    with serve(gateway) as server:
        report = fuzz_webhooks(server.url, known, examples=40)
    # Then it reports the 5xx
    assert report.server_errors > 0
    assert any(line.startswith("500") for line in report.unexpected)
