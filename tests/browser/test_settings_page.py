"""The settings page and the status page in a real browser (Chromium) on the local stack.

One stack and one browser for the module; the tests run in file order and build on each other:
Dana signs in on the local sign-in page, connects the CRM and Microsoft 365 by clicking through
the real OAuth redirects, chooses her folder, previews and starts the sync; then the article's
three paths (a missing contact, contacts that stopped updating, duplicates), a held mass delete
and a degraded provider on the status page. Each test leaves a screenshot in
``.local/screenshots/``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from contactsync.store.mappings import count_mappings, mapping_by_crm_id, mapping_by_provider_id
from contactsync.store.pass_outcomes import record_pass_outcome
from playwright.sync_api import Browser, Page, expect, sync_playwright

from local.demo import FOLDER_NAME, DemoData, DemoUser, seed
from local.sign_in import SIGN_IN_PATH
from local.stack import LocalStack, describe, start_stack

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / ".local" / "screenshots"
WAIT_MS = 60_000
expect.set_options(timeout=30_000)  # the CPU is shared: a preview may take more than 5 s


def eventually(check: Callable[[], Any], *, timeout: float = 60.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what or check}: last {last!r}")


def quiet(stack: LocalStack, *, still_for: float = 2.0) -> None:
    count, since = stack.poller.invocations, time.monotonic()
    while time.monotonic() - since < still_for:
        time.sleep(0.2)
        if stack.poller.invocations != count:
            count, since = stack.poller.invocations, time.monotonic()


def crm_owned(stack: LocalStack, demo: DemoUser) -> list[Any]:
    persons = stack.pipedrive.sandbox.persons.values()
    return [p for p in persons if p.owner_id == demo.user_id and not p.deleted]


def crm_count(stack: LocalStack, demo: DemoUser, email: str) -> int:
    return sum(1 for p in crm_owned(stack, demo) if email in str(p.emails))


def outlook(stack: LocalStack, demo: DemoUser) -> list[Any]:
    return stack.graph.sandbox.folder_contacts(demo.graph_user_id, demo.folder_id)


def outlook_count(stack: LocalStack, demo: DemoUser, email: str) -> int:
    return sum(1 for c in outlook(stack, demo) if email in str(c.props))


def shot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    running = start_stack(workdir=tmp_path_factory.mktemp("browser"), schedule_every=3600)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail("Chromium is missing: `make test` installs it (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield launched
        finally:
            launched.close()


Setup = tuple[DemoUser, DemoData, Page, str]


@pytest.fixture(scope="module")
def dana(stack: LocalStack, browser: Browser) -> Iterator[Setup]:
    """Dana in the browser, with the CRM and Microsoft 365 connected through the page and the
    first sync done."""
    demo, data = seed(stack, persons=20, contacts=20)
    # Nobody named on the identity sandboxes: their authorize pages ask, as they would a person
    stack.graph.sandbox.signed_in = stack.google.sandbox.signed_in = None
    # The identity sandbox's certificate comes from the stack's throwaway CA.
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1100, "height": 900})
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    # Given Dana signs in on the local sign-in page
    page.goto(f"{stack.api_url}{SIGN_IN_PATH}")
    page.get_by_label(re.compile(r"Dana Demo")).check()
    page.get_by_role("button", name="Sign in and open Contact sync").click()
    expect(page.get_by_role("heading", name="Contact sync", exact=True)).to_be_visible()
    expect(page.locator("#who")).to_contain_text(f"user {demo.user_id}")
    # When she connects the CRM, then adds her Microsoft 365 account
    page.get_by_role("button", name="Connect the CRM").click()
    expect(page.locator("#finish")).to_contain_text("The CRM is connected")
    page.get_by_role("link", name="Back to Contact sync settings").click()
    page.get_by_role("button", name="Add Microsoft 365 account").click()
    consent(page, demo.email, "01-microsoft-consent")
    # Then the page she lands on names the account about to be synced, before any sync
    expect(page.locator("#finish")).to_contain_text(f"Signed in to Microsoft 365 as {demo.email}")
    expect(page.locator("#finish")).to_contain_text("Nothing syncs yet")
    shot(page, "01-signed-in-microsoft-landing")
    page.get_by_role("link", name=re.compile("Continue with the Microsoft 365 account")).click()
    card = page.locator("article.card").first
    expect(card.get_by_role("heading")).to_have_text(f"Microsoft 365 — {demo.email}")
    connection_id = str(card.get_attribute("id")).removeprefix("connection-")
    # When she makes a new folder for the sync from the page, Then Outlook has it
    card.get_by_label("Or a new folder for the sync").fill("Made on the page")
    card.get_by_role("button", name="Create folder").click()
    expect(page.locator("#notice")).to_contain_text("Created “Made on the page”")
    expect(card.get_by_label("Folder to sync")).to_have_value(
        next(
            f.id
            for f in stack.graph.sandbox.folders.values()
            if f.display_name == "Made on the page"
        )
    )
    # When she picks her folder and persons visible to herself only, and saves
    card.get_by_label("Folder to sync").select_option(label=FOLDER_NAME)
    card.get_by_label("Who sees persons the sync creates in the CRM").select_option("owner")
    card.get_by_role("button", name="Save settings").click()
    expect(page.locator("#notice")).to_have_text("Settings saved.")
    # And previews the first sync: people on both sides would be linked, nothing written yet
    card.get_by_role("button", name="Preview").click()
    expect(card.locator(".preview")).to_contain_text("Linked (already on both sides)")
    assert count_mappings(connection_id) == 0
    shot(page, "02-preview")
    # When she starts it without the CRM permission to add people (the CRM's permissions answer
    # does not say so: the first person the sync creates is refused), Then the card says so
    crm_user = stack.pipedrive.sandbox.users[demo.user_id]
    crm_user.permissions["can_add_people"] = False
    card.get_by_role("button", name="Start sync").click()
    expect(card).to_contain_text("you need the CRM permission to add people", timeout=60_000)
    # And once an admin grants it, the sync goes on by itself (the failed pass is retried)
    crm_user.permissions["can_add_people"] = True
    expect(card).not_to_contain_text("you need the CRM permission", timeout=180_000)
    expect(card.locator(".state")).to_have_text("Syncing", timeout=120_000)
    quiet(stack)
    shot(page, "03-syncing")
    yield demo, data, page, connection_id
    context.close()


def consent(page: Page, email: str, screenshot: str) -> None:
    """On the identity provider's sign-in page: choose the account and allow."""
    expect(page.get_by_role("heading", name="Sign in to Microsoft")).to_be_visible()
    page.get_by_label(re.compile(re.escape(email))).check()
    shot(page, screenshot)
    page.get_by_role("button", name="Allow").click()


