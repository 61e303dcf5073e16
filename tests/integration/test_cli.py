"""The ``contactsync`` command line against real HTTP servers.

list/status/settings/start/stop run against the whole local stack (the real admin API, DynamoDB
Local, the sandboxes); the routes the API is still growing (preview, explain, duplicates,
activity, ...) and the odd answers (5xx, redraws of a live progress bar) run against a small
loopback server that answers with canned JSON in the API's shapes and records what it was asked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from contactsync_cli import render_status_table
from contactsync_cli.main import Pace, main
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from local.demo import Api, seed
from local.stack import LocalStack, start_stack
from sandbox.server import RunningServer, free_port, start

CLI_SCRIPT = Path(sys.executable).parent / "contactsync"


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture(autouse=True)
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test runs in an empty directory with no API settings in its environment."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CONTACTSYNC_API", raising=False)
    monkeypatch.delenv("CONTACTSYNC_TOKEN", raising=False)
    return tmp_path


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> Result:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse: usage errors
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


# --- the real local stack -----------------------------------------------------------------------


@dataclass
class Connected:
    stack: LocalStack
    token: str
    connection_id: str

    def args(self, *argv: str) -> list[str]:
        return ["--api", self.stack.api_url, "--token", self.token, *argv]


@pytest.fixture(scope="module")
def connected(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Connected]:
    """A demo user who signed in to the CRM and to Microsoft 365; nothing chosen or started yet."""
    stack = start_stack(workdir=tmp_path_factory.mktemp("stack"), schedule_every=3600)
    try:
        demo, _ = seed(stack, persons=20, contacts=20)
        api = Api(stack, demo.token)
        api.connect_crm()
        yield Connected(stack, demo.token, api.connect_microsoft())
    finally:
        stack.stop()


def test_list_shows_a_new_connection_waiting_for_its_folder(
    connected: Connected, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a connection that is signed in but not configured
    # When the admin lists connections
    result = run_cli(capsys, *connected.args("list"))
    # Then one aligned table row says who it is and that it waits to be configured
    assert result.code == 0, result.err
    header, row = result.out.splitlines()
    assert header.split() == [
        "ID",
        "PROVIDER",
        "ACCOUNT",
        "STATE",
        "FOLDER/GROUP",
        "DIRECTION",
        "MAPPED",
        "LAST",
        "SUCCESS",
    ]
    assert row.split()[:6] == [
        connected.connection_id,
        "microsoft",
        "dana@acme.example",
        "configuring",
        "-",
        "two_way",
    ]
    assert header.index("STATE") == row.index("configuring")


def test_settings_refuse_a_folder_that_does_not_exist(
    connected: Connected, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the account has one folder, "CRM contacts"
    # When the admin names another
    result = run_cli(
        capsys, *connected.args("settings", connected.connection_id, "--folder", "Nope")
    )
    # Then the CLI says which folders there are, exits 1, and nothing was changed
    assert result.code == 1
    assert "no folder or group 'Nope'" in result.err
    assert "'CRM contacts'" in result.err
    assert "Traceback" not in result.err


def test_settings_pass_on_the_apis_refusal_of_a_bad_value(
    connected: Connected, capsys: pytest.CaptureFixture[str]
) -> None:
    # When the admin asks for a direction the API does not know
    result = run_cli(
        capsys, *connected.args("settings", connected.connection_id, "--direction", "sideways")
    )
    # Then the API's message and where the problem is are printed, with exit code 1
    assert result.code == 1
    assert "error: the request is not valid" in result.err
    assert "direction" in result.err
    assert "Traceback" not in result.err


def test_settings_choose_the_folder_by_name_and_the_phone_region(
    connected: Connected, capsys: pytest.CaptureFixture[str]
) -> None:
    # When the admin names the folder in other letter case and sets a region
    result = run_cli(
        capsys,
        *connected.args(
            "settings",
            connected.connection_id,
            "--folder",
            "crm CONTACTS",
            "--phone-region",
            "gb",
            "--conflict-policy",
            "crm_wins",
        ),
    )
    # Then the API holds the folder by its id and shows the new settings
    assert result.code == 0, result.err
    lines = dict(line.split("  ", 1) for line in result.out.splitlines()[1:-1])
    assert result.out.startswith("Saved.")
    assert lines["folder/group"].strip() == "CRM contacts"
    assert lines["phone region"].strip() == "GB"
    assert lines["conflict policy"].strip() == "crm_wins"
    assert f"contactsync start {connected.connection_id}" in result.out


def test_preview_before_the_first_sync(
    connected: Connected, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a configured connection that never synced
    # When the admin previews it, as text and as JSON
    text = run_cli(capsys, *connected.args("preview", connected.connection_id))
    as_json = run_cli(capsys, *connected.args("preview", connected.connection_id, "--json"))
    # Then both answer; the text shows every top-level figure the API sent
    assert text.code == as_json.code == 0, text.err + as_json.err
    for key, value in as_json.json().items():
        if isinstance(value, int) and not isinstance(value, bool):
            assert any(
                line.startswith(key.replace("_", " ")) and line.endswith(f" {value}")
                for line in text.out.splitlines()
            ), key


def test_start_then_watch_the_first_sync_to_its_end(
    connected: Connected, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a configured connection
    # When the admin starts it
    started = run_cli(capsys, *connected.args("start", connected.connection_id))
    assert started.code == 0, started.err
    assert f"Connection {connected.connection_id} is syncing_initial." in started.out
    # And watches it
    watched = run_cli(
        capsys, *connected.args("status", connected.connection_id, "--watch", "--interval", "0.1")
    )
    # Then a progress line is redrawn in place until the first sync is over, then the detail
    assert watched.code == 0, watched.err
    bar, _, detail = watched.out.partition("\n")
    assert bar.startswith("\r")
    assert "[" in bar
    details = dict(line.split("  ", 1) for line in detail.splitlines())
    assert details["state"].strip() == "active"
    assert "mapped" in details["counts"]
    assert details["last error"].strip() == "none"
    assert "UTC" in details["last success"]


def test_status_table_shows_every_connection(
    connected: Connected, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the first sync is done
    # When the admin asks for the status of all connections
    result = run_cli(capsys, *connected.args("status"))
    # Then one row per connection: state, phase, last success, the linked pairs
    assert result.code == 0, result.err
    header, row = result.out.splitlines()
    for title in ("STATE", "PHASE", "PROGRESS", "ETA", "LAST SUCCESS", "CURSOR AGE", "MAPPED"):
        assert title in header
    assert row.startswith(connected.connection_id)
    assert row[header.index("STATE") :].startswith("active")
    assert not row[header.index("LAST SUCCESS") :].startswith("-")


def test_json_answers_are_the_apis_own(
    connected: Connected, capsys: pytest.CaptureFixture[str]
) -> None:
    # When the admin asks for JSON, before or after the command
    listed = run_cli(capsys, *connected.args("--json", "list"))
    one = run_cli(capsys, *connected.args("status", connected.connection_id, "--json"))
    # Then stdout is the API's JSON and nothing else
    assert listed.code == one.code == 0
    assert [c["id"] for c in listed.json()["connections"]] == [connected.connection_id]
    assert one.json()["state"] == "active"
    assert one.json()["folder"]["name"] == "CRM contacts"


def test_an_unknown_connection_is_an_error_not_a_traceback(
    connected: Connected, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_cli(capsys, *connected.args("status", "no-such-connection"))
    assert result.code == 1
    assert result.err.strip() == "error: no connection 'no-such-connection'"


def test_a_bad_token_is_refused_with_a_hint(
    connected: Connected, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_cli(capsys, "--api", connected.stack.api_url, "--token", "not-a-jwt", "list")
    assert result.code == 1
    assert "Unauthorized" in result.err
    assert "CONTACTSYNC_TOKEN" in result.err


def test_next_to_make_run_the_stack_file_is_enough(
    connected: Connected, capsys: pytest.CaptureFixture[str], elsewhere: Path
) -> None:
    # Given the .local/stack.json that `make run` writes, and no options or environment
    (elsewhere / ".local").mkdir()
    (elsewhere / ".local" / "stack.json").write_text(
        json.dumps({"api": connected.stack.api_url, "tokens": {"demo_user": connected.token}})
    )
    # When the admin just asks for the status
    result = run_cli(capsys, "status")
    # Then it is the demo user's
    assert result.code == 0, result.err
    assert connected.connection_id in result.out


def test_the_installed_command_stops_the_connection(connected: Connected) -> None:
    # Given the `contactsync` script installed in the virtualenv
    assert CLI_SCRIPT.exists(), "install it: .venv/bin/pip install --no-deps -e cli"
    env = {**os.environ, "CONTACTSYNC_API": connected.stack.api_url}
    env["CONTACTSYNC_TOKEN"] = connected.token
    # When the admin stops the connection
    stop = subprocess.run(  # noqa: S603 - our own script, fixed arguments
        [str(CLI_SCRIPT), "stop", connected.connection_id],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    # Then it says so and exits 0; a 4xx afterwards exits 1 with only the message
    assert stop.returncode == 0, stop.stderr
    assert stop.stdout.strip() == f"Connection {connected.connection_id} is stopped."
    missing = subprocess.run(  # noqa: S603
        [str(CLI_SCRIPT), "preview", "no-such-connection"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: ")
    assert "Traceback" not in missing.stderr


# --- canned answers in the API's shapes ---------------------------------------------------------


@dataclass
class Asked:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    authorization: str


@dataclass
class CannedApi:
    """Answers (method, path) with queued (status, JSON) replies; the last one repeats."""

    server: RunningServer | None = None
    replies: dict[tuple[str, str], list[tuple[int, Any]]] = field(default_factory=dict)
    asked: list[Asked] = field(default_factory=list)

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    def answer(self, method: str, path: str, *replies: tuple[int, Any]) -> None:
        self.replies[(method, path)] = list(replies)

    def args(self, *argv: str) -> list[str]:
        return ["--api", self.url, "--token", "canned-token", *argv]

    async def respond(self, request: Request) -> Response:
        raw = await request.body()
        path = request.scope["raw_path"].decode()  # as sent: an id's %2F stays inside its segment
        self.asked.append(
            Asked(
                request.method,
                path,
                dict(request.query_params),
                json.loads(raw) if raw else None,
                request.headers.get("authorization", ""),
            )
        )
        queued = self.replies.get((request.method, path))
        if not queued:
            return JSONResponse({"message": "Not Found"}, status_code=404)
        status, body = queued.pop(0) if len(queued) > 1 else queued[0]
        if isinstance(body, str):
            return PlainTextResponse(body, status_code=status)
        return JSONResponse(body, status_code=status)


@pytest.fixture(scope="module")
def canned_server() -> Iterator[CannedApi]:
    canned = CannedApi()
    methods = ["GET", "POST", "PATCH", "DELETE"]
    app = Starlette(routes=[Route("/{path:path}", canned.respond, methods=methods)])
    canned.server = start(app)
    try:
        yield canned
    finally:
        canned.server.stop()


@pytest.fixture
def canned(canned_server: CannedApi) -> CannedApi:
    canned_server.replies.clear()
    canned_server.asked.clear()
    return canned_server


NOW = datetime.now(UTC)


def view(**changes: Any) -> dict[str, Any]:
    """A connection as GET /connections/{id} shows it."""
    base: dict[str, Any] = {
        "id": "c1",
        "provider": "google",
        "account": "dana@acme.example",
        "state": "active",
        "direction": "two_way",
        "folder": {"id": "contactGroups/myContacts", "name": "My Contacts"},
        "conflict_policy": "newest_wins",
        "phone_region": "US",
        "progress": {"phase": "idle", "done": 0, "total": 0},
        "last_success_at": (NOW - timedelta(minutes=5)).isoformat(),
        "last_error": None,
        "held": None,
        "counts": {"mapped": 61},
    }
    return base | changes


def test_connect_prints_where_to_sign_in(
    canned: CannedApi, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the API hands out sign-in addresses
    canned.answer(
        "POST",
        "/connections",
        (201, {"connection": view(state="configuring"), "authorization_url": "https://sign.in/g"}),
    )
    canned.answer("POST", "/crm/connect", (200, {"authorization_url": "https://crm.in/a"}))
    # When the admin adds a Google account and connects the CRM
    google = run_cli(capsys, *canned.args("connect", "google"))
    crm = run_cli(capsys, *canned.args("connect", "crm"))
    # Then each prints its address and the calls carried the bearer token
    assert google.code == crm.code == 0
    assert "Connection c1 created." in google.out
    assert "sign in to Google:\n  https://sign.in/g" in google.out
    assert "https://crm.in/a" in crm.out
    assert canned.asked[0].body == {"provider": "google"}
    assert {a.authorization for a in canned.asked} == {"Bearer canned-token"}


def test_signed_in_finishes_the_sign_in_with_the_users_token(
    canned: CannedApi, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the address a Microsoft sign-in came back to
    done = {"connected": "microsoft", "connection_id": "c1", "account": "dana@acme.example"}
    canned.answer("POST", "/oauth/microsoft/callback", (200, done))
    address = "http://127.0.0.1:3000/oauth/microsoft/callback?code=abc&state=c1.nonce"
    # When the user hands it to the CLI
    answer = run_cli(capsys, *canned.args("signed-in", address))
    # Then the callback is POSTed with the code, the state and the user's token
    assert answer.code == 0, answer.err
    assert "Signed in to Microsoft 365 as dana@acme.example" in answer.out
    asked = canned.asked[-1]
    assert (asked.method, asked.query) == ("POST", {"code": "abc", "state": "c1.nonce"})
    assert asked.authorization == "Bearer canned-token"
    # And an address that is not a callback is refused before anything is sent
    wrong = run_cli(capsys, *canned.args("signed-in", "http://127.0.0.1:3000/connections"))
    assert wrong.code != 0 and "not the address a sign-in comes back to" in wrong.err


def test_remove_a_connection_a_user_or_a_company(
    canned: CannedApi, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the API removes what it is asked to
    canned.answer("DELETE", "/connections/c1", (200, {"removed": {"connections": 1}}))
    canned.answer("DELETE", "/users/u%231", (200, {"removed": {"connections": 2, "users": 1}}))
    canned.answer("DELETE", "/companies/acme", (200, {"removed": {"connections": 3, "users": 2}}))
    # When the admin removes a connection, a user and the company
    one = run_cli(capsys, *canned.args("remove", "c1"))
    user = run_cli(capsys, *canned.args("remove", "--user", "u#1"))
    company = run_cli(capsys, *canned.args("remove", "--company", "acme"))
    # Then each DELETE went to its route and the answer says what went
    assert one.code == user.code == company.code == 0, (one.err, user.err, company.err)
    assert [(a.method, a.path) for a in canned.asked] == [
        ("DELETE", "/connections/c1"),
        ("DELETE", "/users/u%231"),
        ("DELETE", "/companies/acme"),
    ]
    assert one.out.strip() == "Connection c1 is removed for good (1 connection(s))."
    assert user.out.strip() == "User u#1 is removed for good (2 connection(s))."
    # And naming nothing, or two things, is refused before any call
    assert run_cli(capsys, *canned.args("remove", "c1", "--user", "u")).code != 0


def test_connect_and_reconnect_carddav_with_an_app_password(
    canned: CannedApi, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the app-specific password in the environment (never on the command line)
    monkeypatch.setenv("CONTACTSYNC_CARDDAV_PASSWORD", "abcd-efgh-ijkl-mnop")
    created = view(provider="carddav", state="configuring", account="ada@icloud.com")
    created["folder"] = {"id": "https://contacts.icloud.com/1/card/", "name": "Card"}
    canned.answer("POST", "/connections", (201, {"connection": created}))
    canned.answer("POST", "/connections/c1/reconnect", (200, {"connection": view()}))
    # When the admin connects an iCloud account, and later sends a new password
    made = run_cli(
        capsys, *canned.args("connect", "carddav", "--email", "ada@icloud.com",
                             "--username", "ada@icloud.com")
    )  # fmt: skip
    again = run_cli(capsys, *canned.args("reconnect", "c1", "--new-password"))
    # Then the login went in the request bodies, and each says where the connection stands
    assert made.code == again.code == 0
    assert canned.asked[0].body == {
        "provider": "carddav",
        "username": "ada@icloud.com",
        "password": "abcd-efgh-ijkl-mnop",
        "email": "ada@icloud.com",
    }
    assert "signed in as ada@icloud.com. Syncing address book 'Card'." in made.out
    assert canned.asked[1].body == {"password": "abcd-efgh-ijkl-mnop"}
    assert again.out.splitlines()[0] == "Connection c1 is active."
    assert "abcd-efgh" not in made.out + again.out


def test_reconnect_and_resync(canned: CannedApi, capsys: pytest.CaptureFixture[str]) -> None:
    canned.answer("POST", "/connections/c1/reconnect", (200, {"authorization_url": "https://x/"}))
    canned.answer("POST", "/connections/c1/resync", (200, view(state="syncing_initial")))
    reconnect = run_cli(capsys, *canned.args("reconnect", "c1"))
    resync = run_cli(capsys, *canned.args("resync", "c1"))
    assert "  https://x/" in reconnect.out.splitlines()
    assert resync.out.splitlines()[0] == "Connection c1 is syncing_initial."


def test_preview_shows_counts_reasons_and_candidates(
    canned: CannedApi, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a preview in the shape the API describes
    canned.answer(
        "GET",
        "/connections/c1/preview",
        (
            200,
            {
                "linked": 20,
                "create_in_crm": 5,
                "create_in_provider": 300,
                "out_of_scope": {"not owned by you": 1},
                "duplicate_candidates": [
                    {"crm_id": "7", "email": "twice@partner.example"},
                    {"crm_id": "8", "email": "twice@partner.example"},
                ],
            },
        ),
    )
    # When the admin previews
    result = run_cli(capsys, *canned.args("preview", "c1"))
    # Then counts are aligned lines, reasons are nested, candidates a table
    assert result.code == 0
    lines = result.out.splitlines()
    assert "linked              20" in lines
    assert "out of scope:" in lines
    assert "  not owned by you  1" in lines
    assert lines[lines.index("duplicate candidates:") + 1].split() == ["CRM", "ID", "EMAIL"]
    assert lines[-1].split() == ["8", "twice@partner.example"]


def test_an_unexpected_shape_is_still_shown(
    canned: CannedApi, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the API answers with deeper nesting than we know of
    canned.answer(
        "GET",
        "/connections/c1/duplicates",
        (
            200,
            {
                "clusters": [
                    {"key": "email", "persons": [{"id": 7, "name": "Twin One"}]},
                    {"key": "phone", "persons": []},
                ],
                "ambiguous": [],
            },
        ),
    )
    # When it is shown as text
    result = run_cli(capsys, *canned.args("duplicates", "c1"))
    # Then every value is there, as a readable outline
    assert result.code == 0, result.err
    assert "  - key  email" in result.out
    assert "Twin One" in result.out
    assert "ambiguous  none" in result.out


def test_explain_asks_by_crm_person_and_says_why(
    canned: CannedApi, capsys: pytest.CaptureFixture[str]
) -> None:
    canned.answer(
        "GET",
        "/connections/c1/explain",
        (
            200,
            {
                "syncing": False,
                "reasons": ["the person is owned by another CRM user"],
                "mapping": None,
                "history": [{"id": "e1", "kind": "unlink", "message": "owner changed"}],
            },
        ),
    )
    result = run_cli(capsys, *canned.args("explain", "c1", "--crm-person", "42"))
    assert result.code == 0
    assert canned.asked[-1].query == {"crm_person_id": "42"}
    lines = result.out.splitlines()
    assert lines[:4] == [
        "syncing  no",
        "why:",
        "  - the person is owned by another CRM user",
        "mapping  -",
    ]
    assert lines[4] == "history:"
    assert lines[5].split()[:3] == ["ENTRY", "WHEN", "KIND"]
    assert lines[6].split()[:3] == ["e1", "-", "unlink"]


def test_explain_needs_exactly_one_contact(capsys: pytest.CaptureFixture[str]) -> None:
    neither = run_cli(capsys, "--api", "http://127.0.0.1:9", "--token", "t", "explain", "c1")
    both = run_cli(
        capsys,
        *["--api", "http://127.0.0.1:9", "--token", "t", "explain", "c1"],
        *["--crm-person", "1", "--provider-contact", "x"],
    )
    assert neither.code == both.code == 2
    assert "not allowed with argument" in both.err


def test_duplicates_merge_sends_the_keeper_and_the_others(
    canned: CannedApi, capsys: pytest.CaptureFixture[str]
) -> None:
    canned.answer("POST", "/connections/c1/duplicates/merge", (200, {"kept": "5", "merged": 2}))
    result = run_cli(capsys, *canned.args("duplicates", "c1", "--merge", "5", "--with", "6, 7"))
    assert result.code == 0
    assert canned.asked[-1].body == {"keep": "5", "merge": ["6", "7"]}
    assert result.out.startswith("Merged 6, 7 into 5.")


def test_duplicates_merge_without_others_is_refused_before_any_call(
    canned: CannedApi, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_cli(capsys, *canned.args("duplicates", "c1", "--merge", "5"))
    assert result.code == 1
    assert "needs --with" in result.err
    assert canned.asked == []


def test_activity_is_a_table_of_changes_with_the_next_page(
    canned: CannedApi, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given one write and one guard trip
    entries = [
        {
            "id": "e2",
            "at": (NOW - timedelta(minutes=2)).isoformat(),
            "kind": "write",
            "side": "crm",
            "crm_id": "42",
            "message": "updated from Outlook",
            "before": {"job_title": "CEO", "notes": None},
            "after": {"job_title": "CTO", "notes": ""},
            "undoable": True,
        },
        {"id": "e1", "at": NOW.isoformat(), "kind": "guard", "message": "held 40 deletes"},
    ]
    canned.answer(
        "GET", "/connections/c1/activity", (200, {"entries": entries, "next_cursor": "abc"})
    )
    # When the admin asks for writes, ten at a time
    result = run_cli(capsys, *canned.args("activity", "c1", "--limit", "10", "--kind", "write"))
    # Then the filter went to the API and the changes read before -> after
    assert result.code == 0
    assert canned.asked[-1].query == {"limit": "10", "kind": "write"}
    header, write, guard, more = result.out.splitlines()
    assert header.split()[:3] == ["ENTRY", "WHEN", "KIND"]
    assert write.startswith("e2")
    assert write[header.index("UNDO") :].startswith("yes")
    assert write.endswith("job_title: CEO -> CTO")
    assert "held 40 deletes" in guard
    assert more == "More: contactsync activity c1 --cursor abc"


def test_activity_undo_posts_to_the_entry(
    canned: CannedApi, capsys: pytest.CaptureFixture[str]
) -> None:
    canned.answer("POST", "/connections/c1/activity/e%2F2/undo", (200, {"undone": "e/2"}))
    result = run_cli(capsys, *canned.args("activity", "c1", "--undo", "e/2"))
    assert result.code == 0, result.err
    assert canned.asked[-1].method == "POST"
    assert result.out.startswith("Undone: e/2.")


def test_confirm_and_discard_a_held_pass(
    canned: CannedApi, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given nothing is held at first, then a pass is held
    error = {"code": "conflict", "message": "no pass is waiting for confirmation", "details": {}}
    held = view(state="needs_attention", held={"message": "40 deletes in Outlook"})
    canned.answer(
        "POST",
        "/connections/c1/confirm",
        (409, {"error": error}),
        (200, {"queued": True, "connection": held}),
    )
    canned.answer(
        "POST",
        "/connections/c1/discard",
        (200, {"discarded": True, "message": "fix the cause", "connection": view()}),
    )
    # When the admin confirms twice, then discards
    refused = run_cli(capsys, *canned.args("confirm", "c1"))
    confirmed = run_cli(capsys, *canned.args("confirm", "c1"))
    discarded = run_cli(capsys, *canned.args("discard", "c1"))
    # Then the refusal is the API's message alone, and each success says where things stand
    assert (refused.code, refused.out) == (1, "")
    assert refused.err == "error: no pass is waiting for confirmation\n"
    assert confirmed.out == "Connection c1 is needs_attention.\nA sync pass is queued.\n"
    assert discarded.out == "Connection c1 is active.\nfix the cause\n"


def test_service_status_is_a_table_per_provider(
    canned: CannedApi, capsys: pytest.CaptureFixture[str]
) -> None:
    canned.answer(
        "GET",
        "/status",
        (
            200,
            {
                "providers": {
                    "microsoft": {"passes": 40, "errors": 1, "degraded": False},
                    "google": {"passes": 10, "errors": 5, "degraded": True},
                }
            },
        ),
    )
    result = run_cli(capsys, *canned.args("service-status"))
    lines = result.out.splitlines()
    assert lines[0] == "providers:"
    assert lines[1].split() == ["NAME", "PASSES", "ERRORS", "DEGRADED"]
    assert lines[3].split() == ["google", "10", "5", "yes"]


def test_watch_redraws_one_line_until_the_initial_sync_ends(
    canned: CannedApi, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a first sync that is a quarter, then half way, then done
    started = (datetime.now(UTC) - timedelta(seconds=50)).isoformat()
    canned.answer(
        "GET",
        "/connections/c1",
        (200, view(state="syncing_initial", progress={"phase": "listing", "done": 0})),
        (
            200,
            view(
                state="syncing_initial",
                progress={"phase": "writing", "done": 25, "total": 100, "started_at": started},
            ),
        ),
        (
            200,
            view(
                state="syncing_initial",
                progress={"phase": "writing", "done": 50, "total": 100, "started_at": started},
            ),
        ),
        (200, view(state="active")),
    )
    # When the admin watches it
    result = run_cli(capsys, *canned.args("status", "c1", "--watch", "--interval", "0.01"))
    # Then each change is redrawn over the last on one line, with an ETA, then the detail
    assert result.code == 0, result.err
    bar, _, detail = result.out.partition("\n")
    frames = bar.split("\r")[1:]
    assert len(frames) == 4
    assert frames[2].startswith("syncing_initial  [###############...............]  50/100 (50%)")
    assert "ETA 5" in frames[2]  # about 50 s: the pace so far over what is left
    assert frames[3].startswith("active")
    assert len(frames[3]) >= len(frames[2])  # the longer line before is blanked out
    assert "state            active" in detail


def test_a_server_error_without_json_is_reported_plainly(
    canned: CannedApi, capsys: pytest.CaptureFixture[str]
) -> None:
    canned.answer("GET", "/connections", (500, "boom"))
    result = run_cli(capsys, *canned.args("list"))
    assert result.code == 1
    assert result.err == "error: 500 Internal Server Error\n"


def test_an_unreachable_api_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    # Given nobody listens on this port
    nobody = f"http://127.0.0.1:{free_port()}"
    result = run_cli(capsys, "--api", nobody, "--token", "t", "list")
    assert result.code == 1
    assert result.err.startswith(f"error: cannot reach the API at {nobody}")


def test_options_beat_the_environment_which_beats_the_stack_file(
    canned: CannedApi,
    capsys: pytest.CaptureFixture[str],
    elsewhere: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a stack file, and an environment naming the same API with another token
    canned.answer("GET", "/connections", (200, {"connections": []}))
    (elsewhere / ".local").mkdir()
    stack = {"api": canned.url, "tokens": {"demo_user": "from-file"}}
    (elsewhere / ".local" / "stack.json").write_text(json.dumps(stack))
    assert run_cli(capsys, "list").code == 0
    monkeypatch.setenv("CONTACTSYNC_API", canned.url)
    monkeypatch.setenv("CONTACTSYNC_TOKEN", "from-env")
    assert run_cli(capsys, "list").code == 0
    result = run_cli(capsys, "list", "--token", "from-option")
    # Then each call used the nearest source, and an empty list says what to do next
    assert [a.authorization for a in canned.asked] == [
        "Bearer from-file",
        "Bearer from-env",
        "Bearer from-option",
    ]
    assert result.out.startswith("No connections yet.")


def test_without_any_settings_it_says_what_to_set(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "status")
    assert result.code == 1
    assert "CONTACTSYNC_API" in result.err


# --- the pure status table ----------------------------------------------------------------------


def test_status_table_spells_out_progress_eta_cursor_age_expiry_and_error() -> None:
    # Given a connection half way through its first sync and one that needs a new sign-in
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    syncing = view(
        id="c1",
        state="syncing_initial",
        progress={
            "phase": "writing",
            "done": 100,
            "total": 400,
            "started_at": "2026-01-01T11:59:00+00:00",
        },
        last_success_at=None,
        cursors={"crm": {"taken_at": "2026-01-01T11:58:00Z"}, "provider": {"taken_at": None}},
        subscription_expires_at="2026-01-03T16:00:00Z",
    )
    expired = view(
        id="c2",
        provider="microsoft",
        state="needs_reauth",
        last_success_at="2026-01-01T09:00:00+00:00",
        last_error={"code": "AuthExpired", "message": "sign in again", "at": "2026-01-01T10:00Z"},
        cursor_age_seconds=7200,
    )
    # When the table is drawn
    header, first, second = render_status_table([syncing, expired], now=now).splitlines()

    # Then every column lines up and says it in words and units
    def column(row: str, title: str) -> str:
        start = header.index(title)
        return row[start:].split("  ", maxsplit=1)[0]

    assert column(first, "PROGRESS") == "100/400 (25%)"
    assert column(first, "ETA") == "3m"  # 100 in 60 s, 300 left
    assert column(first, "LAST SUCCESS") == "-"
    assert column(first, "CURSOR AGE") == "2m"
    assert column(first, "SUBSCRIPTION") == "in 2d 4h"
    assert column(second, "STATE") == "needs_reauth"
    assert column(second, "LAST SUCCESS") == "3h ago"
    assert column(second, "CURSOR AGE") == "2h"
    assert column(second, "LAST ERROR") == "sign in again"
    assert render_status_table([]).startswith("No connections yet.")


def test_the_watcher_estimates_the_time_left_from_the_pace_it_sees() -> None:
    # Given a view without an ETA of its own, seen at 0/400, 100/400 ten seconds later
    def seen(done: int, phase: str = "writing") -> dict[str, Any]:
        return {"progress": {"phase": phase, "done": done, "total": 400}}

    pace = Pace()
    assert pace.eta(seen(0), now=0.0) is None
    # Then 300 left at 10 per second is 30 s; a new phase starts the count again
    assert pace.eta(seen(100), now=10.0) == 30.0
    assert pace.eta(seen(5, "listing"), now=11.0) is None
