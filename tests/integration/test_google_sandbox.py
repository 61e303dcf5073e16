"""The Google People API sandbox speaks like Google: the official client, sync tokens, batches,
groups, OAuth with PKCE, quota and faults. Each test starts and stops its own listener."""

from __future__ import annotations

import base64
import hashlib
import html
import re
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import google.auth.exceptions
import google.auth.transport.requests
import google.oauth2.credentials
import httpx
import pytest
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from sandbox.google import GoogleSandbox, RunningGoogle, running_google_sandbox

ADA = "ada@example.com"
FIELDS = "names,emailAddresses,memberships,metadata"
REDIRECT = "http://127.0.0.1:9/oauth/callback"


@pytest.fixture
def g() -> Iterator[RunningGoogle]:
    sb = GoogleSandbox(seed=7)
    sb.add_user(ADA, "Ada Lovelace")
    with running_google_sandbox(sandbox=sb) as running:
        yield running


def api(g: RunningGoogle, email: str = ADA) -> httpx.Client:
    token = g.sandbox.token_for(email)
    return httpx.Client(base_url=g.url, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def person(given: str, family: str = "Doe", **extra: Any) -> dict[str, Any]:
    email = f"{given.lower()}.{family.lower()}@example.org"
    return {
        "names": [{"givenName": given, "familyName": family}],
        "emailAddresses": [{"value": email}],
        **extra,
    }


def list_all(client: httpx.Client, **params: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every page of connections.list; returns the people and the last page."""
    people: list[dict[str, Any]] = []
    query = {"personFields": FIELDS, **params}
    while True:
        resp = client.get("/v1/people/me/connections", params=query)
        assert resp.status_code == 200, resp.text
        page = resp.json()
        people += page.get("connections", [])
        if "nextPageToken" not in page:
            return people, page
        query["pageToken"] = page["nextPageToken"]


# --- the proof: Google's own client against the sandbox -------------------------------------------


def test_official_client_lists_creates_and_updates_with_etags(g: RunningGoogle) -> None:
    # Given the official client pointed at the sandbox with a token for Ada, who has one contact
    g.sandbox.add_contact(ADA, person("Grace", "Hopper"))
    creds = google.oauth2.credentials.Credentials(token=g.sandbox.token_for(ADA))
    service = build(
        "people",
        "v1",
        credentials=creds,
        static_discovery=True,
        client_options={"api_endpoint": g.url},
    )
    people = service.people()

    # When it lists, creates, then updates the new contact with its etag
    listed = people.connections().list(resourceName="people/me", personFields=FIELDS).execute()
    created = people.createContact(body=person("Alan", "Turing")).execute()
    updated = people.updateContact(
        resourceName=created["resourceName"],
        updatePersonFields="names",
        body={"etag": created["etag"], "names": [{"givenName": "Alan M.", "familyName": "Turing"}]},
    ).execute()
    fetched = people.get(resourceName=created["resourceName"], personFields=FIELDS).execute()

    # Then it saw the contact, the update is visible, and the untouched field survived
    assert [p["names"][0]["displayName"] for p in listed["connections"]] == ["Grace Hopper"]
    assert created["resourceName"].startswith("people/c")
    assert updated["etag"] != created["etag"]
    assert fetched["names"][0]["displayName"] == "Alan M. Turing"
    assert fetched["emailAddresses"][0]["value"] == "alan.turing@example.org"

    # And an update carrying the old etag fails with Google's 400 FAILED_PRECONDITION
    with pytest.raises(HttpError) as stale:
        people.updateContact(
            resourceName=created["resourceName"],
            updatePersonFields="names",
            body={"etag": created["etag"], "names": [{"givenName": "Stale"}]},
        ).execute()
    assert stale.value.resp.status == 400
    assert "etag" in stale.value.reason


# --- connections.list and sync tokens -------------------------------------------------------------


def test_full_listing_pages_then_sync_token_returns_only_changes(g: RunningGoogle) -> None:
    # Given 250 contacts
    sb = g.sandbox
    names = sb.seed_contacts(ADA, 250)
    with api(g) as client:
        # When they are listed 100 at a time asking for a sync token
        people, last = list_all(client, pageSize=100, requestSyncToken="true")

        # Then three pages hold them all and only the last one carries the sync token
        assert len(people) == 250 and {p["resourceName"] for p in people} == set(names)
        assert last["totalItems"] == 250 and "nextSyncToken" in last

        # When the user edits one, deletes one, adds one, and we ask for changes
        sb.update_contact(ADA, names[0], {"names": [{"givenName": "Edited"}]})
        sb.delete_contact(ADA, names[1])
        added = sb.add_contact(ADA, person("New"))
        sb.advance(sb.sync_lag.total_seconds())  # writes reach sync listings after a lag
        changes, after = list_all(client, syncToken=last["nextSyncToken"])

        # Then exactly those three come back, the deleted one as a tombstone
        by_name = {p["resourceName"]: p for p in changes}
        assert set(by_name) == {names[0], names[1], added}
        assert by_name[names[0]]["names"][0]["givenName"] == "Edited"
        assert by_name[names[1]]["metadata"]["deleted"] is True
        assert "names" not in by_name[names[1]]

        # And the next sync with the new token has nothing to report
        quiet, _ = list_all(client, syncToken=after["nextSyncToken"])
        assert quiet == []


def test_sync_token_older_than_seven_days_is_expired(g: RunningGoogle) -> None:
    # Given a sync token from a full listing
    g.sandbox.seed_contacts(ADA, 3)
    with api(g) as client:
        _, last = list_all(client, requestSyncToken="true")

    # When eight days pass and it is used (with a fresh access token: the old one expired too)
    g.sandbox.advance(8 * 24 * 3600)
    with api(g) as client:
        resp = client.get(
            "/v1/people/me/connections",
            params={"personFields": FIELDS, "syncToken": last["nextSyncToken"]},
        )

    # Then Google's error comes back: 400 FAILED_PRECONDITION with ErrorInfo EXPIRED_SYNC_TOKEN
    error = resp.json()["error"]
    assert resp.status_code == 400 and error["status"] == "FAILED_PRECONDITION"
    assert error["details"][0]["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
    assert error["details"][0]["reason"] == "EXPIRED_SYNC_TOKEN"


def test_connections_need_person_fields_and_matching_page_parameters(
    g: RunningGoogle,
) -> None:
    # Given three contacts
    g.sandbox.seed_contacts(ADA, 3)
    with api(g) as client:
        # When personFields is missing
        missing = client.get("/v1/people/me/connections")
        # And a page token is used with different fields than the first call
        first = client.get(
            "/v1/people/me/connections", params={"personFields": "names", "pageSize": 1}
        )
        other = client.get(
            "/v1/people/me/connections",
            params={"personFields": "emailAddresses", "pageSize": 1,
                    "pageToken": first.json()["nextPageToken"]},
        )  # fmt: skip
        # And a misspelt parameter is sent
        typo = client.get("/v1/people/me/connections", params={"personfields": "names"})
        # And the right page token is sent twice (a retry after a lost answer)
        again = {"personFields": "names", "pageSize": 1, "pageToken": first.json()["nextPageToken"]}
        second = [client.get("/v1/people/me/connections", params=again).json() for _ in range(2)]

    # Then each wrong call is a 400 INVALID_ARGUMENT
    for resp in (missing, other, typo):
        assert resp.status_code == 400 and resp.json()["error"]["status"] == "INVALID_ARGUMENT"
    # And the retried page is the same page, the one after the first
    assert second[0] == second[1]
    assert second[0]["connections"] != first.json()["connections"]


def test_update_changes_only_masked_fields_and_keeps_unknown_ones(g: RunningGoogle) -> None:
    # Given a contact carrying fields the project does not model (nicknames, clientData)
    rn = g.sandbox.add_contact(
        ADA,
        person("Hedy", nicknames=[{"value": "H"}], clientData=[{"key": "crm", "value": "42"}]),
    )
    etag = g.sandbox.contacts(ADA)[0]["etag"]
    with api(g) as client:
        # When only phoneNumbers is updated (the body also carries a different name)
        resp = client.patch(
            f"/v1/{rn}:updateContact",
            params={"updatePersonFields": "phoneNumbers"},
            json={"etag": etag, "names": [{"givenName": "Ignored"}],
                  "phoneNumbers": [{"value": "+49 30 1234567", "type": "mobile"}]},
        )  # fmt: skip
        # And an unknown mask path is tried
        bad = client.patch(
            f"/v1/{rn}:updateContact",
            params={"updatePersonFields": "names,shoeSize"},
            json={"etag": resp.json()["etag"]},
        )

    # Then the phone changed, the name did not, the other fields are still there
    body = resp.json()
    assert resp.status_code == 200
    assert body["phoneNumbers"][0]["canonicalForm"] == "+49301234567"
    assert body["names"][0]["givenName"] == "Hedy"
    assert body["nicknames"][0]["value"] == "H"
    assert body["clientData"][0]["value"] == "42"
    assert bad.status_code == 400 and bad.json()["error"]["status"] == "INVALID_ARGUMENT"


# --- batches --------------------------------------------------------------------------------------


def test_batch_create_get_update_delete_and_their_limits(g: RunningGoogle) -> None:
    with api(g) as client:
        # When 200 contacts are created in one call (the maximum) and 201 in another
        ok = client.post(
            "/v1/people:batchCreateContacts",
            json={"contacts": [{"contactPerson": person(f"P{i}")} for i in range(200)],
                  "readMask": "names,metadata"},
        )  # fmt: skip
        too_many = client.post(
            "/v1/people:batchCreateContacts",
            json={"contacts": [{"contactPerson": person(f"Q{i}")} for i in range(201)],
                  "readMask": "names"},
        )  # fmt: skip

        # Then the first created 200 people and the second was refused whole
        created = [r["person"] for r in ok.json()["createdPeople"]]
        assert ok.status_code == 200 and len(created) == 200
        assert all(r["httpStatusCode"] == 200 for r in ok.json()["createdPeople"])
        assert too_many.status_code == 400
        assert too_many.json()["error"]["status"] == "INVALID_ARGUMENT"
        assert len(g.sandbox.contacts(ADA)) == 200

        # When two are fetched in one batchGet (one unknown) and 201 are asked for
        names = [p["resourceName"] for p in created]
        got = client.get(
            "/v1/people:batchGet",
            params={"resourceNames": [names[0], "people/c1"], "personFields": "names"},
        )
        over = client.get(
            "/v1/people:batchGet", params={"resourceNames": [*names, "x"], "personFields": "names"}
        )
        # Then each answer says how it went; the oversized one is refused
        statuses = [r["httpStatusCode"] for r in got.json()["responses"]]
        assert statuses == [200, 404] and over.status_code == 400

        # When two are updated in one call, one of them with a stale etag
        first = {"etag": created[0]["etag"], "names": [{"givenName": "A"}]}
        second = {"etag": created[1]["etag"], "names": [{"givenName": "B"}]}
        masks = {"updateMask": "names", "readMask": "names"}
        stale = client.post(
            "/v1/people:batchUpdateContacts",
            json={"contacts": {names[0]: first, names[1]: {**second, "etag": "%stale"}}, **masks},
        )
        # Then nothing changed and the error names the failing contact
        assert stale.status_code == 400
        assert stale.json()["error"]["status"] == "FAILED_PRECONDITION"
        assert names[1] in stale.json()["error"]["details"][0]["contactErrors"]
        assert g.sandbox.contacts(ADA)[0]["names"][0]["givenName"] == "P0"

        # When both are updated with current etags
        good = client.post(
            "/v1/people:batchUpdateContacts",
            json={"contacts": {names[0]: first, names[1]: second}, **masks},
        )
        result = good.json()["updateResult"]
        assert result[names[1]]["person"]["names"][0]["givenName"] == "B"

        # When 501 are deleted at once, then 100
        refused = client.post("/v1/people:batchDeleteContacts", json={"resourceNames": names * 3})
        deleted = client.post("/v1/people:batchDeleteContacts", json={"resourceNames": names[:100]})

    # Then the first is refused and the second leaves 100 contacts
    assert refused.status_code == 400
    assert deleted.status_code == 200 and deleted.json() == {}
    assert len(g.sandbox.contacts(ADA)) == 100
    stats = g.sandbox.stats_snapshot()
    assert stats["batchCreateContacts"] == 2 and stats["batchDeleteContacts"] == 2


# --- contact groups -------------------------------------------------------------------------------


def test_groups_and_members_modify_show_in_memberships_and_sync(g: RunningGoogle) -> None:
    # Given a user group, a contact, and a sync token taken after both exist
    sb = g.sandbox
    crm = sb.add_group(ADA, "CRM")
    rn = sb.add_contact(ADA, person("Radia", "Perlman"))
    with api(g) as client:
        _, last = list_all(client, requestSyncToken="true")
        before = client.get(f"/v1/{rn}", params={"personFields": "memberships"}).json()

        # When the contact is added to the group
        added = client.post(f"/v1/{crm}/members:modify", json={"resourceNamesToAdd": [rn]})
        groups = client.get("/v1/contactGroups").json()["contactGroups"]
        sb.advance(sb.stale_read.total_seconds())  # a read right after a write may be stale
        after = client.get(f"/v1/{rn}", params={"personFields": "memberships"}).json()
        sb.advance(sb.sync_lag.total_seconds())  # writes reach sync listings after a lag
        changes, _ = list_all(client, syncToken=last["nextSyncToken"])

        # Then the group lists it, its memberships name the group, its etag moved, and sync saw it
        assert added.status_code == 200 and added.json() == {}
        user_group = next(g for g in groups if g["resourceName"] == crm)
        assert user_group["groupType"] == "USER_CONTACT_GROUP"
        assert user_group["formattedName"] == "CRM" and user_group["memberCount"] == 1
        member_of = {
            m["contactGroupMembership"]["contactGroupResourceName"] for m in after["memberships"]
        }
        assert member_of == {"contactGroups/myContacts", crm}
        assert after["etag"] != before["etag"]
        assert [p["resourceName"] for p in changes] == [rn]

        # When it leaves myContacts, then tries to leave its last group too
        client.post(
            "/v1/contactGroups/myContacts/members:modify", json={"resourceNamesToRemove": [rn]}
        )
        last_one = client.post(f"/v1/{crm}/members:modify", json={"resourceNamesToRemove": [rn]})

    # Then the last removal is refused, as Google does
    assert last_one.json() == {"canNotRemoveLastContactGroupResourceNames": [rn]}
    assert (
        sb.contacts(ADA)[0]["memberships"][0]["contactGroupMembership"]["contactGroupResourceName"]
        == crm
    )


# --- OAuth ----------------------------------------------------------------------------------------


def authorize(g: RunningGoogle, verifier: str, **extra: str) -> httpx.Response:
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    params = {
        "client_id": g.client_id,
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "scope": "openid https://www.googleapis.com/auth/contacts",
        "state": "xyz",
        "access_type": "offline",
        "prompt": "consent",
        "login_hint": ADA,
        "code_challenge": challenge.decode().rstrip("="),
        "code_challenge_method": "S256",
        **extra,
    }
    return httpx.get(g.authorize_url, params=params, follow_redirects=False)


def test_oauth_code_flow_with_pkce_refresh_and_revoke(g: RunningGoogle) -> None:
    verifier = "v" * 64
    # When the browser is sent to the authorize endpoint
    redirect = authorize(g, verifier)
    # Then it comes back to the app with a code and the state
    assert redirect.status_code == 302
    back = urlsplit(redirect.headers["location"])
    query = parse_qs(back.query)
    assert f"{back.scheme}://{back.netloc}{back.path}" == REDIRECT and query["state"] == ["xyz"]

    form = {
        "grant_type": "authorization_code",
        "code": query["code"][0],
        "redirect_uri": REDIRECT,
        "client_id": g.client_id,
        "client_secret": g.client_secret,
    }
    # When the code is redeemed with a wrong verifier, then with the right one, then again
    wrong = httpx.post(g.token_url, data={**form, "code_verifier": "w" * 64})
    redirect = authorize(g, verifier)
    form["code"] = parse_qs(urlsplit(redirect.headers["location"]).query)["code"][0]
    tokens = httpx.post(g.token_url, data={**form, "code_verifier": verifier})
    reused = httpx.post(g.token_url, data={**form, "code_verifier": verifier})

    # Then the wrong verifier and the reuse are invalid_grant, the right one gets tokens
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    body = tokens.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] > 3500
    assert {"access_token", "refresh_token", "scope"} <= set(body) and "id_token" not in body
    me = httpx.get(
        f"{g.url}/v1/people/me",
        params={"personFields": "emailAddresses"},
        headers={"Authorization": f"Bearer {body['access_token']}"},
    )
    assert me.json()["emailAddresses"][0]["value"] == ADA

    # When google-auth refreshes with the refresh token
    creds = google.oauth2.credentials.Credentials(
        token=None,
        refresh_token=body["refresh_token"],
        token_uri=g.token_url,
        client_id=g.client_id,
        client_secret=g.client_secret,
    )
    creds.refresh(google.auth.transport.requests.Request())
    # Then it holds a new working access token
    assert creds.token and creds.token != body["access_token"]

    # When the user revokes access
    g.sandbox.revoke(ADA)
    # Then refreshing fails with invalid_grant and the old access token gets 401
    with pytest.raises(google.auth.exceptions.RefreshError, match="invalid_grant"):
        creds.refresh(google.auth.transport.requests.Request())
    after = httpx.get(
        f"{g.url}/v1/people/me",
        params={"personFields": "names"},
        headers={"Authorization": f"Bearer {creds.token}"},
    )
    assert after.status_code == 401 and after.json()["error"]["status"] == "UNAUTHENTICATED"


def test_authorize_refuses_unknown_client_and_foreign_redirect(g: RunningGoogle) -> None:
    # When the client id is unknown, or the redirect URI is not registered
    unknown = authorize(g, "v" * 64, client_id="nobody.apps.googleusercontent.com")
    foreign = authorize(g, "v" * 64, redirect_uri="https://evil.example/callback")
    # Then Google shows an error page instead of redirecting
    assert unknown.status_code == 400 and "location" not in unknown.headers
    assert foreign.status_code == 400 and "location" not in foreign.headers


def test_access_tokens_expire_after_an_hour(g: RunningGoogle) -> None:
    # Given a working token
    with api(g) as client:
        assert client.get("/v1/people/me", params={"personFields": "names"}).status_code == 200
        # When an hour of sandbox time passes
        g.sandbox.advance(3601)
        resp = client.get("/v1/people/me", params={"personFields": "names"})
    # Then Google's 401 envelope comes back
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == 401
    assert resp.json()["error"]["details"][0]["reason"] == "ACCESS_TOKEN_EXPIRED"


# --- quota, faults, overlap, control API ----------------------------------------------------------


def test_reads_over_the_per_minute_quota_get_429_until_the_minute_passes(
    g: RunningGoogle,
) -> None:
    # Given a quota of three reads a minute
    g.sandbox.set_quota(reads_per_minute=3)
    params = {"personFields": "names"}
    with api(g) as client:
        # When four reads are made, then a minute passes
        codes = [client.get("/v1/people/me", params=params).status_code for _ in range(4)]
        refused = client.get("/v1/people/me", params=params)
        g.sandbox.advance(61)
        later = client.get("/v1/people/me", params=params)
        write = client.post("/v1/people:createContact", json=person("W"))

    # Then the fourth is 429 RESOURCE_EXHAUSTED; after the minute reads work; writes never stopped
    assert codes == [200, 200, 200, 429]
    assert refused.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert later.status_code == 200 and write.status_code == 200


def test_faults_fail_requests_the_way_they_are_asked_to(g: RunningGoogle) -> None:
    sb = g.sandbox
    params = {"personFields": "names"}
    with api(g) as client:
        # When every request is told to be unavailable
        sb.set_faults(rate_503=1.0)
        unavailable = client.get("/v1/people/me", params=params)
        # When every request has its connection dropped
        sb.set_faults(rate_503=0.0, rate_reset=1.0)
        with pytest.raises(httpx.TransportError):
            client.get("/v1/people/me", params=params)
        # When every answer is cut short
        sb.set_faults(rate_reset=0.0, rate_malformed=1.0)
        cut = client.get("/v1/people/me", params=params)
        # When the next sync-token call is told its token expired
        sb.set_faults(rate_malformed=0.0)
        _, last = list_all(client, requestSyncToken="true")
        sb.set_faults(expire_sync_tokens=True)
        expired = client.get(
            "/v1/people/me/connections",
            params={"personFields": FIELDS, "syncToken": last["nextSyncToken"]},
        )

    # Then each failure looks like it should
    assert unavailable.status_code == 503 and unavailable.json()["error"]["status"] == "UNAVAILABLE"
    with pytest.raises(ValueError):
        cut.json()
    assert expired.json()["error"]["details"][0]["reason"] == "EXPIRED_SYNC_TOKEN"
    assert sb.faults.expire_sync_tokens is False  # a one-shot


def test_overlapping_mutations_for_one_user_are_counted(g: RunningGoogle) -> None:
    # Given slow requests
    g.sandbox.latency_ms = 300

    def create(name: str) -> None:
        with api(g) as client:
            client.post("/v1/people:createContact", json=person(name))

    # When two creates are sent one after the other, then two at the same time
    create("One")
    create("Two")
    sequential = g.sandbox.stats_snapshot().get("concurrent_mutations", 0)
    threads = [threading.Thread(target=create, args=(n,)) for n in ("Three", "Four")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # Then only the overlapping pair is counted
    assert sequential == 0
    assert g.sandbox.stats_snapshot()["concurrent_mutations"] == 1
    assert len(g.sandbox.contacts(ADA)) == 4


def test_control_api_drives_the_same_state(g: RunningGoogle) -> None:
    control = g.control_url
    # When another process adds a user and a contact, edits it, and reads the stats
    httpx.post(f"{control}/users", json={"email": "bob@example.com", "name": "Bob"})
    added = httpx.post(
        f"{control}/users/bob@example.com/contacts", json={"person": person("Ken")}
    ).json()
    cid = added["resourceName"].removeprefix("people/")
    httpx.patch(
        f"{control}/users/bob@example.com/contacts/{cid}",
        json={"changes": {"names": [{"givenName": "Kenneth"}]}},
    )
    token = httpx.post(f"{control}/users/bob@example.com/token").json()["access_token"]
    seen = httpx.get(
        f"{g.url}/v1/{added['resourceName']}",
        params={"personFields": "names"},
        headers={"Authorization": f"Bearer {token}"},
    )
    faults = httpx.post(f"{control}/faults", json={"rate_429": 0.5}).json()
    stats = httpx.get(f"{control}/stats").json()

    # Then the API shows the edit and the control API reports faults and counts
    assert seen.json()["names"][0]["givenName"] == "Kenneth"
    assert faults["rate_429"] == 0.5 and g.sandbox.faults.rate_429 == 0.5
    assert stats["get"] == 1 and stats["total"] == 1


# --- stricter than a forgiving emulator (see sandbox/README.md) ---------------------------------


def test_writes_reach_sync_listings_after_a_lag_but_reads_by_name_at_once(g: RunningGoogle) -> None:
    sb = g.sandbox
    rn = sb.add_contact(ADA, person("Grace", "Hopper"))
    with api(g) as client:
        _, last = list_all(client, requestSyncToken="true")
        # When the user edits the contact
        sb.update_contact(ADA, rn, {"names": [{"givenName": "Amazing"}]})
        # Then a read by name shows the edit at once, a sync listing does not yet
        got = client.get(f"/v1/{rn}", params={"personFields": "names"}).json()
        assert got["names"][0]["givenName"] == "Amazing"
        early, early_last = list_all(client, syncToken=last["nextSyncToken"])
        assert early == []
        # And once the lag has passed, the token handed out meanwhile still brings it
        sb.advance(sb.sync_lag.total_seconds())
        late, _ = list_all(client, syncToken=early_last["nextSyncToken"])
    assert [p["resourceName"] for p in late] == [rn]


def test_a_read_right_after_a_write_may_hand_out_the_previous_etag(g: RunningGoogle) -> None:
    sb = g.sandbox
    rn = sb.add_contact(ADA, person("Grace", "Hopper"))
    sb.advance(sb.stale_read.total_seconds())
    with api(g) as client:
        etag = client.get(f"/v1/{rn}", params={"personFields": "names"}).json()["etag"]
        body = {"etag": etag, "names": [{"givenName": "Edited"}]}
        written = client.patch(f"/v1/{rn}:updateContact", json=body,
                               params={"updatePersonFields": "names"}).json()  # fmt: skip
        # When it is read again at once, Then the etag may still be the one before the write
        stale = client.get(f"/v1/{rn}", params={"personFields": "names"}).json()
        assert stale["etag"] == etag != written["etag"]
        assert stale["names"][0]["givenName"] == "Edited"
        # And an update with that etag is refused as stale
        again = client.patch(f"/v1/{rn}:updateContact",
                             json={**body, "etag": stale["etag"]},
                             params={"updatePersonFields": "names"})  # fmt: skip
        assert again.status_code == 400 and again.json()["error"]["status"] == "FAILED_PRECONDITION"
        # And a moment later the read is current
        sb.advance(sb.stale_read.total_seconds())
        fresh = client.get(f"/v1/{rn}", params={"personFields": "names"}).json()
    assert fresh["etag"] == written["etag"]


def test_sync_tokens_expire_seven_days_after_the_full_sync_not_after_each_token(
    g: RunningGoogle,
) -> None:
    sb = g.sandbox
    sb.add_contact(ADA, person("Grace", "Hopper"))
    with api(g) as client:
        _, full = list_all(client, requestSyncToken="true")
    sb.advance(6 * 24 * 3600)
    with api(g) as client:  # (access tokens last an hour)
        _, fresh = list_all(client, syncToken=full["nextSyncToken"])  # a new token, on day 6
    sb.advance(2 * 24 * 3600)
    with api(g) as client:
        params = {"personFields": FIELDS, "syncToken": fresh["nextSyncToken"]}
        expired = client.get("/v1/people/me/connections", params=params)
    assert expired.status_code == 400
    assert "EXPIRED_SYNC_TOKEN" in expired.text


def test_the_first_page_of_a_full_sync_has_its_own_quota(g: RunningGoogle) -> None:
    sb = g.sandbox
    assert sb.quota == {"read": 180, "write": 90, "full_sync": 10}  # per user and minute
    sb.set_quota(full_syncs_per_minute=2)
    sb.seed_contacts(ADA, 3)
    with api(g) as client:
        query = {"personFields": FIELDS, "requestSyncToken": "true", "pageSize": 2}
        first = [client.get("/v1/people/me/connections", params=query) for _ in range(3)]
        # a next page and a plain listing are not first pages of a full sync
        token = first[0].json()["nextPageToken"]
        more = client.get("/v1/people/me/connections", params={**query, "pageToken": token})
        plain = client.get("/v1/people/me/connections", params={"personFields": FIELDS})
    assert [r.status_code for r in first] == [200, 200, 429]
    assert first[2].json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert more.status_code == 200 and plain.status_code == 200


def test_a_contact_can_get_a_new_resource_name(g: RunningGoogle) -> None:
    sb = g.sandbox
    old = sb.add_contact(ADA, person("Grace", "Hopper"))
    with api(g) as client:
        _, last = list_all(client, requestSyncToken="true")
        new = sb.change_resource_name(ADA, old)
        sb.advance(sb.sync_lag.total_seconds())
        changes, _ = list_all(client, syncToken=last["nextSyncToken"])
        by_old = client.get(f"/v1/{old}", params={"personFields": "names,metadata"}).json()
        query = {"resourceNames": [old], "personFields": "names"}
        batch = client.get("/v1/people:batchGet", params=query).json()
    assert new != old
    [seen] = changes
    assert seen["resourceName"] == new
    assert seen["metadata"]["previousResourceNames"] == [old]
    assert by_old["resourceName"] == new
    [answer] = batch["responses"]
    assert answer["requestedResourceName"] == old and answer["person"]["resourceName"] == new


def test_a_person_carries_at_most_one_name_birthday_biography_and_gender(g: RunningGoogle) -> None:
    twice = {
        "names": [{"givenName": "A"}, {"givenName": "B"}],
        "birthdays": [{"date": {"month": 1, "day": 2}}, {"date": {"month": 3, "day": 4}}],
        "biographies": [{"value": "a"}, {"value": "b"}],
        "genders": [{"value": "female"}, {"value": "male"}],
    }
    with api(g) as client:
        for field, values in twice.items():
            made = client.post("/v1/people:createContact", json={field: values})
            assert made.status_code == 400, field
            assert made.json()["error"]["status"] == "INVALID_ARGUMENT"
        one = client.post("/v1/people:createContact", json={k: v[:1] for k, v in twice.items()})
    assert one.status_code == 200


def test_partial_batch_answers_and_empty_pages_on_demand(g: RunningGoogle) -> None:
    sb = g.sandbox
    names = sb.seed_contacts(ADA, 6)
    sb.set_faults(rate_partial=0.5, empty_pages=2)
    with api(g) as client:
        batch = client.get("/v1/people:batchGet",
                           params={"resourceNames": names, "personFields": "names"})  # fmt: skip
        first = client.get("/v1/people/me/connections", params={"personFields": FIELDS}).json()
    answered = {r["requestedResourceName"] for r in batch.json()["responses"]}
    assert batch.status_code == 200 and answered < set(names)
    assert "connections" not in first and first["nextPageToken"]
    assert sb.faults.empty_pages == 1


def test_search_contacts_needs_a_warm_up_and_matches_prefix_phrases(g: RunningGoogle) -> None:
    # Given a contact added before any warm-up
    g.sandbox.add_contact(ADA, {"names": [{"givenName": "Foo", "familyName": "Name"}],
                                "emailAddresses": [{"value": "foo@bar.example"}]})  # fmt: skip
    with api(g) as http:

        def search(query: str) -> httpx.Response:
            params = {"query": query, "readMask": "names"}
            return http.get("/v1/people:searchContacts", params=params)

        cold = search("foo").json()
        warm_up = search("")
        # When searched after the warm-up
        hits = {q: len(search(q).json().get("results", [])) for q in ("f", "foo n", "nam",
                "oo n", "FOO@BAR.example", "bar.example")}  # fmt: skip
        no_mask = http.get("/v1/people:searchContacts", params={"query": "foo"})
    # Then the cold search finds nothing, and the warm one prefix phrases only
    assert cold == {} and warm_up.status_code == 200
    assert hits == {"f": 1, "foo n": 1, "nam": 1, "oo n": 0, "FOO@BAR.example": 1,
                    "bar.example": 0}  # fmt: skip
    assert no_mask.status_code == 400
    # And Google's own client reaches the method through its discovery document
    creds = google.oauth2.credentials.Credentials(token=g.sandbox.token_for(ADA))
    service = build("people", "v1", credentials=creds, static_discovery=True,
                    client_options={"api_endpoint": g.url})  # fmt: skip
    found = service.people().searchContacts(query="foo", readMask="names").execute()
    assert [r["person"]["names"][0]["givenName"] for r in found["results"]] == ["Foo"]


def test_authorize_shows_a_consent_form_unless_an_account_is_named(g: RunningGoogle) -> None:
    # Given nobody named (no login_hint, no signed-in account)
    g.sandbox.signed_in = None
    form = authorize(g, "v" * 64, login_hint="")
    # Then a person gets a form to choose the account and allow or deny
    assert form.status_code == 200 and ADA in form.text
    assert 'value="approve"' in form.text and 'value="deny"' in form.text
    fields = dict(re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', form.text))
    fields = {k: html.unescape(v) for k, v in fields.items()}
    # When they allow as Ada, Then the redirect carries a code for the state
    allowed = httpx.post(g.authorize_url, data={**fields, "account": ADA, "decision": "approve"})
    back = parse_qs(urlsplit(allowed.headers["location"]).query)
    assert allowed.status_code == 302 and back["state"] == ["xyz"] and back["code"]
    # When they deny, Then access_denied and no code
    denied = httpx.post(g.authorize_url, data={**fields, "account": ADA, "decision": "deny"})
    back = parse_qs(urlsplit(denied.headers["location"]).query)
    assert back["error"] == ["access_denied"] and "code" not in back
