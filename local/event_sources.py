"""What AWS does between the queue, the clock and our functions, done locally.

- ``QueuePoller`` is the SQS event source mapping: it long-polls the sync queue, hands batches to
  the reconciler as SQS events, deletes what succeeded and leaves reported failures on the queue
  (they come back after a visibility timeout, and after maxReceiveCount go to the DLQ). An
  invocation cut off at the function's timeout (see ``lambda_runtime``) leaves its whole batch.
  With ``concurrency`` > 1 it runs that many invocations at once, as Lambda scales a FIFO
  queue's consumers out by message group (the queue never hands one group to two of them).
  One thread receives and hands each batch to an invocation of its own: the emulator decides
  which groups are in flight when a receive begins, so two receives waiting side by side could
  both take the same group's messages (two passes of one connection at once, the second one
  "busy"). While invocations run, it asks without waiting, a little apart: a long poll begun
  while a group was in flight would hold that group's next message back until the wait ends.
- ``ScheduleTicker`` is the EventBridge schedule: it invokes the scheduler with a scheduled event.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from local.lambda_runtime import InvocationTimedOut, LambdaContext

Handler = Callable[[dict[str, Any], Any], Any]


def sqs_event(messages: list[dict[str, Any]], arn: str) -> dict[str, Any]:
    """The event Lambda's event source mapping makes of messages received from the queue at
    ``arn`` (with ``AttributeNames=["All"]``)."""
    records = [
        {
            "messageId": m["MessageId"],
            "receiptHandle": m["ReceiptHandle"],
            "body": m["Body"],
            "attributes": m.get("Attributes", {}),
            "messageAttributes": {},
            "md5OfBody": m.get("MD5OfBody", ""),
            "eventSource": "aws:sqs",
            "eventSourceARN": arn,
            "awsRegion": "us-east-1",
        }
        for m in messages
    ]
    return {"Records": records}


class QueuePoller:
    SHORT_POLL_GAP = 0.02  # seconds between receives that do not wait, while invocations run

    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        handler: Handler,
        *,
        batch_size: int = 10,
        function_name: str = "ReconcilerFunction",
        concurrency: int = 1,
    ) -> None:
        self._sqs = sqs
        self._url = queue_url
        self._handler = handler
        self._batch = batch_size
        self._function = function_name
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._concurrency = concurrency
        self._running = 0  # invocations under way
        self._slots = threading.Condition()
        self._receiver = threading.Thread(target=self._run, name="sqs-poller", daemon=True)
        self._invocations: list[threading.Thread] = []
        self._count = threading.Lock()
        self.invocations = 0
        self.timeouts = 0  # invocations cut off at the function's timeout
        self.errors: list[str] = []

    def start(self) -> QueuePoller:
        self._receiver.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._slots:
            self._slots.notify_all()
        self._receiver.join(timeout=10)
        for thread in list(self._invocations):
            thread.join(timeout=10)

    def pause(self) -> None:
        """Leave messages in the queue (as a disabled event source mapping would) until resumed:
        lets a test make edits on both sides that one pass then sees together."""
        self._paused.set()
        time.sleep(1.5)  # a receive already in flight finishes ...
        with self._slots:  # ... and what it received is handled
            while self._running and not self._stop.is_set():
                self._slots.wait(0.5)

    def resume(self) -> None:
        self._paused.clear()

    def _free_slot(self) -> bool:
        """Wait until fewer than ``concurrency`` invocations run; False when stopping."""
        with self._slots:
            while self._running >= self._concurrency and not self._stop.is_set():
                self._slots.wait(0.5)
            return not self._stop.is_set()

    def _run(self) -> None:
        arn = f"arn:aws:sqs:us-east-1:000000000000:{self._url.rsplit('/', 1)[-1]}"
        while not self._stop.is_set():
            if self._paused.is_set():
                time.sleep(0.1)
                continue
            if not self._free_slot():
                break
            busy = self._running > 0
            try:
                received = self._sqs.receive_message(
                    QueueUrl=self._url,
                    MaxNumberOfMessages=self._batch,
                    WaitTimeSeconds=0 if busy else 1,
                    AttributeNames=["All"],
                    MessageSystemAttributeNames=["All"],
                )
            except Exception as exc:  # the emulator went away while stopping
                if not self._stop.is_set():
                    self.errors.append(repr(exc))
                    time.sleep(0.5)
                continue
            messages = received.get("Messages", [])
            if messages:
                self._invoke(messages, arn)
            elif busy:
                time.sleep(self.SHORT_POLL_GAP)

    def _invoke(self, messages: list[dict[str, Any]], arn: str) -> None:
        """Run one invocation with ``messages`` on a thread of its own."""

        def invocation() -> None:
            try:
                self.poll_once(messages, arn)
            finally:
                with self._slots:
                    self._running -= 1
                    self._slots.notify_all()

        with self._slots:
            self._running += 1
        thread = threading.Thread(target=invocation, name="sqs-invocation", daemon=True)
        self._invocations = [t for t in self._invocations if t.is_alive()] + [thread]
        thread.start()

    def poll_once(self, messages: list[dict[str, Any]], arn: str) -> None:
        with self._count:
            self.invocations += 1
        try:
            result = self._handler(
                sqs_event(messages, arn), LambdaContext(function_name=self._function)
            )
            failed = {f["itemIdentifier"] for f in (result or {}).get("batchItemFailures", [])}
        except Exception as exc:  # crashed or timed out: the whole batch comes back
            with self._count:
                self.timeouts += isinstance(exc, InvocationTimedOut)
                self.errors.append(repr(exc))
            failed = {m["MessageId"] for m in messages}
        for message in messages:
            if message["MessageId"] in failed:
                continue  # back on the queue when its visibility timeout ends, as in AWS
            else:
                self._sqs.delete_message(QueueUrl=self._url, ReceiptHandle=message["ReceiptHandle"])


def scheduled_event(now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "000000000000",
        "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:000000000000:rule/contactsync-schedule"],
        "detail": {},
    }


class ScheduleTicker:
    def __init__(self, handler: Handler, *, every_seconds: float = 60.0) -> None:
        self._handler = handler
        self._every = every_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="schedule", daemon=True)
        self.errors: list[str] = []

    def start(self) -> ScheduleTicker:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def tick(self) -> Any:
        return self._handler(scheduled_event(), LambdaContext(function_name="SchedulerFunction"))

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            try:
                self.tick()
            except Exception as exc:
                self.errors.append(repr(exc))
