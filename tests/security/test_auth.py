"""Who may call what, over HTTP through the local API Gateway emulation.

- Every admin route (from the admin API's own OpenAPI document) answers 401 to a missing,
  expired, wrongly signed, wrong-audience (and a few more kinds of bad) JWT.
- A user cannot read or change another user's connection; a company admin sees the company's
  connections and nobody sees another company's (404, as if it did not exist).
- OAuth callbacks with a missing, wrong or replayed ``state`` get a 4xx and change nothing; a
  sign-in is finished only by the user who started it (their token on the callback's POST):
  the callback page alone, a colleague or an admin attaches nothing.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest

from local.gateway import ApiRoute, build_gateway, routes_from_template
from local.issuer import LocalIssuer
from local.stack import LocalStack, start_stack
from sandbox.server import serve

pytestmark = pytest.mark.e2e

PLACEHOLDER = "abc123"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    running = start_stack(workdir=tmp_path_factory.mktemp("auth"), schedule_every=3600)
    try:
        yield running
    finally:
        running.stop()


def admin_routes() -> list[tuple[str, str]]:
    """(method, path) of every admin operation behind the JWT authorizer.

    The admin API's OpenAPI document lists its operations; the template says which paths are
    open (the OAuth callback, the API description): those are left out.
    """
    from functions.admin_api.app import app

    document = app.get_openapi_schema().model_dump(by_alias=True, exclude_none=True)
    open_routes = {(r.method, r.path) for r in routes_from_template() if not r.authorized}
    routes = []
    for path, operations in document["paths"].items():
        concrete = re.sub(r"\{[^}]+\}", PLACEHOLDER, path)
        routes += [
            (method.upper(), concrete)
            for method in operations
            if (method.upper(), path) not in open_routes
        ]
    return sorted(routes)


def bad_credentials(issuer: LocalIssuer) -> dict[str, dict[str, str]]:
    """Authorization headers the JWT authorizer must turn away, by what is wrong with them."""
    who = {"user_id": "u1", "company_id": "c1"}
    now = int(time.time())
    unsigned = jwt.encode(
        {"iss": issuer.issuer, "aud": issuer.audience, "sub": "u1", "iat": now, "exp": now + 600},
        key=None,
        algorithm="none",
    )
    stranger = LocalIssuer(issuer=issuer.issuer, audience=issuer.audience)
    return {
        "missing": {},
        "expired": {"authorization": f"Bearer {issuer.token(**who, expires_in=-120)}"},
        "other key": {"authorization": f"Bearer {stranger.token(**who)}"},
        "wrong audience": {"authorization": f"Bearer {issuer.token(**who, aud='another-api')}"},
        "wrong issuer": {"authorization": f"Bearer {issuer.token(**who, iss='https://evil/')}"},
        "unsigned": {"authorization": f"Bearer {unsigned}"},
        "not a JWT": {"authorization": "Bearer not-a-token"},
        "basic scheme": {"authorization": "Basic dTE6cGFzc3dvcmQ="},
    }


@dataclass(frozen=True)
class Accepted:
    method: str
    path: str
    credential: str
    status: int


def accepted_bad_credentials(
    base_url: str, routes: list[tuple[str, str]], credentials: dict[str, dict[str, str]]
) -> list[Accepted]:
    """Every (route, bad credential) the API did not answer with 401."""
    wrong = []
    with httpx.Client(base_url=base_url, timeout=30) as http:
        for method, path in routes:
            for name, headers in credentials.items():
                response = http.request(method, path, headers=headers, json={})
                if response.status_code != 401:
                    wrong.append(Accepted(method, path, name, response.status_code))
    return wrong


def test_the_admin_routes_are_read_from_the_admin_app() -> None:
    routes = admin_routes()
    assert ("GET", "/connections") in routes and ("POST", "/connections") in routes
    assert ("PATCH", f"/connections/{PLACEHOLDER}") in routes
    # The OAuth callback is finished by its POST, with the user's token; its GET is a page
    assert ("POST", f"/oauth/{PLACEHOLDER}/callback") in routes
    assert ("GET", f"/oauth/{PLACEHOLDER}/callback") not in routes


def test_every_admin_route_rejects_every_bad_jwt(stack: LocalStack) -> None:
    # Given every admin route and every kind of bad credential
    routes, credentials = admin_routes(), bad_credentials(stack.issuer)
    # When each is called through the gateway, Then each answers 401
    assert accepted_bad_credentials(stack.api_url, routes, credentials) == []
    # And a good token on the same gateway gets through (the 401s are not a blanket refusal)
    good = {"authorization": f"Bearer {stack.token('u1', 'c1')}"}
    assert httpx.get(f"{stack.api_url}/connections", headers=good).status_code == 200


def test_the_checker_catches_a_route_left_without_the_authorizer(stack: LocalStack) -> None:
    # Given a gateway where the connection routes were (wrongly) declared without authorizer
    def answers_ok(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"statusCode": 200, "body": "{}"}

    route = ApiRoute("ANY", "/{proxy+}", "AdminApiFunction", False, re.compile(r"^/(?P<proxy>.+)$"))
    gateway = build_gateway(
        stack.issuer.check, routes=[route], handlers={"AdminApiFunction": answers_ok}
    )
    # When the checker runs against it, Then every bad credential is reported as accepted
    with serve(gateway) as server:
        wrong = accepted_bad_credentials(
            server.url, [("GET", "/connections")], bad_credentials(stack.issuer)
        )
    assert {w.credential for w in wrong} == set(bad_credentials(stack.issuer))


# --- tenant isolation ----------------------------------------------------------------------------


@dataclass
class Tenants:
    """Company A: a user who owns a connection, a colleague and an admin. Company B: an admin."""

    owner: httpx.Client
    colleague: httpx.Client
    admin_a: httpx.Client
    admin_b: httpx.Client
    connection_id: str


@pytest.fixture(scope="module")
def tenants(stack: LocalStack) -> Iterator[Tenants]:
    def client(user: str, company: str, role: str = "user") -> httpx.Client:
        token = stack.token(user, company, role=role)
        return httpx.Client(
            base_url=stack.api_url, headers={"authorization": f"Bearer {token}"}, timeout=30
        )

    owner = client("a-owner", "company-a")
    created = owner.post("/connections", json={"provider": "microsoft"})
    assert created.status_code == 201, created.text
    clients = Tenants(
        owner=owner,
        colleague=client("a-colleague", "company-a"),
        admin_a=client("a-admin", "company-a", role="admin"),
        admin_b=client("b-admin", "company-b", role="admin"),
        connection_id=created.json()["connection"]["id"],
    )
    yield clients
    for http in (clients.owner, clients.colleague, clients.admin_a, clients.admin_b):
        http.close()


ATTEMPTS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "", None),
    ("PATCH", "", {"direction": "to_crm", "conflict_policy": "crm_wins"}),
    ("GET", "/groups", None),
    ("POST", "/start", None),
    ("POST", "/stop", None),
    ("DELETE", "", None),
]


@pytest.mark.parametrize("who", ["colleague", "admin_b"])
def test_nobody_else_reads_or_changes_a_users_connection(tenants: Tenants, who: str) -> None:
    http: httpx.Client = getattr(tenants, who)
    base = f"/connections/{tenants.connection_id}"
    # When another user of the company, or another company's admin, reads or changes it
    for method, suffix, body in ATTEMPTS:
        response = http.request(method, base + suffix, json=body)
        # Then it does not exist for them
        assert response.status_code == 404, (method, suffix, response.text)
        assert tenants.connection_id not in response.text.replace(f"'{tenants.connection_id}'", "")
    # And it is not in their list
    listed = http.get("/connections").json()["connections"]
    assert tenants.connection_id not in [c["id"] for c in listed]
    # And nothing changed
    view = tenants.owner.get(base).json()
    assert (view["state"], view["direction"], view["conflict_policy"]) == (
        "configuring",
        "two_way",
        "newest_wins",
    )


# Valid values for every other placeholder and body, so that only ownership can refuse a call.
VALID_ENTRY_ID = "2025-03-01T12:00:00.000000Z-000001"
VALID_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("PATCH", "/connections/{connection_id}"): {"direction": "to_crm"},
    ("POST", "/connections/{connection_id}/duplicates/merge"): {"keep": "1", "merge": ["2"]},
    ("POST", "/connections/{connection_id}/groups"): {"name": "Synced from the CRM"},
    ("POST", "/connections/{connection_id}/reconnect"): {"password": "a-new-app-password"},
}
VALID_QUERIES: dict[str, dict[str, str]] = {
    "/connections/{connection_id}/explain": {"crm_person_id": "1"},
    "/connections/{connection_id}/contacts": {"q": "ann"},
}


def connection_routes() -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path template, a valid body) of every admin operation on one connection."""
    from functions.admin_api.app import app

    document = app.get_openapi_schema().model_dump(by_alias=True, exclude_none=True)
    return [
        (method.upper(), path, VALID_BODIES.get((method.upper(), path), {}))
        for path, operations in document["paths"].items()
        if path.startswith("/connections/{connection_id}")
        for method in operations
    ]


