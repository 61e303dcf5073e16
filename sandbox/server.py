"""Serve an ASGI app (a sandbox, the local gateway) with uvicorn on a free loopback port.

Used by tests, benchmarks and ``make run``: ``with serve(app) as server: server.url``.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn

HOST = "127.0.0.1"


def free_port() -> int:
    """A port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class RunningServer:
    url: str
    port: int
    _server: uvicorn.Server
    _thread: threading.Thread

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


def start(
    app: Any,
    *,
    port: int | None = None,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
) -> RunningServer:
    """Start ``app`` in a daemon thread and wait until it accepts connections."""
    port = port or free_port()
    config = uvicorn.Config(
        app,
        host=HOST,
        port=port,
        log_level="warning",
        access_log=False,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"serve-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"server on port {port} did not start")
        time.sleep(0.01)
    scheme = "https" if ssl_certfile else "http"
    return RunningServer(url=f"{scheme}://{HOST}:{port}", port=port, _server=server, _thread=thread)


@contextmanager
def serve(app: Any, **kwargs: Any) -> Iterator[RunningServer]:
    server = start(app, **kwargs)
    try:
        yield server
    finally:
        server.stop()


def tls_context_for(ca_file: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file)
