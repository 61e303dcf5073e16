"""The background worker that delivers change and lifecycle notifications.

Like Graph, it gathers the changes made within a short window into one POST per notification URL,
expects a 2xx within a few seconds, and retries failures a few times with backoff (see
``GraphSandbox.delivered``). The control API can make it duplicate, delay or reorder deliveries.
"""

from __future__ import annotations

import threading

import httpx

from sandbox.graph.state import Delivery, GraphSandbox

RESPONSE_TIMEOUT = 3.0  # Graph wants an answer within 3 seconds


def deliver(sb: GraphSandbox, client: httpx.Client, deliveries: list[Delivery]) -> None:
    """POST each delivery once (twice when duplicating) and record how it went."""
    for d in deliveries:
        copies = 2 if sb.delivery["duplicate"] else 1
        for _ in range(copies):
            try:
                status: int | None = client.post(d.url, json={"value": d.items}).status_code
            except httpx.HTTPError:
                status = None
            sb.delivered(d, status)
            if status is None or not 200 <= status < 300:
                break


class NotificationWorker:
    """A daemon thread that sends due deliveries every few milliseconds until stopped."""

    def __init__(self, sb: GraphSandbox, *, tick: float = 0.05) -> None:
        self._sb = sb
        self._tick = tick
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="graph-notify", daemon=True)

    def start(self) -> NotificationWorker:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        with httpx.Client(timeout=RESPONSE_TIMEOUT) as client:
            while not self._stop.wait(self._tick):
                deliver(self._sb, client, self._sb.take_due())


def flush(sb: GraphSandbox) -> None:
    """Deliver everything pending now, without waiting for the window (in-process tests)."""
    with httpx.Client(timeout=RESPONSE_TIMEOUT) as client:
        deliver(sb, client, sb.take_due(everything=True))
