"""End to end over HTTP: the admin API's support routes answer what users bring to support.

One local stack and one demo user for the module; the tests run in file order and build on each
other (preview before start, then troubleshooting on the running sync, then the guard).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from functools import partial
from typing import Any

import httpx
import pytest
from contactsync.store.mappings import count_mappings, mapping_by_provider_id
from contactsync.store.pass_outcomes import record_pass_outcome

from functions.admin_api import openapi
from local.demo import FOLDER_NAME, Api, DemoData, DemoUser, seed
from local.stack import LocalStack
from tests.e2e import helpers
from tests.e2e.helpers import crm_owned, eventually, outlook

pytestmark = pytest.mark.e2e

Setup = tuple[DemoUser, DemoData, "Client", str]


class Client:
    """The admin API as a browser would call it: status code and JSON body, no raising."""

    def __init__(self, stack: LocalStack, token: str) -> None:
        self.http = httpx.Client(
            base_url=stack.api_url, headers={"authorization": f"Bearer {token}"}, timeout=60
        )

    def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        response = self.http.request(method, path, **kwargs)
        return response.status_code, response.json()

    def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        status, body = self.call(method, path, **kwargs)
        assert status == 200, (method, path, status, body)
        return body


quiet = partial(helpers.quiet, still_for=2.0)  # the reconciler had nothing to do for 2 s


def crm_person(stack: LocalStack, email: str) -> Any:
    persons = stack.pipedrive.sandbox.persons.values()
    return next(p for p in persons if not p.deleted and email in str(p.emails))


def outlook_contact(stack: LocalStack, demo: DemoUser, email: str) -> Any:
    return next(c for c in outlook(stack, demo) if email in str(c.props))


def outlook_count(stack: LocalStack, demo: DemoUser, email: str) -> int:
    return sum(1 for c in outlook(stack, demo) if email in str(c.props))


def crm_count(stack: LocalStack, demo: DemoUser, email: str) -> int:
    return sum(1 for p in crm_owned(stack, demo) if email in str(p.emails))


@pytest.fixture(scope="module")
def prepared(stack: LocalStack) -> Setup:
    """Signed in on both sides, folder chosen, not started."""
    demo, data = seed(stack, persons=20, contacts=20)
    api = Api(stack, demo.token)
    api.connect_crm()
    connection_id = api.connect_microsoft()
    api.choose_folder(connection_id, FOLDER_NAME)
    return demo, data, Client(stack, demo.token), connection_id


@pytest.fixture(scope="module")
def synced(stack: LocalStack, prepared: Setup) -> Setup:
    demo, _, _, connection_id = prepared
    api = Api(stack, demo.token)
    api.start(connection_id)
    view = api.wait_until_active(connection_id, timeout=60)
    assert view["state"] == "active", view
    quiet(stack)
    return prepared


def explain(client: Client, connection_id: str, **query: str) -> dict[str, Any]:
    return dict(client.ok("GET", f"/connections/{connection_id}/explain", params=query))


# --- before the first sync -------------------------------------------------------------------


def test_preview_before_start_counts_what_would_happen_and_writes_nothing(stack, prepared) -> None:
    demo, data, client, cid = prepared
    crm_before, outlook_before = len(crm_owned(stack, demo)), len(outlook(stack, demo))
    # When the user previews the first sync
    preview = client.ok("GET", f"/connections/{cid}/preview")
    # Then people on both sides would be linked, the rest created on the other side
    assert preview["linked"] >= len(data.same_email) + 1
    assert preview["created_in_provider"] >= 20
    assert preview["created_in_crm"] >= 20
    assert preview["deleted_crm"] == preview["deleted_provider"] == 0
    # And the ambiguous twins are left out, named as duplicate candidates
    assert preview["left_out"] == {"ambiguous match: possible duplicate": 3}
    keys = [d["key"] for d in preview["duplicate_candidates"]]
    assert f"email:{data.ambiguous_email}" in keys
    # And nothing was written anywhere
    assert (len(crm_owned(stack, demo)), len(outlook(stack, demo))) == (crm_before, outlook_before)
    assert count_mappings(cid) == 0
    entries = client.ok("GET", f"/connections/{cid}/activity")["entries"]
    assert not [e for e in entries if e["kind"] in ("write", "duplicate", "unlink")]
    assert client.ok("GET", f"/connections/{cid}")["state"] == "configuring"


def test_preview_shows_what_a_one_way_direction_leaves_out(prepared) -> None:
    _, _, client, cid = prepared
    # Given the direction is provider -> CRM only
    client.ok("PATCH", f"/connections/{cid}", json={"direction": "to_crm"})
    try:
        preview = client.ok("GET", f"/connections/{cid}/preview")
    finally:
        client.ok("PATCH", f"/connections/{cid}", json={"direction": "two_way"})
    # Then CRM-only persons are not created in Outlook, and the preview says why
    assert preview["created_in_provider"] == 0
    assert preview["left_out"]["direction to_crm does not write the provider"] >= 20


def test_the_visibility_of_created_persons_is_a_setting(prepared) -> None:
    _, _, client, cid = prepared
    assert client.ok("GET", f"/connections/{cid}")["visibility"] is None  # the CRM's default
    # When the user picks a value the API does not know
    status, body = client.call("PATCH", f"/connections/{cid}", json={"visibility": "public"})
    # Then it is a 422 naming the field, and nothing changed
    assert status == 422 and "visibility" in json.dumps(body["error"]["details"]), body
    assert client.ok("GET", f"/connections/{cid}")["visibility"] is None
    # When they choose "owner only" (the sync tests below then check the persons it creates)
    view = client.ok("PATCH", f"/connections/{cid}", json={"visibility": "owner"})
    assert view["visibility"] == "owner"


def test_a_new_folder_is_made_for_the_sync(stack, prepared) -> None:
    demo, _, client, cid = prepared
    # When the user makes a folder for the sync
    status, made = client.call("POST", f"/connections/{cid}/groups", json={"name": "For sync"})
    # Then Outlook has it and it is among the folders to choose from
    assert status == 201, made
    assert made["name"] == "For sync"
    assert made in client.ok("GET", f"/connections/{cid}/groups")["groups"]
    # And the same name again, or no name, is refused in words and makes nothing
    again = client.call("POST", f"/connections/{cid}/groups", json={"name": "for SYNC"})
    assert again[0] == 409 and "exists already" in again[1]["error"]["message"]
    assert client.call("POST", f"/connections/{cid}/groups", json={"name": "   "})[0] == 422
    folders = stack.graph.sandbox.folders.values()
    names = [f.display_name for f in folders if f.user_id == demo.graph_user_id]
    assert names.count("For sync") == 1


def test_another_company_or_user_finds_nothing(stack, prepared) -> None:
    demo, _, _, cid = prepared
    stranger = Client(stack, stack.token(990001, 990002))
    colleague = Client(stack, stack.token(demo.other_user_id, demo.company_id))
    calls = [
        ("GET", f"/connections/{cid}/preview", {}),
        ("GET", f"/connections/{cid}/explain", {"params": {"crm_person_id": "1"}}),
        ("GET", f"/connections/{cid}/duplicates", {}),
        ("POST", f"/connections/{cid}/duplicates/merge", {"json": {"keep": "1", "merge": ["2"]}}),
        ("GET", f"/connections/{cid}/activity", {}),
        ("POST", f"/connections/{cid}/activity/2025-01-01T00:00:00.000000Z-000001/undo", {}),
        ("POST", f"/connections/{cid}/confirm", {}),
        ("POST", f"/connections/{cid}/discard", {}),
        ("POST", f"/connections/{cid}/reconnect", {}),
        ("POST", f"/connections/{cid}/resync", {}),
    ]
    for who in (stranger, colleague):
        for method, path, kwargs in calls:
            status, body = who.call(method, path, **kwargs)
            assert status == 404, (method, path, status, body)
            assert body["error"]["code"] == "not_found"
    # But the company's admin may look
    admin = Client(stack, demo.admin_token)
    assert admin.call("GET", f"/connections/{cid}/activity")[0] == 200


def test_bad_input_gets_a_4xx_in_the_error_shape(prepared) -> None:
    _, _, client, cid = prepared
    both_ids = {"crm_person_id": "1", "provider_contact_id": "x"}
    bad = [
        ("GET", f"/connections/{cid}/explain", {}),
        ("GET", f"/connections/{cid}/explain", {"params": both_ids}),
        ("GET", f"/connections/{cid}/explain", {"params": {"crm_person_id": "abc"}}),
        ("GET", f"/connections/{cid}/activity", {"params": {"limit": "0"}}),
        ("GET", f"/connections/{cid}/activity", {"params": {"cursor": "not-a-cursor"}}),
        ("POST", f"/connections/{cid}/duplicates/merge", {"json": {"keep": "1", "merge": []}}),
        ("POST", f"/connections/{cid}/duplicates/merge", {"json": {"keep": "1", "merge": ["1"]}}),
        ("POST", f"/connections/{cid}/duplicates/merge", {"content": b"{not json"}),
        ("POST", f"/connections/{cid}/activity/not-an-entry/undo", {}),
        ("GET", "/connections/bad%20id/preview", {}),
        ("GET", "/no/such/route", {}),
    ]
    for method, path, kwargs in bad:
        status, body = client.call(method, path, **kwargs)
        assert 400 <= status < 500, (method, path, status, body)
        assert set(body["error"]) == {"code", "message", "details"}, body
    # And the held-pass routes refuse when nothing is held
    for action in ("confirm", "discard"):
        status, body = client.call("POST", f"/connections/{cid}/{action}")
        assert status == 409 and body["error"]["code"] == "conflict", body


def test_the_openapi_document_is_served_and_matches_the_committed_one(stack) -> None:
    served = httpx.get(f"{stack.api_url}/openapi.json")
    assert served.status_code == 200
    assert served.json() == json.loads(openapi.DOCUMENT.read_text(encoding="utf-8"))
    docs = httpx.get(f"{stack.api_url}/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


# --- troubleshooting on a running sync -------------------------------------------------------


def test_persons_the_sync_created_are_visible_to_their_owner_only(stack, synced) -> None:
    demo = synced[0]
    # The persons the sync created carry its mapping tag in a custom field; seeded ones do not
    created = [p for p in crm_owned(stack, demo) if any(p.custom_fields.values())]
    assert len(created) >= 20
    assert {p.visible_to for p in created} == {1}


def test_explain_a_linked_contact(stack, synced) -> None:
    demo, data, client, cid = synced
    person = crm_person(stack, data.same_email[0])
    answer = explain(client, cid, crm_person_id=str(person.id))
    assert answer["syncing"] is True, answer
    assert answer["mapping"]["crm_id"] == str(person.id)
    assert answer["contact"]["exists"] and answer["contact"]["in_scope"]
    assert answer["history"], answer
    # And the same link is found from the Outlook side
    contact = outlook_contact(stack, demo, data.same_email[0])
    assert explain(client, cid, provider_contact_id=contact.id)["mapping"]["crm_id"] == str(
        person.id
    )


def unlinked_answer(found: dict[str, Any]) -> bool:
    """An explain answer for a contact no longer linked: no mapping, or one kept detached."""
    mapping = found["mapping"]
    return not found["syncing"] and (mapping is None or bool(mapping.get("detached")))


def test_a_person_owned_by_someone_else_is_explained(stack, synced) -> None:
    demo, data, client, cid = synced
    # Given a person another user owns from the start
    other = crm_person(stack, data.not_owned_email)
    answer = explain(client, cid, crm_person_id=str(other.id))
    assert answer["syncing"] is False
    assert any("owned by another user" in r for r in answer["reasons"]), answer
    # And a linked person that an admin hands over to a colleague
    email = data.same_email[4]
    person = crm_person(stack, email)
    stack.pipedrive.sandbox.change_owner(person.id, demo.other_user_id)

    def unlinked() -> dict[str, Any] | None:
        found = explain(client, cid, crm_person_id=str(person.id))
        return found if unlinked_answer(found) else None

    answer = eventually(unlinked, what="the handed-over person to be unlinked")
    assert answer["syncing"] is False
    assert any("owned by another user" in r for r in answer["reasons"]), answer
    assert "unlink" in [h["kind"] for h in answer["history"]]
    # And its Outlook contact was kept, not deleted
    assert outlook_count(stack, demo, email) == 1


def test_a_contact_moved_out_of_the_folder_is_explained(stack, synced) -> None:
    demo, data, client, cid = synced
    graph = stack.graph.sandbox
    elsewhere = graph.add_folder(demo.graph_user_id, "Elsewhere")
    contact = outlook_contact(stack, demo, data.same_email[6])
    graph.move_contact(demo.graph_user_id, contact.id, elsewhere)

    def unlinked() -> dict[str, Any] | None:
        found = explain(client, cid, provider_contact_id=contact.id)
        return found if unlinked_answer(found) else None

    answer = eventually(unlinked, what="the moved contact to be unlinked")
    assert answer["syncing"] is False
    assert any("outside the sync scope" in r for r in answer["reasons"]), answer
    # And the CRM person stays
    assert crm_count(stack, demo, data.same_email[6]) == 1


def test_a_crm_person_is_not_sent_to_outlook_when_the_direction_is_to_crm(stack, synced) -> None:
    demo, _, client, cid = synced
    quiet(stack)
    client.ok("PATCH", f"/connections/{cid}", json={"direction": "to_crm"})
    try:
        pd = stack.pipedrive.sandbox
        body = {"name": "Only Crm", "emails": [{"value": "only.crm@partner.example"}]}
        person = pd.create_person(pd.users[demo.user_id], body, source="app")
        time.sleep(1)
        quiet(stack)
        answer = explain(client, cid, crm_person_id=str(person.id))
    finally:
        client.ok("PATCH", f"/connections/{cid}", json={"direction": "two_way"})
    assert answer["syncing"] is False, answer
    assert any("direction is to_crm" in r for r in answer["reasons"]), answer
    assert outlook_count(stack, demo, "only.crm@partner.example") == 0


def test_duplicates_are_found_and_merged_without_coming_back(stack, synced) -> None:
    demo, data, client, cid = synced
    found = client.ok("GET", f"/connections/{cid}/duplicates")
    twins = [p.id for p in crm_owned(stack, demo) if data.ambiguous_email in str(p.emails)]
    cluster = next(c for c in found["clusters"] if set(c["crm_ids"]) == {str(i) for i in twins})
    assert f"email:{data.ambiguous_email}" in cluster["keys"]
    ambiguous = {a["key"] for a in found["ambiguous_matches"]}
    assert f"email:{data.ambiguous_email}" in ambiguous
    # Given two linked persons the user also wants as one
    keeper, loser = crm_person(stack, data.same_email[8]), crm_person(stack, data.same_email[9])
    loser_contact = outlook_contact(stack, demo, data.same_email[9]).id
    quiet(stack)
    # When both are merged
    keep, other = sorted(twins)
    merged = client.ok(
        "POST",
        f"/connections/{cid}/duplicates/merge",
        json={"keep": str(keep), "merge": [str(other)]},
    )
    assert merged["kept"] == str(keep)
    client.ok(
        "POST",
        f"/connections/{cid}/duplicates/merge",
        json={"keep": str(keeper.id), "merge": [str(loser.id)]},
    )
    # Then the CRM holds one twin, linked to the one Outlook twin
    assert crm_count(stack, demo, data.ambiguous_email) == 1
    eventually(lambda: explain(client, cid, crm_person_id=str(keep))["mapping"], what="twin linked")
    # And the linked loser's Outlook contact is gone, its email now on the keeper's contact
    eventually(
        lambda: all(c.id != loser_contact for c in outlook(stack, demo)), what="loser deleted"
    )
    eventually(lambda: outlook_count(stack, demo, data.same_email[9]) == 1, what="email moved")
    # And another full pass re-creates nothing
    client.ok("POST", f"/connections/{cid}/resync")
    time.sleep(1)
    quiet(stack)
    assert outlook_count(stack, demo, data.ambiguous_email) == 1
    assert crm_count(stack, demo, data.ambiguous_email) == 1
    assert crm_count(stack, demo, data.same_email[9]) == 1
    assert outlook_count(stack, demo, data.same_email[9]) == 1
    kinds = [e["kind"] for e in client.ok("GET", f"/connections/{cid}/activity")["entries"]]
    assert "merge" in kinds


def test_activity_pages_and_an_update_is_undone(stack, synced) -> None:
    demo, data, client, cid = synced
    email = data.same_email[10]
    person = crm_person(stack, email)
    old_title = person.job_title
    contact = outlook_contact(stack, demo, email)
    stack.graph.sandbox.update_contact(demo.graph_user_id, contact.id, {"jobTitle": "Undo Me"})
    eventually(lambda: crm_person(stack, email).job_title == "Undo Me", what="title in the CRM")
    quiet(stack)
    # When the activity is paged through, newest first
    first = client.ok("GET", f"/connections/{cid}/activity", params={"limit": 2})
    assert len(first["entries"]) == 2 and first["next_cursor"]
    second = client.ok(
        "GET", f"/connections/{cid}/activity", params={"limit": 2, "cursor": first["next_cursor"]}
    )
    assert {e["id"] for e in first["entries"]}.isdisjoint({e["id"] for e in second["entries"]})
    assert first["entries"][0]["at"] >= second["entries"][0]["at"]
    writes = client.ok("GET", f"/connections/{cid}/activity", params={"kind": "write"})
    assert {e["kind"] for e in writes["entries"]} == {"write"}
    write = next(
        e
        for e in writes["entries"]
        if e["side"] == "crm" and (e["after"] or {}).get("job_title") == "Undo Me"
    )
    assert write["undoable"] and write["before"]["job_title"] == (old_title or "")
    # When the user undoes that write
    undone = client.ok("POST", f"/connections/{cid}/activity/{write['id']}/undo")
    assert undone["restored"] == ["job_title"]
    # Then the CRM has its old title back, and Outlook follows
    assert (crm_person(stack, email).job_title or "") == (old_title or "")
    eventually(
        lambda: (
            (outlook_contact(stack, demo, email).props.get("jobTitle") or "") == (old_title or "")
        ),
        what="Outlook to follow the undo",
    )
    # And an entry that is not an update (the undo itself, a duplicate finding) cannot be undone
    finding = client.ok("GET", f"/connections/{cid}/activity", params={"kind": "duplicate"})
    for entry in (undone["entry"], finding["entries"][0]):
        status, body = client.call("POST", f"/connections/{cid}/activity/{entry['id']}/undo")
        assert status == 409, body
    status, body = client.call(
        "POST", f"/connections/{cid}/activity/2000-01-01T00:00:00.000000Z-000000/undo"
    )
    assert status == 404, body


def test_reconnect_keeps_the_links(stack, synced) -> None:
    demo, data, client, cid = synced
    answer = client.ok("POST", f"/connections/{cid}/reconnect")
    Api(stack, demo.token)._consent(answer["authorization_url"], verify=stack.graph.ca_file)
    assert explain(client, cid, crm_person_id=str(crm_person(stack, data.same_email[0]).id))[
        "mapping"
    ]


def test_a_mass_delete_is_held_then_discarded_then_confirmed(stack, synced) -> None:
    demo, _, client, cid = synced
    quiet(stack)
    # Given 25 linked Outlook contacts deleted at once (> 10 % and > 20 of the links)
    linked = [
        c
        for c in outlook(stack, demo)
        if "partner.example" not in str(c.props) and mapping_by_provider_id(cid, c.id)
    ][:25]
    assert len(linked) == 25
    for contact in linked:
        stack.graph.sandbox.delete_contact(demo.graph_user_id, contact.id)
    crm_before = len(crm_owned(stack, demo))

    def held() -> dict[str, Any] | None:
        view = client.ok("GET", f"/connections/{cid}")
        return view if view["state"] == "needs_attention" else None

    view = eventually(held, what="the guard to hold the pass")
    assert "delete" in view["held"]["message"]
    answer = explain(client, cid, crm_person_id=str(crm_owned(stack, demo)[0].id))
    assert any("mass-change guard" in r for r in answer["reasons"]), answer
    assert len(crm_owned(stack, demo)) == crm_before  # nothing was deleted
    # When the user discards it
    discarded = client.ok("POST", f"/connections/{cid}/discard")
    assert discarded["connection"]["state"] == "active"
    assert client.call("POST", f"/connections/{cid}/discard")[0] == 409
    # Then the cause is still there: the next full pass is held again
    client.ok("POST", f"/connections/{cid}/resync")
    eventually(held, what="the guard to hold the pass again")
    # When the user confirms it, the deletes go through
    client.ok("POST", f"/connections/{cid}/confirm")
    eventually(lambda: len(crm_owned(stack, demo)) <= crm_before - 25, what="the confirmed deletes")
    eventually(
        lambda: client.ok("GET", f"/connections/{cid}")["state"] == "active", what="active again"
    )
    entries = client.ok("GET", f"/connections/{cid}/activity", params={"limit": 200})["entries"]
    assert {"guard", "discard", "confirm"} <= {e["kind"] for e in entries}


def test_status_page_shows_error_rates_per_provider(stack, synced) -> None:
    _, _, client, _ = synced
    now = datetime.now(UTC)
    # Given Google passes that mostly failed in the last minutes
    for ok in (True, True, True, False, False):
        record_pass_outcome("google", ok, None if ok else "RateLimited", now)
    status = client.ok("GET", "/status")
    by_provider = {p["provider"]: p for p in status["providers"]}
    assert set(by_provider) == {"microsoft", "google", "carddav", "pipedrive"}
    google = by_provider["google"]
    assert (google["passes"], google["errors"], google["degraded"]) == (5, 2, True)
    assert google["error_codes"] == ["RateLimited"]
    assert status["degraded"] is True
    # And without a token there is no status page
    assert httpx.get(f"{stack.api_url}/status").status_code == 401


def test_an_expired_sign_in_shows_needs_reauth_and_reconnect_heals_it(stack, synced) -> None:
    demo, data, client, cid = synced
    graph = stack.graph.sandbox
    quiet(stack)
    # Given the user's Microsoft sign-in stops working (refresh token revoked, access expired)
    graph.revoke_refresh_tokens(demo.graph_user_id)
    graph.expire_access_tokens(demo.graph_user_id)
    # When an Outlook edit arrives and its pass runs
    email = data.same_email[12]
    contact = outlook_contact(stack, demo, email)
    graph.update_contact(demo.graph_user_id, contact.id, {"jobTitle": "Edited While Broken"})

    def needs_reauth() -> dict[str, Any] | None:
        view = client.ok("GET", f"/connections/{cid}")
        return view if view["state"] == "needs_reauth" else None

    # Then the connection says it needs the user to sign in again, in plain words
    view = eventually(needs_reauth, what="needs_reauth")
    assert view["last_error"] and view["last_error"]["message"]
    person = crm_person(stack, email)
    reasons = explain(client, cid, crm_person_id=str(person.id))["reasons"]
    assert any("sign" in r.lower() for r in reasons), reasons
    # When the user reconnects the same account
    answer = client.ok("POST", f"/connections/{cid}/reconnect")
    Api(stack, demo.token)._consent(answer["authorization_url"], verify=stack.graph.ca_file)
    # Then the sync is active again, the edit made meanwhile arrives, and nothing is duplicated
    eventually(
        lambda: crm_person(stack, email).job_title == "Edited While Broken",
        what="the edit made while the sign-in was broken",
    )
    assert client.ok("GET", f"/connections/{cid}")["state"] == "active"
    quiet(stack)
    for shared in data.same_email:
        assert crm_count(stack, demo, shared) <= 1, shared
        assert outlook_count(stack, demo, shared) <= 1, shared
