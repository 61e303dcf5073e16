"""Calling the Lambda handlers in this process as API Gateway and Lambda would, with a queue that
counts instead of sending (so a timing leaves the queue call out) and fresh per-cold-start state.
"""

from __future__ import annotations

import base64
import importlib
import json
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from contactsync.runtime.messages import SyncMessage
from contactsync.runtime.queue import coalesce

from local.lambda_runtime import LambdaContext

SQS_BATCH = 10  # SendMessageBatch carries at most 10 messages


@dataclass
class CountingQueue:
    """A ``PassQueue`` that coalesces like the SQS one and counts what it would have sent."""

    messages: list[SyncMessage] = field(default_factory=list)
    sends: int = 0  # send() calls
    requests: int = 0  # SendMessageBatch requests the SQS queue would have made

    def send(self, messages: Iterable[SyncMessage], *, dedup_key: str | None = None) -> int:
        batch = coalesce(messages)
        self.sends += 1
        self.requests += -(-len(batch) // SQS_BATCH)
        self.messages.extend(batch)
        return len(batch)

    def retry_later(self, receipt_handle: str, seconds: float) -> None:
        return None


def reset_cold_start() -> None:
    """Settings and clients are built once per cold start: start a new one (new environment)."""
    from contactsync.runtime import settings, wiring

    settings.get_settings.cache_clear()
    for name in (
        "bind_store",
        "build_queue",
        "build_doorbell",
        "build_wiring",
        "build_passes",
        "webhook_key",
    ):
        builder = getattr(wiring, name, None)
        if builder is not None:
            builder.cache_clear()


@contextmanager
def handler_with_queue(module_name: str, queue: CountingQueue) -> Iterator[ModuleType]:
    """The handler module with its ``build_queue`` answering ``queue`` (restored afterwards)."""
    reset_cold_start()
    module = importlib.import_module(module_name)
    saved = dict(vars(module))
    module.build_queue = lambda: queue
    try:
        yield module
    finally:
        for name in ("build_queue", "_subscription"):
            if name in saved:
                setattr(module, name, saved[name])


def http_event(
    method: str,
    path: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An API Gateway HTTP API (payload 2.0) event, as local/gateway.py builds them."""
    now = time.time()
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": f"{method} {path}",
        "rawPath": path,
        "rawQueryString": "&".join(f"{k}={v}" for k, v in (query or {}).items()),
        "headers": {"content-type": "application/json", **(headers or {})},
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "bench",
            "domainName": "127.0.0.1",
            "domainPrefix": "bench",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "bench",
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": f"{method} {path}",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": False,
    }
    if query:
        event["queryStringParameters"] = query
    if body is not None:
        event["body"] = body if isinstance(body, str) else json.dumps(body)
    return event


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def context(function_name: str) -> LambdaContext:
    return LambdaContext(function_name=function_name)
