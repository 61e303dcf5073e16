"""The Pipedrive sandbox behaves like the documented API (see sandbox/pipedrive/README.md)."""

from __future__ import annotations

import base64
import re
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlparse

import httpx

if TYPE_CHECKING:
    from tests.integration.pipedrive_fixtures import PipedriveWorld, WebhookReceiver

pytest_plugins = ["tests.integration.pipedrive_fixtures"]


def _basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"authorization": f"Basic {token}"}


def test_requests_without_a_valid_token_get_pipedrives_401_shape(pipedrive: PipedriveWorld):
    # Given no token, a wrong token, and the user's personal API token
    # When each lists persons
    anonymous = httpx.get(f"{pipedrive.url}/api/v2/persons")
    wrong = httpx.get(f"{pipedrive.url}/api/v2/persons", headers={"authorization": "Bearer x"})
    api_token = httpx.get(
        f"{pipedrive.url}/api/v2/persons",
        headers={"x-api-token": pipedrive.sandbox.api_token(pipedrive.owner_id)},
    )
    # Then the first two are 401 in Pipedrive's error shape and the API token works
    assert anonymous.status_code == wrong.status_code == 401
    assert anonymous.json()["success"] is False
    assert anonymous.json()["errorCode"] == 401
    assert api_token.status_code == 200


def test_cursor_pages_of_at_most_500_cover_every_owned_person(pipedrive: PipedriveWorld):
    # Given 1200 persons of the owner and 3 of a colleague
    pipedrive.sandbox.seed_persons(pipedrive.owner_id, 1200)
    pipedrive.sandbox.seed_persons(pipedrive.other_id, 3, seed=1)
    seen: list[int] = []
    cursor = None
    pages = 0
    # When the owner's persons are listed 500 at a time
    with pipedrive.http() as http:
        while True:
            params = {"owner_id": pipedrive.owner_id, "limit": 500, "sort_by": "update_time"}
            if cursor:
                params["cursor"] = cursor
            body = http.get("/api/v2/persons", params=params).json()
            pages += 1
            seen += [p["id"] for p in body["data"]]
            cursor = body["additional_data"]["next_cursor"]
            if cursor is None:
                break
        too_big = http.get("/api/v2/persons", params={"limit": 501})
    # Then three pages hold each owned person once, and a limit over 500 is a 400
    assert pages == 3
    assert len(seen) == len(set(seen)) == 1200
    assert too_big.status_code == 400


def test_a_change_bumps_update_time_and_shows_in_updated_since(pipedrive: PipedriveWorld):
    # Given two persons and a mark taken after they were added
    first, second = pipedrive.sandbox.seed_persons(pipedrive.owner_id, 2, with_orgs=False)
    pipedrive.sandbox.advance_clock(60)
    mark = pipedrive.sandbox.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    pipedrive.sandbox.advance_clock(5)
    with pipedrive.http() as http:
        before = http.get(f"/api/v2/persons/{second}").json()["data"]
        # When one of them is changed through the API
        http.patch(f"/api/v2/persons/{second}", json={"job_title": "CTO"})
        changed = http.get("/api/v2/persons", params={"updated_since": mark}).json()["data"]
    # Then only that one is listed since the mark, with a later update_time
    assert [p["id"] for p in changed] == [second]
    assert changed[0]["update_time"] > before["update_time"]
    assert changed[0]["job_title"] == "CTO"
    assert first != second


def test_deleted_persons_are_not_listed_and_get_404(pipedrive: PipedriveWorld):
    # Given a person
    (pid,) = pipedrive.sandbox.seed_persons(pipedrive.owner_id, 1, with_orgs=False)
    with pipedrive.http() as http:
        # When it is deleted
        deleted = http.delete(f"/api/v2/persons/{pid}")
        listed = http.get("/api/v2/persons").json()["data"]
        single = http.get(f"/api/v2/persons/{pid}")
    # Then it is gone from the listing and a GET is a 404
    assert deleted.json() == {"success": True, "data": {"id": pid}}
    assert listed == []
    assert single.status_code == 404


