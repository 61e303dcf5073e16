"""``make run``: the whole service locally, a demo user connected, the first sync shown.

python -m local.run [--demo 0|1] [--port 3000]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from contactsync.providers.carddav import CardDavContacts, DavClient
from contactsync_cli import render_status_table

from local.aws import stop_shared_emulators
from local.demo import DEMO_EMAIL, FOLDER_NAME, Api, seed
from local.stack import CARDDAV_USER, LocalStack, describe, start_stack

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
        described = describe(stack, tokens, demo_user_id=demo.user_id)
        state_file.write_text(json.dumps(described, indent=2))
        print(f"Settings:   {described['settings_page']}   (signs Dana in; anyone: "
              f"{described['sign_in']})")  # fmt: skip
        print(f"Status:     {described['status_page']}")
        print(f"API:        {stack.api_url}   (OpenAPI: {stack.api_url}/openapi.json)")
        print(
            f"Sandboxes:  Pipedrive {stack.pipedrive.url}   Graph {stack.graph.graph_url}   "
            f"Google {stack.google.people_url}"
        )
        print(
            f"CardDAV:    Radicale {stack.carddav.url} "
            f"(user {CARDDAV_USER}, app password in the file below)"
        )
        print(f"Stack info and bearer tokens: {state_file.relative_to(ROOT)}")
        if args.demo:
            # In its own thread, so Ctrl-C stops everything at once, even mid first sync.
            threading.Thread(
                target=demo_then_wait, args=(stack, demo, data, stop), daemon=True
            ).start()
        else:
            print("Demo data seeded; no connection made (DEMO=0).")
            print("\nRunning. Press Ctrl-C to stop everything.")
        stop.wait()
    finally:
        print("\nStopping ...")
        stack.stop(within=2.0)
        stop_shared_emulators()  # the process ends with os._exit, which runs no atexit hooks
    return 0


def demo_then_wait(stack: LocalStack, demo: Any, data: Any, stop: threading.Event) -> None:
    try:
        run_demo(stack, demo, data)
    except Exception as exc:
        if not stop.is_set():
            print(f"\nThe demo stopped: {exc}")
        return
    if not stop.is_set():
        print("\nRunning. Press Ctrl-C to stop everything.")


def run_demo(stack: LocalStack, demo: Any, data: Any) -> None:
    api = Api(stack, demo.token)
    print(
        f"\nDemo user Dana (CRM user {demo.user_id}) owns {data.crm_persons} persons; her Outlook "
        f"folder, her Google group and her CardDAV address book '{FOLDER_NAME}' hold "
        f"{data.outlook_contacts}, {data.google_contacts} and {data.carddav_contacts} contacts."
    )
    api.connect_crm()
    microsoft = api.connect_microsoft()
    api.choose_folder(microsoft, FOLDER_NAME)
    google = api.connect_google()
    api.choose_folder(google, FOLDER_NAME)
    carddav = api.connect_carddav()
    print(
        f"Connected Microsoft 365 ({microsoft}), Google ({google}) and CardDAV ({carddav}) "
        f"as {demo.email}."
    )
    syncs = (("Microsoft 365", microsoft), ("Google", google), ("CardDAV", carddav))
    for name, connection_id in syncs:
        print(f"\nStarting the {name} sync:")
        api.start(connection_id)
        view = api.wait_until_active(connection_id, timeout=900, on_progress=_progress_line())
        print()
        print(f"  {name}: {view['state']}, {view.get('counts', {}).get('mapped', 0)} linked pairs")
    print("\nLetting what each sync created in the CRM reach the other address books ...")
    for _ in range(4):  # each sync's new CRM persons can make another connection's pass wait
        settle(stack)
        held = [c for c in (microsoft, google, carddav) if _confirm_if_held(api, c)]
        if not held:
            break
    summarize(stack, demo, data)
    print("\n$ contactsync status")
    print(render_status_table(api.call("GET", "/connections")["connections"]))


def _confirm_if_held(api: Api, connection_id: str) -> bool:
    """The mass-change guard held a pass (here: another sync's new CRM persons, more than 10 %
    of this connection's links): the user reads why and confirms."""
    view = api.connection(connection_id)
    if view["state"] != "needs_attention":
        return False
    print(f"  held for confirmation: {(view.get('held') or {}).get('message', '')}")
    print("  confirming it, as the user would (POST /connections/<id>/confirm)")
    api.call("POST", f"/connections/{connection_id}/confirm")
    return True


def settle(stack: LocalStack, *, still_for: float = 5.0, limit: float = 600.0) -> None:
    """Wait until no pass has run for ``still_for`` seconds (or ``limit`` has passed)."""
    deadline = time.monotonic() + limit
    count, since = stack.poller.invocations, time.monotonic()
    while time.monotonic() - since < still_for and time.monotonic() < deadline:
        time.sleep(0.5)
        if stack.poller.invocations != count:
            count, since = stack.poller.invocations, time.monotonic()


def carddav_contacts(stack: LocalStack, demo: Any) -> list[Any]:
    """The contacts in the demo's CardDAV address book, read with the adapter itself."""
    dav = DavClient(
        httpx.Client(timeout=30), lambda: (CARDDAV_USER, stack.carddav.users[CARDDAV_USER])
    )
    side = CardDavContacts(dav=dav, folder_id=demo.carddav_book)
    page = side.read(None)
    contacts = list(page.contacts)
    while not page.complete:
        page = side.read(page.position)
        contacts.extend(page.contacts)
    return [c.contact for c in contacts]


def _progress_line() -> Any:
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

    return show


def summarize(stack: LocalStack, demo: Any, data: Any) -> None:
    """How each special case of the demo data was handled, read back from the three sides."""
    pd = stack.pipedrive.sandbox
    owned = [p for p in pd.persons.values() if p.owner_id == demo.user_id and not p.deleted]
    crm = [e["value"].lower() for p in owned for e in p.emails]
    outlook_contacts = stack.graph.sandbox.folder_contacts(demo.graph_user_id, demo.folder_id)
    outlook = [
        e["address"].lower() for c in outlook_contacts for e in c.props.get("emailAddresses", [])
    ]
    google_contacts = [
        p
        for p in stack.google.sandbox.contacts(DEMO_EMAIL)
        if demo.google_group_id in str(p.get("memberships"))
    ]
    google = [e["value"].lower() for p in google_contacts for e in p.get("emailAddresses", [])]
    cards = carddav_contacts(stack, demo)
    carddav = [e.value.lower() for c in cards for e in c.emails]

    def mark(ok: bool) -> str:
        return "ok " if ok else "NOT"

    print("\nThe three address books after the first syncs:")
    print(f"  CRM persons (owned):  {data.crm_persons} -> {len(owned)}")
    print(f"  Outlook contacts:     {data.outlook_contacts} -> {len(outlook_contacts)}")
    print(f"  Google contacts:      {data.google_contacts} -> {len(google_contacts)}")
    print(f"  CardDAV contacts:     {data.carddav_contacts} -> {len(cards)}")
    print("\nHow each special case was handled:")
    shared = data.same_email
    once = all(
        crm.count(e) == outlook.count(e) == google.count(e) == carddav.count(e) == 1 for e in shared
    )
    print(f"  [{mark(once)}] {len(shared)} people with the same email everywhere: linked, "
          "each still once per side")  # fmt: skip
    person = next(p for p in owned if "phone.format@" in str(p.emails))
    contact = next(c for c in outlook_contacts if "phone.format@" in str(c.props))
    crm_phone = person.phones[0]["value"] if person.phones else ""
    outlook_phone = (contact.props.get("businessPhones") or [""])[0]
    kept = crm_phone == "+14155550199" and outlook_phone == data.reformatted_phone
    print(f"  [{mark(kept)}] phone '{outlook_phone}' (Outlook) and '{crm_phone}' (CRM): equal "
          "once normalised, so linked and neither rewritten")  # fmt: skip
    twin = data.ambiguous_email
    left = crm.count(twin) == 2 and outlook.count(twin) == google.count(twin) == 1
    left = left and carddav.count(twin) == 1
    print(f"  [{mark(left)}] '{twin}' is on two CRM persons: not guessed, left unlinked as a "
          "duplicate candidate (GET /connections/<id>/duplicates)")  # fmt: skip
    alone = all(data.not_owned_email not in book for book in (outlook, google, carddav))
    print(f"  [{mark(alone)}] '{data.not_owned_email}' belongs to another CRM user: not synced "
          "(GET /connections/<id>/explain says why)")  # fmt: skip
    print("\nTry it:")
    print(
        f"  curl -s -X POST {stack.graph.control_url}/users/{demo.graph_user_id}/contacts/"
        f'{contact.id} -d \'{{"jobTitle": "CTO"}}\'   # edit in Outlook, watch the CRM'
    )
    print(
        '  TOKEN=$(python3 -c \'import json; print(json.load(open(".local/stack.json"))'
        '["tokens"]["demo_user"])\')'
    )
    print(f'  curl -s -H "authorization: Bearer $TOKEN" {stack.api_url}/connections')


if __name__ == "__main__":
    code = main()
    # Everything that holds state outside this process is stopped by now; what is left are
    # daemon threads (a pass mid-write), which the interpreter's shutdown would wait on.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
