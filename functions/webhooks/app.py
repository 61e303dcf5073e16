"""Provider pushes: Microsoft Graph change and lifecycle notifications, CRM webhooks.

Answered fast (Graph wants 2xx within 3 s, the validation echo within 10 s): authenticate,
validate, ask for one pass per connection (none if one already waits), done. The pass reads
the actual changes.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from contactsync.runtime import push_records
from contactsync.runtime.observability import (
    WEBHOOK_ACCEPTED,
    WEBHOOK_REJECTIONS,
    capture_lambda_handler,
    count,
    logger,
    metrics,
)
from contactsync.runtime.wiring import build_doorbell, build_queue, webhook_key
from contactsync.sync import push

app = APIGatewayHttpResolver()


def _validation_echo() -> Response[str] | None:
    """Graph's subscription handshake (a POST without a body): echo ``validationToken`` as
    plain text that no browser would sniff into anything else."""
    token = app.current_event.get_query_string_value("validationToken")
    if token is None or app.current_event.body:
        return None
    return Response(
        status_code=200,
        content_type="text/plain; charset=utf-8",
        body=token[:1024],
        headers={"X-Content-Type-Options": "nosniff"},
    )


def _body() -> bytes | None:
    """The body as the provider sent it. API Gateway base64-encodes a body that is not UTF-8;
    Powertools' ``decoded_body`` would then fail to decode it as text and the handler answer
    500, so the bytes go to the parser, which rejects them with a 400."""
    event = app.current_event
    if event.body is None:
        return None
    if not event.is_base64_encoded:
        return event.body.encode()
    try:
        return base64.b64decode(event.body)
    except binascii.Error:
        return None


def _rejected(exc: push.PushRejected) -> Response[Any]:
    count(WEBHOOK_REJECTIONS)
    return Response(
        status_code=exc.status,
        content_type="application/json",
        body={"error": {"code": "rejected", "message": exc.message, "details": {}}},
    )


def _graph(lifecycle: bool) -> Response[Any]:
    echo = _validation_echo()
    if echo is not None:
        return echo
    try:
        outcome = push.handle_graph_notifications(
            _body(),
            webhook_key=webhook_key(),
            find_subscriptions=push_records.find_subscriptions,
            queue=build_queue(),
            doorbell=build_doorbell(),
            lifecycle=lifecycle,
        )
    except push.PushRejected as exc:
        logger.warning("graph notification rejected", extra={"reason": exc.message})
        return _rejected(exc)
    logger.info("graph notifications", extra={"accepted": outcome.accepted})
    count(WEBHOOK_ACCEPTED, outcome.accepted)
    return Response(status_code=202, content_type="application/json", body={})


@app.post("/webhooks/microsoft")
def microsoft() -> Response[Any]:
    return _graph(lifecycle=False)


@app.post("/webhooks/microsoft/lifecycle")
def microsoft_lifecycle() -> Response[Any]:
    return _graph(lifecycle=True)


@app.post("/webhooks/pipedrive")
def pipedrive() -> Response[Any]:
    try:
        outcome = push.handle_crm_webhook(
            _body(),
            app.current_event.headers.get("authorization"),
            target=push_records.crm_hook_target,
            queue=build_queue(),
            doorbell=build_doorbell(),
        )
    except push.PushRejected as exc:
        logger.warning("crm webhook rejected", extra={"reason": exc.message})
        return _rejected(exc)
    count(WEBHOOK_ACCEPTED)
    return Response(
        status_code=200, content_type="application/json", body={"queued": outcome.enqueued}
    )


@logger.inject_lambda_context(
    clear_state=True, correlation_id_path=correlation_paths.API_GATEWAY_HTTP
)
@metrics.log_metrics
@capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
