"""``make run``: the whole service locally, a demo user connected, the first sync shown.

python -m local.run [--demo 0|1] [--port 3000]
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from local.demo import FOLDER_NAME, Api, seed
from local.stack import LocalStack, describe, start_stack

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--demo", type=int, default=1, help="1: connect the demo user and sync")
    parser.add_argument("--port", type=int, default=3000, help="port of the local API")
    args = parser.parse_args(argv)

    print("Starting DynamoDB Local, the AWS emulator, the provider sandboxes and the API ...")
    stack = start_stack(api_port=args.port, workdir=ROOT / ".local", schedule_every=10.0)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        demo, data = seed(stack)
        tokens = {"demo_user": demo.token, "demo_admin": demo.admin_token}
        state_file = ROOT / ".local" / "stack.json"
        state_file.write_text(json.dumps(describe(stack, tokens), indent=2))
        print(f"API:        {stack.api_url}   (OpenAPI: {stack.api_url}/openapi.json)")
        print(f"Sandboxes:  Pipedrive {stack.pipedrive.url}   Graph {stack.graph.graph_url}")
        print(f"Stack info and bearer tokens: {state_file.relative_to(ROOT)}")
        if args.demo:
            run_demo(stack, demo, data)
        else:
            print("Demo data seeded; no connection made (DEMO=0).")
        print("\nRunning. Press Ctrl-C to stop everything.")
        stop.wait()
    finally:
        print("\nStopping ...")
        stack.stop()
    return 0


def run_demo(stack: LocalStack, demo: Any, data: Any) -> None:
    api = Api(stack, demo.token)
    print(
        f"\nDemo user Dana (CRM user {demo.user_id}) owns {data.crm_persons} persons; "
        f"her Outlook folder '{FOLDER_NAME}' has {data.outlook_contacts} contacts."
    )
    api.connect_crm()
    connection_id = api.connect_microsoft()
    api.choose_folder(connection_id, FOLDER_NAME)
    print(f"Connected Microsoft 365 as {demo.email}; connection {connection_id}; starting sync.")
    api.start(connection_id)

    shown = {"line": ""}

    def show(view: dict[str, Any]) -> None:
        progress = view.get("progress") or {}
        total = int(progress.get("total") or 0)
        done = int(progress.get("done") or 0)
        bar = "#" * int(30 * done / total) if total else ""
        line = f"  {view['state']:<16} [{bar:<30}] {done}/{total}"
        if line != shown["line"]:  # only changes: the output stays readable in a log too
            shown["line"] = line
            sys.stdout.write(("\r" if sys.stdout.isatty() else "\n") + line)
            sys.stdout.flush()

    view = api.wait_until_active(connection_id, timeout=600, on_progress=show)
    print()
    summarize(stack, demo, data, connection_id, view)


def summarize(stack: LocalStack, demo: Any, data: Any, connection_id: str, view: Any) -> None:
    pd = stack.pipedrive.sandbox
    gs = stack.graph.sandbox
    owned = [p for p in pd.persons.values() if p.owner_id == demo.user_id and not p.deleted]
    outlook = gs.folder_contacts(demo.graph_user_id, demo.folder_id)
    mapped = int((view.get("counts") or {}).get("mapped", 0))
    print("\nInitial sync finished:", view["state"])
    print(f"  linked pairs:            {mapped}")
    print(f"  CRM persons (owned):     {data.crm_persons} -> {len(owned)}")
    print(f"  Outlook contacts:        {data.outlook_contacts} -> {len(outlook)}")
    print(f"  same email on both sides ({len(data.same_email)}): linked, not duplicated")
    print(f"  phone '{data.reformatted_phone}' vs '+14155550199': equal once normalised")
    print(f"  ambiguous '{data.ambiguous_email}': left unlinked as a duplicate candidate")
    print(f"  '{data.not_owned_email}' is owned by another user: not synced")
    print("\nTry it:")
    print(
        f"  curl -s -X POST {stack.graph.control_url}/users/{demo.graph_user_id}/contacts/<id> "
        '-d \'{"jobTitle": "CTO"}\'   # edit in Outlook, watch the CRM'
    )
    print(
        f"  curl -s -H 'authorization: Bearer $TOKEN' {stack.api_url}/connections/{connection_id}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
