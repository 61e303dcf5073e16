"""End to end on the local stack with Google: mass deletes spread over polls and webhooks are held.

Google is polled (every second or two here), so a burst of deletes in Google reaches the service
as several passes; CRM deletes arrive as webhooks. Either way the guard judges the burst whole.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest
from contactsync.store.mappings import mapping_by_crm_id, mapping_by_provider_id

from local.demo import DEMO_EMAIL, DemoUser
from local.stack import LocalStack
from tests.e2e import helpers
from tests.e2e.helpers import (
    FAST_POLLING,
    SETTLE_SECONDS,
    FirstSync,
    StackOptions,
    confirm,
    crm_owned,
    held,
    in_bursts,
    in_group,
    mapped,
)

pytestmark = pytest.mark.e2e

STACK: StackOptions = {
    "schedule_every": 1.0,
    "change_settle_seconds": SETTLE_SECONDS,
    "extra_env": FAST_POLLING,
}
FIRST_SYNC: FirstSync = {"provider": "google", "persons": 80, "contacts": 0, "timeout": 180}
# A mass change reaches the service as several passes, each after its settle period.
eventually = partial(helpers.eventually, timeout=60.0)


def linked_google(stack: LocalStack, demo: DemoUser, cid: str) -> list[dict[str, Any]]:
    return [
        p
        for p in in_group(stack, demo)
        if "partner.example" not in str(p.get("emailAddresses"))
        and mapping_by_provider_id(cid, p["resourceName"])
    ]


def test_half_the_persons_deleted_in_the_crm_are_held_before_reaching_google(stack, synced) -> None:
    demo, _, api, cid = synced
    linked = mapped(api, cid)
    assert linked >= 100
    google_before = len(in_group(stack, demo))
    # When half of the linked CRM persons are deleted a few at a time (webhooks)
    pd = stack.pipedrive.sandbox
    user = pd.users[demo.user_id]
    victims = [
        p
        for p in crm_owned(stack, demo)
        if "partner.example" not in str(p.emails) and mapping_by_crm_id(cid, str(p.id))
    ][: linked // 2]
    in_bursts(victims, lambda p: pd.delete_person(user, p.id, source="app"))
    # Then they are held and Google keeps every contact
    view = eventually(lambda: held(api, cid), what="the guard to hold the deletes")
    assert "would delete" in view["held"]["message"]
    assert len(in_group(stack, demo)) == google_before
    # And after confirm all of them are deleted in Google
    confirm(api, cid)
    eventually(
        lambda: len(in_group(stack, demo)) == google_before - len(victims), what="Google deletes"
    )
    eventually(lambda: api.connection(cid)["state"] == "active", what="active again")
    eventually(lambda: mapped(api, cid) == linked - len(victims), what="the count of linked pairs")


def test_half_the_contacts_deleted_in_google_over_several_polls_are_held(stack, synced) -> None:
    demo, _, api, cid = synced
    linked = mapped(api, cid)
    crm_before = len(crm_owned(stack, demo))
    # When half of the linked Google contacts are deleted a few at a time, across polls
    victims = linked_google(stack, demo, cid)[: linked // 2 + 1]
    assert len(victims) > 20
    google = stack.google.sandbox
    in_bursts(victims, lambda p: google.delete_contact(DEMO_EMAIL, p["resourceName"]))
    # Then they are held and nothing is deleted in the CRM
    view = eventually(lambda: held(api, cid), what="the guard to hold the deletes")
    assert "would delete" in view["held"]["message"]
    assert len(crm_owned(stack, demo)) == crm_before
    # And after confirm all of them are deleted in the CRM
    confirm(api, cid)
    eventually(lambda: len(crm_owned(stack, demo)) == crm_before - len(victims), what="CRM deletes")
