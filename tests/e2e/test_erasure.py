"""Removal for good, over HTTP on the local stack: a connection (its user), a whole user and a
whole company (an admin). After each, a scan of the table finds nothing of what was removed,
the providers' grants are revoked where they offer it, and the sync writes nothing more."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from local.demo import FOLDER_NAME, Api, DemoUser, seed
from local.stack import LocalStack
from tests.security.leaks import scan_table

pytestmark = pytest.mark.e2e


@dataclass
class Synced:
    demo: DemoUser
    google_id: str
    microsoft_id: str


@pytest.fixture(scope="module")
def synced(stack: LocalStack) -> Synced:
    """The demo user syncing with Google and Microsoft 365; both first syncs done."""
    demo, _ = seed(stack, persons=8, contacts=8)
    api = Api(stack, demo.token)
    api.connect_crm()
    ids = []
    for connect in (api.connect_google, api.connect_microsoft):
        connection_id = connect()
        api.choose_folder(connection_id, FOLDER_NAME)
        api.start(connection_id)
        assert api.wait_until_active(connection_id, timeout=90)["state"] == "active"
        ids.append(connection_id)
    return Synced(demo, *ids)


def items(stack: LocalStack) -> list[dict[str, Any]]:
    return scan_table(stack.aws.client("dynamodb"), stack.aws.table_name)


def mentioning(stack: LocalStack, text: str) -> list[str]:
    """The keys of every item whose key or contents hold ``text``."""
    return [
        f"{item['PK']['S']} {item['SK']['S']}"
        for item in items(stack)
        if text in json.dumps(item, default=repr)
    ]


def of_owner(stack: LocalStack, company_id: str, user_id: str | None = None) -> list[str]:
    """The keys of every item that belongs to the company (or to one of its users)."""
    found = []
    for item in items(stack):
        company = item.get("company_id", {}).get("S")
        user = item.get("user_id", {}).get("S")
        keys = " ".join(item.get(k, {}).get("S", "") for k in ("PK", "SK", "GSI1PK", "GSI1SK"))
        owned = f"USER#{company_id}#" if user_id is None else f"USER#{company_id}#{user_id}"
        if (company == company_id and user_id in (None, user)) or owned in keys:
            found.append(keys)
    return found


def delete(stack: LocalStack, token: str, path: str) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"}
    return httpx.delete(f"{stack.api_url}{path}", headers=headers, timeout=60)


def test_a_user_removes_a_connection_and_nothing_of_it_is_left(
    stack: LocalStack, synced: Synced
) -> None:
    demo, connection_id = synced.demo, synced.google_id
    google = stack.google.sandbox
    assert len(mentioning(stack, connection_id)) > 10  # mappings, cursors, activity, ...
    assert google.signed_in_grants(demo.email) > 0
    # When the user removes their Google connection
    answer = delete(stack, demo.token, f"/connections/{connection_id}")
    # Then it is gone: not found, not listed, and no item of the table mentions it
    assert answer.status_code == 200, answer.text
    assert delete(stack, demo.token, f"/connections/{connection_id}").status_code == 404
    api = Api(stack, demo.token)
    assert connection_id not in [c["id"] for c in api.call("GET", "/connections")["connections"]]
    assert mentioning(stack, connection_id) == []
    # And Google's grant was revoked
    assert google.signed_in_grants(demo.email) == 0
    # And the other connection still syncs
    assert api.connection(synced.microsoft_id)["state"] == "active"


def test_nobody_else_removes_a_user_or_a_company(stack: LocalStack, synced: Synced) -> None:
    demo = synced.demo
    other = stack.token(demo.other_user_id, demo.company_id)
    stranger = stack.token("x-admin", "another-company", role="admin")
    # A colleague cannot remove the user; another company's admin sees no such user or company
    assert delete(stack, other, f"/users/{demo.user_id}").status_code == 403
    assert delete(stack, stranger, f"/users/{demo.user_id}").status_code == 404
    assert delete(stack, stranger, f"/companies/{demo.company_id}").status_code == 404
    assert delete(stack, other, f"/companies/{demo.company_id}").status_code == 403
    assert Api(stack, demo.token).connection(synced.microsoft_id)["state"] == "active"


WRITES = ("POST", "PATCH", "PUT", "DELETE")


def test_an_admin_removes_a_user_and_nothing_of_them_is_left(
    stack: LocalStack, synced: Synced
) -> None:
    demo = synced.demo
    company, user = str(demo.company_id), str(demo.user_id)
    graph, crm = stack.graph.sandbox, stack.pipedrive.sandbox
    assert of_owner(stack, company, user) and graph.subscriptions
    # When the company's admin removes the user
    answer = delete(stack, demo.admin_token, f"/users/{user}")
    assert answer.status_code == 200, answer.text
    assert answer.json()["removed"] == {"connections": 1, "users": 1}
    # Then nothing of the user is left in the table, nor a Graph subscription or CRM webhook
    assert of_owner(stack, company, user) == []
    assert mentioning(stack, synced.microsoft_id) == []
    assert not graph.subscriptions
    assert crm.list_webhooks(crm.users[demo.user_id]) == []
    # And the CRM grant was revoked: no refresh token of the user works any more
    assert crm.refresh_tokens_of(demo.user_id) == 0

    # And nothing more is written to the CRM (a pass already queued finds the connection gone)
    def crm_writes() -> int:
        stats = crm.stats_snapshot()  # "PATCH /api/v2/persons/{id}": count
        return sum(n for route, n in stats.items() if route.split(" ")[0] in WRITES)

    before = crm_writes()
    time.sleep(2)
    assert crm_writes() == before


def test_an_admin_removes_the_company_and_nothing_of_it_is_left(stack: LocalStack) -> None:
    # Given a company whose two users connected their CRM account, one with a connection
    crm = stack.pipedrive.sandbox
    company_id = crm.add_company("Gone Co")
    users = [crm.add_user(company_id, f"User {i}", f"u{i}@gone.example") for i in range(2)]
    admin = crm.add_user(company_id, "Admin", "admin@gone.example", is_admin=True)
    company = str(company_id)
    for user in users:
        crm.login_as(user)
        Api(stack, stack.token(user, company_id)).connect_crm()
    Api(stack, stack.token(users[0], company_id)).call(
        "POST", "/connections", json={"provider": "google"}
    )
    assert len(of_owner(stack, company)) == 3
    # When the admin removes the company
    answer = delete(stack, stack.token(admin, company_id, role="admin"), f"/companies/{company}")
    # Then both users' grants and the connection are gone, and revoked at the CRM
    assert answer.status_code == 200, answer.text
    assert answer.json()["removed"] == {"connections": 1, "users": 2}
    assert of_owner(stack, company) == []
    assert [crm.refresh_tokens_of(user) for user in users] == [0, 0]
