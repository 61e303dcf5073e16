"""A local, in-memory emulator of the Pipedrive API (the CRM side). See README.md."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sandbox.pipedrive.records import ApiError
from sandbox.pipedrive.state import PipedriveSandbox, SandboxClock
from sandbox.server import RunningServer, start

__all__ = [
    "ApiError",
    "PipedriveSandbox",
    "RunningPipedrive",
    "SandboxClock",
    "start_pipedrive_sandbox",
]


@dataclass
class RunningPipedrive:
    """A sandbox served on a loopback port. ``url`` is both the API domain and OAuth server."""

    url: str
    sandbox: PipedriveSandbox
    client_id: str
    client_secret: str
    _server: RunningServer

    @property
    def authorize_url(self) -> str:
        return f"{self.url}/oauth/authorize"

    @property
    def token_url(self) -> str:
        return f"{self.url}/oauth/token"

    def stop(self) -> None:
        self.sandbox.close()
        self._server.stop()


def start_pipedrive_sandbox(**kwargs: Any) -> RunningPipedrive:
    """Start a fresh sandbox (kwargs go to ``PipedriveSandbox``) on a free 127.0.0.1 port."""
    sandbox = PipedriveSandbox(**kwargs)
    server = start(sandbox.app)
    return RunningPipedrive(
        url=server.url,
        sandbox=sandbox,
        client_id=sandbox.client_id,
        client_secret=sandbox.client_secret,
        _server=server,
    )
