"""The Graph sandbox is faithful enough for Microsoft's own SDKs (msgraph-sdk, msal), and behaves
like the documented API where our adapter depends on it (see sandbox/graph/README.md)."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import msal
import pytest
from kiota_abstractions.authentication import (
    AccessTokenProvider,
    AllowedHostsValidator,
    BaseBearerTokenAuthenticationProvider,
)
from msgraph import GraphServiceClient
from msgraph.generated.models.contact import Contact as GraphContact
from msgraph.generated.models.email_address import EmailAddress
from msgraph.graph_request_adapter import GraphRequestAdapter

from sandbox.graph import RunningGraph
from tests.integration.graph_fixtures import Mailbox, Receiver, control, graph, mailbox, receiver

__all__ = ["graph", "mailbox", "receiver"]  # fixtures used by name below


class StaticToken(AccessTokenProvider):
    """Hands the SDK a token the sandbox issued; any host allowed (the sandbox is loopback)."""

    def __init__(self, token: str) -> None:
        self._token = token

    async def get_authorization_token(
        self, uri: str, additional_authentication_context: dict[str, Any] | None = None
    ) -> str:
        return self._token

    def get_allowed_hosts_validator(self) -> AllowedHostsValidator:
        return AllowedHostsValidator([])


def sdk_client(mailbox: Mailbox) -> GraphServiceClient:
    token = mailbox.graph.sandbox.access_token_for(mailbox.user_id)
    adapter = GraphRequestAdapter(BaseBearerTokenAuthenticationProvider(StaticToken(token)))
    adapter.base_url = mailbox.graph.graph_url
    return GraphServiceClient(request_adapter=adapter)


def api(mailbox: Mailbox) -> httpx.Client:
    token = mailbox.graph.sandbox.access_token_for(mailbox.user_id)
    return httpx.Client(base_url=mailbox.graph.graph_url,
                        headers={"Authorization": f"Bearer {token}"})  # fmt: skip


# --- the official SDKs ------------------------------------------------------------------------


def test_msgraph_sdk_lists_folders_creates_and_reads_a_contact(mailbox: Mailbox) -> None:
    client = sdk_client(mailbox)

    async def scenario() -> tuple[list[str], Any]:
        folders = await client.me.contact_folders.get()
        new = GraphContact(
            given_name="Ada",
            surname="Lovelace",
            email_addresses=[EmailAddress(address="ada@example.org", name="Ada Lovelace")],
            business_phones=["+44 20 7946 0000"],
        )
        created = await client.me.contact_folders.by_contact_folder_id(
            mailbox.folder_id
        ).contacts.post(new)
        back = await client.me.contacts.by_contact_id(created.id).get()
        return [f.display_name for f in folders.value], back

    names, back = asyncio.run(scenario())
    # Then the SDK saw our folders and read back what it wrote, with Graph's metadata
    assert {"Clients", "Archive"} <= set(names)
    assert back.display_name == "Ada Lovelace"
    assert back.email_addresses[0].address == "ada@example.org"
    assert back.parent_folder_id == mailbox.folder_id and back.change_key


def test_msal_code_flow_and_refresh_against_the_identity_sandbox(graph: RunningGraph) -> None:
    # Given a user, and MSAL pointed at the sandbox authority with the sandbox CA
    uid = graph.sandbox.add_user("grace@contoso.example", "Grace Hopper")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("REQUESTS_CA_BUNDLE", graph.ca_bundle)  # requests prefers it over verify=
        app = msal.ConfidentialClientApplication(
            graph.client_id,
            client_credential=graph.client_secret,
            authority=graph.authority,
            instance_discovery=False,
            validate_authority=False,
            verify=graph.ca_bundle,
        )
        # When the code flow runs: authorize (no UI) then redeem the code
        flow = app.initiate_auth_code_flow(
            ["Contacts.ReadWrite"],
            redirect_uri="http://127.0.0.1/cb",
            login_hint="grace@contoso.example",
        )
        back = httpx.get(flow["auth_uri"], verify=graph.ca_file)
        assert back.status_code == 302
        query = dict(parse_qsl(urlsplit(back.headers["location"]).query))
        result = app.acquire_token_by_auth_code_flow(flow, query)
        # Then MSAL has tokens and an account for the user
        assert "access_token" in result, result
        assert result["id_token_claims"]["oid"] == uid
        [account] = app.get_accounts()
        assert account["username"] == "grace@contoso.example"
        assert account["home_account_id"] == f"{uid}.{graph.sandbox.tenant_id}"
        # And the access token works on Graph
        me = httpx.get(f"{graph.graph_url}/me",
                       headers={"Authorization": f"Bearer {result['access_token']}"})  # fmt: skip
        assert me.json()["id"] == uid
        # And the refresh token gets a new access token
        refreshed = app.acquire_token_by_refresh_token(
            result["refresh_token"], ["Contacts.ReadWrite"]
        )
        assert refreshed["access_token"] != result["access_token"]
        # And after revocation the refresh is refused with invalid_grant
        graph.sandbox.revoke_refresh_tokens(uid)
        refused = app.acquire_token_by_refresh_token(result["refresh_token"], ["User.Read"])
        assert refused.get("error") == "invalid_grant"


def test_token_endpoint_checks_the_pkce_verifier_and_the_secret(graph: RunningGraph) -> None:
    uid = graph.sandbox.add_user("pkce@contoso.example", "P")
    params = {"client_id": graph.client_id, "redirect_uri": "http://127.0.0.1/cb",
              "code_challenge": "x" * 43, "code_challenge_method": "S256"}  # fmt: skip
    token_url = f"{graph.authority}/oauth2/v2.0/token"
    form = {"grant_type": "authorization_code", "client_id": graph.client_id,
            "redirect_uri": "http://127.0.0.1/cb", "code_verifier": "wrong"}  # fmt: skip
    # Wrong verifier -> invalid_grant
    code = graph.sandbox.issue_code(uid, params)
    bad = httpx.post(token_url, data={**form, "code": code, "client_secret": graph.client_secret},
                     verify=graph.ca_file)  # fmt: skip
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_grant"
    # Wrong secret -> invalid_client
    code = graph.sandbox.issue_code(uid, params)
    bad = httpx.post(token_url, data={**form, "code": code, "client_secret": "nope"},
                     verify=graph.ca_file)  # fmt: skip
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"


# --- Graph behaviour --------------------------------------------------------------------------


def test_missing_or_expired_tokens_get_graph_401s(mailbox: Mailbox) -> None:
    assert httpx.get(f"{mailbox.graph.graph_url}/me").json()["error"]["code"] == (
        "InvalidAuthenticationToken"
    )
    with api(mailbox) as client:
        assert client.get("/me").status_code == 200
        mailbox.graph.sandbox.advance_clock(3601)
        try:
            expired = client.get("/me")
        finally:
            mailbox.graph.sandbox.advance_clock(-3601)
    assert expired.status_code == 401
    assert expired.json()["error"]["code"] == "InvalidAuthenticationToken"


def test_list_paging_and_delta_page_size(mailbox: Mailbox) -> None:
    mailbox.graph.sandbox.seed_contacts(mailbox.user_id, mailbox.folder_id, 12)
    with api(mailbox) as client:
        # $top pages with a nextLink
        first = client.get(f"/me/contactFolders/{mailbox.folder_id}/contacts", params={"$top": 5})
        assert len(first.json()["value"]) == 5 and "@odata.nextLink" in first.json()
        # Prefer: odata.maxpagesize is honoured and capped, and echoed back
        page = client.get(f"/me/contactFolders/{mailbox.folder_id}/contacts/delta",
                          headers={"Prefer": "odata.maxpagesize=5000"})  # fmt: skip
        assert page.headers["Preference-Applied"] == "odata.maxpagesize=1000"
        assert len(page.json()["value"]) == 12 and "@odata.deltaLink" in page.json()
        # An unknown delta token is 410 Gone with Graph's sync-state error
        gone = client.get(f"/me/contactFolders/{mailbox.folder_id}/contacts/delta",
                          params={"$deltatoken": "forgotten"})  # fmt: skip
        assert gone.status_code == 410
        assert gone.json()["error"]["code"] == "SyncStateNotFound"


def test_batch_runs_sub_requests_and_refuses_more_than_twenty(mailbox: Mailbox) -> None:
    cid = mailbox.graph.sandbox.seed_contacts(mailbox.user_id, mailbox.folder_id, 1)[0]
    requests = [{"id": "1", "method": "GET", "url": f"/me/contacts/{cid}"},
                {"id": "2", "method": "GET", "url": "/me/contacts/missing"},
                {"id": "3", "method": "PATCH", "url": f"/me/contacts/{cid}",
                 "headers": {"Content-Type": "application/json", "If-Match": 'W/"stale"'},
                 "body": {"jobTitle": "x"}}]  # fmt: skip
    with api(mailbox) as client:
        answer = client.post("/$batch", json={"requests": requests}).json()["responses"]
        too_many = client.post(
            "/$batch",
            json={"requests": [{"id": str(i), "method": "GET", "url": "/me"} for i in range(21)]},
        )
    assert [r["status"] for r in answer] == [200, 404, 412]
    # (no Prefer: IdType="ImmutableId" on the sub-request: the default id, not the seeded one)
    assert answer[0]["body"]["id"] == mailbox.graph.sandbox.contacts[cid].rest_id
    assert too_many.status_code == 400


def test_if_match_and_move(mailbox: Mailbox) -> None:
    sb = mailbox.graph.sandbox
    cid = sb.seed_contacts(mailbox.user_id, mailbox.folder_id, 1)[0]
    with api(mailbox) as client:
        etag = client.get(f"/me/contacts/{cid}").json()["@odata.etag"]
        ok = client.patch(f"/me/contacts/{cid}", json={"nickName": "N"}, headers={"If-Match": etag})
        stale = client.delete(f"/me/contacts/{cid}", headers={"If-Match": etag})
        moved = client.post(f"/me/contacts/{cid}/move",
                            json={"destinationId": mailbox.other_folder_id})  # fmt: skip
        in_old = client.get(f"/me/contactFolders/{mailbox.folder_id}/contacts/{cid}")
    assert ok.status_code == 200 and ok.json()["@odata.etag"] != etag
    assert stale.status_code == 412
    assert moved.json()["parentFolderId"] == mailbox.other_folder_id
    assert in_old.status_code == 404


def test_subscription_rules(mailbox: Mailbox, receiver: Receiver) -> None:
    now = datetime.now(UTC)
    body = {"changeType": "created,updated,deleted", "notificationUrl": receiver.url,
            "resource": f"me/contactFolders/{mailbox.folder_id}/contacts",
            "expirationDateTime": (now + timedelta(minutes=4231)).isoformat(),
            "clientState": "c"}  # fmt: skip
    with api(mailbox) as client:
        too_long = client.post("/subscriptions", json=body)
        long_state = client.post("/subscriptions", json={
            **body, "expirationDateTime": (now + timedelta(hours=1)).isoformat(),
            "clientState": "x" * 129})  # fmt: skip
        insecure = client.post("/subscriptions", json={
            **body, "expirationDateTime": (now + timedelta(hours=1)).isoformat(),
            "notificationUrl": "http://example.com/hook"})  # fmt: skip
    assert too_long.status_code == 400 and "4230" in too_long.json()["error"]["message"]
    assert long_state.status_code == 400
    assert insecure.status_code == 400
    assert receiver.validations == 0  # rejected before any handshake


def test_notifications_are_batched_retried_and_stop_after_expiry(
    mailbox: Mailbox, receiver: Receiver
) -> None:
    sb = mailbox.graph.sandbox
    expires = datetime.now(UTC) + timedelta(minutes=30)
    with api(mailbox) as client:
        sub = client.post("/subscriptions", json={
            "changeType": "created,updated,deleted", "notificationUrl": receiver.url,
            "resource": f"me/contactFolders/{mailbox.folder_id}/contacts",
            "expirationDateTime": expires.isoformat(), "clientState": "state"}).json()  # fmt: skip
    # Given the receiver fails its first delivery (and a wide gathering window, for slow hosts)
    receiver.fail_next = 1
    control(mailbox.graph, "POST", "/notifications/settings", {"delay_ms": 500})
    # When three contacts change at once (one through the control API)
    ids = sb.seed_contacts(mailbox.user_id, mailbox.folder_id, 2)
    control(mailbox.graph, "POST", f"/users/{mailbox.user_id}/contacts/{ids[0]}", {"title": "Dr"})
    items = receiver.wait_for(3)
    control(mailbox.graph, "POST", "/notifications/settings", {"delay_ms": 0})
    # Then they arrived together in one POST, after a retry
    assert len(receiver.received) == 1
    assert [i["changeType"] for i in items] == ["created", "created", "updated"]
    assert all(i["subscriptionId"] == sub["id"] and i["tenantId"] for i in items)
    sent = control(mailbox.graph, "GET", "/notifications")["sent"]
    mine = [s for s in sent if s["url"] == receiver.url]
    assert [s["status"] for s in mine] == [500, 202]
    # When the subscription has expired, Then changes are no longer delivered
    sb.advance_clock(31 * 60)
    try:
        sb.seed_contacts(mailbox.user_id, mailbox.folder_id, 1)
        time.sleep(0.5)
    finally:
        sb.advance_clock(-31 * 60)
    assert len(receiver.items()) == 3


def test_lifecycle_events_reach_the_lifecycle_url(mailbox: Mailbox, receiver: Receiver) -> None:
    expires = datetime.now(UTC) + timedelta(hours=2)
    with api(mailbox) as client:
        sub = client.post("/subscriptions", json={
            "changeType": "updated", "notificationUrl": receiver.url,
            "lifecycleNotificationUrl": receiver.url,
            "resource": f"me/contactFolders/{mailbox.folder_id}/contacts",
            "expirationDateTime": expires.isoformat(), "clientState": "st"}).json()  # fmt: skip
    control(mailbox.graph, "POST", f"/subscriptions/{sub['id']}/lifecycle",
            {"event": "reauthorizationRequired"})  # fmt: skip
    [event] = receiver.wait_for(1)
    assert event["lifecycleEvent"] == "reauthorizationRequired"
    assert event["subscriptionId"] == sub["id"] and event["clientState"] == "st"


def test_more_than_four_concurrent_requests_to_a_mailbox_are_throttled(mailbox: Mailbox) -> None:
    # Given a slow service (every request stays in flight for 300 ms)
    control(mailbox.graph, "POST", "/latency", {"ms": 300})
    try:
        # When six requests hit the same mailbox at once
        with api(mailbox) as client, ThreadPoolExecutor(max_workers=6) as pool:
            answers = list(pool.map(lambda _: client.get("/me"), range(6)))
    finally:
        control(mailbox.graph, "POST", "/latency", {"ms": 0})
    # Then at most four got through and the rest were told to come back later
    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(200) <= 4 and 429 in statuses
    throttled = next(a for a in answers if a.status_code == 429)
    assert throttled.headers["Retry-After"] and throttled.json()["error"]["code"]


# --- stricter than a forgiving emulator (see sandbox/graph/README.md) --------------------------

IMMUTABLE = {"Prefer": 'IdType="ImmutableId"'}


def test_ids_change_on_a_move_unless_immutable_ids_are_asked_for(mailbox: Mailbox) -> None:
    sb = mailbox.graph.sandbox
    [cid] = sb.seed_contacts(mailbox.user_id, mailbox.folder_id, 1)
    delta_url = f"/me/contactFolders/{mailbox.folder_id}/contacts/delta"
    with api(mailbox) as client:
        # Given a client that reads the contact with and without immutable ids
        default_id = client.get(f"/me/contacts/{cid}").json()["id"]
        assert default_id != cid
        assert client.get(f"/me/contacts/{cid}", headers=IMMUTABLE).json()["id"] == cid
        plain_link = client.get(delta_url).json()["@odata.deltaLink"]
        immutable_link = client.get(delta_url, headers=IMMUTABLE).json()["@odata.deltaLink"]
        # When the user moves it to another folder
        sb.move_contact(mailbox.user_id, cid, mailbox.other_folder_id)
        # Then the default id it had is gone, the immutable id still finds it, in its new folder
        assert client.get(f"/me/contacts/{default_id}").status_code == 404
        moved = client.get(f"/me/contacts/{cid}", headers=IMMUTABLE).json()
        assert moved["id"] == cid and moved["parentFolderId"] == mailbox.other_folder_id
        assert client.get(f"/me/contacts/{cid}").json()["id"] not in (cid, default_id)
        # And the old folder's delta reports it removed, under the id each client knew
        [plain] = client.get(plain_link).json()["value"]
        [immutable] = client.get(immutable_link, headers=IMMUTABLE).json()["value"]
    assert plain == {"@odata.type": "#microsoft.graph.contact", "id": default_id,
                     "@removed": {"reason": "deleted"}}  # fmt: skip
    assert immutable["id"] == cid and "@removed" in immutable


def test_batch_sub_requests_carry_their_own_prefer_header(mailbox: Mailbox) -> None:
    [cid] = mailbox.graph.sandbox.seed_contacts(mailbox.user_id, mailbox.folder_id, 1)
    requests = [{"id": "1", "method": "GET", "url": f"/me/contacts/{cid}", "headers": IMMUTABLE},
                {"id": "2", "method": "GET", "url": f"/me/contacts/{cid}"}]  # fmt: skip
    with api(mailbox) as client:
        # The outer request's Prefer header does not reach the sub-requests
        answer = client.post("/$batch", json={"requests": requests}, headers=IMMUTABLE).json()
    ids = [r["body"]["id"] for r in answer["responses"]]
    assert ids[0] == cid and ids[1] != cid


def test_notifications_carry_the_id_type_their_subscription_was_made_with(
    mailbox: Mailbox, receiver: Receiver
) -> None:
    expires = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    body = {"changeType": "created", "notificationUrl": receiver.url,
            "resource": f"me/contactFolders/{mailbox.folder_id}/contacts",
            "expirationDateTime": expires, "clientState": "s"}  # fmt: skip
    with api(mailbox) as client:
        client.post("/subscriptions", json=body, headers=IMMUTABLE).raise_for_status()
        client.post("/subscriptions", json=body).raise_for_status()
    [cid] = mailbox.graph.sandbox.seed_contacts(mailbox.user_id, mailbox.folder_id, 1)
    items = receiver.wait_for(2)
    assert sorted(i["resourceData"]["id"] == cid for i in items) == [False, True]


def test_a_batch_holds_up_to_four_slots_and_refuses_what_goes_beyond_the_free_ones(
    mailbox: Mailbox,
) -> None:
    sb = mailbox.graph.sandbox
    many = [{"id": str(i), "method": "GET", "url": "/me"} for i in range(20)]
    with api(mailbox) as client:
        # Given nothing else in flight, a batch of twenty runs whole (four at a time)
        alone = client.post("/$batch", json={"requests": many}).json()["responses"]
        # When another request holds one slot, a batch of six gets the three left
        sb.take_slots(mailbox.user_id, 1)
        try:
            crowded = client.post("/$batch", json={"requests": many[:6]}).json()["responses"]
        finally:
            sb.leave(mailbox.user_id, 1)
    assert {r["status"] for r in alone} == {200}
    assert [r["status"] for r in crowded] == [200] * 3 + [429] * 3
    refused = crowded[-1]
    assert refused["headers"]["Retry-After"]
    assert refused["body"]["error"]["code"] == "ApplicationThrottled"
    assert "MailboxConcurrency" in refused["body"]["error"]["message"]


def test_notifications_can_be_dropped(mailbox: Mailbox, receiver: Receiver) -> None:
    expires = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    with api(mailbox) as client:
        client.post("/subscriptions", json={
            "changeType": "created", "notificationUrl": receiver.url,
            "resource": f"me/contactFolders/{mailbox.folder_id}/contacts",
            "expirationDateTime": expires, "clientState": "s"}).raise_for_status()  # fmt: skip
    control(mailbox.graph, "POST", "/notifications/settings", {"drop_rate": 1.0})
    try:
        mailbox.graph.sandbox.seed_contacts(mailbox.user_id, mailbox.folder_id, 2)
        time.sleep(0.6)
    finally:
        control(mailbox.graph, "POST", "/notifications/settings", {"drop_rate": 0.0})
    assert receiver.items() == []
    assert len([d for d in mailbox.graph.sandbox.dropped if d["clientState"] == "s"]) >= 2


def test_contacts_filter_on_email_addresses_takes_only_any_eq_on_address(mailbox: Mailbox) -> None:
    folder = f"/me/contactFolders/{mailbox.folder_id}/contacts"
    with api(mailbox) as client:
        client.post(folder, json={"displayName": "Ann Lee", "emailAddresses": [
            {"name": "Ann", "address": "Ann@Lee.example"}]})  # fmt: skip
        client.post(folder, json={"displayName": "Bob", "emailAddresses": []})

        def matching(flt: str) -> httpx.Response:
            return client.get(folder, params={"$filter": flt})

        by_email = matching("emailAddresses/any(x:x/address eq 'ann@lee.example')")
        by_name = matching("displayName eq 'ANN LEE'")
        # The documented limits: no other sub-property, operator or function on the collection
        refused = [
            matching("emailAddresses/any(a:a/name eq 'Ann')"),
            matching("emailAddresses/any(a:startswith(a/address, 'ann'))"),
            matching("emailAddresses/any(a:a/address ne 'ann@lee.example')"),
        ]
    assert [c["displayName"] for c in by_email.json()["value"]] == ["Ann Lee"]
    assert [c["displayName"] for c in by_name.json()["value"]] == ["Ann Lee"]
    assert [r.status_code for r in refused] == [400, 400, 400]


def _authorize_params(graph: RunningGraph, **extra: str) -> dict[str, str]:
    return {
        "client_id": graph.client_id,
        "redirect_uri": "http://127.0.0.1/cb",
        "response_type": "code",
        "scope": "Contacts.ReadWrite offline_access",
        "state": "st-1",
        **extra,
    }


def test_authorize_asks_a_person_to_choose_and_consent_unless_an_account_is_named(
    graph: RunningGraph,
) -> None:
    graph.sandbox.add_user("ada@contoso.example", "Ada")
    graph.sandbox.add_user("bob@contoso.example", "Bob")
    url = f"{graph.authority}/oauth2/v2.0/authorize"
    with httpx.Client(verify=graph.ca_file) as http:
        # When nobody is named, Then a sign-in and consent form lists the accounts
        form = http.get(url, params=_authorize_params(graph))
        assert form.status_code == 200 and "text/html" in form.headers["content-type"]
        assert "ada@contoso.example" in form.text and "bob@contoso.example" in form.text
        assert 'value="approve"' in form.text and 'value="deny"' in form.text
        # When the person picks Bob and allows, Then the code is Bob's
        approved = http.post(
            url,
            data={
                **_authorize_params(graph),
                "account": "bob@contoso.example",
                "decision": "approve",
            },
        )
        assert approved.status_code == 302
        back = dict(parse_qsl(urlsplit(approved.headers["location"]).query))
        assert back["state"] == "st-1" and back["code"]
        # When the person denies, Then the app gets access_denied and no code
        denied = http.post(
            url,
            data={
                **_authorize_params(graph),
                "account": "ada@contoso.example",
                "decision": "deny",
            },
        )
        back = dict(parse_qsl(urlsplit(denied.headers["location"]).query))
        assert back["error"] == "access_denied" and "code" not in back
        # When login_hint, or the control API, names the account, Then it answers at once
        hinted = http.get(url, params=_authorize_params(graph, login_hint="ada@contoso.example"))
        assert hinted.status_code == 302 and "code=" in hinted.headers["location"]
        control(graph, "POST", "/signed_in", {"email": "bob@contoso.example"})
        named = http.get(url, params=_authorize_params(graph))
        assert named.status_code == 302 and "code=" in named.headers["location"]


def test_the_control_api_hands_out_a_user_token(graph: RunningGraph) -> None:
    uid = graph.sandbox.add_user("tok@contoso.example", "Tok")
    token = control(graph, "POST", "/users/tok@contoso.example/token")["access_token"]
    me = httpx.get(f"{graph.graph_url}/me", headers={"authorization": f"Bearer {token}"})
    assert me.status_code == 200 and me.json()["id"] == uid
