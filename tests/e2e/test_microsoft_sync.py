"""End to end over HTTP on the running local stack: connect Microsoft 365, sync both ways, stop.

Every step goes through the real handlers, DynamoDB Local, the SQS emulator and the sandboxes'
real wire protocols: Graph change notifications and CRM webhooks arrive over loopback HTTP.
"""

from __future__ import annotations

import time

import httpx
import pytest
from contactsync.store.audit import list_audit
from contactsync.store.mappings import mapping_by_provider_id

from tests.e2e.helpers import (
    FirstSync,
    crm_emails,
    crm_owned,
    eventually,
    outlook,
    outlook_emails,
    quiet,
)

pytestmark = pytest.mark.e2e

FIRST_SYNC: FirstSync = {"provider": "microsoft", "persons": 40, "contacts": 40}


def test_initial_sync_matches_by_email_and_creates_the_rest(stack, synced) -> None:
    demo, data, api, connection_id = synced
    crm, provider = crm_emails(stack, demo), outlook_emails(stack, demo)
    # Then people on both sides are linked, not duplicated
    for email in data.same_email:
        assert crm.count(email) == 1, email
        assert provider.count(email) == 1, email
    # And the rest was created on the other side
    assert len(crm_owned(stack, demo)) == data.crm_persons + 40
    assert len(outlook(stack, demo)) >= data.outlook_contacts + 40
    # And the ambiguous pair was left alone rather than guessed
    assert provider.count(data.ambiguous_email) == 1
    assert crm.count(data.ambiguous_email) == 2
    # And another user's person never reached Outlook
    assert data.not_owned_email not in provider
    view = api.connection(connection_id)
    assert view["counts"]["mapped"] >= 80


def test_an_outlook_edit_reaches_the_crm_through_a_change_notification(stack, synced) -> None:
    demo, data, _, _ = synced
    contact = next(c for c in outlook(stack, demo) if data.same_email[0] in str(c.props))
    stack.graph.sandbox.update_contact(demo.graph_user_id, contact.id, {"jobTitle": "Chief Tester"})

    def crm_has_it() -> bool:
        person = next(p for p in crm_owned(stack, demo) if data.same_email[0] in str(p.emails))
        return person.job_title == "Chief Tester"

    eventually(crm_has_it, what="the job title in the CRM")


def test_a_crm_edit_reaches_outlook_through_a_webhook(stack, synced) -> None:
    demo, data, _, _ = synced
    pd = stack.pipedrive.sandbox
    person = next(p for p in crm_owned(stack, demo) if data.same_email[1] in str(p.emails))
    pd.update_person(pd.users[demo.user_id], person.id, {"job_title": "Head of QA"}, source="app")

    def outlook_has_it() -> bool:
        contact = next(c for c in outlook(stack, demo) if data.same_email[1] in str(c.props))
        return contact.props.get("jobTitle") == "Head of QA"

    eventually(outlook_has_it, what="the job title in Outlook")


def test_deletes_propagate_both_ways(stack, synced) -> None:
    demo, data, _, _ = synced
    pd = stack.pipedrive.sandbox
    gone_in_outlook = data.same_email[2]
    gone_in_crm = data.same_email[3]
    contact = next(c for c in outlook(stack, demo) if gone_in_outlook in str(c.props))
    stack.graph.sandbox.delete_contact(demo.graph_user_id, contact.id)
    person = next(p for p in crm_owned(stack, demo) if gone_in_crm in str(p.emails))
    pd.delete_person(pd.users[demo.user_id], person.id, source="app")
    eventually(lambda: gone_in_outlook not in crm_emails(stack, demo), what="CRM delete")
    eventually(lambda: gone_in_crm not in outlook_emails(stack, demo), what="Outlook delete")


