"""Reconciler: runs sync passes for the connections named by messages on the FIFO sync queue.

Messages of one connection share a message group, so passes over a connection never overlap.
A batch's messages for the same connection are coalesced into one pass. Passes of a batch run one
after another, each within the invocation's remaining time (less a margin): a connection whose
pass could not finish in time is not started and goes back on the queue at once, so the function
never times out with finished passes in its batch. Failures are reported
per message (ReportBatchItemFailures); SQS redelivers them and, after maxReceiveCount, parks them
in the dead-letter queue.
"""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools.utilities.batch import (
    SqsFifoPartialProcessor,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from contactsync.runtime.messages import SyncMessage
from contactsync.runtime.observability import (
    PASS_METRICS,
    PASSES_NOT_STARTED,
    PROPAGATION_DELAY,
    count,
    logger,
    metrics,
    milliseconds,
    tracer,
)
from contactsync.runtime.wiring import build_passes, build_queue
from contactsync.sync.reconcile import RETRY_MAX_SECONDS

processor = SqsFifoPartialProcessor(skip_group_on_error=True)
processor.raise_on_entire_batch_failure = False  # report failures per message, always
_batch: dict[str, SyncMessage] = {}  # connection id -> coalesced message, for the current batch
_done: set[str] = set()
_delays: dict[str, float] = {}  # connection id -> when its failed messages should come back
_invocation: list[LambdaContext] = []  # the current invocation's context (its time left)


class NotStarted(Exception):
    """Too little of the invocation is left for a pass: its message goes back at once."""


def record_handler(record: SQSRecord) -> None:
    message = SyncMessage.model_validate_json(record.body)
    if message.connection_id in _done:
        return  # a pass over this connection already ran in this batch with this request in it
    _done.add(message.connection_id)
    coalesced = _batch.get(message.connection_id, message)
    attempt = int(record.attributes.approximate_receive_count or 1)
    passes = build_passes()
    budget = passes.budget(_invocation[0].get_remaining_time_in_millis() / 1000)
    if budget is None:
        # Started now, it could outlive the invocation: Lambda would cut it off and the whole
        # batch, finished passes included, would come back. Returned at once instead.
        _delays[message.connection_id] = 0
        count(PASSES_NOT_STARTED)
        logger.info(
            "pass not started: too little time left", extra={"connection_id": message.connection_id}
        )
        raise NotStarted("too little time left in this invocation")
    sent_ms = record.attributes.sent_timestamp
    if sent_ms and attempt == 1:
        milliseconds(PROPAGATION_DELAY, max(0.0, time.time() * 1000 - float(sent_ms)))
    try:
        result = passes.run(coalesced, budget_seconds=budget)
    except Exception:
        # A fault of ours, not the providers': back off exponentially; SQS redrive parks a
        # message that keeps failing in the DLQ.
        _delays[message.connection_id] = min(5 * 2**attempt, RETRY_MAX_SECONDS)
        raise
    if result.status in PASS_METRICS:
        count(PASS_METRICS[result.status])
    said = {} if result.status == "done" else {"detail": result.message}
    logger.info(
        "pass finished",
        extra={
            "connection_id": message.connection_id,
            "status": result.status,
            **said,
            **result.counts,
        },
    )
    if result.status in ("throttled", "failed", "recheck", "settling"):
        # The message comes back after the delay: a throttled or failed pass is tried again,
        # writes refused as stale are planned again from fresh reads (not left to the next poll),
        # and a burst's creates, deletes and unlinks that waited are applied once it settled.
        _delays[message.connection_id] = result.retry_after
        raise RuntimeError(f"{result.status}: retry in {result.retry_after:.0f} s")
    if result.status == "busy":
        _delays[message.connection_id] = 3
        raise RuntimeError("another pass holds this connection; retry later")


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    _batch.clear()
    _done.clear()
    _delays.clear()
    _invocation[:] = [context]
    for raw in event.get("Records", []):
        try:
            message = SyncMessage.model_validate_json(raw.get("body", ""))
        except ValueError:
            continue  # the record handler reports it as failed
        seen = _batch.get(message.connection_id)
        _batch[message.connection_id] = seen.merged_with(message) if seen else message
    response = process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    # Failed messages (and those skipped behind them in their group) come back when their
    # connection can go on, not after the queue's long visibility timeout: FIFO queues have no
    # per-message delay, so this is how a throttled pass waits without sleeping.
    failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
    for raw in event.get("Records", []):
        if raw.get("messageId") in failed:
            group = raw.get("attributes", {}).get("MessageGroupId", "")
            build_queue().retry_later(raw["receiptHandle"], _delays.get(group, 30))
    return response
