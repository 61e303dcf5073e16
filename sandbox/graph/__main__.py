"""Run the Graph sandbox standalone: ``python -m sandbox.graph --port 8100``.

The app registration's secret is never printed: set GRAPH_SANDBOX_CLIENT_SECRET to choose it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading

from sandbox.graph.running import start_graph_sandbox
from sandbox.graph.state import GraphSandbox


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=None, help="Graph listener port")
    parser.add_argument("--identity-port", type=int, default=None, help="identity (TLS) port")
    parser.add_argument("--workdir", default=None, help="where the CA files go")
    parser.add_argument("--client-id", default=None)
    parser.add_argument("--demo-user", default="demo@contoso.example", help="seed one user")
    parser.add_argument("--demo-contacts", type=int, default=25)
    args = parser.parse_args()
    sb = GraphSandbox(
        client_id=args.client_id, client_secret=os.environ.get("GRAPH_SANDBOX_CLIENT_SECRET")
    )
    if args.demo_user:
        uid = sb.add_user(args.demo_user, "Demo User")
        sb.seed_contacts(uid, sb.users[uid].default_folder_id, args.demo_contacts)
    workdir = args.workdir or tempfile.mkdtemp(prefix="graph-sandbox-")
    running = start_graph_sandbox(
        workdir, sandbox=sb, graph_port=args.port, identity_port=args.identity_port
    )
    print(f"graph_url   {running.graph_url}", flush=True)
    print(f"control_url {running.control_url}", flush=True)
    print(f"authority   {running.authority}", flush=True)
    print(f"client_id   {running.client_id}", flush=True)
    print(
        f"ca_bundle   {running.ca_bundle}   (export REQUESTS_CA_BUNDLE to this for MSAL)",
        flush=True,
    )
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        running.stop()


if __name__ == "__main__":
    main()
