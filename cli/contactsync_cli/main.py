"""``contactsync``: manage contact-sync connections from a terminal, over the admin API.

Every command is one or two HTTP calls; ``--json`` prints the API's answer as is (for scripts),
otherwise it is shown as aligned tables. An error prints the API's message and exits with 1.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO
from urllib.parse import parse_qsl, urlsplit

from contactsync_cli.api import AdminApi, ApiError, find_target, path_part
from contactsync_cli.render import (
    progress_line,
    render_activity,
    render_connection,
    render_connections_table,
    render_data,
    render_explanation,
    render_settings,
    render_status_table,
)

PROVIDER_NAMES = {"microsoft": "Microsoft 365", "google": "Google", "carddav": "CardDAV"}
PASSWORD_VARIABLE = "CONTACTSYNC_CARDDAV_PASSWORD"  # noqa: S105 - the variable's name
INITIAL_SYNC = "syncing_initial"


@dataclass
class Run:
    """One command being carried out: the API, the parsed arguments, where output goes."""

    api: AdminApi
    args: argparse.Namespace
    out: TextIO

    @property
    def as_json(self) -> bool:
        return bool(getattr(self.args, "json", False))

    def show(self, data: Any, text: Callable[[Any], str] = render_data) -> None:
        shown = json.dumps(data, indent=2, ensure_ascii=False) if self.as_json else text(data)
        self.out.write(shown.rstrip("\n") + "\n")

    def connection_path(self, *rest: str) -> str:
        return "/".join(["/connections", path_part(self.args.id), *rest])


# --- commands -----------------------------------------------------------------------------------


FINISH_HINT = (
    "Your browser then lands on a page of ours; finish there from the settings page's tab, or\n"
    "here with the address it landed on: contactsync signed-in 'ADDRESS'"
)
CALLBACK_PATH = re.compile(r"^/oauth/[a-z]{1,32}/callback$")


def signed_in(run: Run) -> None:
    """Finish a sign-in with the address the provider sent the browser back to: only the user
    who started it can (their token goes with the call)."""
    parts = urlsplit(run.args.address)
    if not CALLBACK_PATH.match(parts.path):
        raise ApiError(
            "that is not the address a sign-in comes back to (…/oauth/PROVIDER/callback?code=…)"
        )
    answer = run.api.call("POST", parts.path, params=dict(parse_qsl(parts.query)))

    def text(a: dict[str, Any]) -> str:
        provider = str(a.get("connected", ""))
        if provider == "pipedrive":
            return "The CRM is connected."
        name = PROVIDER_NAMES.get(provider, provider)
        return (
            f"Signed in to {name} as {a.get('account')} (connection {a.get('connection_id')}).\n"
            f"Nothing syncs yet: contactsync settings {a.get('connection_id')} --folder NAME"
        )

    run.show(answer, text)


def connect(run: Run) -> None:
    provider = run.args.provider
    if provider == "crm":
        answer = run.api.post("/crm/connect")
        run.show(
            answer,
            lambda a: (
                "Open this address to let contactsync act on your CRM persons:\n"
                f"  {a.get('authorization_url')}\n"
                f"{FINISH_HINT}"
            ),
        )
        return
    if provider == "carddav":
        connect_carddav(run)
        return
    answer = run.api.post("/connections", {"provider": provider})

    def text(a: dict[str, Any]) -> str:
        cid = (a.get("connection") or {}).get("id", "?")
        return (
            f"Connection {cid} created.\n"
            f"Open this address to sign in to {PROVIDER_NAMES.get(provider, provider)}:\n"
            f"  {a.get('authorization_url')}\n"
            f"{FINISH_HINT}\n"
            f"Then choose what to sync: contactsync settings {cid} --folder NAME"
        )

    run.show(answer, text)


def connect_carddav(run: Run) -> None:
    """A CardDAV account signs in at once: server (or email), username, app-specific password
    (read from CONTACTSYNC_CARDDAV_PASSWORD or asked for, never taken from the command line)."""
    args = run.args
    if not args.username or not (args.server or args.email):
        raise ApiError("carddav needs --username and --server URL (or --email ADDRESS)")
    body = {"provider": "carddav", "username": args.username, "password": _carddav_password()}
    body.update({k: v for k, v in (("server_url", args.server), ("email", args.email)) if v})
    answer = run.api.post("/connections", body)

    def text(a: dict[str, Any]) -> str:
        conn = a.get("connection") or {}
        cid = conn.get("id", "?")
        folder = (conn.get("folder") or {}).get("name")
        chosen = f"Syncing address book '{folder}'." if folder else ""
        return (
            f"Connection {cid} created and signed in as {conn.get('account')}. {chosen}\n"
            f"Choose another address book or a group: contactsync settings {cid} --folder NAME"
        )

    run.show(answer, text)


def _carddav_password() -> str:
    password = os.environ.get(PASSWORD_VARIABLE, "")
    if password:
        return password
    if sys.stdin.isatty():
        return getpass.getpass("App-specific password: ")
    return sys.stdin.readline().strip()


def list_connections(run: Run) -> None:
    answer = run.api.get("/connections")
    run.show(answer, lambda a: render_connections_table(_connections(a)))


def status(run: Run) -> None:
    if not run.args.id:
        if run.args.watch:
            raise ApiError("--watch follows one connection: contactsync status ID --watch")
        answer = run.api.get("/connections")
        run.show(answer, lambda a: render_status_table(_connections(a)))
        return
    view = run.api.get(run.connection_path())
    if run.args.watch:
        view = watch(run, view)
    run.show(view, render_connection)


def watch(run: Run, view: dict[str, Any]) -> dict[str, Any]:
    """Redraw one progress line (``\\r``) until the connection leaves the initial sync."""
    drawn = shown = ""  # the last line drawn, and what is on screen (blanks included)
    pace = Pace()
    while True:
        if not run.as_json:
            line = progress_line(view, eta=pace.eta(view))
            if line != drawn:
                shown = line.ljust(len(shown))
                run.out.write("\r" + shown)
                run.out.flush()
                drawn = line
        if view.get("state") != INITIAL_SYNC:
            break
        time.sleep(run.args.interval)
        view = run.api.get(run.connection_path())
    if drawn:
        run.out.write("\n")
    return view


class Pace:
    """The watcher's own ETA: items done per second since it first saw this phase moving."""

    def __init__(self) -> None:
        self.first: tuple[float, str, int] | None = None  # (when, phase, done)

    def eta(self, view: dict[str, Any], now: float | None = None) -> float | None:
        raw = view.get("progress")
        progress: dict[str, Any] = raw if isinstance(raw, dict) else {}
        phase = str(progress.get("phase") or "")
        done, total = int(progress.get("done") or 0), int(progress.get("total") or 0)
        now = time.monotonic() if now is None else now
        if self.first is None or self.first[1] != phase or done < self.first[2]:
            self.first = (now, phase, done)
            return None
        since, _, done_then = self.first
        if not done_then < done < total:
            return None
        return (total - done) * (now - since) / (done - done_then)