def test_merge_keeps_merge_with_id_and_combines_emails(pipedrive: PipedriveWorld):
    # Given two duplicates with different emails
    with pipedrive.http() as http:
        keep = http.post(
            "/api/v2/persons",
            json={"name": "Ann Lee", "emails": [{"value": "ann@a.test", "primary": True}]},
        ).json()["data"]
        gone = http.post(
            "/api/v2/persons",
            json={"name": "Ann Lee", "emails": [{"value": "ann@b.test"}], "job_title": "CEO"},
        ).json()["data"]
        # When the second is merged into the first
        merged = http.put(f"/v1/persons/{gone['id']}/merge", json={"merge_with_id": keep["id"]})
        survivor = http.get(f"/api/v2/persons/{keep['id']}").json()["data"]
        other = http.get(f"/api/v2/persons/{gone['id']}")
    # Then merge_with_id survives with both emails and the other's non-conflicting fields
    assert merged.json()["data"]["id"] == keep["id"]
    assert [e["value"] for e in survivor["emails"]] == ["ann@a.test", "ann@b.test"]
    assert survivor["job_title"] == "CEO"
    assert other.status_code == 404


def test_custom_person_fields_get_a_40_hex_key(pipedrive: PipedriveWorld):
    with pipedrive.http() as http:
        # When a custom field is added
        created = http.post(
            "/api/v1/personFields", json={"name": "contactsync id", "field_type": "varchar"}
        ).json()["data"]
        listed = http.get("/api/v1/personFields").json()
    # Then its key is a 40-character hash and it is listed with v1 pagination
    assert re.fullmatch(r"[0-9a-f]{40}", created["key"])
    assert created["key"] in [f["key"] for f in listed["data"]]
    assert listed["additional_data"]["pagination"]["more_items_in_collection"] is False


def test_permissions_decide_who_may_add_people_and_organizations(pipedrive: PipedriveWorld):
    # Given the owner may no longer add people (and an answer that lists the add flags, which
    # the documented API does not: relaxed here to see them; see the next test)
    pipedrive.sandbox.set_permissions(pipedrive.owner_id, can_add_people=False)
    pipedrive.sandbox.lists_add_permissions = True
    with pipedrive.http() as http:
        # When it reads its permissions and tries to add a person and an organization
        perms = http.get(f"/api/v1/users/{pipedrive.owner_id}/permissions").json()["data"]
        person = http.post("/api/v2/persons", json={"name": "Nope"})
        org = http.post("/api/v2/organizations", json={"name": "Fine Ltd"})
        colleague = http.get(f"/api/v1/users/{pipedrive.other_id}/permissions")
    # Then the flags say so, the person is refused with 403, the organization is not
    assert perms["can_add_people"] is False
    assert perms["can_add_organizations"] is True
    assert person.status_code == 403
    assert org.status_code == 200
    assert colleague.status_code == 403  # only admins read other users' permissions


def test_organizations_are_searched_by_name(pipedrive: PipedriveWorld):
    with pipedrive.http() as http:
        http.post("/api/v2/organizations", json={"name": "Acme  Widgets"})
        http.post("/api/v2/organizations", json={"name": "Acme Widgets International"})
        # When searching for an exact name with other spacing and case
        exact = http.get(
            "/api/v2/organizations/search", params={"term": "acme widgets", "exact_match": "true"}
        ).json()["data"]["items"]
        loose = http.get("/api/v2/organizations/search", params={"term": "widgets"}).json()
    # Then exact matching finds one, a loose search both
    assert [i["item"]["name"] for i in exact] == ["Acme  Widgets"]
    assert len(loose["data"]["items"]) == 2


