"""Sending pass requests to the FIFO sync queue (MessageGroupId = connection id)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from typing import Any, Protocol

from contactsync.runtime.messages import SyncMessage


class PassQueue(Protocol):
    def send(self, messages: Iterable[SyncMessage], *, dedup_key: str | None = None) -> int: ...

    def retry_later(self, receipt_handle: str, seconds: float) -> None:
        """Make a received message visible again after ``seconds`` (FIFO queues have no
        per-message delay: this is how a throttled pass waits without sleeping)."""
        ...


def coalesce(messages: Iterable[SyncMessage]) -> list[SyncMessage]:
    """One message per connection: a burst of changes asks for one pass, not one per change."""
    by_connection: dict[str, SyncMessage] = {}
    for message in messages:
        seen = by_connection.get(message.connection_id)
        by_connection[message.connection_id] = seen.merged_with(message) if seen else message
    return list(by_connection.values())


class SqsPassQueue:
    """The real queue. ``dedup_key`` (e.g. a webhook delivery id) drops redelivered duplicates;
    without it every send is a new request."""

    def __init__(self, queue_url: str, client: Any | None = None) -> None:
        if client is None:
            import boto3  # noqa: PLC0415 - only the functions that send pay for boto3

            client = boto3.client("sqs")
        self._client = client
        self._url = queue_url

    def send(self, messages: Iterable[SyncMessage], *, dedup_key: str | None = None) -> int:
        batch = coalesce(messages)
        for start in range(0, len(batch), 10):
            entries = []
            for i, message in enumerate(batch[start : start + 10]):
                body = message.model_dump_json()
                if dedup_key:
                    raw = f"{dedup_key}:{message.connection_id}"
                    dedup = hashlib.sha256(raw.encode()).hexdigest()
                else:
                    dedup = uuid.uuid4().hex
                entries.append(
                    {
                        "Id": str(i),
                        "MessageBody": body,
                        "MessageGroupId": message.connection_id,
                        "MessageDeduplicationId": dedup,
                    }
                )
            result = self._client.send_message_batch(QueueUrl=self._url, Entries=entries)
            if result.get("Failed"):
                raise RuntimeError(f"the sync queue refused {len(result['Failed'])} message(s)")
        return len(batch)

    def retry_later(self, receipt_handle: str, seconds: float) -> None:
        self._client.change_message_visibility(
            QueueUrl=self._url,
            ReceiptHandle=receipt_handle,
            VisibilityTimeout=max(0, min(int(seconds + 0.999), 43_200)),
        )