def settings(run: Run) -> None:
    args = run.args
    changes: dict[str, Any] = {}
    if args.folder is not None:
        changes["folder_id"] = resolve_folder(run, args.folder)
    for option, field in (
        ("direction", "direction"),
        ("conflict_policy", "conflict_policy"),
        ("phone_region", "phone_region"),
    ):
        if getattr(args, option) is not None:
            changes[field] = getattr(args, option)
    if changes:
        view = run.api.patch(run.connection_path(), changes)
    else:
        view = run.api.get(run.connection_path())

    def text(v: dict[str, Any]) -> str:
        shown = ("Saved.\n" if changes else "") + render_settings(v)
        if v.get("state") == "configuring" and v.get("folder"):
            shown += f"\nStart syncing with: contactsync start {v.get('id')}"
        return shown

    run.show(view, text)


def resolve_folder(run: Run, wanted: str) -> str:
    """A folder/group id from its id or its name (names compared without case)."""
    answer = run.api.get(run.connection_path("groups"))
    groups = [g for g in answer.get("groups", []) if isinstance(g, dict)]
    if any(str(g.get("id")) == wanted for g in groups):
        return wanted
    named = [g for g in groups if str(g.get("name", "")).casefold() == wanted.casefold()]
    if len(named) == 1:
        return str(named[0]["id"])
    if named:
        ids = ", ".join(str(g.get("id")) for g in named)
        raise ApiError(f"several folders/groups are named {wanted!r}; pass one id: {ids}")
    choices = ", ".join(repr(str(g.get("name") or g.get("id"))) for g in groups) or "none"
    raise ApiError(f"no folder or group {wanted!r} in this account; choose one of: {choices}")


def lifecycle(action: str, hint: str = "") -> Callable[[Run], None]:
    """start, stop, resync, confirm, discard: one POST, then where the connection stands."""

    def command(run: Run) -> None:
        answer = run.api.post(run.connection_path(action))
        run.show(answer, lambda a: _state_line(a, hint.format(id=run.args.id)))

    return command


