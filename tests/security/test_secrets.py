"""No token or secret stored in plain text, and no token, email or phone number in the logs.

One local stack runs a whole sync (CRM and Microsoft 365 connected, first pass, an edit on each
side arriving by push, a rejected webhook; a CardDAV account connected with its app-specific
password and synced) while everything the handlers log is captured: the
Powertools logger's own output (what Lambda ships to CloudWatch) and every other library's
records at INFO. Then every item of the table and every captured line is searched for what the
sandboxes know to be secret or personal.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from contactsync.runtime.observability import RedactingFormatter, logger

from local.demo import FOLDER_NAME, Api, DemoData, DemoUser, seed
from local.stack import LocalStack, start_stack
from tests.security.leaks import Watchlist, item_leaks, log_leaks, scan_table

pytestmark = pytest.mark.e2e

# Loggers of the emulators serving the stack, not of our functions: their lines are not ours.
NOT_OURS = ("uvicorn", "sandbox", "asyncio")


@dataclass
class SyncedRun:
    stack: LocalStack
    demo: DemoUser
    data: DemoData
    logs: str


class _Capture(logging.Handler):
    """Every record of the other libraries, formatted as a plain text line."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(("contactsync", *NOT_OURS)):
            return
        self.lines.append(self.format(record))


def _settle(stack: LocalStack, *, still_for: float = 2.0, timeout: float = 30.0) -> None:
    count, since, deadline = stack.poller.invocations, time.monotonic(), time.monotonic() + timeout
    while time.monotonic() - since < still_for and time.monotonic() < deadline:
        time.sleep(0.2)
        if stack.poller.invocations != count:
            count, since = stack.poller.invocations, time.monotonic()


def _drive_a_sync(stack: LocalStack) -> tuple[DemoUser, DemoData]:
    demo, data = seed(stack, persons=25, contacts=25)
    api = Api(stack, demo.token)
    api.connect_crm()
    connection_id = api.connect_microsoft()
    api.choose_folder(connection_id, FOLDER_NAME)
    api.start(connection_id)
    view = api.wait_until_active(connection_id, timeout=120)
    assert view["state"] == "active", view
    # An edit on each side, delivered by push
    contact = stack.graph.sandbox.folder_contacts(demo.graph_user_id, demo.folder_id)[0]
    stack.graph.sandbox.update_contact(demo.graph_user_id, contact.id, {"jobTitle": "Logged"})
    pd = stack.pipedrive.sandbox
    person = next(p for p in pd.persons.values() if p.owner_id == demo.user_id)
    pd.update_person(pd.users[demo.user_id], person.id, {"job_title": "Logged"}, source="app")
    # And webhooks that are turned away (they log a warning with the reason)
    httpx.post(f"{stack.api_url}/webhooks/microsoft", json={"value": [{"subscriptionId": "x"}]})
    httpx.post(f"{stack.api_url}/webhooks/pipedrive", json={}, auth=(connection_id, "wrong"))
    # A CardDAV account: its app-specific password goes through the API into the vault
    carddav = api.connect_carddav()
    api.start(carddav)
    assert api.wait_until_active(carddav, timeout=120)["state"] == "active"
    _settle(stack)
    return demo, data


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyncedRun]:
    stack = start_stack(workdir=tmp_path_factory.mktemp("secrets"), schedule_every=3600)
    ours = io.StringIO()
    handler = logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    others, root = _Capture(), logging.getLogger()
    saved = (handler.setStream(ours), logger.log_level, root.level)
    logger.setLevel(logging.DEBUG)  # the dev stages' level (template.yaml LOG_LEVEL)
    root.setLevel(logging.INFO)
    root.addHandler(others)
    try:
        demo, data = _drive_a_sync(stack)
    except BaseException:
        stack.stop()
        raise
    finally:
        root.removeHandler(others)
        handler.setStream(saved[0])
        logger.setLevel(saved[1])
        root.setLevel(saved[2])
    try:
        yield SyncedRun(stack, demo, data, ours.getvalue() + "\n".join(others.lines))
    finally:
        stack.stop()


def test_no_token_or_client_secret_is_stored_in_plain_text(run: SyncedRun) -> None:
    # Given every item in the table after a full sync
    items = scan_table(run.stack.aws.client("dynamodb"), run.stack.aws.table_name)
    watch = Watchlist.from_stack(run.stack, jwts=[run.demo.token, run.demo.admin_token])
    # (and the scan is not vacuous: the sealed credentials and tokens are there, as binaries)
    assert any(item["SK"]["S"] == "TOKENS" and "sealed" in item for item in items)
    assert any("tokens" in item for item in items)
    assert len(watch.tokens) >= 6
    # Then no issued token, client secret, webhook secret or JWT is in any attribute
    assert item_leaks(items, watch) == []


def test_the_logs_carry_no_token_email_or_phone_number(run: SyncedRun) -> None:
    # Given what the handlers logged during the sync (the check is not vacuous)
    assert "graph notification rejected" in run.logs
    assert "crm webhook rejected" in run.logs
    watch = Watchlist.from_stack(run.stack, jwts=[run.demo.token, run.demo.admin_token])
    assert watch.emails and watch.phones
    # Then no token, no seeded contact e-mail address and no seeded phone number is in them
    assert log_leaks(run.logs, watch) == []


# --- the checkers catch a planted leak ----------------------------------------------------------


def _unredacted_line(message: str, **extra: object) -> str:
    record = logging.LogRecord("contactsync", logging.INFO, __file__, 1, message, None, None)
    record.__dict__.update(extra)
    return logging.Formatter("%(message)s " + " ".join(f"%({k})s" for k in extra)).format(record)


def _redacted_line(message: str, **extra: object) -> str:
    record = logging.LogRecord("contactsync", logging.INFO, __file__, 1, message, None, None)
    record.__dict__.update(extra)
    return RedactingFormatter().format(record)


def test_the_log_checker_catches_an_email_a_phone_and_a_token(run: SyncedRun) -> None:
    # Given a seeded email, phone and an issued token
    watch = Watchlist.from_stack(run.stack)
    email = run.data.same_email[0]
    token = next(iter(run.stack.graph.sandbox._refresh))
    message = f"pass failed for {email} ({run.data.reformatted_phone})"
    # When a log line carries them without redaction, Then the checker reports all three
    leaks = log_leaks(_unredacted_line(message, refresh_token=token), watch)
    assert any(email in leak for leak in leaks)
    assert any(leak.startswith("phone") for leak in leaks)
    assert any(leak.startswith("secret") for leak in leaks)
    # And the same line through our formatter is clean
    assert log_leaks(_redacted_line(message, refresh_token=token), watch) == []


def test_the_item_scan_catches_a_token_stored_in_plain_text(run: SyncedRun) -> None:
    # Given an item holding a real refresh token in clear (a vault bypass)
    watch = Watchlist.from_stack(run.stack)
    token = next(iter(run.stack.graph.sandbox._refresh))
    planted = {
        "PK": {"S": "CONN#planted"},
        "SK": {"S": "CONNECTION"},
        "credentials": {"B": f'{{"refresh_token": "{token}"}}'.encode()},
    }
    # When the items are scanned, Then the token and the token field are reported
    leaks = item_leaks([planted], watch)
    assert any("secret" in leak for leak in leaks) and any(
        "refresh_token" in leak for leak in leaks
    )
