"""Webhook delivery: a background worker that POSTs v2 payloads like Pipedrive does.

Real policy (guide-for-webhooks-v2): any 2xx is success; otherwise (or after a 10 s timeout) it
retries 3 more times after 3, 30 and 150 seconds, with ``meta.attempt`` counting 1..4. Ten failed
first attempts ban the webhook for 30 minutes (events are lost meanwhile). The retry delays are a
constructor argument so tests can use milliseconds. The control API can duplicate, delay and
reorder deliveries to exercise a receiver's de-duplication and ordering.
"""

from __future__ import annotations

import base64
import copy
import heapq
import itertools
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

BAN_AFTER_FAILURES = 10
BAN_SECONDS = 30 * 60


@dataclass
class DeliveryMode:
    duplicate: bool = False  # send every delivery twice
    delay_ms: int = 0  # hold each delivery this long before its first attempt
    reorder: bool = False  # send whatever is due at once in reverse order
    drop_rate: float = 0.0  # lose this share of deliveries before their first attempt


@dataclass(order=True)
class _Pending:
    due: float
    seq: int
    webhook_id: int = field(compare=False)
    url: str = field(compare=False)
    auth: tuple[str, str] | None = field(compare=False)
    payload: dict[str, Any] = field(compare=False)
    attempt: int = field(compare=False, default=1)


def basic_auth(user: str, password: str) -> str:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return f"Basic {token}"


class DeliveryWorker:
    """Sends queued webhook payloads from one daemon thread; records every attempt."""

    def __init__(
        self,
        *,
        retry_delays: tuple[float, ...] = (3.0, 30.0, 150.0),
        timeout: float = 10.0,
        on_result: Callable[[int, int, int | None], None] | None = None,
    ) -> None:
        self.retry_delays = retry_delays
        self.mode = DeliveryMode()
        self._timeout = timeout
        self._on_result = on_result  # (webhook_id, attempt, http status or None)
        self._queue: list[_Pending] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._log: list[dict[str, Any]] = []
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._in_flight = 0
        self._drops = random.Random(0)  # seeded: runs with dropped deliveries repeat

    # --- producer side -------------------------------------------------------------------------

    def enqueue(
        self, webhook_id: int, url: str, auth: tuple[str, str] | None, payload: dict[str, Any]
    ) -> None:
        with self._cond:
            if self.mode.drop_rate and self._drops.random() < self.mode.drop_rate:
                self._log.append({"webhook_id": webhook_id, "attempt": 0, "status": "dropped",
                                  "payload": copy.deepcopy(payload)})  # fmt: skip
                return
            copies = 2 if self.mode.duplicate else 1
            due = time.monotonic() + self.mode.delay_ms / 1000
            for _ in range(copies):
                item = _Pending(due, next(self._seq), webhook_id, url, auth, copy.deepcopy(payload))
                heapq.heappush(self._queue, item)
            self._ensure_thread()
            self._cond.notify_all()

    def deliveries(self) -> list[dict[str, Any]]:
        with self._cond:
            return [dict(entry) for entry in self._log]

    def clear_log(self) -> None:
        with self._cond:
            self._log.clear()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until nothing is queued or in flight (tests use this instead of sleeping)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.05))
            return True

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # --- worker side ---------------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stopping = False
            self._thread = threading.Thread(
                target=self._run, name="pipedrive-webhooks", daemon=True
            )
            self._thread.start()

    def _take_due(self) -> list[_Pending] | None:
        with self._cond:
            while not self._stopping:
                now = time.monotonic()
                if self._queue and self._queue[0].due <= now:
                    batch = []
                    while self._queue and self._queue[0].due <= now:
                        batch.append(heapq.heappop(self._queue))
                    if self.mode.reorder:
                        batch.reverse()
                    self._in_flight += len(batch)
                    return batch
                wait = self._queue[0].due - now if self._queue else 0.5
                self._cond.wait(max(0.001, wait))
            return None

    def _run(self) -> None:
        with httpx.Client(timeout=self._timeout) as client:
            while (batch := self._take_due()) is not None:
                for item in batch:
                    self._attempt(client, item)
                    with self._cond:
                        self._in_flight -= 1
                        self._cond.notify_all()

    def _attempt(self, client: httpx.Client, item: _Pending) -> None:
        item.payload["meta"]["attempt"] = item.attempt
        headers = {"content-type": "application/json", "user-agent": "Pipedrive Webhooks"}
        if item.auth is not None:
            headers["authorization"] = basic_auth(*item.auth)
        status: int | None
        try:
            response = client.post(item.url, json=item.payload, headers=headers)
            status = response.status_code
        except httpx.HTTPError:
            status = None
        ok = status is not None and 200 <= status < 300
        meta = item.payload["meta"]
        entry = {
            "webhook_id": item.webhook_id,
            "event_id": meta["id"],
            "action": meta["action"],
            "entity": meta["entity"],
            "entity_id": meta["entity_id"],
            "change_source": meta["change_source"],
            "attempt": item.attempt,
            "status": status,
            "ok": ok,
            "at": time.time(),
        }
        with self._cond:
            self._log.append(entry)
        if self._on_result is not None:
            self._on_result(item.webhook_id, item.attempt, status)
        if not ok and item.attempt <= len(self.retry_delays):
            retry = _Pending(
                time.monotonic() + self.retry_delays[item.attempt - 1],
                next(self._seq),
                item.webhook_id,
                item.url,
                item.auth,
                item.payload,
                item.attempt + 1,
            )
            with self._cond:
                heapq.heappush(self._queue, retry)
                self._cond.notify_all()
