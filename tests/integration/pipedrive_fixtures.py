"""Fixtures for the Pipedrive sandbox and adapter tests: a served sandbox with one company and
two users, and a tiny webhook receiver on loopback that checks HTTP basic auth.

Test modules pull these in with ``pytest_plugins = ["tests.integration.pipedrive_fixtures"]``.
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from contactsync.providers.pipedrive import PipedrivePersons
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sandbox.pipedrive import PipedriveSandbox, RunningPipedrive, start_pipedrive_sandbox
from sandbox.server import RunningServer, start

FAST_RETRIES = (0.05, 0.1, 0.2)  # the real schedule is 3 s, 30 s, 150 s


@dataclass
class PipedriveWorld:
    """A running sandbox with company "Acme", its user ``owner_id`` and a colleague."""

    running: RunningPipedrive
    company_id: int
    owner_id: int
    other_id: int
    token: str

    @property
    def sandbox(self) -> PipedriveSandbox:
        return self.running.sandbox

    @property
    def url(self) -> str:
        return self.running.url

    def http(self, token: str | None = None) -> httpx.Client:
        headers = {"authorization": f"Bearer {token or self.token}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)

    def adapter(self, **kwargs: Any) -> PipedrivePersons:
        kwargs.setdefault("token", lambda force: self.token)
        kwargs.setdefault("backoff_s", 0.01)
        return PipedrivePersons(base_url=self.url, owner_id=self.owner_id, **kwargs)

    def requests(self, route: str) -> int:
        return self.sandbox.stats_snapshot().get(route, 0)


@pytest.fixture
def pipedrive() -> Iterator[PipedriveWorld]:
    running = start_pipedrive_sandbox(burst_limit=10_000, webhook_retry_delays=FAST_RETRIES)
    sandbox = running.sandbox
    # Contact sync on: these tests round-trip job titles, birthdays, notes and addresses. The
    # strict default (off) has its own tests (test_*_without_contact_sync_*).
    company = sandbox.add_company("Acme", contact_sync=True)
    owner = sandbox.add_user(company, "Olive Owner", "olive@acme.test")
    other = sandbox.add_user(company, "Colin Colleague", "colin@acme.test")
    world = PipedriveWorld(running, company, owner, other, sandbox.issue_token(owner))
    try:
        yield world
    finally:
        running.stop()


@dataclass
class WebhookReceiver:
    """Collects webhook POSTs that carry the right basic-auth credentials."""

    url: str
    user: str
    password: str
    received: list[dict[str, Any]] = field(default_factory=list)
    rejected: int = 0
    answers: deque[int] = field(default_factory=deque)  # statuses to answer with, then 200
    _server: RunningServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.01)
        with self._lock:
            return list(self.received)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    hook = WebhookReceiver(url="", user="conn-1", password=secrets.token_urlsafe(16))
    expected = "Basic " + base64.b64encode(f"{hook.user}:{hook.password}".encode()).decode()

    async def accept(request: Request) -> JSONResponse:
        given = request.headers.get("authorization", "")
        if not secrets.compare_digest(given.encode(), expected.encode()):
            with hook._lock:
                hook.rejected += 1
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        body = await request.json()
        with hook._lock:
            status = hook.answers.popleft() if hook.answers else 200
            if status == 200:
                hook.received.append(body)
        return JSONResponse({"ok": status == 200}, status_code=status)

    server = start(Starlette(routes=[Route("/hooks/pipedrive", accept, methods=["POST"])]))
    hook.url = f"{server.url}/hooks/pipedrive"
    hook._server = server
    try:
        yield hook
    finally:
        server.stop()
