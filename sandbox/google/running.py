"""Start the Google sandbox: one plain-http listener for the People API, OAuth and control API.

``running_google_sandbox()`` is what tests use; ``start_google_sandbox()`` is what the local runner
and benchmarks use (call ``stop()`` when done).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sandbox.google.app import google_app
from sandbox.google.state import GoogleSandbox
from sandbox.server import RunningServer, start


@dataclass
class RunningGoogle:
    url: str  # "http://127.0.0.1:PORT"
    people_url: str  # same as url: the People API lives under /v1/...
    authorize_url: str  # like https://accounts.google.com/o/oauth2/v2/auth
    token_url: str  # like https://oauth2.googleapis.com/token
    control_url: str  # "/_sandbox" control API
    client_id: str
    client_secret: str = field(repr=False)
    sandbox: GoogleSandbox = field(repr=False)
    _server: RunningServer | None = field(default=None, repr=False)

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()


def start_google_sandbox(
    *, sandbox: GoogleSandbox | None = None, port: int | None = None
) -> RunningGoogle:
    sb = sandbox or GoogleSandbox()
    server = start(google_app(sb), port=port)
    return RunningGoogle(
        url=server.url,
        people_url=server.url,
        authorize_url=f"{server.url}/o/oauth2/v2/auth",
        token_url=f"{server.url}/token",
        control_url=f"{server.url}/_sandbox",
        client_id=sb.client_id,
        client_secret=sb.client_secret,
        sandbox=sb,
        _server=server,
    )


@contextmanager
def running_google_sandbox(*, sandbox: GoogleSandbox | None = None) -> Iterator[RunningGoogle]:
    running = start_google_sandbox(sandbox=sandbox)
    try:
        yield running
    finally:
        running.stop()