def remove(run: Run) -> None:
    """A connection (by id), or with --user / --company a whole user or company (admins)."""
    if run.args.user:
        path, what = f"/users/{path_part(run.args.user)}", f"User {run.args.user}"
    elif run.args.company:
        path, what = f"/companies/{path_part(run.args.company)}", f"Company {run.args.company}"
    elif run.args.id:
        path, what = run.connection_path(), f"Connection {run.args.id}"
    else:
        raise ApiError("name a connection id, --user USER or --company COMPANY")
    answer = run.api.delete(path)
    removed = answer.get("removed", {})
    run.show(
        answer,
        lambda a: f"{what} is removed for good ({removed.get('connections', 0)} connection(s)).",
    )


def reconnect(run: Run) -> None:
    if run.args.new_password:  # CardDAV: sign in again at once with a new app password
        body = {"password": _carddav_password()}
        answer = run.api.post(run.connection_path("reconnect"), body)
        run.show(answer, lambda a: _state_line(a, "The same account keeps its links."))
        return
    answer = run.api.post(run.connection_path("reconnect"))
    run.show(
        answer,
        lambda a: (
            "Open this address to sign in again (the same account keeps its links):\n"
            f"  {a.get('authorization_url')}\n"
            f"{FINISH_HINT}"
        ),
    )


def preview(run: Run) -> None:
    run.show(run.api.get(run.connection_path("preview")))


def explain(run: Run) -> None:
    answer = run.api.get(
        run.connection_path("explain"),
        crm_person_id=run.args.crm_person,
        provider_contact_id=run.args.provider_contact,
    )
    run.show(answer, render_explanation)


def duplicates(run: Run) -> None:
    args = run.args
    if args.merge is None:
        if args.with_ids is not None:
            raise ApiError("--with names the persons to merge into --merge KEEP")
        run.show(run.api.get(run.connection_path("duplicates")))
        return
    losers = [part.strip() for part in (args.with_ids or "").split(",") if part.strip()]
    if not losers:
        raise ApiError("--merge KEEP needs --with ID[,ID...]: the persons merged into KEEP")
    answer = run.api.post(
        run.connection_path("duplicates", "merge"), {"keep": args.merge, "merge": losers}
    )
    run.show(answer, lambda a: f"Merged {', '.join(losers)} into {args.merge}.\n" + render_data(a))


def activity(run: Run) -> None:
    args = run.args
    if args.undo is not None:
        answer = run.api.post(run.connection_path("activity", path_part(args.undo), "undo"))
        run.show(answer, lambda a: f"Undone: {args.undo}.\n" + render_data(a))
        return
    answer = run.api.get(
        run.connection_path("activity"), limit=args.limit, kind=args.kind, cursor=args.cursor
    )

    def text(a: Any) -> str:
        entries = _entries(a)
        if entries is None:
            return render_data(a)
        shown = render_activity(entries)
        more = a.get("next_cursor") or a.get("cursor")
        if more:
            shown += f"\nMore: contactsync activity {args.id} --cursor {more}"
        return shown

    run.show(answer, text)


def service_status(run: Run) -> None:
    run.show(run.api.get("/status"))


# --- shapes -------------------------------------------------------------------------------------


def _connections(answer: Any) -> list[dict[str, Any]]:
    found = answer.get("connections", []) if isinstance(answer, dict) else answer
    return [c for c in found if isinstance(c, dict)] if isinstance(found, list) else []


def _entries(answer: Any) -> list[dict[str, Any]] | None:
    if not isinstance(answer, dict):
        return None
    for key in ("entries", "items", "activity"):
        found = answer.get(key)
        if isinstance(found, list) and all(isinstance(e, dict) for e in found):
            return found
    return None


def _state_line(answer: Any, hint: str) -> str:
    """The connection's new state (the answer is its view, or holds it under "connection")."""
    if not isinstance(answer, dict):
        return render_data(answer)
    inner = answer.get("connection")
    view: dict[str, Any] = inner if isinstance(inner, dict) else answer
    if "id" not in view or "state" not in view:
        return render_data(answer)
    lines = [f"Connection {view['id']} is {view['state']}."]
    if answer.get("queued"):
        lines.append("A sync pass is queued.")
    if answer.get("message"):
        lines.append(str(answer["message"]))
    return "\n".join(lines + ([hint] if hint else []))


# --- the command line ---------------------------------------------------------------------------


