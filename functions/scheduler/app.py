"""Scheduler (EventBridge, every minute): enqueue a pass for every connection that is due.

Due connections are found through the sparse DueIndex, never by scanning the table.
"""

from __future__ import annotations

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from contactsync.runtime.observability import capture_lambda_handler, logger, metrics
from contactsync.runtime.wiring import bind_store, build_queue
from contactsync.sync.schedule import enqueue_due


@logger.inject_lambda_context(clear_state=True, correlation_id_path=correlation_paths.EVENT_BRIDGE)
@metrics.log_metrics
@capture_lambda_handler
@event_parser(model=EventBridgeModel)
def lambda_handler(event: EventBridgeModel, context: LambdaContext) -> dict[str, int]:
    bind_store()
    sent = enqueue_due(build_queue())
    logger.info("due connections enqueued", extra={"count": sent, "tick": event.time.isoformat()})
    return {"enqueued": sent}
