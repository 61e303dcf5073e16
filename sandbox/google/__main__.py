"""Run the Google sandbox standalone: ``python -m sandbox.google --port 8200``.

The OAuth client secret is never printed: set GOOGLE_SANDBOX_CLIENT_SECRET to choose it.
"""

from __future__ import annotations

import argparse
import os
import threading

from sandbox.google.running import start_google_sandbox
from sandbox.google.state import GoogleSandbox


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--client-id", default=None)
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument("--demo-user", default="demo@gmail.example", help="seed one user")
    parser.add_argument("--demo-contacts", type=int, default=25)
    args = parser.parse_args()
    sb = GoogleSandbox(
        latency_ms=args.latency_ms,
        client_id=args.client_id,
        client_secret=os.environ.get("GOOGLE_SANDBOX_CLIENT_SECRET"),
    )
    if args.demo_user:
        sb.add_user(args.demo_user, "Demo User")
        sb.seed_contacts(args.demo_user, args.demo_contacts)
    running = start_google_sandbox(sandbox=sb, port=args.port)
    print(f"people_url    {running.people_url}", flush=True)
    print(f"authorize_url {running.authorize_url}", flush=True)
    print(f"token_url     {running.token_url}", flush=True)
    print(f"control_url   {running.control_url}", flush=True)
    print(f"client_id     {running.client_id}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        running.stop()


if __name__ == "__main__":
    main()
