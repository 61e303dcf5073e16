"""Reconciler: runs sync passes for the connections named by messages on the FIFO sync queue.

What a batch does is ``contactsync.sync.batch`` (coalescing, the time left, each failure's
delay). Failures are reported per message (ReportBatchItemFailures); SQS redelivers them and,
after maxReceiveCount, parks them in the dead-letter queue.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import (
    SqsFifoPartialProcessor,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from contactsync.runtime.messages import SyncMessage
from contactsync.runtime.observability import capture_lambda_handler, logger, metrics
from contactsync.runtime.wiring import build_passes, build_queue
from contactsync.sync.batch import PassBatch


def _messages(records: list[dict[str, Any]]) -> list[SyncMessage]:
    messages = []
    for raw in records:
        try:
            messages.append(SyncMessage.model_validate_json(raw.get("body", "")))
        except ValueError:
            continue  # the record handler reports it as failed
    return messages


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    records = event.get("Records", [])
    batch = PassBatch(
        _messages(records),
        build_passes(),
        remaining_seconds=lambda: context.get_remaining_time_in_millis() / 1000,
    )

    def record_handler(record: SQSRecord) -> None:
        sent = record.attributes.sent_timestamp
        batch.handle(
            SyncMessage.model_validate_json(record.body),
            attempt=int(record.attributes.approximate_receive_count or 1),
            sent_ms=float(sent) if sent else None,
        )

    processor = SqsFifoPartialProcessor(skip_group_on_error=True)
    processor.raise_on_entire_batch_failure = False  # report failures per message, always
    response = process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    # Failed messages (and those skipped behind them in their group) come back when their
    # connection can go on, not after the queue's long visibility timeout: FIFO queues have no
    # per-message delay, so this is how a throttled pass waits without sleeping.
    failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
    for raw in records:
        if raw.get("messageId") in failed:
            group = raw.get("attributes", {}).get("MessageGroupId", "")
            build_queue().retry_later(raw["receiptHandle"], batch.delay(group))
    return response
