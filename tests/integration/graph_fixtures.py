"""Fixtures for the Microsoft tests: a running Graph sandbox, a fresh mailbox per test, and a
webhook receiver that answers Graph's validation handshake.

Import the fixtures into a test module (pytest only collects fixtures from conftest.py or the
module itself): ``from tests.integration.graph_fixtures import graph, mailbox  # noqa: F401``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from contactsync.providers.microsoft import MicrosoftContacts
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from sandbox.graph import RunningGraph, running_graph_sandbox
from sandbox.server import RunningServer, start


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGraph]:
    """One running sandbox per test module (tests isolate themselves with their own mailbox)."""
    with running_graph_sandbox(tmp_path_factory.mktemp("graph")) as running:
        yield running


@dataclass
class Mailbox:
    """A user of the sandbox with a folder of their own and a token source the test controls."""

    graph: RunningGraph
    user_id: str
    folder_id: str
    other_folder_id: str
    token_calls: list[bool] = field(default_factory=list)
    refresh_works: bool = True

    def token(self, force_refresh: bool) -> str:
        self.token_calls.append(force_refresh)
        if force_refresh and not self.refresh_works:
            return "a-token-the-sandbox-never-issued"
        return self.graph.sandbox.access_token_for(self.user_id)

    def adapter(self, **kwargs: Any) -> MicrosoftContacts:
        return MicrosoftContacts(
            base_url=self.graph.graph_url, token=self.token, folder_id=self.folder_id, **kwargs
        )

    def requests(self, method: str | None = None, path_end: str = "") -> list[dict[str, Any]]:
        """Requests the sandbox saw for this mailbox (sub-requests of a $batch included)."""
        with self.graph.sandbox.lock:
            seen = [r for r in self.graph.sandbox.requests if r["user_id"] == self.user_id]
        return [
            r
            for r in seen
            if (method is None or r["method"] == method) and r["path"].endswith(path_end)
        ]


@pytest.fixture
def mailbox(graph: RunningGraph, request: pytest.FixtureRequest) -> Iterator[Mailbox]:
    sb = graph.sandbox
    uid = sb.add_user(f"{request.node.name[:40]}@contoso.example", "Test User")
    box = Mailbox(graph, uid, sb.add_folder(uid, "Clients"), sb.add_folder(uid, "Archive"))
    yield box
    sb.clear_faults()  # nothing left behind for the next test


class Receiver:
    """A webhook endpoint: echoes Graph's validationToken, records notifications, and can be
    told to fail (``fail_next``) or to answer the handshake wrongly (``echo_wrong``)."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.validations = 0
        self.fail_next = 0
        self.echo_wrong = False
        self.arrived = threading.Event()
        self._server: RunningServer | None = None

    async def endpoint(self, request: Request) -> Response:
        token = request.query_params.get("validationToken")
        if token is not None:
            self.validations += 1
            return PlainTextResponse("nope" if self.echo_wrong else token)
        if self.fail_next:
            self.fail_next -= 1
            return Response(status_code=500)
        self.received.append(await request.json())
        self.arrived.set()
        return Response(status_code=202)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"{self._server.url}/hook"

    def items(self) -> list[dict[str, Any]]:
        return [item for post in self.received for item in post["value"]]

    def wait_for(self, n_items: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Block until at least ``n_items`` notification items arrived (or time runs out)."""
        done = threading.Event()
        for _ in range(int(timeout / 0.05)):
            if len(self.items()) >= n_items:
                break
            done.wait(0.05)
        return self.items()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver()
    server = start(Starlette(routes=[Route("/hook", hook.endpoint, methods=["POST"])]))
    hook._server = server
    yield hook
    server.stop()


def control(graph: RunningGraph, method: str, path: str, body: Any = None) -> Any:
    """Call the sandbox's control API over HTTP (as ``make run`` would)."""
    with httpx.Client() as client:
        resp = client.request(method, f"{graph.control_url}{path}", json=body)
    resp.raise_for_status()
    return resp.json()
