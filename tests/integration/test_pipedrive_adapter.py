"""PipedrivePersons and the Pipedrive OAuth helpers against the sandbox on loopback."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from contactsync.auth.pipedrive import (
    PipedriveOAuthConfig,
    authorization_url,
    exchange_code,
    refresh,
    revoke,
)
from contactsync.contacts.model import Address, Contact, Email, Phone
from contactsync.providers.base import (
    AuthExpired,
    ContactDelete,
    ContactUpdate,
    InvalidContact,
    NewContact,
    PermissionDenied,
    PreconditionFailed,
    RateLimited,
    Transient,
)
from contactsync.providers.pipedrive import PipedrivePersons

if TYPE_CHECKING:
    from tests.integration.pipedrive_fixtures import PipedriveWorld, WebhookReceiver

pytest_plugins = ["tests.integration.pipedrive_fixtures"]

ANN = Contact(
    given_name="Ann",
    family_name="Lee",
    emails=(Email("ann@lee.test", "work", True),),
    phones=(Phone("+3725550001", "mobile", True),),
    organization="Acme Ltd",
    job_title="CTO",
    birthday="1990-04-01",
    notes="met at the fair",
    addresses=(Address(street="Main St 5", city="Tartu", postal_code="50090", country="EE"),),
)


def _read_all(side: PipedrivePersons, position: str | None = None) -> tuple[list[Any], str]:
    pages = []
    while True:
        page = side.read(position)
        pages.append(page)
        position = page.position
        if page.complete:
            return pages, position


def test_full_listing_pages_500_owned_persons_and_ends_with_a_mark(pipedrive: PipedriveWorld):
    # Given 1200 persons of the owner and some of a colleague
    pipedrive.sandbox.seed_persons(pipedrive.owner_id, 1200)
    pipedrive.sandbox.seed_persons(pipedrive.other_id, 5, seed=7)
    side = pipedrive.adapter()
    pipedrive.sandbox.reset_stats()
    # When the side is read from no position
    pages, position = _read_all(side)
    # Then three full pages list each owned person once, the last one complete
    ids = [c.id for p in pages for c in p.contacts]
    assert [len(p.contacts) for p in pages] == [500, 500, 200]
    assert all(p.full for p in pages)
    assert [p.complete for p in pages] == [False, False, True]
    assert len(set(ids)) == 1200
    assert all(c.in_scope and c.contact.emails for p in pages for c in p.contacts)
    assert "mark" in json.loads(position)
    # And it costs one list call per page, plus the tag-field lookup and organization names
    assert pipedrive.requests("GET /api/v2/persons") == 3
    assert pipedrive.requests("GET /api/v1/personFields") == 1
    # 240 organizations, at most 100 ids per call, asked for once each as pages reveal them
    assert 3 <= pipedrive.requests("GET /api/v2/organizations") <= 5


def test_incremental_read_returns_what_changed_since_the_mark(pipedrive: PipedriveWorld):
    # Given a completed full listing
    first, second, _ = pipedrive.sandbox.seed_persons(pipedrive.owner_id, 3, with_orgs=False)
    side = pipedrive.adapter()
    _, position = _read_all(side)
    # When one person is edited in the app a minute later, and one changes owner
    pipedrive.sandbox.advance_clock(60)
    pipedrive.sandbox.edit_in_app(first, {"job_title": "Head of Sales"})
    pipedrive.sandbox.change_owner(second, pipedrive.other_id)
    pages, _ = _read_all(side, position)
    # Then the next read lists the edited person but not the re-owned one (that needs a fetch);
    # persons from the mark's last second are listed again (the overlap), which is harmless
    changed = {c.id: c for p in pages for c in p.contacts}
    assert str(first) in changed
    assert str(second) not in changed
    assert changed[str(first)].contact.job_title == "Head of Sales"
    assert not any(p.full for p in pages)
    # And a read after that, with nothing new, lists nothing
    pipedrive.sandbox.advance_clock(60)
    pages, _ = _read_all(side, pages[-1].position)
    assert [c for p in pages for c in p.contacts] == []


def test_a_second_edit_in_the_same_second_is_read_too(pipedrive: PipedriveWorld):
    # Given a listed person, and the CRM's clock standing still within one second
    moment = [datetime(2026, 12, 5, 9, 0, 0, 100_000, tzinfo=UTC)]
    pipedrive.sandbox.clock = lambda: moment[0]
    (ann,) = pipedrive.sandbox.seed_persons(pipedrive.owner_id, 1, with_orgs=False)
    side = pipedrive.adapter()
    _, position = _read_all(side)
    # When it is edited, read, and edited again, all in the same second (update_time has
    # second precision, so both edits carry the same time)
    moment[0] += timedelta(seconds=60)
    pipedrive.sandbox.edit_in_app(ann, {"job_title": "Head of Sales"})
    pages, position = _read_all(side, position)
    assert [c.contact.job_title for p in pages for c in p.contacts] == ["Head of Sales"]
    moment[0] += timedelta(milliseconds=500)
    pipedrive.sandbox.edit_in_app(ann, {"job_title": "Head of Marketing"})
    pages, position = _read_all(side, position)
    # Then the second edit is read too, and a read after it, with nothing new, lists nothing
    assert [c.contact.job_title for p in pages for c in p.contacts] == ["Head of Marketing"]
    pages, _ = _read_all(side, position)
    assert [c for p in pages for c in p.contacts] == []


def test_fetch_reports_scope_and_deleted_persons(pipedrive: PipedriveWorld):
    # Given a person of the owner, one moved to a colleague and one deleted
    mine, moved, gone = pipedrive.sandbox.seed_persons(pipedrive.owner_id, 3, with_orgs=False)
    pipedrive.sandbox.change_owner(moved, pipedrive.other_id)
    pipedrive.sandbox.delete_in_app(gone)
    side = pipedrive.adapter()
    # When they are fetched together
    found = side.fetch([str(mine), str(moved), str(gone), "not-an-id"])
    # Then scope and absence are reported per id
    assert found[str(mine)] is not None and found[str(mine)].in_scope
    assert found[str(moved)] is not None
    assert not found[str(moved)].in_scope
    assert found[str(moved)].scope_reason == "owned by another user"
    assert found[str(gone)] is None
    assert found["not-an-id"] is None


def test_create_links_organizations_by_normalised_name(pipedrive: PipedriveWorld):
    # Given an existing organization "Acme Ltd"
    with pipedrive.http() as http:
        existing = http.post("/api/v2/organizations", json={"name": "Acme Ltd"}).json()["data"]
    side = pipedrive.adapter()
    bob = Contact(given_name="Bob", family_name="Moss", organization="  acme   LTD ")
    cleo = Contact(given_name="Cleo", family_name="Park", organization="New Co")
    dan = Contact(given_name="Dan", organization="new co")
    # When four contacts are created
    results = side.create(
        [
            NewContact("t-ann", ANN),
            NewContact("t-bob", bob),
            NewContact("t-cleo", cleo),
            NewContact("t-dan", dan),
        ]
    )
    # Then each is a person owned by the user, tagged, linked to one org per normalised name
    assert all(r.ok for r in results)
    assert [r.key for r in results] == ["t-ann", "t-bob", "t-cleo", "t-dan"]
    persons = {r.key: pipedrive.sandbox.persons[int(r.remote.id)] for r in results if r.remote}
    assert persons["t-ann"].org_id == persons["t-bob"].org_id == existing["id"]
    assert persons["t-cleo"].org_id == persons["t-dan"].org_id != existing["id"]
    assert pipedrive.requests("POST /api/v2/organizations") == 2  # "Acme Ltd" above + "New Co"
    assert all(p.owner_id == pipedrive.owner_id for p in persons.values())
    # And the written contact reads back as sent, tag included
    ann = results[0].remote
    assert ann is not None
    assert ann.tag == "t-ann"
    assert ann.contact == ANN
    assert side.find_tagged("t-cleo") is not None
    assert side.find_tagged("t-cleo").contact.given_name == "Cleo"  # type: ignore[union-attr]
    assert side.find_tagged("t-nobody") is None
    # And a later adapter given the field key does not look it up again
    before = pipedrive.requests("GET /api/v1/personFields")
    later = pipedrive.adapter(tag_field_key=side.tag_field_key)
    assert later.fetch([ann.id])[ann.id].tag == "t-ann"  # type: ignore[union-attr]
    assert pipedrive.requests("GET /api/v1/personFields") == before


def test_update_patches_only_changed_keys_and_keeps_unmodelled_fields(
    pipedrive: PipedriveWorld,
):
    # Given a person we created, which someone gave an extra custom field
    sent: list[dict[str, Any]] = []

    def record(request: httpx.Request) -> None:
        if request.method == "PATCH":
            sent.append(json.loads(request.content))

    client = httpx.Client(timeout=10, event_hooks={"request": [record]})
    side = pipedrive.adapter(client=client)
    (created,) = side.create([NewContact("t-ann", ANN)])
    assert created.remote is not None
    pid = created.remote.id
    pipedrive.sandbox.edit_in_app(int(pid), {"custom_fields": {"f" * 40: "VIP"}})
    read = side.fetch([pid])[pid]
    assert read is not None
    # When only the job title changes
    after = ANN.with_fields(job_title="CEO")
    (result,) = side.update([ContactUpdate(pid, read.version, ANN, after)])
    # Then the PATCH carries only job_title and the other custom field survives
    assert result.ok
    assert sent == [{"job_title": "CEO"}]
    person = pipedrive.sandbox.persons[int(pid)]
    assert person.custom_fields["f" * 40] == "VIP"
    assert result.remote is not None and result.remote.contact.job_title == "CEO"
    # And a changed name sends all three name keys; a cleared organization unlinks it
    renamed = after.with_fields(family_name="Lee-Smith", organization="")
    side.update([ContactUpdate(pid, "", after, renamed)])
    assert sent[1] == {
        "name": "Ann Lee-Smith",
        "first_name": "Ann",
        "last_name": "Lee-Smith",
        "org_id": None,
    }
    assert pipedrive.sandbox.persons[int(pid)].org_id is None


def test_an_update_over_a_newer_crm_edit_is_refused_as_stale(pipedrive: PipedriveWorld):
    # Given a person read by a pass, then edited in the CRM app a moment later
    side = pipedrive.adapter()
    (created,) = side.create([NewContact("t-ann", ANN)])
    assert created.remote is not None
    pid, version = created.remote.id, created.remote.version
    pipedrive.sandbox.advance_clock(2)
    pipedrive.sandbox.edit_in_app(int(pid), {"notes": "typed in the CRM just now"})
    # When the pass writes what it planned from the older read
    after = ANN.with_fields(notes="planned from the older read")
    (result,) = side.update([ContactUpdate(pid, version, ANN, after)])
    # Then the write is refused as stale and the CRM edit is kept for the next pass to merge
    assert isinstance(result.error, PreconditionFailed)
    assert pipedrive.sandbox.persons[int(pid)].notes == "typed in the CRM just now"


def test_an_update_over_a_crm_edit_in_the_same_second_is_refused_too(pipedrive: PipedriveWorld):
    # Given a person read by a pass, then edited in the CRM app within the same second, so
    # update_time (second precision) did not move
    side = pipedrive.adapter()
    (created,) = side.create([NewContact("t-ann", ANN)])
    assert created.remote is not None
    pid, version = created.remote.id, created.remote.version
    pipedrive.sandbox.edit_in_app(int(pid), {"notes": "typed in the CRM in the same second"})
    # When the pass writes what it planned from its read
    after = ANN.with_fields(notes="planned from the read")
    (result,) = side.update([ContactUpdate(pid, version, ANN, after)])
    # Then the write is refused (what the person holds is not what was read): the edit stays
    assert isinstance(result.error, PreconditionFailed)
    assert pipedrive.sandbox.persons[int(pid)].notes == "typed in the CRM in the same second"


def test_writes_report_per_item_errors_and_deletes_are_idempotent(pipedrive: PipedriveWorld):
    side = pipedrive.adapter()
    (pid,) = pipedrive.sandbox.seed_persons(pipedrive.owner_id, 1, with_orgs=False)
    # When a bad birthday is created next to a good contact, and a person is deleted twice
    bad = Contact(given_name="Bad", birthday="1990-13-45")
    created = side.create([NewContact("t-bad", bad), NewContact("t-ok", Contact(given_name="Ok"))])
    deleted = side.delete([ContactDelete(str(pid)), ContactDelete(str(pid))])
    # Then the bad one alone fails as InvalidContact, and both deletes succeed
    assert isinstance(created[0].error, InvalidContact)
    assert created[1].ok
    assert all(r.ok for r in deleted)
    assert pipedrive.sandbox.persons[pid].deleted


def test_webhook_is_delivered_with_the_connections_basic_auth(
    pipedrive: PipedriveWorld, receiver: WebhookReceiver
):
    # Given the adapter subscribed the connection's receiver
    side = pipedrive.adapter()
    webhook_id = side.create_webhook(
        url=receiver.url, user=receiver.user, password=receiver.password
    )
    (pid,) = pipedrive.sandbox.seed_persons(pipedrive.owner_id, 1, with_orgs=False)
    # When the user deletes a person in the app
    pipedrive.sandbox.delete_in_app(pid)
    payloads = receiver.wait_for(1)
    # Then the receiver gets the v2 delete with the right credentials
    assert receiver.rejected == 0
    assert payloads[0]["meta"]["action"] == "delete"
    assert payloads[0]["meta"]["entity_id"] == str(pid)
    assert payloads[0]["meta"]["webhook_id"] == webhook_id
    assert payloads[0]["data"] is None
    assert payloads[0]["previous"]["id"] == pid
    # And the webhook can be removed, twice without error
    side.delete_webhook(webhook_id)
    side.delete_webhook(webhook_id)
    assert pipedrive.sandbox.webhooks == {}


def test_merge_returns_the_surviving_id(pipedrive: PipedriveWorld):
    keep, merge = pipedrive.sandbox.seed_persons(pipedrive.owner_id, 2, with_orgs=False)
    side = pipedrive.adapter()
    survivor = side.merge_persons(str(keep), str(merge))
    assert survivor == str(keep)
    assert side.fetch([str(merge)])[str(merge)] is None
    assert len(side.fetch([str(keep)])[str(keep)].contact.emails) == 2  # type: ignore[union-attr]


def test_whoami_and_missing_permissions(pipedrive: PipedriveWorld):
    side = pipedrive.adapter()
    assert side.whoami() == {
        "id": pipedrive.owner_id,
        "name": "Olive Owner",
        "email": "olive@acme.test",
        "company_id": pipedrive.company_id,
    }
    assert side.missing_permissions() == []
    pipedrive.sandbox.set_permissions(
        pipedrive.owner_id, can_add_people=False, can_add_organizations=False
    )
    # As the documented API answers (no add flags listed): unknown, so nothing is "missing"
    assert side.missing_permissions() == []
    # Where an answer does list them, a False one is missing
    pipedrive.sandbox.lists_add_permissions = True
    assert side.missing_permissions() == ["add people", "add organizations"]


def test_a_create_refused_with_403_names_the_missing_permission(pipedrive: PipedriveWorld):
    # Given an owner who may not add people, which the permissions answer does not tell
    pipedrive.sandbox.set_permissions(pipedrive.owner_id, can_add_people=False)
    side = pipedrive.adapter()
    assert side.missing_permissions() == []
    # When we create a person, Then the write's 403 is the truth, and names the permission
    [refused] = side.create([NewContact("t-ann", ANN)])
    assert isinstance(refused.error, PermissionDenied)
    assert refused.error.missing == ["add people"]


def test_429_becomes_rate_limited_with_the_servers_retry_after(pipedrive: PipedriveWorld):
    # Given the user's burst window is spent (their other connections and their own use of the
    # CRM spend it too)
    side = pipedrive.adapter()
    side.whoami()
    pipedrive.sandbox.burst_limit = 0
    # When the side is read
    with pytest.raises(RateLimited) as caught:
        side.read(None)
    # Then the wait comes from the response headers
    assert 1 <= caught.value.retry_after <= 2
    # And a rate-limited write stops the batch, marking every remaining item
    results = side.create(
        [NewContact("a", Contact(given_name="A")), NewContact("b", Contact(given_name="B"))]
    )
    assert [type(r.error) for r in results] == [RateLimited, RateLimited]


def test_a_short_burst_429_can_be_waited_out_in_the_adapter(pipedrive: PipedriveWorld):
    # Given an adapter allowed to wait out short bursts, and a burst limit of 3 that the user's
    # own use of the CRM has just spent
    side = pipedrive.adapter(burst_wait_s=2.5)
    (ann,) = pipedrive.sandbox.seed_persons(pipedrive.owner_id, 1, with_orgs=False)
    pipedrive.sandbox.burst_limit = 3
    for n in range(3):
        pipedrive.sandbox.edit_in_app(ann, {"job_title": f"Title {n}"})
    # When a request comes in the same window
    me = side.whoami()
    # Then it waited for the window instead of failing
    assert me["id"] == pipedrive.owner_id
    assert pipedrive.requests("GET /api/v1/users/me") == 2


def test_requests_wait_for_the_reset_when_the_users_burst_window_is_nearly_spent(
    pipedrive: PipedriveWorld,
):
    # Given a burst limit of 6 requests per 2 s, shared with the user's own use of the CRM
    side = pipedrive.adapter()
    side.whoami()
    (ann,) = pipedrive.sandbox.seed_persons(pipedrive.owner_id, 1, with_orgs=False)
    pipedrive.sandbox.burst_limit = 6
    pipedrive.sandbox.edit_in_app(ann, {"job_title": "Head of Sales"})
    pipedrive.sandbox.edit_in_app(ann, {"job_title": "Head of Marketing"})
    pipedrive.sandbox.reset_stats()
    # When the adapter makes eight requests in a row
    for _ in range(8):
        side.whoami()
    # Then none ran into the limit: when an answer said the window was nearly spent, the next
    # request waited for its reset
    assert pipedrive.requests("429 over the burst limit") == 0
    assert pipedrive.requests("GET /api/v1/users/me") == 8


def test_401_refreshes_the_token_once(pipedrive: PipedriveWorld):
    # Given the access token lapsed; the token source can refresh it
    calls: list[bool] = []
    current = {"token": pipedrive.token}

    def token(force: bool) -> str:
        calls.append(force)
        if force:
            current["token"] = pipedrive.sandbox.issue_token(pipedrive.owner_id)
        return current["token"]

    side = pipedrive.adapter(token=token)
    pipedrive.sandbox.expire_access_tokens(pipedrive.owner_id)
    # When the side is used
    me = side.whoami()
    # Then one forced refresh made it work
    assert me["id"] == pipedrive.owner_id
    assert calls == [False, True]


def test_401_after_refresh_is_auth_expired(pipedrive: PipedriveWorld):
    calls: list[bool] = []

    def token(force: bool) -> str:
        calls.append(force)
        return "revoked"

    side = pipedrive.adapter(token=token)
    with pytest.raises(AuthExpired):
        side.whoami()
    assert calls == [False, True]


def test_5xx_is_retried_then_transient(pipedrive: PipedriveWorld):
    side = pipedrive.adapter(max_attempts=3)
    pipedrive.sandbox.inject_fault(503, count=2)
    assert side.whoami()["id"] == pipedrive.owner_id  # two retries absorbed
    pipedrive.sandbox.inject_fault(500, count=3)
    with pytest.raises(Transient):
        side.whoami()


def test_a_create_is_not_retried_after_a_server_error(pipedrive: PipedriveWorld):
    # Given the CRM fails the next request (it might have made the person anyway)
    side = pipedrive.adapter(max_attempts=3)
    side.find_tagged("warm-up")  # reads the tag field's key first
    pipedrive.sandbox.inject_fault(503, count=1, path_prefix="/api/v2/persons")
    posts = pipedrive.requests("POST /api/v2/persons")
    # When we create a person, Then it reports Transient and the POST was sent once
    [result] = side.create([NewContact("tag-503", Contact(given_name="Ada"))])
    assert isinstance(result.error, Transient)
    assert pipedrive.requests("POST /api/v2/persons") == posts + 1


def test_an_unreadable_position_asks_for_a_full_listing(pipedrive: PipedriveWorld):
    from contactsync.providers.base import CursorExpired

    with pytest.raises(CursorExpired):
        pipedrive.adapter().read("not json")


# --- OAuth -------------------------------------------------------------------------------------


def test_oauth_code_exchange_and_refresh(pipedrive: PipedriveWorld):
    running = pipedrive.running
    cfg = PipedriveOAuthConfig(
        running.client_id, running.client_secret, running.authorize_url, running.token_url
    )
    redirect = "http://127.0.0.1:1/oauth/pipedrive/callback"
    # When the user follows the authorization URL (the sandbox approves at once)
    pipedrive.sandbox.login_as(pipedrive.other_id)
    answer = httpx.get(authorization_url(cfg, redirect, "st-1"))
    query = parse_qs(urlparse(answer.headers["location"]).query)
    grant = exchange_code(cfg, query["code"][0], redirect)
    fresh = refresh(cfg, grant)
    # Then the grant works for the approving user and refreshing keeps the domain
    assert query["state"] == ["st-1"]
    assert grant.api_domain == pipedrive.url
    assert fresh.api_domain == pipedrive.url
    assert fresh.access_token != grant.access_token
    # And the refresh token rotates, as Pipedrive's does: the old one is spent
    assert fresh.refresh_token != grant.refresh_token
    with pytest.raises(AuthExpired):
        refresh(cfg, grant)
    side = PipedrivePersons(
        base_url=grant.api_domain or "",
        token=lambda f: fresh.access_token,
        owner_id=pipedrive.other_id,
    )
    assert side.whoami()["id"] == pipedrive.other_id
    # And after the user uninstalls the app, refreshing is AuthExpired
    pipedrive.sandbox.revoke_tokens(pipedrive.other_id)
    with pytest.raises(AuthExpired):
        refresh(cfg, fresh)
    with pytest.raises(AuthExpired):
        exchange_code(cfg, "used-or-unknown", redirect)


# --- what real Pipedrive does that a forgiving emulator would not -------------------------------


def test_an_id_left_out_of_an_ids_listing_is_asked_for_alone(pipedrive: PipedriveWorld):
    # Given two persons, one deleted, and ids= listings that leave every id out (a 200 that
    # omits an id does not say why: "do not exist or are not visible")
    sb = pipedrive.sandbox
    user = sb.users[pipedrive.owner_id]
    alive = sb.create_person(user, {"name": "Still Here"}).id
    gone = sb.create_person(user, {"name": "Gone"}).id
    sb.delete_person(user, gone)
    sb.partial_rate = 1.0
    # When we fetch both
    found = pipedrive.adapter().fetch([str(alive), str(gone)])
    # Then the one that exists is read alone and the deleted one is None (its GET was 404)
    assert found[str(alive)] is not None and found[str(alive)].id == str(alive)
    assert found[str(gone)] is None
    assert pipedrive.requests("GET /api/v2/persons/{id}") == 2


def test_empty_listing_pages_are_followed(pipedrive: PipedriveWorld):
    sb = pipedrive.sandbox
    user = sb.users[pipedrive.owner_id]
    ids = {str(sb.create_person(user, {"name": f"P{i}"}).id) for i in range(3)}
    sb.empty_pages = 2
    pages, _ = _read_all(pipedrive.adapter())
    assert {c.id for p in pages for c in p.contacts} == ids
    assert [len(p.contacts) for p in pages][:2] == [0, 0]


def test_without_contact_sync_a_read_teaches_the_adapter_to_leave_those_fields_out(
    pipedrive: PipedriveWorld,
):
    # Given a company with contact sync off, and one person of ours
    sb = pipedrive.sandbox
    sb.set_contact_sync(pipedrive.company_id, False)
    sb.seed_persons(pipedrive.owner_id, 1, with_orgs=False)
    side = pipedrive.adapter()
    assert side.limits is None  # not known before anything was read
    # When we list (the persons come without job_title, birthday, notes, postal_address)
    _read_all(side)
    # Then the adapter knows, no longer carries those fields, and says so
    assert side.contact_sync is False
    assert not {"job_title", "birthday", "notes", "addresses"} & side.carries
    assert side.limits and "contact sync" in side.limits[0]
    # And a create of a contact with a job title goes through at the first try, without it
    posts = pipedrive.requests("POST /api/v2/persons")
    [made] = side.create([NewContact("t-ann", ANN)])
    assert made.ok and made.remote is not None
    assert pipedrive.requests("POST /api/v2/persons") == posts + 1
    assert sb.persons[int(made.remote.id)].job_title is None


def test_without_contact_sync_a_403_on_a_write_teaches_the_adapter_once(
    pipedrive: PipedriveWorld,
):
    # Given a company with contact sync off and an adapter that has read nothing yet
    sb = pipedrive.sandbox
    sb.set_contact_sync(pipedrive.company_id, False)
    side = pipedrive.adapter()
    posts = pipedrive.requests("POST /api/v2/persons")
    # When it creates two contacts with job titles
    results = side.create([NewContact("t-1", ANN), NewContact("t-2", ANN)])
    # Then the first POST was refused (403, nothing made) and sent again without the fields,
    # and the second went without them at once: three POSTs, two persons
    assert all(r.ok for r in results)
    assert pipedrive.requests("POST /api/v2/persons") == posts + 3
    assert side.contact_sync is False and side.limits
    # And an update that only changes a contact-sync field sends nothing
    remote = results[0].remote
    assert remote is not None
    patches = pipedrive.requests("PATCH /api/v2/persons/{id}")
    edited = ANN.with_fields(job_title="CEO")
    [updated] = side.update([ContactUpdate(remote.id, remote.version, remote.contact, edited)])
    assert updated.ok and pipedrive.requests("PATCH /api/v2/persons/{id}") == patches


def test_lookup_searches_the_whole_company_and_names_other_owners(pipedrive: PipedriveWorld):
    # Given a colleague's person with Ann's email, one of the user's with her phone, and others
    with pipedrive.http(pipedrive.sandbox.issue_token(pipedrive.other_id)) as http:
        theirs = http.post(
            "/api/v2/persons",
            json={"name": "Ann L.", "emails": [{"value": "ANN@lee.test"}]},
        ).json()["data"]
    side = pipedrive.adapter()
    (made,) = side.create([NewContact("t-1", Contact(given_name="A", phones=ANN.phones))])
    pipedrive.sandbox.seed_persons(pipedrive.owner_id, 30, with_orgs=False)
    pipedrive.sandbox.reset_stats()
    # When Ann is looked up
    found = {r.id: r for r in side.lookup([ANN])}
    # Then both are found, whoever owns them; the colleague's says whose it is
    assert made.remote is not None
    assert set(found) >= {str(theirs["id"]), made.remote.id}
    assert found[made.remote.id].in_scope
    assert not found[str(theirs["id"])].in_scope
    assert found[str(theirs["id"])].scope_reason == "owned by Colin Colleague"
    # And it cost one exact search per email, phone and name, one ids read and one user read
    assert pipedrive.requests("GET /api/v2/persons/search") == 3
    assert pipedrive.requests("GET /api/v2/persons") == 1
    assert pipedrive.requests("GET /api/v1/users/{id}") == 1


def test_lookup_of_many_contacts_lists_a_small_company_instead(pipedrive: PipedriveWorld):
    # Given a company of 40 persons, one of them a colleague's with the email looked for
    pipedrive.sandbox.seed_persons(pipedrive.owner_id, 40, with_orgs=False)
    with pipedrive.http(pipedrive.sandbox.issue_token(pipedrive.other_id)) as http:
        theirs = http.post(
            "/api/v2/persons", json={"name": "Zoe", "emails": [{"value": "zoe@x.test"}]}
        ).json()["data"]
    side = pipedrive.adapter()
    many = [Contact(given_name=f"New{i}", emails=(Email(f"new{i}@x.test"),)) for i in range(15)]
    pipedrive.sandbox.reset_stats()
    # When 16 contacts (32 searches) are looked up at once
    found = side.lookup([*many, Contact(emails=(Email("zoe@x.test"),))])
    # Then one listing page of the company replaced the searches
    assert [r.id for r in found] == [str(theirs["id"])]
    assert pipedrive.requests("GET /api/v2/persons/search") == 0
    assert pipedrive.requests("GET /api/v2/persons") == 1


@pytest.mark.parametrize("visible_to", [1, 3, 7])
def test_created_persons_carry_the_connections_visibility(
    pipedrive: PipedriveWorld, visible_to: int
) -> None:
    # Given a side set to create persons visible to the owner, their group or the company
    side = pipedrive.adapter(visible_to=visible_to)
    # When a contact is created
    [result] = side.create([NewContact("t-vis", Contact(given_name="Vi", family_name="Sible"))])
    # Then the CRM person has that visibility
    assert result.ok and result.remote is not None
    assert pipedrive.sandbox.persons[int(result.remote.id)].visible_to == visible_to


def test_without_a_visibility_the_crm_default_applies(pipedrive: PipedriveWorld) -> None:
    side = pipedrive.adapter()
    [result] = side.create([NewContact("t-def", Contact(given_name="De", family_name="Fault"))])
    assert result.remote is not None
    assert pipedrive.sandbox.persons[int(result.remote.id)].visible_to == 3


@pytest.mark.parametrize(
    ("plan", "value"),
    [("professional", 2), ("professional", 0), ("professional", "7"), ("essential", 7)],
)
def test_the_crm_refuses_a_visibility_its_plan_does_not_have(
    pipedrive: PipedriveWorld, plan: str, value: Any
) -> None:
    # Given a company on a plan (Essential / Advanced know only 1 and 3)
    for company in pipedrive.sandbox.companies.values():
        company.plan = plan
    # When a person is created with a visible_to the plan does not have
    with pipedrive.http() as http:
        answer = http.post("/api/v2/persons", json={"name": "Vis Ible", "visible_to": value})
    # Then the CRM answers 400 naming the field, and creates nothing
    assert answer.status_code == 400
    assert "visible_to" in answer.text
    assert not any(p.name == "Vis Ible" for p in pipedrive.sandbox.persons.values())


def test_a_revoked_refresh_token_stops_working(pipedrive: PipedriveWorld):
    running = pipedrive.running
    cfg = PipedriveOAuthConfig(
        running.client_id, running.client_secret, running.authorize_url, running.token_url
    )
    redirect = "http://127.0.0.1:1/oauth/pipedrive/callback"
    pipedrive.sandbox.login_as(pipedrive.other_id)
    answer = httpx.get(authorization_url(cfg, redirect, "st-2"))
    code = parse_qs(urlparse(answer.headers["location"]).query)["code"][0]
    grant = exchange_code(cfg, code, redirect)
    # When the grant is revoked (POST /oauth/revoke), Then it cannot be refreshed any more
    revoke(cfg, grant.refresh_token)
    with pytest.raises(AuthExpired):
        refresh(cfg, grant)
    # And revoking it again is no error (the goal is reached)
    revoke(cfg, grant.refresh_token)
