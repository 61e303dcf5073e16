"""One-way connections, end to end, for Microsoft 365 and Google: the side that feeds the sync is
the truth for what it changes, and a hand edit on the side it feeds never stops its edits.

A user reported it as "contacts are not updated": direction to_crm, a linked person edited in
the CRM (correctly not sent to Outlook), and afterwards no Outlook edit of that person reached
the CRM any more. Each test here edits the fed side by hand first, then the source, repeatedly,
through the sandboxes' own APIs; the real handlers, queue and store do the rest.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from contactsync.store.audit import list_audit

from local.demo import DEMO_EMAIL, FOLDER_NAME, Api, DemoData, DemoUser, seed
from local.stack import LocalStack, start_stack
from tests.e2e.helpers import FAST_POLLING, crm_person, eventually, quiet

pytestmark = pytest.mark.e2e

ARRIVES_WITHIN = 45.0  # seconds; the bug left edits waiting for the hourly safety poll


def digits(value: str) -> str:
    return re.sub(r"\D", "", value)[-10:]


@dataclass
class AddressBook:
    """The provider side of one connection, as the user edits it in Outlook or Google."""

    stack: LocalStack
    demo: DemoUser
    provider: str

    def contact(self, email: str) -> tuple[str, dict[str, Any]]:
        """(id, fields as the provider answers them) of the contact with this email."""
        if self.provider == "microsoft":
            contacts = self.stack.graph.sandbox.folder_contacts(
                self.demo.graph_user_id, self.demo.folder_id
            )
            found = next(c for c in contacts if email in str(c.props))
            return found.id, dict(found.props)
        people = self.stack.google.sandbox.contacts(DEMO_EMAIL)
        person = next(p for p in people if email in str(p.get("emailAddresses")))
        return str(person["resourceName"]), person

    def job_title(self, email: str) -> str:
        _, fields = self.contact(email)
        if self.provider == "microsoft":
            return str(fields.get("jobTitle") or "")
        return str(next(iter(fields.get("organizations") or [{}])).get("title") or "")

    def phones(self, email: str) -> set[str]:
        _, fields = self.contact(email)
        if self.provider == "microsoft":
            values = [*fields.get("businessPhones", []), fields.get("mobilePhone") or ""]
        else:
            values = [p.get("value", "") for p in fields.get("phoneNumbers", [])]
        return {digits(v) for v in values if v}

    def set_job_title(self, email: str, title: str) -> None:
        contact_id, _ = self.contact(email)
        if self.provider == "microsoft":
            self.stack.graph.sandbox.update_contact(
                self.demo.graph_user_id, contact_id, {"jobTitle": title}
            )
        else:
            organizations = [{"title": title}]
            self.stack.google.sandbox.update_contact(
                DEMO_EMAIL, contact_id, {"organizations": organizations}
            )

    def set_mobile(self, email: str, phone: str) -> None:
        contact_id, _ = self.contact(email)
        if self.provider == "microsoft":
            self.stack.graph.sandbox.update_contact(
                self.demo.graph_user_id, contact_id, {"mobilePhone": phone}
            )
        else:
            numbers = [{"value": phone, "type": "mobile"}]
            self.stack.google.sandbox.update_contact(
                DEMO_EMAIL, contact_id, {"phoneNumbers": numbers}
            )


@dataclass
class World:
    stack: LocalStack
    demo: DemoUser
    data: DemoData
    api: Api
    connection_id: str
    book: AddressBook

    def person(self, email: str) -> Any:
        return crm_person(self.stack, self.demo, email)

    def crm_edit(self, email: str, changes: dict[str, Any]) -> None:
        self.stack.pipedrive.sandbox.edit_in_app(self.person(email).id, changes)

    def crm_phones(self, email: str) -> set[str]:
        return {digits(p["value"]) for p in self.person(email).phones if p.get("value")}

    def direction(self, direction: str) -> None:
        path = f"/connections/{self.connection_id}"
        self.api.call("PATCH", path, json={"direction": direction})


@pytest.fixture(scope="module", params=["microsoft", "google"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    provider = str(request.param)
    polling = {} if provider == "microsoft" else FAST_POLLING  # Google has no push
    stack = start_stack(
        workdir=tmp_path_factory.mktemp(f"stack-{provider}"),
        schedule_every=3600 if provider == "microsoft" else 1.0,
        extra_env=polling,
    )
    try:
        demo, data = seed(stack, persons=5, contacts=5)
        api = Api(stack, demo.token)
        api.connect_crm()
        connection_id = api.connect_microsoft() if provider == "microsoft" else api.connect_google()
        api.choose_folder(connection_id, FOLDER_NAME)
        api.start(connection_id)
        assert api.wait_until_active(connection_id, timeout=120)["state"] == "active"
        quiet(stack)
        yield World(stack, demo, data, api, connection_id, AddressBook(stack, demo, provider))
    finally:
        stack.stop()


def stays(check: Callable[[], bool], *, seconds: float = 4.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not check():
            return False
        time.sleep(0.3)
    return True


def conflicts_about(connection_id: str, field: str) -> list[dict[str, Any]]:
    entries, _ = list_audit(connection_id, limit=500)
    return [
        dict(e.details)
        for e in entries
        if e.kind == "conflict" and e.details and e.details.get("field") == field
    ]


def activity(connection_id: str) -> list[str]:
    """The connection's activity, oldest first, for a failure's message."""
    entries, _ = list_audit(connection_id, limit=200)
    return [
        f"{e.at} {e.kind} {e.side}: {e.message} {e.details or ''}"
        for e in reversed(entries)
        if e.kind not in ("duplicate",) and "matched by" not in e.message
    ]


def arrived(world: World, check: Callable[[], bool], what: str) -> None:
    """``check`` holds within ``ARRIVES_WITHIN``; else the failure shows the activity log."""
    try:
        eventually(check, timeout=ARRIVES_WITHIN, what=what)
    except AssertionError:
        view = world.api.connection(world.connection_id)
        book = [world.book.contact(e) for e in world.data.same_email]
        crm = [world.person(e) for e in world.data.same_email]
        pytest.fail(
            f"{what} did not arrive; state {view['state']}, last error {view['last_error']}:\n"
            + "\n".join(activity(world.connection_id))
            + f"\nthe book holds {book}\nthe CRM holds {crm}"
            + f"\nCRM webhooks (last 12): {world.stack.pipedrive.sandbox.deliveries()[-12:]}"
            + f"\npasses run: {world.stack.poller.invocations}, errors {world.stack.poller.errors}"
        )


def lost_conflict(world: World, value: str) -> None:
    """The activity log shows ``value`` as the loser of a job title conflict (it is written
    just after the pass's writes, so it may come a moment after the winner arrived)."""

    def losers() -> list[str]:
        return [c["loser_value"] for c in conflicts_about(world.connection_id, "job_title")]

    try:
        eventually(lambda: value in losers(), timeout=10, what=f"{value!r} as a conflict loser")
    except AssertionError:
        pytest.fail(f"no conflict lost by {value!r}:\n" + "\n".join(activity(world.connection_id)))


def test_to_crm_address_book_edits_keep_arriving_after_the_crm_is_edited(world: World) -> None:
    email = world.data.same_email[0]
    world.direction("to_crm")
    quiet(world.stack)  # a pass that began before the change may still carry the old direction
    # Given the linked person is edited in the CRM (a CRM-only edit: not sent to the book)
    world.crm_edit(email, {"job_title": "Own title"})
    quiet(world.stack)
    assert stays(lambda: world.book.job_title(email) != "Own title")
    # When the address book's contact is edited again and again, in another field
    for n in range(3):
        phone = f"+1 415 555 03{n}0"
        world.book.set_mobile(email, phone)
        # Then each edit reaches the CRM within seconds
        arrived(
            world,
            lambda phone=phone: digits(phone) in world.crm_phones(email),
            f"the book's phone {phone} in the CRM",
        )
    # And the CRM's own edit of a field the book did not change stays
    assert world.person(email).job_title == "Own title"
    # When the book changes that same field, the book (the source) wins over the CRM's edit
    world.book.set_job_title(email, "Source title")
    arrived(world, lambda: world.person(email).job_title == "Source title", "the book's title")
    # And the CRM's value is in the activity log as the loser
    lost_conflict(world, "Own title")


def test_to_provider_crm_edits_keep_arriving_after_the_book_is_edited(world: World) -> None:
    email = world.data.same_email[1]
    world.direction("to_provider")
    quiet(world.stack)  # a pass that began before the change may still carry the old direction
    # Given the linked contact is edited in the address book (not sent to the CRM)
    world.book.set_job_title(email, "Own title")
    quiet(world.stack)
    assert stays(lambda: world.person(email).job_title != "Own title")
    # When the CRM person is edited again and again, in another field
    for n in range(3):
        phone = f"+1 415 555 04{n}0"
        world.crm_edit(email, {"phones": [{"value": phone, "label": "mobile", "primary": True}]})
        # Then each edit reaches the address book within seconds
        arrived(
            world,
            lambda phone=phone: digits(phone) in world.book.phones(email),
            f"the CRM's phone {phone} in the book",
        )
    assert world.book.job_title(email) == "Own title"
    # When the CRM changes that same field, the CRM (the source) wins over the book's edit
    world.crm_edit(email, {"job_title": "Source title"})
    arrived(world, lambda: world.book.job_title(email) == "Source title", "the CRM's title")
    lost_conflict(world, "Own title")