def test_a_copy_whose_answer_was_lost_is_found_by_its_tag_not_made_twice(stack, synced) -> None:
    demo, _, api, connection_id = synced
    gs, pd = stack.graph.sandbox, stack.pipedrive.sandbox
    quiet(stack)
    # Given Graph cuts short the answer to the next create (the contact is made)
    gs.inject_breaks("truncated", 1, only_creates=True)
    # When a person is added in the CRM
    body = {
        "name": "Lola Lost",
        "owner_id": demo.user_id,
        "emails": [{"value": "lola@lost.example", "primary": True}],
    }
    pd.create_person(pd.users[demo.user_id], body, source="app")
    # Then its Outlook copy is made once: the pass after the lost answer finds it by its tag
    copy = eventually(
        lambda: next((c for c in outlook(stack, demo) if "lola@lost" in str(c.props)), None),
        what="the copy",
    )
    eventually(
        lambda: mapping_by_provider_id(connection_id, copy.id) is not None,
        timeout=60,
        what="the copy linked",
    )
    quiet(stack)
    assert outlook_emails(stack, demo).count("lola@lost.example") == 1
    assert api.connection(connection_id).get("last_error") is None


def test_a_copy_whose_answer_was_lost_is_recorded_at_once_and_its_delete_followed(
    stack, synced
) -> None:
    demo, _, _, connection_id = synced
    gs, pd = stack.graph.sandbox, stack.pipedrive.sandbox
    quiet(stack)
    # Given Graph cuts short the answer to the next create (the contact is made)
    gs.inject_breaks("truncated", 1, only_creates=True)
    # When a person is added in the CRM
    body = {
        "name": "Ida Instant",
        "owner_id": demo.user_id,
        "emails": [{"value": "ida@instant.example", "primary": True}],
    }
    pd.create_person(pd.users[demo.user_id], body, source="app")
    # Then the pass that made the copy finds it by its tag at once: linked, and the pass ends
    # without an error (no pass after it was needed)
    copy = eventually(
        lambda: next((c for c in outlook(stack, demo) if "ida@instant" in str(c.props)), None),
        what="the copy",
    )
    eventually(
        lambda: mapping_by_provider_id(connection_id, copy.id) is not None,
        timeout=5,
        what="the copy linked by the pass that made it",
    )
    entries, _ = list_audit(connection_id, limit=100)
    assert not any("malformed" in e.message for e in entries)
    # And the user deleting it at once is followed as any Outlook delete: the CRM person goes
    gs.delete_contact(demo.graph_user_id, copy.id)
    eventually(lambda: "ida@instant.example" not in crm_emails(stack, demo), what="CRM delete")
    quiet(stack)
    assert "ida@instant.example" not in outlook_emails(stack, demo)


def test_a_copy_whose_answer_was_lost_and_that_the_user_deleted_stays_deleted(
    stack, synced
) -> None:
    demo, _, api, connection_id = synced
    gs, pd = stack.graph.sandbox, stack.pipedrive.sandbox
    quiet(stack)
    # Given Graph cuts short the answer to the next create (the contact is made), and drops the
    # connection of each of the three tries of the look-up by our tag that follows it
    gs.inject_breaks("truncated", 1, only_creates=True)
    gs.inject_breaks("reset", 3)
    # When a person is added in the CRM, and the user deletes its Outlook copy at once, before
    # the pass after the lost answer (10 s later) could record it
    body = {
        "name": "Gus Gone",
        "owner_id": demo.user_id,
        "emails": [{"value": "gus@gone.example", "primary": True}],
    }
    pd.create_person(pd.users[demo.user_id], body, source="app")
    copy = eventually(
        lambda: next((c for c in outlook(stack, demo) if "gus@gone" in str(c.props)), None),
        what="the copy",
    )
    assert mapping_by_provider_id(connection_id, copy.id) is None  # not recorded yet
    gs.delete_contact(demo.graph_user_id, copy.id)
    # Then the delete is followed as any Outlook delete: the CRM person goes ...
    eventually(lambda: "gus@gone.example" not in crm_emails(stack, demo), timeout=60, what="CRM")
    # ... and the copy never comes back
    quiet(stack)
    assert "gus@gone.example" not in outlook_emails(stack, demo)
    assert api.connection(connection_id).get("last_error") is None