def test_webhook_v2_delivery_carries_basic_auth_and_retries(
    pipedrive: PipedriveWorld, receiver: WebhookReceiver
):
    # Given a v2 person webhook with basic auth, and a receiver that fails once
    receiver.answers.append(500)
    with pipedrive.http() as http:
        created = http.post(
            "/v1/webhooks",
            json={
                "subscription_url": receiver.url,
                "event_action": "*",
                "event_object": "person",
                "http_auth_user": receiver.user,
                "http_auth_password": receiver.password,
                "version": "2.0",
            },
        )
        # When a person is added through the API
        pid = http.post("/api/v2/persons", json={"name": "Ann Lee"}).json()["data"]["id"]
    payloads = receiver.wait_for(1)
    # Then it arrives on the second attempt with the documented v2 meta block
    assert created.status_code == 201
    assert created.json()["data"]["http_auth_password"] != receiver.password
    assert receiver.rejected == 0
    meta = payloads[0]["meta"]
    assert meta["action"] == "create"
    assert meta["entity"] == "person"
    assert meta["entity_id"] == str(pid)
    assert meta["change_source"] == "api"
    assert meta["attempt"] == 2
    assert meta["webhook_id"] == str(created.json()["data"]["id"])
    assert payloads[0]["data"]["name"] == "Ann Lee"
    assert payloads[0]["previous"] is None
    assert pipedrive.sandbox.wait_for_deliveries()
    attempts = [d["status"] for d in pipedrive.sandbox.deliveries()]
    assert attempts == [500, 200]


def test_app_edits_send_change_webhooks_with_previous_values(
    pipedrive: PipedriveWorld, receiver: WebhookReceiver
):
    # Given a webhook and a person
    (pid,) = pipedrive.sandbox.seed_persons(pipedrive.owner_id, 1, with_orgs=False)
    with pipedrive.http() as http:
        http.post(
            "/v1/webhooks",
            json={
                "subscription_url": receiver.url,
                "event_action": "*",
                "event_object": "person",
                "http_auth_user": receiver.user,
                "http_auth_password": receiver.password,
            },
        )
    # When the user re-titles the person in the app, then a colleague takes it over
    pipedrive.sandbox.edit_in_app(pid, {"job_title": "Boss"})
    pipedrive.sandbox.change_owner(pid, pipedrive.other_id)
    payloads = receiver.wait_for(2)
    # Then two change webhooks from the app say what changed
    assert [p["meta"]["change_source"] for p in payloads] == ["app", "app"]
    assert payloads[0]["previous"]["job_title"] is None
    assert payloads[1]["previous"]["owner_id"] == pipedrive.owner_id
    assert payloads[1]["data"]["owner_id"] == pipedrive.other_id


def test_duplicated_deliveries_share_their_identity(
    pipedrive: PipedriveWorld, receiver: WebhookReceiver
):
    # Given the control API duplicates every delivery
    with httpx.Client(base_url=pipedrive.url) as control:
        control.put("/_sandbox/delivery-mode", json={"duplicate": True})
    with pipedrive.http() as http:
        http.post(
            "/v1/webhooks",
            json={
                "subscription_url": receiver.url,
                "event_action": "create",
                "event_object": "person",
                "http_auth_user": receiver.user,
                "http_auth_password": receiver.password,
            },
        )
        # When one person is added
        http.post("/api/v2/persons", json={"name": "Twice"})
    payloads = receiver.wait_for(2)
    # Then it arrives twice with the same webhook id, timestamp and event id
    assert len(payloads) == 2
    first, second = (p["meta"] for p in payloads)
    assert (first["id"], first["timestamp"]) == (second["id"], second["timestamp"])


def test_a_user_has_at_most_40_webhooks(pipedrive: PipedriveWorld):
    body = {"subscription_url": "http://127.0.0.1:9/x", "event_action": "*", "event_object": "*"}
    with pipedrive.http() as http:
        statuses = [http.post("/v1/webhooks", json=body).status_code for _ in range(41)]
    assert statuses[:40] == [201] * 40
    assert statuses[40] == 400