def _common_options(parser: argparse.ArgumentParser) -> None:
    """On the program and on every command, so they can go before or after the command."""
    suppress = argparse.SUPPRESS
    parser.add_argument("--api", default=suppress, help="admin API base URL (env CONTACTSYNC_API)")
    parser.add_argument("--token", default=suppress, help="bearer JWT (env CONTACTSYNC_TOKEN)")
    parser.add_argument(
        "--json", action="store_true", default=suppress, help="print the API's JSON answer"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="contactsync",
        description="Manage contact-sync connections over the admin API. Next to `make run`, "
        "the API address and the demo user's token come from .local/stack.json.",
    )
    _common_options(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run: Callable[[Run], None], help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        _common_options(sub)
        sub.set_defaults(run=run)
        return sub

    def with_id(name: str, run: Callable[[Run], None], help_text: str) -> argparse.ArgumentParser:
        sub = command(name, run, help_text)
        sub.add_argument("id", help="connection id (see: contactsync list)")
        return sub

    sub = command("connect", connect, "add an account: print the address to sign in at")
    sub.add_argument("provider", choices=["microsoft", "google", "carddav", "crm"])
    sub.add_argument("--server", metavar="URL", help="carddav: the server, e.g. https://...")
    sub.add_argument("--email", metavar="ADDRESS", help="carddav: find the server from it")
    sub.add_argument("--username", help="carddav: the account's username (often the email)")
    sub = command("signed-in", signed_in, "finish a sign-in with the address it came back to")
    sub.add_argument("address", help="the address the browser landed on after signing in")
    command("list", list_connections, "list connections and what they are set up to do")
    sub = command("status", status, "how one or all connections are doing")
    sub.add_argument("id", nargs="?", help="one connection (default: all)")
    sub.add_argument(
        "--watch", action="store_true", help="live progress bar until the initial sync ends"
    )
    sub.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    sub = with_id("settings", settings, "show or change what a connection syncs, and how")
    sub.add_argument("--folder", "--group", dest="folder", metavar="NAME_OR_ID")
    sub.add_argument("--direction", help="two_way, to_crm or to_provider")
    sub.add_argument("--conflict-policy", help="newest_wins, crm_wins or provider_wins")
    sub.add_argument("--phone-region", metavar="XX", help="default phone region, e.g. US")
    with_id(
        "start",
        lifecycle("start", "Follow it: contactsync status {id} --watch"),
        "start syncing (the first sync links, then creates)",
    )
    with_id("stop", lifecycle("stop"), "stop syncing (links are kept)")
    sub = with_id("reconnect", reconnect, "sign in to the provider again")
    sub.add_argument(
        "--new-password",
        action="store_true",
        help=f"carddav: send a new app-specific password (from ${PASSWORD_VARIABLE} or asked for)",
    )
    sub = command(
        "remove",
        remove,
        "remove a connection for good (or, for admins, a whole user or company): stops it, "
        "revokes the grant where the provider allows, erases its tokens, links and activity",
    )
    target = sub.add_mutually_exclusive_group(required=True)
    target.add_argument("id", nargs="?", help="connection id (see: contactsync list)")
    target.add_argument("--user", metavar="USER", help="a user of your company, everything")
    target.add_argument("--company", metavar="COMPANY", help="your company, everything")
    with_id(
        "resync",
        lifecycle("resync", "Follow it: contactsync status {id} --watch"),
        "list both sides in full again and match (no duplicates)",
    )
    with_id("preview", preview, "what a sync would do, without writing anything")
    sub = with_id("explain", explain, "why a contact is or is not syncing")
    which = sub.add_mutually_exclusive_group(required=True)
    which.add_argument("--crm-person", metavar="N", help="a CRM person id")
    which.add_argument("--provider-contact", metavar="X", help="a provider contact id")
    sub = with_id("duplicates", duplicates, "duplicate CRM persons; merge a cluster")
    sub.add_argument("--merge", metavar="KEEP", help="the CRM person id to keep")
    sub.add_argument("--with", dest="with_ids", metavar="ID,ID", help="persons merged into KEEP")
    sub = with_id("activity", activity, "what was written, conflicts, guard trips; undo a write")
    sub.add_argument("--limit", type=int, help="entries per page")
    sub.add_argument("--kind", metavar="K", help="only this kind (write, conflict, guard, ...)")
    sub.add_argument("--cursor", help="the next page (printed under the table)")
    sub.add_argument("--undo", metavar="ENTRY", help="restore the values before this write")
    with_id("confirm", lifecycle("confirm"), "release a pass held by the mass-change guard")
    with_id("discard", lifecycle("discard"), "drop a pass held by the mass-change guard")
    command("service-status", service_status, "the service's own status, per provider")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        target = find_target(getattr(args, "api", None), getattr(args, "token", None))
        api = AdminApi(target)
        try:
            args.run(Run(api=api, args=args, out=sys.stdout))
        finally:
            api.close()
    except ApiError as exc:
        sys.stdout.flush()
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.details:
            print(render_data(exc.details), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
