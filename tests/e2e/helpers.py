"""What the end-to-end tests do and look at on a running local stack: the first sync of a
connection, waiting until the service has settled, and each side's contacts as its user sees them.
The fixtures that use them are in conftest.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, NotRequired, TypedDict

from local.demo import DEMO_EMAIL, FOLDER_NAME, Api, DemoData, DemoUser, seed
from local.stack import LocalStack

# Google and CardDAV are polled: a connection is due again within a second or two.
FAST_POLLING = {"POLL_MIN_SECONDS": "1", "POLL_MAX_SECONDS": "2", "POLL_FLOOR_SECONDS": "1"}


class StackOptions(TypedDict, total=False):
    """A module's ``STACK``: how conftest's ``stack`` starts it (``start_stack``'s options)."""

    schedule_every: float
    pass_budget_seconds: float
    change_settle_seconds: float
    extra_env: dict[str, str]
    reconciler_timeout: float


class FirstSync(TypedDict):
    """A module's ``FIRST_SYNC``: conftest's ``synced`` passes it to ``first_sync``."""

    provider: str
    persons: int
    contacts: int
    timeout: NotRequired[float]
    quiet_for: NotRequired[float]


class SyncedConnection(NamedTuple):
    demo: DemoUser
    data: DemoData
    api: Api
    connection_id: str


def first_sync(
    stack: LocalStack,
    provider: str,
    *,
    persons: int,
    contacts: int,
    timeout: float = 120.0,
    quiet_for: float | None = None,
) -> SyncedConnection:
    """The demo company seeded, its user connected to the CRM and to ``provider`` (the demo folder
    or group; CardDAV's only address book chooses itself) and the first sync done; then, with
    ``quiet_for``, no pass for that many seconds."""
    demo, data = seed(stack, persons=persons, contacts=contacts)
    api = Api(stack, demo.token)
    api.connect_crm()
    if provider == "carddav":
        connection_id = api.connect_carddav()
        view = api.connection(connection_id)
        # The account's only address book was chosen by itself
        assert view["folder"] == {"id": demo.carddav_book, "name": FOLDER_NAME}, view
    else:
        connect = {"microsoft": api.connect_microsoft, "google": api.connect_google}[provider]
        connection_id = connect()
        api.choose_folder(connection_id, FOLDER_NAME)
    api.start(connection_id)
    view = api.wait_until_active(connection_id, timeout=timeout)
    assert view["state"] == "active", view
    if quiet_for is not None:
        quiet(stack, still_for=quiet_for)
    return SyncedConnection(demo, data, api, connection_id)


# --- waiting ------------------------------------------------------------------------------------


def eventually(check: Callable[[], Any], *, timeout: float = 30.0, what: str = "") -> Any:
    """``check()``'s first truthy answer, asked every 0.2 s until ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what or check}: last {last!r}")


def quiet(stack: LocalStack, *, still_for: float = 3.0) -> int:
    """Wait until earlier work (echoes of our own writes, retried deliveries) has settled: no
    reconciler invocation for ``still_for`` seconds. The count of invocations so far."""
    count, since = stack.poller.invocations, time.monotonic()
    while time.monotonic() - since < still_for:
        time.sleep(0.2)
        if stack.poller.invocations != count:
            count, since = stack.poller.invocations, time.monotonic()
    return count


# --- the CRM ------------------------------------------------------------------------------------


def crm_owned(stack: LocalStack, demo: DemoUser) -> list[Any]:
    return [
        p
        for p in stack.pipedrive.sandbox.persons.values()
        if p.owner_id == demo.user_id and not p.deleted
    ]


def crm_emails(stack: LocalStack, demo: DemoUser) -> list[str]:
    return [e["value"].lower() for p in crm_owned(stack, demo) for e in p.emails]


def crm_person(stack: LocalStack, demo: DemoUser, email: str) -> Any:
    return next(p for p in crm_owned(stack, demo) if email in str(p.emails))


# --- the address books --------------------------------------------------------------------------


def outlook(stack: LocalStack, demo: DemoUser) -> list[Any]:
    return stack.graph.sandbox.folder_contacts(demo.graph_user_id, demo.folder_id)


def outlook_emails(stack: LocalStack, demo: DemoUser) -> list[str]:
    return [
        e["address"].lower()
        for c in outlook(stack, demo)
        for e in c.props.get("emailAddresses", [])
    ]


def in_group(stack: LocalStack, demo: DemoUser) -> list[dict[str, Any]]:
    """The Google contacts in the demo's synced group."""
    return [
        p
        for p in stack.google.sandbox.contacts(DEMO_EMAIL)
        if any(
            m.get("contactGroupMembership", {}).get("contactGroupResourceName")
            == demo.google_group_id
            for m in p.get("memberships", [])
        )
    ]


def google_emails(stack: LocalStack, demo: DemoUser) -> list[str]:
    return [e["value"].lower() for p in in_group(stack, demo) for e in p.get("emailAddresses", [])]


def assert_no_duplicates(crm: list[str], book: list[str], data: DemoData) -> None:
    """No email twice on either side (``crm``, ``book``: every email of each), but the one the
    demo seeds ambiguous on purpose."""
    for email in set(crm) | set(book):
        if email == data.ambiguous_email:
            continue
        assert crm.count(email) <= 1, email
        assert book.count(email) <= 1, email


# --- mass changes -------------------------------------------------------------------------------

SETTLE_SECONDS = 3.0  # the mass-change modules' change_settle_seconds: a burst's settle period


def in_bursts(items: Sequence[Any], act: Callable[[Any], None], *, size: int = 6) -> None:
    """A user's bulk action as the service sees it: a few at a time, half a second apart."""
    for start in range(0, len(items), size):
        for item in items[start : start + size]:
            act(item)
        time.sleep(0.5)


def mapped(api: Api, connection_id: str) -> int:
    return int(api.connection(connection_id)["counts"]["mapped"])


def held(api: Api, connection_id: str) -> dict[str, Any] | None:
    view = api.connection(connection_id)
    return view if view["state"] == "needs_attention" else None


def confirm(api: Api, connection_id: str) -> None:
    api.call("POST", f"/connections/{connection_id}/confirm")