def test_oauth_code_flow_refresh_and_revocation(pipedrive: PipedriveWorld):
    running = pipedrive.running
    client = _basic(running.client_id, running.client_secret)
    redirect = "http://127.0.0.1:1/callback"
    with httpx.Client(base_url=pipedrive.url) as http:
        # When the user approves the app
        approved = http.get(
            "/oauth/authorize",
            params={"client_id": running.client_id, "redirect_uri": redirect, "state": "s1"},
        )
        query = parse_qs(urlparse(approved.headers["location"]).query)
        # And the code is exchanged, then refreshed
        grant = http.post(
            "/oauth/token",
            data={
                "grant_type": "authorization_code",
                "code": query["code"][0],
                "redirect_uri": redirect,
            },
            headers=client,
        ).json()
        refreshed = http.post(
            "/oauth/token",
            data={"grant_type": "refresh_token", "refresh_token": grant["refresh_token"]},
            headers=client,
        ).json()
        me = http.get(
            "/api/v1/users/me", headers={"authorization": "Bearer " + refreshed["access_token"]}
        )
        # And the user uninstalls the app
        pipedrive.sandbox.revoke_tokens(pipedrive.owner_id)
        revoked = http.post(
            "/oauth/token",
            data={"grant_type": "refresh_token", "refresh_token": grant["refresh_token"]},
            headers=client,
        )
        bad_client = http.post("/oauth/token", data={"grant_type": "refresh_token"})
    # Then the redirect carries code and state, tokens work, and a revoked grant is invalid
    assert approved.status_code == 302
    assert query["state"] == ["s1"]
    assert grant["token_type"] == "Bearer"
    assert grant["api_domain"] == pipedrive.url
    assert me.json()["data"]["id"] == pipedrive.owner_id
    assert revoked.status_code == 400
    assert revoked.json()["error"] == "invalid_grant"
    assert bad_client.status_code == 401


def test_the_burst_limit_answers_429_with_rate_limit_headers(pipedrive: PipedriveWorld):
    # Given a burst limit of 3 requests per 2 seconds
    pipedrive.sandbox.burst_limit = 3
    with pipedrive.http() as http:
        # When four requests come at once
        answers = [http.get("/api/v1/users/me") for _ in range(4)]
    # Then the fourth is refused with the limit headers and a retry-after
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[0].headers["x-ratelimit-limit"] == "3"
    assert answers[0].headers["x-ratelimit-remaining"] == "2"
    assert answers[3].headers["x-ratelimit-remaining"] == "0"
    assert int(answers[3].headers["retry-after"]) >= 1
    assert answers[3].json()["errorCode"] == 429


def test_injected_faults_and_request_counters(pipedrive: PipedriveWorld):
    with httpx.Client(base_url=pipedrive.url) as control:
        control.post("/_sandbox/faults", json={"status": 503, "count": 2})
        control.post("/_sandbox/stats/reset")
    with pipedrive.http() as http:
        # When three requests follow two injected 503s
        statuses = [http.get("/api/v2/persons").status_code for _ in range(3)]
    with httpx.Client(base_url=pipedrive.url) as control:
        stats = control.get("/_sandbox/stats").json()["requests"]
    # Then the first two fail and every request is counted per route
    assert statuses == [503, 503, 200]
    assert stats["GET /api/v2/persons"] == 3


def test_daily_token_budget_is_spent_per_company(pipedrive: PipedriveWorld):
    # Given a tiny daily budget
    pipedrive.sandbox.daily_budget_override = 12
    with pipedrive.http() as http:
        # When a list (10 tokens) and then a second list are requested
        first = http.get("/api/v2/persons")
        second = http.get("/api/v2/persons")
    # Then the second exceeds the budget
    assert first.status_code == 200
    assert second.status_code == 429
    assert pipedrive.sandbox.tokens_spent(pipedrive.company_id) == 10