@pytest.mark.parametrize("who", ["colleague", "admin_b"])
def test_no_connection_route_answers_for_someone_else(tenants: Tenants, who: str) -> None:
    # Given every admin route about one connection, with valid ids and bodies
    http: httpx.Client = getattr(tenants, who)
    routes = connection_routes()
    assert len(routes) >= 5
    for method, template_path, body in routes:
        path = template_path.replace("{connection_id}", tenants.connection_id).replace(
            "{entry_id}", VALID_ENTRY_ID
        )
        response = http.request(method, path, json=body, params=VALID_QUERIES.get(template_path))
        # Then none answers but with "not found": the connection is not theirs
        assert response.status_code == 404, (method, path, response.status_code, response.text)


def test_the_valid_bodies_pass_validation(tenants: Tenants) -> None:
    # The owner gets past validation with the same bodies (else the 404s above prove nothing)
    for method, template_path, body in connection_routes():
        if body or (method == "GET" and template_path in VALID_QUERIES):
            path = template_path.replace("{connection_id}", tenants.connection_id)
            params = VALID_QUERIES.get(template_path)
            response = tenants.owner.request(method, path, json=body, params=params)
            assert response.status_code != 422, (method, path, response.text)


@pytest.mark.parametrize("claim", ["sub", "company_id"])
def test_a_token_whose_ids_hold_a_key_separator_is_refused(stack: LocalStack, claim: str) -> None:
    # Given user "a-owner" of company-a with a connection, and a token naming "a-owner#x"
    ids = {"sub": "a-owner", "company_id": "company-a"}
    ids[claim] += "#x"
    token = stack.token(ids["sub"], ids["company_id"])
    headers = {"authorization": f"Bearer {token}"}
    # When it lists or creates connections, Then 401 says what is wrong and nothing is listed
    listed = httpx.get(f"{stack.api_url}/connections", headers=headers, timeout=30)
    assert listed.status_code == 401 and "'#'" in listed.json()["error"]["message"]
    created = httpx.post(
        f"{stack.api_url}/connections", headers=headers, json={"provider": "google"}, timeout=30
    )
    assert created.status_code == 401


