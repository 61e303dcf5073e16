"""Reconciler: runs sync passes for the connections named by messages on the FIFO sync queue.

What a batch does is ``contactsync.sync.batch`` (coalescing, the time left, each failure's
delay). Failures are reported per message (ReportBatchItemFailures); SQS redelivers them and,
after maxReceiveCount, parks them in the dead-letter queue. A record whose body is no pass request
fails like any other (the messages behind it in its group with it) and comes back until it is
parked.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import (
    SqsFifoPartialProcessor,
    process_partial_response,
)
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import SqsModel, SqsRecordModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from contactsync.runtime.messages import SyncMessage
from contactsync.runtime.observability import capture_lambda_handler, logger, metrics
from contactsync.runtime.wiring import build_passes
from contactsync.sync.batch import PassBatch
from pydantic import Json, ValidationError


class SyncRecord(SqsRecordModel):
    """A record of the sync queue: its body is one pass request."""

    body: Json[SyncMessage]


def _requests(event: dict[str, Any]) -> list[SyncMessage]:
    """The batch's pass requests, all known before the first pass so that they coalesce. A record
    that is none is left out here; the processor reports it failed."""
    requests = []
    for record in event.get("Records", []):
        try:
            requests.append(parse(event=record, model=SyncRecord).body)
        except ValidationError:
            continue
    return requests


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    batch = PassBatch(
        _requests(event),
        build_passes(),
        remaining_seconds=lambda: context.get_remaining_time_in_millis() / 1000,
    )

    def record_handler(record: SyncRecord) -> None:
        batch.handle(
            record.body,
            attempt=int(record.attributes.ApproximateReceiveCount),
            sent_ms=record.attributes.SentTimestamp.timestamp() * 1000,
        )

    processor = SqsFifoPartialProcessor(model=SyncRecord, skip_group_on_error=True)
    processor.raise_on_entire_batch_failure = False  # report failures per message, always
    response = process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    # Failed messages, and those skipped behind them in their group (the group is the connection).
    failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
    batch.send_back(
        (r.receiptHandle, r.attributes.MessageGroupId or "")
        for r in parse(event=event, model=SqsModel).Records
        if r.messageId in failed
    )
    return response
