"""The engine's rules once more, end to end: real handlers, DynamoDB Local, SQS, the sandboxes.

Each scenario makes its edits while the queue's event source is paused, so that one pass sees
the edits of both sides together — as happens in production when two people edit within the
same few seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from contactsync.store.audit import list_audit
from contactsync.store.mappings import mapping_by_crm_id

from local.demo import DemoUser
from local.stack import LocalStack
from tests.e2e.helpers import FirstSync, crm_person, eventually, outlook, quiet

pytestmark = pytest.mark.e2e

FIRST_SYNC: FirstSync = {"provider": "microsoft", "persons": 10, "contacts": 10, "quiet_for": 3.0}


def together(stack: LocalStack, *edits: Callable[[], Any]) -> None:
    """Make the edits while no pass runs, then let one pass see them all."""
    quiet(stack)
    stack.poller.pause()
    try:
        for edit in edits:
            edit()
    finally:
        stack.poller.resume()
    quiet(stack)


def pair(stack: LocalStack, demo: DemoUser, email: str) -> tuple[Any, Any]:
    person = crm_person(stack, demo, email)
    contact = next(c for c in outlook(stack, demo) if email in str(c.props))
    return person, contact


def audit(connection_id: str, kind: str) -> list[Any]:
    entries, _ = list_audit(connection_id, limit=500)
    return [e for e in entries if e.kind == kind]


WRITES = ("POST", "PATCH", "DELETE")


def crm_writes(stack: LocalStack) -> int:
    stats = stack.pipedrive.sandbox.stats_snapshot()  # "PATCH /api/v2/persons/{id}": count
    return sum(n for route, n in stats.items() if route.split(" ")[0] in WRITES)


def outlook_writes(stack: LocalStack) -> int:
    return sum(1 for r in stack.graph.sandbox.requests if r["method"] in WRITES)


def test_a_resync_right_after_the_first_sync_writes_nothing(stack, synced) -> None:
    # Given a connection that just finished its first sync (matching linked people whose names,
    # display names and phones each side spells its own way)
    _, _, api, connection_id = synced
    before = (crm_writes(stack), outlook_writes(stack))
    # When a full resync re-reads and re-plans every pair
    api.call("POST", f"/connections/{connection_id}/resync")
    time.sleep(1)
    quiet(stack)
    # Then it writes nothing to either side: there was nothing left to agree on
    assert (crm_writes(stack), outlook_writes(stack)) == before


def test_different_fields_edited_on_each_side_are_both_kept(stack, synced) -> None:
    demo, data, _, _ = synced
    email = data.same_email[0]
    person, contact = pair(stack, demo, email)
    pd, gs = stack.pipedrive.sandbox, stack.graph.sandbox
    # Given the CRM changes the job title while Outlook changes the company, at the same time
    together(
        stack,
        lambda: pd.edit_in_app(person.id, {"job_title": "Buyer"}),
        lambda: gs.update_contact(demo.graph_user_id, contact.id, {"companyName": "Initech"}),
    )
    # Then both edits are on both sides (a field-level merge, not "one side wins")
    person, contact = pair(stack, demo, email)
    assert person.job_title == "Buyer"
    assert contact.props.get("jobTitle") == "Buyer"
    assert contact.props.get("companyName") == "Initech"
    assert person.org_id is not None


def test_the_same_field_edited_differently_goes_to_the_newest_and_the_loser_is_kept(
    stack, synced
) -> None:
    demo, data, _, connection_id = synced
    email = data.same_email[1]
    person, contact = pair(stack, demo, email)
    pd, gs = stack.pipedrive.sandbox, stack.graph.sandbox

    def later_in_outlook() -> None:
        time.sleep(1.5)  # the CRM's times have one-second resolution
        gs.update_contact(demo.graph_user_id, contact.id, {"jobTitle": "Outlook Title"})

    # Given the job title is changed in the CRM and, a moment later, differently in Outlook
    together(stack, lambda: pd.edit_in_app(person.id, {"job_title": "CRM Title"}), later_in_outlook)
    # Then the newest value is on both sides
    person, contact = pair(stack, demo, email)
    assert person.job_title == "Outlook Title"
    assert contact.props.get("jobTitle") == "Outlook Title"
    # And the losing value is in the audit log
    losers = [e.details for e in audit(connection_id, "conflict")]
    assert any(d and d.get("loser_value") == "CRM Title" for d in losers), losers


def test_an_email_added_on_each_side_ends_up_on_both(stack, synced) -> None:
    demo, data, _, _ = synced
    email = data.same_email[2]
    person, contact = pair(stack, demo, email)
    pd, gs = stack.pipedrive.sandbox, stack.graph.sandbox
    crm_emails = [*person.emails, {"value": "crm.added@x.example", "label": "home"}]
    outlook_emails = [
        *contact.props["emailAddresses"],
        {"name": "x", "address": "outlook.added@x.example"},
    ]
    # Given a new email is added in the CRM and another one in Outlook
    together(
        stack,
        lambda: pd.edit_in_app(person.id, {"emails": crm_emails}),
        lambda: gs.update_contact(
            demo.graph_user_id, contact.id, {"emailAddresses": outlook_emails}
        ),
    )
    # Then both sides hold both new addresses and the original one
    person, contact = pair(stack, demo, email)
    crm_values = {e["value"] for e in person.emails}
    outlook_values = {e["address"] for e in contact.props["emailAddresses"]}
    for value in (email, "crm.added@x.example", "outlook.added@x.example"):
        assert value in crm_values, crm_values
        assert value in outlook_values, outlook_values


def test_a_formatting_only_edit_writes_nothing_back(stack, synced) -> None:
    demo, data, _, _ = synced
    person, contact = pair(stack, demo, data.same_email[3])
    gs = stack.graph.sandbox
    phone = person.phones[0]["value"]  # "+1 415 555 0103"
    digits = "".join(ch for ch in phone if ch.isdigit())
    reformatted = f"({digits[1:4]}) {digits[4:7]}-{digits[7:]}"
    before = stack.pipedrive.sandbox.stats_snapshot()
    # Given Outlook rewrites the phone number's formatting only
    together(
        stack,
        lambda: gs.update_contact(
            demo.graph_user_id, contact.id, {"businessPhones": [reformatted]}
        ),
    )
    # Then the CRM is not written to, and keeps its own spelling
    after = stack.pipedrive.sandbox.stats_snapshot()
    writes = {k: after.get(k, 0) - before.get(k, 0) for k in after if "PATCH" in k or "POST" in k}
    assert not any(writes.values()), writes
    person, _ = pair(stack, demo, data.same_email[3])
    assert person.phones[0]["value"] == phone


def test_a_delete_on_one_side_loses_to_an_edit_on_the_other(stack, synced) -> None:
    demo, data, _, _ = synced
    email = data.same_email[4]
    person, contact = pair(stack, demo, email)
    pd, gs = stack.pipedrive.sandbox, stack.graph.sandbox
    # Given the person is deleted in the CRM while its contact is edited in Outlook
    together(
        stack,
        lambda: pd.delete_in_app(person.id),
        lambda: gs.update_contact(demo.graph_user_id, contact.id, {"jobTitle": "Still Here"}),
    )
    # Then nothing the user just edited disappears: the person is back in the CRM, with the edit
    person, contact = pair(stack, demo, email)
    assert person.job_title == "Still Here"
    assert contact.props.get("jobTitle") == "Still Here"


def test_a_person_given_to_another_owner_is_unlinked_and_left_alone(stack, synced) -> None:
    demo, data, _, connection_id = synced
    email = data.same_email[6]
    person, contact = pair(stack, demo, email)
    pd, gs = stack.pipedrive.sandbox, stack.graph.sandbox
    # Given the person is re-owned by a colleague in the CRM
    together(stack, lambda: pd.change_owner(person.id, demo.other_user_id))
    # Then the Outlook contact stays, unlinked, and the audit log says why
    assert gs.contact(demo.graph_user_id, contact.id) is not None
    mapping = mapping_by_crm_id(connection_id, str(person.id))
    assert mapping is not None and mapping.detached == "crm"  # kept, so never copied again
    assert any("owned by another user" in e.message for e in audit(connection_id, "unlink"))
    # And later edits to the contact no longer reach the colleague's person
    together(stack, lambda: gs.update_contact(demo.graph_user_id, contact.id, {"jobTitle": "Mine"}))
    assert pd.persons[person.id].job_title != "Mine"


def test_a_contact_moved_out_of_the_folder_is_unlinked_not_deleted(stack, synced) -> None:
    demo, data, _, connection_id = synced
    email = data.same_email[7]
    person, contact = pair(stack, demo, email)
    gs = stack.graph.sandbox
    elsewhere = gs.add_folder(demo.graph_user_id, "Private")
    # Given the Outlook contact is moved to another folder
    together(stack, lambda: gs.move_contact(demo.graph_user_id, contact.id, elsewhere))
    # Then the CRM person stays and the pair is no longer linked (kept detached)
    assert not stack.pipedrive.sandbox.persons[person.id].deleted
    mapping = mapping_by_crm_id(connection_id, str(person.id))
    assert mapping is not None and mapping.detached == "provider"
    # And when the contact comes back into the folder the pair links again, with no copy made
    together(stack, lambda: gs.move_contact(demo.graph_user_id, contact.id, demo.folder_id))
    mapping = mapping_by_crm_id(connection_id, str(person.id))
    assert mapping is not None and mapping.detached == ""
    assert len([c for c in outlook(stack, demo) if email in str(c.props)]) == 1


def test_one_way_to_the_crm_never_writes_outlook(stack, synced) -> None:
    demo, data, api, connection_id = synced
    email = data.same_email[8]
    person, contact = pair(stack, demo, email)
    pd, gs = stack.pipedrive.sandbox, stack.graph.sandbox
    api.call("PATCH", f"/connections/{connection_id}", json={"direction": "to_crm"})
    try:
        # Given edits on both sides of a one-way (provider -> CRM) connection
        together(
            stack,
            lambda: pd.edit_in_app(person.id, {"job_title": "CRM Only"}),
            lambda: gs.update_contact(demo.graph_user_id, contact.id, {"companyName": "Globex"}),
        )
        # Then Outlook's edit reached the CRM, and the CRM's edit did not reach Outlook
        person, contact = pair(stack, demo, email)
        assert contact.props.get("jobTitle") != "CRM Only"
        eventually(lambda: pd.persons[person.id].org_id is not None, what="the organization")
    finally:
        api.call("PATCH", f"/connections/{connection_id}", json={"direction": "two_way"})