def test_a_company_admin_sees_the_companys_connections(tenants: Tenants) -> None:
    base = f"/connections/{tenants.connection_id}"
    assert tenants.admin_a.get(base).status_code == 200
    listed = tenants.admin_a.get("/connections").json()["connections"]
    assert tenants.connection_id in [c["id"] for c in listed]


# --- OAuth callbacks check state, and only their starter finishes them ---------------------------


def _callback(
    stack: LocalStack, provider: str, token: str | None = None, **query: str
) -> httpx.Response:
    """The callback as a client holding ``token`` finishes it (a stranger's token by default)."""
    token = token or stack.token("stranger", "company-s")
    return httpx.post(
        f"{stack.api_url}/oauth/{provider}/callback",
        params=query,
        headers={"authorization": f"Bearer {token}"},
        timeout=30,
    )


@pytest.mark.parametrize("provider", ["microsoft", "pipedrive"])
def test_a_callback_without_state_is_refused(stack: LocalStack, provider: str) -> None:
    assert 400 <= _callback(stack, provider, code="some-code").status_code < 500


@pytest.mark.parametrize(
    "state",
    ["nope", "unknown-connection.nonce", "crm.company-a.a-owner.guessed", "crm.x", "..."],
)
@pytest.mark.parametrize("provider", ["microsoft", "pipedrive"])
def test_a_callback_with_a_state_that_is_not_ours_is_refused(
    stack: LocalStack, provider: str, state: str
) -> None:
    assert 400 <= _callback(stack, provider, state=state, code="some-code").status_code < 500