def troubleshoot(page: Page) -> None:
    page.locator("article.card").first.get_by_role("button", name="Troubleshoot").click()
    expect(page.locator("#troubleshoot")).to_be_visible()


def test_persons_the_page_set_up_are_created_visible_to_their_owner(stack, dana) -> None:
    demo, _, _, _ = dana
    created = [p for p in crm_owned(stack, demo) if any(p.custom_fields.values())]
    assert len(created) >= 20
    assert {p.visible_to for p in created} == {1}


def test_a_missing_contact_is_explained_and_appears_once_its_owner_is_fixed(stack, dana) -> None:
    demo, data, page, _ = dana
    email = data.not_owned_email
    assert outlook_count(stack, demo, email) == 0
    # When Dana looks the missing contact up on the page and asks why
    troubleshoot(page)
    page.get_by_label("Name or email").fill(email)
    page.get_by_role("button", name="Find").click()
    results = page.locator("#find-results")
    expect(results).to_contain_text("owned by another user")
    results.get_by_role("button", name="Explain Not Mine").click()
    # Then the page says it is not hers, so it does not sync
    explain = page.locator("#explain")
    expect(explain).to_contain_text("Not Mine: not syncing")
    expect(explain).to_contain_text("owned by another user")
    expect(explain).not_to_contain_text("null")
    shot(page, "04-missing-contact-explained")
    # When its owner is changed to Dana in the CRM
    pd = stack.pipedrive.sandbox
    person = next(p for p in pd.persons.values() if email in str(p.emails))
    admin = next(u for u in pd.users.values() if u.is_admin and u.company_id == demo.company_id)
    pd.update_person(admin, person.id, {"owner_id": demo.user_id}, source="app")
    # Then it appears in her Outlook folder, once, and the page says it syncs
    eventually(lambda: outlook_count(stack, demo, email) == 1, what="the person in Outlook")
    results.get_by_role("button", name="Explain Not Mine").click()
    expect(explain).to_contain_text("Not Mine: syncing")
    expect(explain).to_contain_text("linked to")
    shot(page, "05-missing-contact-syncing")


def test_duplicates_are_merged_from_the_page(stack, dana) -> None:
    demo, data, page, connection_id = dana
    twin = data.ambiguous_email
    assert crm_count(stack, demo, twin) == 2
    # When Dana looks for duplicates and merges the two persons with one email
    troubleshoot(page)
    page.get_by_role("button", name="Look for duplicates").click()
    cluster = page.locator(".cluster").filter(has_text="Twin One")
    expect(cluster).to_contain_text(f"email:{twin}")
    shot(page, "06-duplicates")
    cluster.get_by_role("button", name=re.compile("^Merge into")).click()
    expect(page.locator("#notice")).to_contain_text("Merged into")
    # Then one person is left in the CRM and one contact in Outlook, linked to each other
    assert crm_count(stack, demo, twin) == 1
    kept = next(p for p in crm_owned(stack, demo) if twin in str(p.emails))
    eventually(lambda: mapping_by_crm_id(connection_id, str(kept.id)), what="the twin linked")
    quiet(stack)
    assert outlook_count(stack, demo, twin) == 1
    assert crm_count(stack, demo, twin) == 1