def test_bad_webhooks_get_a_4xx_and_enqueue_nothing(stack, synced) -> None:
    _, _, _, _ = synced
    url = f"{stack.api_url}/webhooks/microsoft"
    sub_id = next(iter(stack.graph.sandbox.subscriptions))
    before = quiet(stack)
    wrong_state = {
        "value": [{"subscriptionId": sub_id, "clientState": "guess", "changeType": "updated"}]
    }
    unknown_sub = {
        "value": [{"subscriptionId": "nope", "clientState": "x", "changeType": "updated"}]
    }
    for body in (wrong_state, unknown_sub):
        assert 400 <= httpx.post(url, json=body).status_code < 500
    assert httpx.post(url, content=b"{not json").status_code == 400
    assert httpx.post(url, content=b"").status_code == 400
    crm_hook = f"{stack.api_url}/webhooks/pipedrive"
    assert httpx.post(crm_hook, json={"meta": {}}).status_code == 401
    assert httpx.post(crm_hook, json={}, auth=("someone", "wrong")).status_code == 401
    time.sleep(2)
    assert stack.poller.invocations == before


def test_validation_handshake_echoes_the_token(stack) -> None:
    response = httpx.post(f"{stack.api_url}/webhooks/microsoft?validationToken=abc%20123")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.text == "abc 123"


def test_the_token_is_echoed_only_for_the_handshake(stack) -> None:
    # Given a request with a validationToken and a body (the handshake has none)
    url = f"{stack.api_url}/webhooks/microsoft?validationToken=%3Cscript%3E"
    body = {"value": [{"subscriptionId": "nope", "clientState": "x"}]}
    response = httpx.post(url, json=body)
    # Then it is a notification like any other: refused, and the token is not echoed
    assert response.status_code == 403
    assert "<script>" not in response.text


def test_a_removed_subscription_is_made_anew_and_pushes_resume(stack, synced) -> None:
    demo, data, _, _ = synced
    graph = stack.graph.sandbox
    (old,) = list(graph.subscriptions)
    # Given Graph removes the subscription and says so with a lifecycle event
    graph.fire_lifecycle(old, "subscriptionRemoved")
    # Then a new subscription is made for the folder
    new = eventually(
        lambda: [s for s in graph.subscriptions if s != old], what="a new subscription"
    )
    assert len(new) == 1
    # And an Outlook edit reaches the CRM through it again
    email = data.same_email[6]
    contact = next(c for c in outlook(stack, demo) if email in str(c.props))
    graph.update_contact(demo.graph_user_id, contact.id, {"jobTitle": "Pushed Again"})

    def crm_has_it() -> bool:
        person = next(p for p in crm_owned(stack, demo) if email in str(p.emails))
        return person.job_title == "Pushed Again"

    eventually(crm_has_it, what="the edit pushed through the new subscription")


def test_a_contact_moved_to_another_folder_is_unlinked_and_its_crm_partner_kept(
    stack, synced
) -> None:
    demo, data, api, connection_id = synced
    graph = stack.graph.sandbox
    email = data.same_email[8]
    contact = next(c for c in outlook(stack, demo) if email in str(c.props))
    elsewhere = graph.add_folder(demo.graph_user_id, "Moved Away")
    # When the user moves a linked contact to another folder (its default id changes: only the
    # immutable id we asked for stays; the folder's delta reports it removed)
    graph.move_contact(demo.graph_user_id, contact.id, elsewhere)

    def unlinked() -> bool:
        why = api.call(
            "GET",
            f"/connections/{connection_id}/explain",
            params={"provider_contact_id": contact.id},
        )
        return any("it is unlinked" in reason for reason in why["reasons"])

    eventually(unlinked, what="the moved contact unlinked as out of scope")
    quiet(stack)
    # Then it left the sync scope: its CRM partner was not deleted, and it was not re-created
    assert crm_emails(stack, demo).count(email) == 1
    assert email not in outlook_emails(stack, demo)
    assert graph.contact(demo.graph_user_id, contact.id).folder_id == elsewhere


def test_stop_removes_subscriptions_and_writes_nothing_more(stack, synced) -> None:
    demo, data, api, connection_id = synced
    view = api.stop(connection_id)
    assert view["state"] == "stopped"
    assert not stack.graph.sandbox.subscriptions
    assert not [w for w in stack.pipedrive.sandbox.webhooks.values() if w.user_id == demo.user_id]
    # An edit after stop stays where it was made
    contact = next(c for c in outlook(stack, demo) if data.same_email[5] in str(c.props))
    stack.graph.sandbox.update_contact(demo.graph_user_id, contact.id, {"jobTitle": "After Stop"})
    time.sleep(2)
    person = next(p for p in crm_owned(stack, demo) if data.same_email[5] in str(p.emails))
    assert person.job_title != "After Stop"