def test_a_callback_with_a_forged_state_for_a_real_sign_in_is_refused(
    stack: LocalStack, tenants: Tenants
) -> None:
    # Given a sign-in in progress for a real connection and a CRM authorization in progress
    connection_id = tenants.connection_id
    crm_url = tenants.owner.post("/crm/connect").json()["authorization_url"]
    crm_state = httpx.URL(crm_url).params["state"]
    owner_token = tenants.owner.headers["authorization"].removeprefix("Bearer ")
    # When the callback comes back, with the owner's token, with the right prefix but a forged
    # nonce
    forged = [
        ("microsoft", f"{connection_id}.forged-nonce"),
        ("pipedrive", crm_state[:-4] + "abcd"),
    ]
    for provider, state in forged:
        # Then it is refused
        answer = _callback(stack, provider, owner_token, state=state, code="x")
        assert 400 <= answer.status_code < 500
    # And the connection is still waiting for its sign-in
    view = tenants.owner.get(f"/connections/{connection_id}").json()
    assert view["account"] is None and view["state"] == "configuring"


def _signed_in_redirect(stack: LocalStack, http: httpx.Client, email: str) -> str:
    """Start "add new account" for Microsoft 365 as ``http``'s user and consent as ``email``:
    the URL the identity provider sends the browser back to (code and state)."""
    created = http.post("/connections", json={"provider": "microsoft"}).json()
    url = f"{created['authorization_url']}&login_hint={email}"
    consent = httpx.get(url, verify=stack.graph.ca_file, timeout=30)
    assert consent.status_code == 302, consent.text
    return str(consent.headers["location"])


def test_a_callback_replayed_after_sign_in_is_refused(stack: LocalStack) -> None:
    # Given a user who signed in to Microsoft 365 through the real consent redirect
    graph = stack.graph.sandbox
    graph.add_user("replay@tenant.example", "Replay User")
    token = stack.token("replayer", "company-r")
    http = httpx.Client(
        base_url=stack.api_url, headers={"authorization": f"Bearer {token}"}, timeout=30
    )
    callback_url = _signed_in_redirect(stack, http, "replay@tenant.example")
    assert http.post(callback_url).status_code == 200
    # When the same callback (code and state) is replayed
    replay = http.post(callback_url)
    # Then it is refused
    assert 400 <= replay.status_code < 500
    http.close()


def test_the_callback_page_alone_attaches_nothing(stack: LocalStack) -> None:
    # Given a user's sign-in that came back from the identity provider with a code
    stack.graph.sandbox.add_user("page@tenant.example", "Page User")
    token = stack.token("page-owner", "company-p")
    http = httpx.Client(
        base_url=stack.api_url, headers={"authorization": f"Bearer {token}"}, timeout=30
    )
    callback_url = _signed_in_redirect(stack, http, "page@tenant.example")
    connection_id = httpx.URL(callback_url).params["state"].split(".", 1)[0]
    # When a browser without the user's credentials opens the callback URL
    page = httpx.get(callback_url, timeout=30)
    # Then it gets the settings UI's page that finishes sign-ins, and nothing is attached
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert page.headers["referrer-policy"] == "no-referrer"
    view = http.get(f"/connections/{connection_id}").json()
    assert view["account"] is None and view["state"] == "configuring"
    # And the user's own client still finishes it with the same code
    assert http.post(callback_url).json()["account"] == "page@tenant.example"
    http.close()


@pytest.mark.parametrize("who", ["colleague", "admin_a", "admin_b"])
def test_a_sign_in_finished_by_anyone_else_attaches_nothing(
    stack: LocalStack, tenants: Tenants, who: str
) -> None:
    # Given the owner started "add new account" and a colleague's Microsoft account consented
    # (the owner's link opened in someone else's browser)
    email = f"{who.replace('_', '-')}@tenant.example"
    stack.graph.sandbox.add_user(email, f"Someone {who}")
    callback_url = _signed_in_redirect(stack, tenants.owner, email)
    connection_id = httpx.URL(callback_url).params["state"].split(".", 1)[0]
    # When someone else (a colleague, the company's admin, another company's admin) finishes it
    # with their own token
    other: httpx.Client = getattr(tenants, who)
    answer = other.post(callback_url)
    # Then it is refused and the owner's connection has no account attached
    assert answer.status_code == 404, answer.text
    view = tenants.owner.get(f"/connections/{connection_id}").json()
    assert view["account"] is None and view["state"] == "configuring"
    # And nobody else got a connection out of it
    for http in (tenants.colleague, tenants.admin_a, tenants.admin_b):
        listed = http.get("/connections").json()["connections"]
        assert email not in [c["account"] for c in listed]