def test_activity_shows_before_and_after_and_undoes_from_the_page(stack, dana) -> None:
    demo, data, page, _ = dana
    email = data.same_email[10]

    def crm_title() -> str:
        person = next(p for p in crm_owned(stack, demo) if email in str(p.emails))
        return str(person.job_title or "")

    old_title = crm_title()
    # Given a job title edited in Outlook reached the CRM
    contact = next(c for c in outlook(stack, demo) if email in str(c.props))
    stack.graph.sandbox.update_contact(demo.graph_user_id, contact.id, {"jobTitle": "Undo Me"})
    eventually(lambda: crm_title() == "Undo Me", what="the title in the CRM")
    quiet(stack)
    # When Dana opens the activity, Then the write shows its before and after
    troubleshoot(page)
    page.get_by_role("button", name="Show recent activity").click()
    row = page.locator("#activity tr").filter(has_text="job_title: Undo Me").first
    expect(row.get_by_role("button", name=re.compile("^Undo"))).to_be_visible()
    shot(page, "07-activity")
    # When she undoes it, Then the CRM has its old title back, and Outlook follows
    row.get_by_role("button", name=re.compile("^Undo")).click()
    expect(page.locator("#notice")).to_contain_text("Undone")
    assert crm_title() == old_title
    eventually(
        lambda: (
            str(
                next(c for c in outlook(stack, demo) if email in str(c.props)).props.get("jobTitle")
                or ""
            )
            == old_title
        ),
        what="Outlook to follow the undo",
    )


def test_a_held_mass_delete_is_shown_and_confirmed_from_the_page(stack, dana) -> None:
    demo, _, page, connection_id = dana
    quiet(stack)
    # Given 25 linked Outlook contacts deleted at once (> 10 % and > 20 of the links)
    linked = [
        c
        for c in outlook(stack, demo)
        if "partner.example" not in str(c.props) and mapping_by_provider_id(connection_id, c.id)
    ][:25]
    assert len(linked) == 25
    for contact in linked:
        stack.graph.sandbox.delete_contact(demo.graph_user_id, contact.id)
    crm_before = len(crm_owned(stack, demo))
    # Then the page shows the held pass, what it would delete, and that nothing was written
    card = page.locator("article.card").first
    banner = card.locator(".banner.warn")
    expect(banner).to_contain_text("A sync pass is on hold", timeout=WAIT_MS)
    expect(banner).to_contain_text("It would delete 25")
    # And who: every contact it would delete in the CRM, by name
    listed = banner.locator("ul.held-changes li")
    expect(listed).to_have_count(25)
    expect(listed.first).to_contain_text("Delete in the CRM: ")
    expect(card.locator(".state")).to_have_text("Waiting for your decision")
    assert len(crm_owned(stack, demo)) == crm_before
    shot(page, "08-mass-delete-held")
    # When Dana confirms it on the page
    banner.get_by_role("button", name="Confirm: apply these changes").click()
    # Then the deletes go through and the sync is active again
    eventually(lambda: len(crm_owned(stack, demo)) <= crm_before - 25, what="the deletes")
    expect(card.locator(".state")).to_have_text("Syncing")


def test_contacts_that_stopped_updating_heal_by_signing_in_again(stack, dana) -> None:
    demo, data, page, _ = dana
    graph = stack.graph.sandbox
    quiet(stack)
    # Given Dana's Microsoft sign-in stops working, and an Outlook edit waits to be synced
    graph.revoke_refresh_tokens(demo.graph_user_id)
    graph.expire_access_tokens(demo.graph_user_id)
    email = data.same_email[12]
    contact = next(c for c in outlook(stack, demo) if email in str(c.props))
    graph.update_contact(demo.graph_user_id, contact.id, {"jobTitle": "Edited While Broken"})
    # Then the page shows a banner that says to sign in again
    card = page.locator("article.card").first
    banner = card.locator(".banner.bad")
    expect(banner).to_contain_text("The sign-in to Microsoft 365 has expired", timeout=WAIT_MS)
    expect(card.locator(".state")).to_have_text("Needs you to sign in again")
    shot(page, "09-needs-reauth")
    persons_before, contacts_before = len(crm_owned(stack, demo)), len(outlook(stack, demo))
    # When she signs in again from the banner, in the browser
    banner.get_by_role("button", name="Sign in again").click()
    consent(page, demo.email, "09-microsoft-consent-again")
    expect(page.locator("#finish")).to_contain_text(f"Signed in to Microsoft 365 as {demo.email}")
    page.get_by_role("link", name=re.compile("Continue with the Microsoft 365 account")).click()
    # Then the sync is active again, the edit arrives, and nothing is duplicated
    card = page.locator("article.card").first
    expect(card.locator(".state")).to_have_text("Syncing")

    def edited() -> bool:
        persons = stack.pipedrive.sandbox.persons.values()
        return any(p.job_title == "Edited While Broken" for p in persons if email in str(p.emails))

    eventually(edited, what="the edit made while the sign-in was broken")
    quiet(stack)
    assert (len(crm_owned(stack, demo)), len(outlook(stack, demo))) == (
        persons_before,
        contacts_before,
    )
    for shared in data.same_email:
        assert crm_count(stack, demo, shared) == 1, shared
        assert outlook_count(stack, demo, shared) == 1, shared
    shot(page, "10-healed")


