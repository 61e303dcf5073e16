"""End to end over HTTP on the local stack: connect Google Contacts, sync both ways, survive an
expired sync token and a quota storm, stop.

Google has no contact push: Google-side edits arrive by polling (the scheduler finds the
connection due), CRM-side edits by the CRM webhook, which makes the connection due at once.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from contactsync.store.mappings import mapping_by_provider_id

from local.demo import DEMO_EMAIL, MY_CONTACTS, DemoUser
from local.stack import LocalStack
from tests.e2e.helpers import (
    FAST_POLLING,
    FirstSync,
    StackOptions,
    assert_no_duplicates,
    crm_emails,
    crm_owned,
    crm_person,
    eventually,
    google_emails,
    in_group,
    quiet,
)

pytestmark = pytest.mark.e2e

STACK: StackOptions = {"schedule_every": 1.0, "extra_env": FAST_POLLING}
FIRST_SYNC: FirstSync = {"provider": "google", "persons": 30, "contacts": 30}


def google_contact(stack: LocalStack, demo: DemoUser, email: str) -> dict[str, Any]:
    return next(p for p in in_group(stack, demo) if email in str(p.get("emailAddresses")))


def test_initial_sync_matches_by_email_and_creates_the_rest(stack, synced) -> None:
    demo, data, api, connection_id = synced
    crm, google = crm_emails(stack, demo), google_emails(stack, demo)
    # Then people on both sides are linked, not duplicated
    for email in data.same_email:
        assert crm.count(email) == 1, email
        assert google.count(email) == 1, email
    # And the rest was created on the other side, inside the chosen group
    assert len(crm_owned(stack, demo)) == data.crm_persons + 30
    assert len(in_group(stack, demo)) >= data.google_contacts + 30
    # And the ambiguous pair was left alone, and another user's person never reached Google
    assert google.count(data.ambiguous_email) == 1
    assert crm.count(data.ambiguous_email) == 2
    assert data.not_owned_email not in google
    # And contacts we created carry our mapping id (a lost create response is found again)
    created = google_contact(stack, demo, crm_emails(stack, demo)[0])
    assert created.get("clientData"), created
    assert api.connection(connection_id)["counts"]["mapped"] >= 60


def test_a_google_edit_reaches_the_crm_by_polling(stack, synced) -> None:
    demo, data, _, _ = synced
    email = data.same_email[0]
    contact = google_contact(stack, demo, email)
    organizations = [{"name": "Polling Inc", "title": "Poller"}]
    stack.google.sandbox.update_contact(
        DEMO_EMAIL, contact["resourceName"], {"organizations": organizations}
    )
    eventually(
        lambda: crm_person(stack, demo, email).job_title == "Poller",
        what="the job title in the CRM",
    )


def test_a_crm_edit_reaches_google_through_the_webhook(stack, synced) -> None:
    demo, data, _, _ = synced
    email = data.same_email[1]
    person = crm_person(stack, demo, email)
    stack.pipedrive.sandbox.edit_in_app(person.id, {"job_title": "Head of QA"})

    def google_has_it() -> bool:
        orgs = google_contact(stack, demo, email).get("organizations") or [{}]
        return orgs[0].get("title") == "Head of QA"

    eventually(google_has_it, what="the job title in Google")


def test_deletes_propagate_both_ways(stack, synced) -> None:
    demo, data, _, _ = synced
    gone_in_google, gone_in_crm = data.same_email[2], data.same_email[3]
    contact = google_contact(stack, demo, gone_in_google)
    stack.google.sandbox.delete_contact(DEMO_EMAIL, contact["resourceName"])
    stack.pipedrive.sandbox.delete_in_app(crm_person(stack, demo, gone_in_crm).id)
    eventually(lambda: gone_in_google not in crm_emails(stack, demo), what="CRM delete")
    eventually(lambda: gone_in_crm not in google_emails(stack, demo), what="Google delete")


def test_a_contact_removed_from_the_group_is_unlinked_not_deleted(stack, synced) -> None:
    demo, data, _, _ = synced
    email = data.same_email[4]
    contact = google_contact(stack, demo, email)
    # Given the user takes the contact out of the synced group (it stays in My Contacts)
    stack.google.sandbox.set_groups(DEMO_EMAIL, contact["resourceName"], [MY_CONTACTS])
    time.sleep(4)
    quiet(stack)
    # Then the CRM person stays, and a later Google edit no longer reaches it
    person = crm_person(stack, demo, email)
    stack.google.sandbox.update_contact(
        DEMO_EMAIL, contact["resourceName"], {"organizations": [{"title": "Out Of Scope"}]}
    )
    time.sleep(4)
    quiet(stack)
    assert crm_person(stack, demo, email).job_title != "Out Of Scope"
    assert not person.deleted


def test_an_expired_sync_token_relists_without_duplicates_or_lost_edits(stack, synced) -> None:
    demo, data, _, _ = synced
    email = data.same_email[5]
    quiet(stack)
    # Given the sync token expired (Google keeps them for 7 days) and an edit waits in Google
    stack.google.sandbox.faults.expire_sync_tokens = True
    contact = google_contact(stack, demo, email)
    stack.google.sandbox.update_contact(
        DEMO_EMAIL, contact["resourceName"], {"organizations": [{"title": "After Expiry"}]}
    )
    # Then the next poll re-lists in full, re-matches, and the edit arrives
    eventually(
        lambda: crm_person(stack, demo, email).job_title == "After Expiry",
        what="the edit after the sync token expired",
    )
    quiet(stack)
    # And nothing was duplicated on either side
    assert_no_duplicates(crm_emails(stack, demo), google_emails(stack, demo), data)


def test_a_quota_storm_is_waited_out_without_duplicates_or_lost_edits(stack, synced) -> None:
    demo, data, _, _ = synced
    google = stack.google.sandbox
    quiet(stack)
    # Given Google answers most requests with 429 RESOURCE_EXHAUSTED
    google.faults.rate_429 = 0.8
    try:
        # When edits are made on both sides during the storm, and a new person in the CRM
        email_g, email_c = data.same_email[6], data.same_email[7]
        google.update_contact(
            DEMO_EMAIL,
            google_contact(stack, demo, email_g)["resourceName"],
            {"organizations": [{"title": "Storm Google"}]},
        )
        stack.pipedrive.sandbox.edit_in_app(
            crm_person(stack, demo, email_c).id, {"job_title": "Storm CRM"}
        )
        pd = stack.pipedrive.sandbox
        pd.create_person(
            pd.users[demo.user_id],
            {
                "name": "Storm New",
                "owner_id": demo.user_id,
                "emails": [{"value": "storm.new@x.example", "primary": True}],
            },
            source="app",
        )
        time.sleep(6)
        throttled = google.stats_snapshot().get("fault_429", 0)
    finally:
        google.faults.rate_429 = 0.0
    # Then once it passes every edit has arrived, and nothing is duplicated
    eventually(lambda: crm_person(stack, demo, email_g).job_title == "Storm Google", what="g")

    def google_has_crm_edit() -> bool:
        orgs = google_contact(stack, demo, email_c).get("organizations") or [{}]
        return orgs[0].get("title") == "Storm CRM"

    eventually(google_has_crm_edit, timeout=60, what="the CRM edit in Google")
    eventually(lambda: "storm.new@x.example" in google_emails(stack, demo), what="the new one")
    quiet(stack)
    assert_no_duplicates(crm_emails(stack, demo), google_emails(stack, demo), data)
    assert throttled > 0  # the storm really hit our requests


def test_malformed_answers_fail_visibly_and_the_sync_recovers(stack, synced) -> None:
    demo, data, api, connection_id = synced
    google, pd = stack.google.sandbox, stack.pipedrive.sandbox
    quiet(stack)
    # Given Google starts cutting its answers short (the requests themselves still run)
    google.faults.rate_malformed = 1.0
    try:
        # When a Google edit waits and a new CRM person must be created in Google
        email = data.same_email[8]
        google.update_contact(
            DEMO_EMAIL,
            google_contact(stack, demo, email)["resourceName"],
            {"organizations": [{"title": "Garbled"}]},
        )
        pd.create_person(
            pd.users[demo.user_id],
            {
                "name": "Garbled New",
                "owner_id": demo.user_id,
                "emails": [{"value": "garbled.new@x.example", "primary": True}],
            },
            source="app",
        )
        # Then the connection's status says what went wrong, in words
        error = eventually(
            lambda: api.connection(connection_id).get("last_error"), what="the error in status"
        )
        assert error["message"]
    finally:
        google.faults.rate_malformed = 0.0
    # And once Google answers properly again, everything arrives exactly once
    eventually(lambda: crm_person(stack, demo, email).job_title == "Garbled", what="the edit")
    eventually(lambda: "garbled.new@x.example" in google_emails(stack, demo), what="the create")
    quiet(stack)
    assert google_emails(stack, demo).count("garbled.new@x.example") == 1
    assert_no_duplicates(crm_emails(stack, demo), google_emails(stack, demo), data)


def test_a_copy_whose_answer_was_lost_is_found_by_its_tag_not_made_twice(stack, synced) -> None:
    demo, _, api, connection_id = synced
    google, pd = stack.google.sandbox, stack.pipedrive.sandbox
    quiet(stack)
    # Given Google cuts short the answer to the next create (the contact is made)
    google.set_faults(malformed_next="batchCreateContacts")
    # When a person is added in the CRM
    body = {
        "name": "Lola Lost",
        "owner_id": demo.user_id,
        "emails": [{"value": "lola@lost.example", "primary": True}],
    }
    pd.create_person(pd.users[demo.user_id], body, source="app")
    # Then its Google copy is made once: the pass after the lost answer waits for Google's
    # listings to show it, and finds it by its tag
    copy = eventually(
        lambda: next((p for p in in_group(stack, demo) if "lola@lost" in str(p)), None),
        what="the copy",
    )
    eventually(
        lambda: mapping_by_provider_id(connection_id, copy["resourceName"]) is not None,
        timeout=60,
        what="the copy linked",
    )
    quiet(stack)
    assert google_emails(stack, demo).count("lola@lost.example") == 1
    assert api.connection(connection_id).get("last_error") is None


def test_a_contact_given_a_new_resource_name_keeps_its_link(stack, synced) -> None:
    demo, data, _, _ = synced
    sb = stack.google.sandbox
    email = data.same_email[10]
    old = google_contact(stack, demo, email)["resourceName"]
    # When Google gives a linked contact a new resource name (it got linked to a profile), and
    # the user edits it
    new = sb.change_resource_name(DEMO_EMAIL, old)
    organizations = [{"name": "Renamed Inc", "title": "Renamed"}]
    sb.update_contact(DEMO_EMAIL, new, {"organizations": organizations})
    # Then the edit reaches its CRM partner, and neither side got a copy
    eventually(lambda: crm_person(stack, demo, email).job_title == "Renamed", what="the edit")
    quiet(stack)
    assert crm_emails(stack, demo).count(email) == 1
    assert google_emails(stack, demo).count(email) == 1


def test_stop_ends_polling_and_webhooks(stack, synced) -> None:
    demo, data, api, connection_id = synced
    view = api.stop(connection_id)
    assert view["state"] == "stopped"
    quiet(stack)  # a pass already running when stop was called ends with its current chunk
    assert not [w for w in stack.pipedrive.sandbox.webhooks.values() if w.user_id == demo.user_id]
    email = data.same_email[9]
    contact = google_contact(stack, demo, email)
    stack.google.sandbox.update_contact(
        DEMO_EMAIL, contact["resourceName"], {"organizations": [{"title": "After Stop"}]}
    )
    time.sleep(4)
    assert crm_person(stack, demo, email).job_title != "After Stop"
