"""The demo company, its data, and a user going through "add new account" over the real API.

Used by ``make run`` and by the end-to-end tests: every step is an HTTP call a browser or the
CRM's settings page would make (the sandboxes' consent screens approve at once for the account
named by ``login_hint``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

from local.stack import CARDDAV_USER, LocalStack

FOLDER_NAME = "CRM contacts"  # the Outlook folder and the Google contact group the demo syncs
DEMO_EMAIL = "dana@acme.example"
MY_CONTACTS = "contactGroups/myContacts"


@dataclass
class DemoUser:
    company_id: int
    user_id: int
    other_user_id: int
    graph_user_id: str
    folder_id: str
    google_group_id: str
    carddav_book: str  # the URL of the CardDAV address book the demo syncs
    email: str
    token: str
    admin_token: str


@dataclass
class DemoData:
    """What was seeded, so the summary can say how each special case was handled."""

    crm_persons: int
    outlook_contacts: int
    google_contacts: int
    carddav_contacts: int
    same_email: list[str]
    reformatted_phone: str
    ambiguous_email: str
    not_owned_email: str


def seed(
    stack: LocalStack, *, persons: int = 300, contacts: int = 300
) -> tuple[DemoUser, DemoData]:
    pd = stack.pipedrive.sandbox
    company = pd.add_company("Acme Demo", contact_sync=True)  # job titles, birthdays, notes
    user = pd.add_user(company, "Dana Demo", DEMO_EMAIL)
    other = pd.add_user(company, "Olli Other", "olli@acme.example")
    admin = pd.add_user(company, "Ada Admin", "ada@acme.example", is_admin=True)
    pd.login_as(user)
    gs = stack.graph.sandbox
    graph_user = gs.add_user(DEMO_EMAIL, "Dana Demo")
    folder = gs.add_folder(graph_user, FOLDER_NAME)

    google = stack.google.sandbox
    google.add_user(DEMO_EMAIL, "Dana Demo")
    google.signed_in = DEMO_EMAIL  # scripts sign in without the consent form; a browser
    gs.signed_in = DEMO_EMAIL  # test clears these to go through it like a person
    group = google.add_group(DEMO_EMAIL, FOLDER_NAME)

    pd.seed_persons(user, persons, seed=1)
    gs.seed_contacts(graph_user, folder, contacts, seed=2)
    for name in google.seed_contacts(DEMO_EMAIL, contacts, seed=3):
        google.set_groups(DEMO_EMAIL, name, [MY_CONTACTS, group])
    book = stack.carddav.make_address_book(CARDDAV_USER, FOLDER_NAME, "crm-contacts")
    for i in range(contacts):
        _card(stack, book, f"seed-{i}", ("Card", f"Person{i}"), f"card.{i}@cards.example", phone="")
    where = Where(graph_user, folder, group, book)

    # People who exist on both sides: they must be linked, not duplicated.
    same_email = [f"shared.{i}@partner.example" for i in range(20)]
    for i, email in enumerate(same_email):
        _crm_person(stack, user, f"Shared Person{i}", email, f"+1 415 555 01{i:02d}")
        _provider_contacts(stack, where, ("Shared", f"Person{i}"), email, "")
    # The same phone written two ways: normalised equal, so nothing echoes back and forth.
    reformatted = "(415) 555-0199"
    _crm_person(stack, user, "Phone Format", "phone.format@partner.example", "+14155550199")
    _provider_contacts(
        stack, where, ("Phone", "Format"), "phone.format@partner.example", reformatted
    )
    # Two CRM persons with one email and one Outlook contact with it: ambiguous, left for review.
    ambiguous = "twice@partner.example"
    _crm_person(stack, user, "Twin One", ambiguous, "")
    _crm_person(stack, user, "Twin Two", ambiguous, "")
    _provider_contacts(stack, where, ("Twin", "Contact"), ambiguous, "")
    # Someone else's person: not synced, whatever happens.
    not_owned = "not.mine@partner.example"
    _crm_person(stack, other, "Not Mine", not_owned, "")

    demo = DemoUser(
        company_id=company,
        user_id=user,
        other_user_id=other,
        graph_user_id=graph_user,
        folder_id=folder,
        google_group_id=group,
        carddav_book=book,
        email=DEMO_EMAIL,
        token=stack.token(user, company),
        admin_token=stack.token(admin, company, role="admin"),
    )
    data = DemoData(
        crm_persons=persons + len(same_email) + 3,
        outlook_contacts=contacts + len(same_email) + 2,
        google_contacts=contacts + len(same_email) + 2,
        carddav_contacts=contacts + len(same_email) + 2,
        same_email=same_email,
        reformatted_phone=reformatted,
        ambiguous_email=ambiguous,
        not_owned_email=not_owned,
    )
    return demo, data


def _crm_person(stack: LocalStack, owner: int, name: str, email: str, phone: str) -> int:
    pd = stack.pipedrive.sandbox
    body: dict[str, Any] = {
        "name": name,
        "owner_id": owner,
        "emails": [{"value": email, "label": "work", "primary": True}],
    }
    if phone:
        body["phones"] = [{"value": phone, "label": "work", "primary": True}]
    return pd.create_person(pd.users[owner], body, source="app").id


@dataclass(frozen=True)
class Where:
    """Where the demo user keeps contacts: an Outlook folder, a Google contact group and a
    CardDAV address book."""

    graph_user: str
    folder: str
    google_group: str
    carddav_book: str


def _provider_contacts(
    stack: LocalStack, where: Where, name: tuple[str, str], email: str, phone: str
) -> None:
    """The same person in the Outlook folder, in the Google group and in the address book."""
    given, family = name
    body: dict[str, Any] = {
        "givenName": given,
        "surname": family,
        "emailAddresses": [{"name": f"{given} {family}", "address": email}],
    }
    if phone:
        body["businessPhones"] = [phone]
    stack.graph.sandbox.create_contact(where.graph_user, where.folder, body)
    person: dict[str, Any] = {
        "names": [{"givenName": given, "familyName": family}],
        "emailAddresses": [{"value": email, "type": "work"}],
    }
    if phone:
        person["phoneNumbers"] = [{"value": phone, "type": "work"}]
    stack.google.sandbox.add_contact(DEMO_EMAIL, person, groups=(MY_CONTACTS, where.google_group))
    _card(stack, where.carddav_book, email.replace("@", "-at-"), name, email, phone=phone)


def _card(
    stack: LocalStack, book: str, slug: str, name: tuple[str, str], email: str, *, phone: str
) -> None:
    """A contact in the CardDAV address book, stored as an iPhone or Thunderbird would."""
    given, family = name
    lines = [
        "BEGIN:VCARD",
        "VERSION:3.0",
        f"UID:{slug}",
        f"N:{family};{given};;;",
        f"FN:{given} {family}",
        f"EMAIL;TYPE=INTERNET,WORK:{email}",
    ]
    if phone:
        lines.append(f"TEL;TYPE=WORK:{phone}")
    stack.carddav.put_card(
        book, f"{slug}.vcf", "\r\n".join([*lines, "END:VCARD", ""]), CARDDAV_USER
    )


class Api:
    """The admin API as the CRM's settings page calls it."""

    def __init__(self, stack: LocalStack, token: str) -> None:
        self.stack = stack
        self.http = httpx.Client(
            base_url=stack.api_url, headers={"authorization": f"Bearer {token}"}, timeout=30
        )

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path} -> {response.status_code}: {response.text}")
        return response.json()

    def _consent(self, authorization_url: str, *, verify: Any = True) -> str:
        """Follow the provider's consent page to our callback; return the callback's answer."""
        response = httpx.get(authorization_url, follow_redirects=False, verify=verify, timeout=30)
        if response.status_code not in (302, 303):
            raise RuntimeError(f"consent failed: {response.status_code} {response.text}")
        # The callback is finished by the user who started the sign-in, with their token (a
        # browser lands on the settings UI's page that does the same).
        callback = self.http.post(response.headers["location"])
        if callback.status_code != 200:
            raise RuntimeError(f"callback failed: {callback.status_code} {callback.text}")
        return callback.text

    def connect_crm(self) -> None:
        url = self.call("POST", "/crm/connect")["authorization_url"]
        self._consent(url)

    def connect_microsoft(self) -> str:
        created = self.call("POST", "/connections", json={"provider": "microsoft"})
        self._consent(created["authorization_url"], verify=self.stack.graph.ca_file)
        return str(created["connection"]["id"])

    def connect_google(self) -> str:
        created = self.call("POST", "/connections", json={"provider": "google"})
        self._consent(created["authorization_url"])
        return str(created["connection"]["id"])

    def connect_carddav(self) -> str:
        """Connect the local CardDAV server as a user would iCloud: server, username and an
        app-specific password; its one address book is chosen by itself."""
        body = {
            "provider": "carddav",
            "server_url": self.stack.carddav.url,
            "username": CARDDAV_USER,
            "password": self.stack.carddav.users[CARDDAV_USER],
        }
        created = self.call("POST", "/connections", json=body)
        return str(created["connection"]["id"])

    def choose_folder(self, connection_id: str, name: str, direction: str = "two_way") -> None:
        groups = self.call("GET", f"/connections/{connection_id}/groups")["groups"]
        folder = next(g for g in groups if g["name"] == name)
        self.call(
            "PATCH",
            f"/connections/{connection_id}",
            json={"folder_id": folder["id"], "direction": direction},
        )

    def start(self, connection_id: str) -> dict[str, Any]:
        return dict(self.call("POST", f"/connections/{connection_id}/start"))

    def stop(self, connection_id: str) -> dict[str, Any]:
        return dict(self.call("POST", f"/connections/{connection_id}/stop"))

    def connection(self, connection_id: str) -> dict[str, Any]:
        return dict(self.call("GET", f"/connections/{connection_id}"))

    def wait_until_active(
        self, connection_id: str, *, timeout: float = 120, on_progress: Any = None
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            view = self.connection(connection_id)
            if on_progress is not None:
                on_progress(view)
            if view["state"] == "active" and view.get("last_success_at"):
                return view
            if view["state"] in ("needs_attention", "needs_reauth", "stopped"):
                return view
            time.sleep(0.3)
        raise TimeoutError(f"connection {connection_id} did not finish its first sync")