def test_a_google_account_is_added_through_googles_consent_form(stack, dana) -> None:
    demo, _, page, _ = dana
    page.goto(f"{stack.api_url}/settings")
    # When Dana adds a Google account and Google asks which account and whether to allow
    page.get_by_role("button", name="Add Google account").click()
    expect(page.get_by_role("heading", name="Sign in to Google")).to_be_visible()
    page.get_by_label(re.compile(re.escape(demo.email))).check()
    page.get_by_role("button", name="Allow").click()
    # Then the landing page names the account before anything syncs, and the page lists it
    expect(page.locator("#finish")).to_contain_text(f"Signed in to Google as {demo.email}")
    page.get_by_role("link", name=re.compile("Continue with the Google account")).click()
    card = page.locator("article.card").filter(has_text="Google —")
    expect(card.locator(".state")).to_have_text("Not started")
    expect(card.get_by_label("Contact group to sync")).to_contain_text(FOLDER_NAME)


def test_a_company_admin_sees_the_companys_connections(stack, dana, browser) -> None:
    demo, _, _, connection_id = dana
    context = browser.new_context(viewport={"width": 390, "height": 844})  # on a phone
    page = context.new_page()
    # When the company admin signs in on the local sign-in page
    page.goto(f"{stack.api_url}{SIGN_IN_PATH}")
    page.get_by_label(re.compile(r"Ada Admin")).check()
    page.get_by_role("button", name="Sign in and open Contact sync").click()
    # Then the page says so and lists Dana's connection, naming whose it is
    expect(page.locator("#who")).to_contain_text("company admin")
    card = page.locator(f"#connection-{connection_id}")
    expect(card.get_by_role("heading")).to_contain_text(f"{demo.email} (user {demo.user_id})")
    expect(card.get_by_label("Folder to sync")).to_have_value(demo.folder_id)
    # And every form control on the page has a label a screen reader reads out
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('select, input:not([type=hidden])')]
              .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
              .map(e => e.id || e.name)"""
    )
    assert unlabelled == []
    shot(page, "11-admin-on-a-phone")
    context.close()


def test_stack_json_opens_the_settings_page_signed_in_and_names_the_ca(
    stack, dana, browser
) -> None:
    demo = dana[0]
    described = describe(stack, {}, demo_user_id=demo.user_id)
    assert Path(described["sandboxes"]["microsoft_identity_ca_file"]).is_file()
    context = browser.new_context()
    page = context.new_page()
    # When someone opens settings_page from .local/stack.json, Then they are Dana on the page
    page.goto(described["settings_page"])
    expect(page.locator("#who")).to_contain_text(f"user {demo.user_id} of company")
    expect(page.get_by_role("heading", name=f"Microsoft 365 — {demo.email}")).to_be_visible()
    # And the token left the address bar
    assert "token" not in page.url
    context.close()


def test_the_status_page_shows_a_degraded_provider(stack, dana, browser) -> None:
    # Given Google passes that mostly failed in the last minutes
    now = datetime.now(UTC)
    for ok in (True, True, False, False, False):
        record_pass_outcome("google", ok, None if ok else "RateLimited", now)
    # When anyone opens the public status page, signed in or not
    context = browser.new_context(viewport={"width": 390, "height": 844})  # a phone
    page = context.new_page()
    page.goto(describe(stack, {})["status_page"])
    # Then Google is degraded and the others work, with no tenant data on the page
    expect(page.locator("#summary")).to_contain_text("Some contact syncs are slower or failing")
    expect(page.locator('li[data-provider="google"]')).to_contain_text("Degraded")
    expect(page.locator('li[data-provider="microsoft"]')).to_contain_text("Working")
    expect(page.locator('li[data-provider="pipedrive"]')).to_contain_text("Working")
    assert dana[0].email not in page.content()
    shot(page, "12-status-page-degraded")
    context.close()