def test_contact_sync_fields_are_refused_and_left_out_without_contact_sync(
    pipedrive: PipedriveWorld,
):
    # Given a company with contact sync off (the default; the fixture turns it on)
    sb = pipedrive.sandbox
    sb.set_contact_sync(pipedrive.company_id, False)
    with pipedrive.http() as http:
        # When a person is written with a job title, Then it is refused and nothing is made
        refused = http.post("/api/v2/persons", json={"name": "Ann", "job_title": "CTO"})
        assert refused.status_code == 403 and "contact sync" in refused.json()["error"]
        assert not [p for p in sb.persons.values() if p.name == "Ann"]
        # And without those fields it is made, and read back without them
        made = http.post("/api/v2/persons", json={"name": "Ann"}).json()["data"]
        got = http.get(f"/api/v2/persons/{made['id']}").json()["data"]
        listed = http.get("/api/v2/persons", params={"ids": str(made["id"])}).json()["data"]
        sb.set_contact_sync(pipedrive.company_id, True)
        shown = http.get(f"/api/v2/persons/{made['id']}").json()["data"]
    hidden = {"job_title", "birthday", "notes", "postal_address"}
    assert not hidden & (set(made) | set(got) | set(listed[0]))
    assert hidden <= set(shown)  # with contact sync on they are there (empty)


def test_the_users_own_app_edits_spend_the_same_burst_limit(pipedrive: PipedriveWorld):
    # Given a burst limit of 3 requests per 2 s for the user
    sb = pipedrive.sandbox
    sb.burst_limit = 3
    person = sb.create_person(sb.users[pipedrive.owner_id], {"name": "Ann"})
    # When the user edits the person twice in the app
    sb.edit_in_app(person.id, {"name": "Ann B"})
    sb.edit_in_app(person.id, {"name": "Ann C"})
    # Then our API requests share what is left of the window
    with pipedrive.http() as http:
        answers = [http.get(f"/api/v2/persons/{person.id}").status_code for _ in range(2)]
    assert answers == [200, 429]


def test_the_permissions_answer_does_not_list_the_add_flags_but_post_enforces_them(
    pipedrive: PipedriveWorld,
):
    pipedrive.sandbox.set_permissions(pipedrive.owner_id, can_add_people=False)
    with pipedrive.http() as http:
        perms = http.get(f"/api/v1/users/{pipedrive.owner_id}/permissions").json()["data"]
        person = http.post("/api/v2/persons", json={"name": "Nope"})
    assert "can_add_people" not in perms and "can_add_organizations" not in perms
    assert perms["can_merge_people"] is True
    assert person.status_code == 403


def test_persons_search_sees_every_owner_and_users_are_read_by_id(pipedrive: PipedriveWorld):
    # Given a colleague's person
    other_token = pipedrive.sandbox.issue_token(pipedrive.other_id)
    with pipedrive.http(other_token) as http:
        http.post("/api/v2/persons", json={"name": "Ann", "emails": [{"value": "ann@x.test"}]})
    with pipedrive.http() as http:
        # When the user searches by exact email, with another case, and for a partial one
        params = {"term": "ANN@x.test", "fields": "email", "exact_match": "true"}
        exact = http.get("/api/v2/persons/search", params=params).json()["data"]["items"]
        params = {"term": "ann@x", "fields": "email", "exact_match": "true"}
        partial = http.get("/api/v2/persons/search", params=params).json()["data"]["items"]
        # And reads the owner, and a user of no company of theirs
        owner = http.get(f"/v1/users/{exact[0]['item']['owner']['id']}").json()["data"]
        missing = http.get("/v1/users/999999")
    # Then the colleague's person is found by the whole address only, and its owner is named
    assert [i["item"]["emails"] for i in exact] == [["ann@x.test"]]
    assert partial == []
    assert owner["name"] == "Colin Colleague"
    assert missing.status_code == 404
