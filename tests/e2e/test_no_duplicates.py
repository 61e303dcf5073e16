"""End to end: a contact that already exists on the other side is never made a second time.

One user syncs an Outlook folder and a Google group into the CRM (direction ``to_crm``), so
CRM persons are never copied out: a person the user then adds to an address book exists in the
CRM, unchanged, and no incremental pass reads it. Every step goes through the real handlers,
DynamoDB Local, the SQS emulator and the sandboxes' wire protocols.
"""

from __future__ import annotations

from typing import Any

import pytest

from local.demo import DEMO_EMAIL, FOLDER_NAME, MY_CONTACTS, Api, DemoData, DemoUser, seed
from local.stack import LocalStack
from tests.e2e.helpers import FAST_POLLING, StackOptions, eventually, quiet

pytestmark = pytest.mark.e2e

STACK: StackOptions = {"schedule_every": 1.0, "extra_env": FAST_POLLING}


@pytest.fixture(scope="module")
def synced(stack: LocalStack) -> tuple[DemoUser, DemoData, Api, dict[str, str]]:
    demo, data = seed(stack, persons=0, contacts=0)
    api = Api(stack, demo.token)
    api.connect_crm()
    connections = {"microsoft": api.connect_microsoft(), "google": api.connect_google()}
    for connection_id in connections.values():
        api.choose_folder(connection_id, FOLDER_NAME, direction="to_crm")
        api.start(connection_id)
        view = api.wait_until_active(connection_id, timeout=120)
        assert view["state"] == "active", view
    quiet(stack)
    return demo, data, api, connections


def crm_persons_with(stack: LocalStack, email: str) -> list[Any]:
    """Every person of the company with this email, whoever owns it."""
    return [
        p
        for p in stack.pipedrive.sandbox.persons.values()
        if not p.deleted and email in [e["value"].lower() for e in p.emails]
    ]


def new_crm_person(stack: LocalStack, owner: int, name: str, email: str) -> int:
    pd = stack.pipedrive.sandbox
    body = {"name": name, "owner_id": owner, "emails": [{"value": email, "primary": True}]}
    return pd.create_person(pd.users[owner], body, source="app").id


def add_to_outlook(stack: LocalStack, demo: DemoUser, name: str, email: str) -> str:
    given, family = name.split(" ", 1)
    body = {
        "givenName": given,
        "surname": family,
        "emailAddresses": [{"name": name, "address": email}],
    }
    return stack.graph.sandbox.create_contact(demo.graph_user_id, demo.folder_id, body).id


def add_to_google(stack: LocalStack, demo: DemoUser, name: str, email: str) -> str:
    given, family = name.split(" ", 1)
    person = {
        "names": [{"givenName": given, "familyName": family}],
        "emailAddresses": [{"value": email, "type": "work"}],
    }
    groups = (MY_CONTACTS, demo.google_group_id)
    return str(stack.google.sandbox.add_contact(DEMO_EMAIL, person, groups=groups))


def explain(api: Api, connection_id: str, **contact: str) -> dict[str, Any]:
    return dict(api.call("GET", f"/connections/{connection_id}/explain", params=contact))


def said(api: Api, connection_id: str, words: str, **contact: str) -> list[str] | None:
    reasons = explain(api, connection_id, **contact)["reasons"]
    return reasons if any(words in r for r in reasons) else None


@pytest.mark.parametrize("provider", ["microsoft", "google"])
def test_a_contact_added_to_the_book_that_exists_in_the_crm_is_linked_not_made_again(
    stack, synced, provider
) -> None:
    demo, _, api, connections = synced
    connection_id = connections[provider]
    # Given a CRM person the to_crm connection never copied to the address book
    email = f"existing.{provider}@partner.example"
    person_id = new_crm_person(stack, demo.user_id, "Existing Person", email)
    quiet(stack)
    # When the user adds the same person, same email, to the synced folder or group
    add = add_to_outlook if provider == "microsoft" else add_to_google
    contact_id = add(stack, demo, "Existing Person", email.upper())
    # Then the pass links the contact to that person
    eventually(
        lambda: said(
            api, connection_id, f"linked to the CRM contact {person_id}",
            provider_contact_id=contact_id,
        ),
        timeout=60,
        what="the new contact linked to the existing CRM person",
    )  # fmt: skip
    # And the CRM still holds the person once
    quiet(stack)
    assert [p.id for p in crm_persons_with(stack, email)] == [person_id]


def test_a_contact_whose_crm_person_belongs_to_a_colleague_is_held(stack, synced) -> None:
    demo, data, api, connections = synced
    connection_id = connections["microsoft"]
    [theirs] = crm_persons_with(stack, data.not_owned_email)
    # When the user adds a colleague's person to the synced Outlook folder
    contact_id = add_to_outlook(stack, demo, "Not Mine", data.not_owned_email)
    # Then it is held, and explain says whose person it is
    reasons = eventually(
        lambda: said(
            api, connection_id, "exists in the CRM, owned by Olli Other",
            provider_contact_id=contact_id,
        ),
        timeout=60,
        what="explain naming the owner",
    )  # fmt: skip
    assert not explain(api, connection_id, provider_contact_id=contact_id)["syncing"], reasons
    # And no second person was made in the CRM
    quiet(stack)
    assert [p.id for p in crm_persons_with(stack, data.not_owned_email)] == [theirs.id]


def test_two_crm_persons_sharing_an_email_are_one_review_item_and_not_copied(stack, synced) -> None:
    demo, _, api, connections = synced
    connection_id = connections["google"]
    # Given two CRM persons with one email, nothing like them in Google
    email = "twins.new@partner.example"
    first = new_crm_person(stack, demo.user_id, "New Twin", email)
    second = new_crm_person(stack, demo.user_id, "Newer Twin", email)
    quiet(stack)
    # When the Google connection starts writing to Google, and lists both sides in full
    api.call("PATCH", f"/connections/{connection_id}", json={"direction": "two_way"})
    api.call("POST", f"/connections/{connection_id}/resync")
    # Then both persons are held as one possible duplicate
    for person_id in (first, second):
        eventually(
            lambda person_id=person_id: said(
                api, connection_id, "2 CRM contacts share email:twins.new@partner.example",
                crm_person_id=str(person_id),
            ),
            timeout=60,
            what="the twins held for review",
        )  # fmt: skip
    activity = api.call(
        "GET", f"/connections/{connection_id}/activity", params={"kind": "duplicate"}
    )
    held = [e for e in activity["entries"] if email in e["message"]]
    assert held
    assert {tuple(sorted(e["details"]["crm_ids"])) for e in held} == {
        tuple(sorted([str(first), str(second)]))
    }
    assert all(e["details"]["provider_ids"] == [] for e in held)
    # And neither was copied to Google
    quiet(stack)
    copies = [
        p
        for p in stack.google.sandbox.contacts(DEMO_EMAIL)
        if email in str(p.get("emailAddresses"))
    ]
    assert copies == []
