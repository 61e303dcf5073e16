"""Scheduler (EventBridge, every minute): enqueue a pass for every connection that is due.

Due connections are found through the sparse DueIndex, never by scanning the table.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from contactsync.runtime.observability import capture_lambda_handler, logger, metrics
from contactsync.runtime.wiring import bind_store, build_queue
from contactsync.sync.schedule import enqueue_due


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    bind_store()
    sent = enqueue_due(build_queue())
    logger.info("due connections enqueued", extra={"count": sent})
    return {"enqueued": sent}