def test_a_crm_authorization_finished_by_a_colleague_attaches_nothing(stack: LocalStack) -> None:
    # Given a CRM user who started the CRM authorization, and the CRM consented
    pd = stack.pipedrive.sandbox
    company = pd.add_company("Bound Inc")
    owner, colleague = (pd.add_user(company, f"U{i}", f"u{i}@bound.example") for i in (1, 2))
    pd.login_as(owner)

    def client(user: int) -> httpx.Client:
        token = stack.token(user, company)
        headers = {"authorization": f"Bearer {token}"}
        return httpx.Client(base_url=stack.api_url, headers=headers, timeout=30)

    with client(owner) as mine, client(colleague) as theirs:
        consent = httpx.get(mine.post("/crm/connect").json()["authorization_url"], timeout=30)
        assert consent.status_code in (302, 303), consent.text
        # When a colleague finishes it with their own token
        answer = theirs.post(consent.headers["location"])
        # Then it is refused, and the owner can still finish it
        assert answer.status_code == 404, answer.text
        assert mine.post(consent.headers["location"]).status_code == 200


# --- CRM sign-in: the approving CRM user must be the caller ---------------------------------------


@pytest.fixture(scope="module")
def crm_company(stack: LocalStack) -> tuple[int, int, int]:
    """A CRM company with two users: (company, user, colleague)."""
    crm = stack.pipedrive.sandbox
    company = crm.add_company("Signin Co")
    user = crm.add_user(company, "Sam Signin", "sam@signin.example")
    colleague = crm.add_user(company, "Cole League", "cole@signin.example")
    return company, user, colleague


def _connect_crm(stack: LocalStack, token: str) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"}
    started = httpx.post(f"{stack.api_url}/crm/connect", headers=headers, timeout=30)
    assert started.status_code == 200, started.text
    url = started.json()["authorization_url"]
    consent = httpx.get(url, follow_redirects=False, timeout=30)
    return httpx.post(consent.headers["location"], headers=headers, timeout=30)


def test_the_crm_state_names_nobody(stack: LocalStack) -> None:
    # Given a company id with dots (it used to split the state apart)
    token = stack.token("7", "acme.eu.1")
    started = httpx.post(
        f"{stack.api_url}/crm/connect", headers={"authorization": f"Bearer {token}"}, timeout=30
    )
    state = httpx.URL(started.json()["authorization_url"]).params["state"]
    # Then the state carries neither the company nor the user, only a nonce
    assert "acme" not in state and state.count(".") == 1 and len(state) > 40


def test_a_crm_sign_in_approved_by_another_crm_user_is_refused(
    stack: LocalStack, crm_company: tuple[int, int, int]
) -> None:
    from contactsync.store.crm_grants import get_crm_grant

    company, user, colleague = crm_company
    # Given the user starts the CRM sign-in but the colleague approves it in the CRM
    stack.pipedrive.sandbox.login_as(colleague)
    answer = _connect_crm(stack, stack.token(str(user), str(company)))
    # Then 403 says whose account approved, and no grant is stored for the user
    assert answer.status_code == 403, answer.text
    assert "not yours" in answer.json()["error"]["message"]
    assert get_crm_grant(str(company), str(user)) is None


def test_a_crm_sign_in_for_another_company_is_refused(
    stack: LocalStack, crm_company: tuple[int, int, int]
) -> None:
    company, user, _ = crm_company
    # Given a token naming the right user id but another company
    stack.pipedrive.sandbox.login_as(user)
    answer = _connect_crm(stack, stack.token(str(user), str(company + 1000)))
    # Then it is refused too
    assert answer.status_code == 403, answer.text


def test_a_crm_sign_in_by_the_caller_connects_once(
    stack: LocalStack, crm_company: tuple[int, int, int]
) -> None:
    company, user, _ = crm_company
    # Given the user approves their own sign-in
    stack.pipedrive.sandbox.login_as(user)
    headers = {"authorization": f"Bearer {stack.token(str(user), str(company))}"}
    url = httpx.post(f"{stack.api_url}/crm/connect", headers=headers, timeout=30).json()[
        "authorization_url"
    ]
    callback = httpx.get(url, follow_redirects=False, timeout=30).headers["location"]
    answer = httpx.post(callback, headers=headers, timeout=30)
    # Then it connects; and the same callback replayed is refused
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"connected": "crm", "company_id": str(company), "user_id": str(user)}
    assert httpx.post(callback, headers=headers, timeout=30).status_code == 422
