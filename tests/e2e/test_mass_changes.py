"""End to end on the local stack: mass changes are held however their pushes are spread.

Half of the linked contacts deleted in bursts over several seconds (Graph notifications, CRM
webhooks), a burst of new contacts, contacts leaving the folder: every burst reaches the service
as several pushes and passes, and the guard must judge it whole. The tests run in order on one
connection; each confirmed mass change closes the window for the next.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest
from contactsync.store.mappings import iter_mappings, mapping_by_crm_id, mapping_by_provider_id

from local.demo import DemoUser
from local.stack import LocalStack
from tests.e2e import helpers
from tests.e2e.helpers import (
    SETTLE_SECONDS,
    FirstSync,
    StackOptions,
    confirm,
    crm_owned,
    held,
    in_bursts,
    mapped,
    outlook,
)

pytestmark = pytest.mark.e2e

STACK: StackOptions = {"change_settle_seconds": SETTLE_SECONDS}
FIRST_SYNC: FirstSync = {
    "provider": "microsoft",
    "persons": 80,
    "contacts": 0,
    "timeout": 180,
    "quiet_for": 2 * SETTLE_SECONDS,
}
# A mass change reaches the service as several passes, each after its settle period.
eventually = partial(helpers.eventually, timeout=60.0)
quiet = partial(helpers.quiet, still_for=2 * SETTLE_SECONDS)


def linked_outlook(stack: LocalStack, demo: DemoUser, connection_id: str) -> list[Any]:
    return [
        c
        for c in outlook(stack, demo)
        if "partner.example" not in str(c.props) and mapping_by_provider_id(connection_id, c.id)
    ]


def test_half_the_contacts_deleted_in_outlook_in_bursts_are_held_then_confirmed(
    stack, synced
) -> None:
    demo, _, api, cid = synced
    linked = mapped(api, cid)
    assert linked >= 100
    crm_before = len(crm_owned(stack, demo))
    # When half of the linked contacts are deleted in Outlook, a few at a time
    victims = linked_outlook(stack, demo, cid)[: linked // 2]
    graph = stack.graph.sandbox
    in_bursts(victims, lambda c: graph.delete_contact(demo.graph_user_id, c.id))
    # Then the guard holds them, saying what, and nothing is deleted in the CRM
    view = eventually(lambda: held(api, cid), what="the guard to hold the deletes")
    # (what arrives after the hold waits with it: the message counts what the pass saw)
    assert f" of {linked} linked contacts" in view["held"]["message"]
    quiet(stack)
    assert len(crm_owned(stack, demo)) == crm_before
    # And after confirm every one of them is deleted in the CRM, and the count is true
    confirm(api, cid)
    eventually(lambda: len(crm_owned(stack, demo)) == crm_before - len(victims), what="CRM deletes")
    eventually(lambda: api.connection(cid)["state"] == "active", what="active again")
    eventually(lambda: mapped(api, cid) == linked - len(victims), what="the count of linked pairs")


def test_half_the_persons_deleted_in_the_crm_in_bursts_are_held_then_confirmed(
    stack, synced
) -> None:
    demo, _, api, cid = synced
    quiet(stack)
    linked = mapped(api, cid)
    outlook_before = len(outlook(stack, demo))
    # When 26 linked CRM persons are deleted a few at a time (webhooks)
    pd = stack.pipedrive.sandbox
    user = pd.users[demo.user_id]
    victims = [
        p
        for p in crm_owned(stack, demo)
        if "partner.example" not in str(p.emails) and mapping_by_crm_id(cid, str(p.id))
    ][:26]
    assert len(victims) == 26
    in_bursts(victims, lambda p: pd.delete_person(user, p.id, source="app"))
    # Then they are held and Outlook keeps every contact
    view = eventually(lambda: held(api, cid), what="the guard to hold the deletes")
    assert "would delete" in view["held"]["message"]
    quiet(stack)
    assert len(outlook(stack, demo)) == outlook_before
    # And after confirm all 26 are deleted in Outlook
    confirm(api, cid)
    eventually(lambda: len(outlook(stack, demo)) == outlook_before - 26, what="Outlook deletes")
    eventually(lambda: api.connection(cid)["state"] == "active", what="active again")
    eventually(lambda: mapped(api, cid) == linked - 26, what="the count of linked pairs")


def test_contacts_moved_out_of_the_folder_are_unlinked_and_counted_true(stack, synced) -> None:
    demo, _, api, cid = synced
    quiet(stack)
    linked = mapped(api, cid)
    graph = stack.graph.sandbox
    elsewhere = graph.add_folder(demo.graph_user_id, "Elsewhere")
    # When five linked contacts are moved to another folder
    moved = [c for c in outlook(stack, demo) if mapping_by_provider_id(cid, c.id)][:5]
    assert len(moved) == 5
    for contact in moved:
        graph.move_contact(demo.graph_user_id, contact.id, elsewhere)
    # Then they are unlinked (a few: not a mass change) and the count of linked pairs drops
    eventually(lambda: mapped(api, cid) == linked - 5, what="the count of linked pairs")
    assert api.connection(cid)["state"] == "active"
    answer = api.call(
        "GET", f"/connections/{cid}/explain", params={"provider_contact_id": moved[0].id}
    )
    assert any("unlinked" in r for r in answer["reasons"]), answer


def test_a_burst_of_new_outlook_contacts_is_held_then_confirmed(stack, synced) -> None:
    demo, _, api, cid = synced
    quiet(stack)
    linked = mapped(api, cid)
    crm_before = len(crm_owned(stack, demo))
    graph = stack.graph.sandbox
    # When 24 contacts are added to the folder a few at a time
    new = [
        {
            "givenName": "Burst",
            "surname": f"Person{i}",
            "emailAddresses": [{"address": f"burst.{i}@new.example"}],
        }
        for i in range(24)
    ]
    in_bursts(new, lambda body: graph.create_contact(demo.graph_user_id, demo.folder_id, body))
    # Then they are held, and none is created in the CRM
    view = eventually(lambda: held(api, cid), what="the guard to hold the creates")
    assert "would create" in view["held"]["message"]
    quiet(stack)
    assert len(crm_owned(stack, demo)) == crm_before
    # And after confirm each is created once
    confirm(api, cid)
    eventually(lambda: len(crm_owned(stack, demo)) == crm_before + 24, what="CRM creates")
    eventually(lambda: api.connection(cid)["state"] == "active", what="active again")
    eventually(lambda: mapped(api, cid) == linked + 24, what="the count of linked pairs")


def test_a_folder_emptied_by_moving_every_contact_away_is_held_not_unlinked(stack, synced) -> None:
    demo, _, api, cid = synced
    quiet(stack)
    linked = mapped(api, cid)
    graph = stack.graph.sandbox
    other = graph.add_folder(demo.graph_user_id, "Archive")
    detached_before = sum(1 for m in iter_mappings(cid) if m.detached)
    # When every contact of the folder is moved to another folder
    everyone = outlook(stack, demo)
    in_bursts(everyone, lambda c: graph.move_contact(demo.graph_user_id, c.id, other), size=10)
    # Then the pass is held, saying so in plain words
    view = eventually(lambda: held(api, cid), what="the guard to hold the unlinks")
    assert "left the sync scope at once" in view["held"]["message"]
    quiet(stack)
    # And no pair was unlinked
    assert mapped(api, cid) == linked
    assert sum(1 for m in iter_mappings(cid) if m.detached) == detached_before
