"""Reconciler: runs sync passes for the connections named by messages on the FIFO sync queue.

What a batch does is ``contactsync.sync.batch`` (coalescing, the passes of its connections at
once, the time left, each failure's delay). Failures are reported per message
(ReportBatchItemFailures); SQS redelivers them and, after maxReceiveCount, parks them in the
dead-letter queue. A record whose body is no pass request fails like any other (the messages
behind it in its group with it) and comes back until it is parked.
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


def _requests(event: dict[str, Any]) -> tuple[list[SyncMessage], list[SyncMessage]]:
    """The batch's pass requests, all known before the first pass so that they coalesce, and
    the first request of each message group that is handled (no bad record before it: the
    processor fails such a record and skips its group), whose passes start at once. A record
    that is no pass request is left out here; the processor reports it failed."""
    requests: list[SyncMessage] = []
    first: dict[str, SyncMessage | None] = {}
    for record in event.get("Records", []):
        group = str((record.get("attributes") or {}).get("MessageGroupId") or "")
        try:
            request = parse(event=record, model=SyncRecord).body
        except ValidationError:
            first.setdefault(group, None)
            continue
        requests.append(request)
        first.setdefault(group, request)
    return requests, [r for r in first.values() if r is not None]


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    requests, first = _requests(event)
    passes = build_passes()
    batch = PassBatch(
        requests,
        passes,
        remaining_seconds=lambda: context.get_remaining_time_in_millis() / 1000,
        passes_at_once=passes.wiring.settings.passes_at_once,
    )

    def record_handler(record: SyncRecord) -> None:
        batch.handle(
            record.body,
            attempt=int(record.attributes.ApproximateReceiveCount),
            sent_ms=record.attributes.SentTimestamp.timestamp() * 1000,
        )

    processor = SqsFifoPartialProcessor(model=SyncRecord, skip_group_on_error=True)
    processor.raise_on_entire_batch_failure = False  # report failures per message, always
    try:
        batch.start(first)
        response = process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )
    finally:
        batch.finish()
    # Failed messages, and those skipped behind them in their group (the group is the connection).
    failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
    batch.send_back(
        (r.receiptHandle, r.attributes.MessageGroupId or "")
        for r in parse(event=event, model=SqsModel).Records
        if r.messageId in failed
    )
    return response
