"""Start the Graph sandbox: the identity listener over TLS and the Graph listener over http.

``running_graph_sandbox(tmp_dir)`` is what tests use; ``start_graph_sandbox(workdir)`` is what
the local runner uses (call ``stop()`` when done).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import certifi
import trustme

from sandbox.graph.notifications import NotificationWorker
from sandbox.graph.state import GraphSandbox
from sandbox.server import RunningServer, start


@dataclass
class RunningGraph:
    graph_url: str  # ".../v1.0"
    authority: str  # "https://127.0.0.1:PORT/<tenant>"
    ca_file: str  # the throwaway CA alone
    ca_bundle: str  # system CAs + the throwaway CA (for REQUESTS_CA_BUNDLE / verify=)
    sandbox: GraphSandbox
    client_id: str
    client_secret: str = field(repr=False)
    control_url: str = ""  # ".../_sandbox"
    _servers: list[RunningServer] = field(default_factory=list, repr=False)
    _worker: NotificationWorker | None = field(default=None, repr=False)

    def stop(self) -> None:
        if self._worker is not None:
            self._worker.stop()
        for server in self._servers:
            server.stop()


def write_tls_files(workdir: Path) -> tuple[str, str, str]:
    """A throwaway CA and a 127.0.0.1 server certificate: (ca file, ca bundle, server pem)."""
    workdir.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_file, bundle, server_pem = (workdir / n for n in ("ca.pem", "ca-bundle.pem", "server.pem"))
    ca.cert_pem.write_to_path(str(ca_file))
    cert.private_key_and_cert_chain_pem.write_to_path(str(server_pem))
    system = Path(ssl.get_default_verify_paths().cafile or certifi.where()).read_bytes()
    bundle.write_bytes(system + b"\n" + ca.cert_pem.bytes())
    return str(ca_file), str(bundle), str(server_pem)


def start_graph_sandbox(
    workdir: str | Path,
    *,
    sandbox: GraphSandbox | None = None,
    graph_port: int | None = None,
    identity_port: int | None = None,
) -> RunningGraph:
    sb = sandbox or GraphSandbox()
    ca_file, bundle, server_pem = write_tls_files(Path(workdir))
    identity = start(sb.identity_app, port=identity_port, ssl_certfile=server_pem,
                     ssl_keyfile=server_pem)  # fmt: skip
    try:
        graph = start(sb.graph_app, port=graph_port)
    except Exception:
        identity.stop()
        raise
    worker = NotificationWorker(sb).start()
    return RunningGraph(
        graph_url=f"{graph.url}/v1.0",
        authority=f"{identity.url}/{sb.tenant_id}",
        ca_file=ca_file,
        ca_bundle=bundle,
        sandbox=sb,
        client_id=sb.client_id,
        client_secret=sb.client_secret,
        control_url=f"{graph.url}/_sandbox",
        _servers=[graph, identity],
        _worker=worker,
    )


@contextmanager
def running_graph_sandbox(
    tmp_dir: str | Path, *, sandbox: GraphSandbox | None = None
) -> Iterator[RunningGraph]:
    running = start_graph_sandbox(tmp_dir, sandbox=sandbox)
    try:
        yield running
    finally:
        running.stop()
