"""The local stack's sign-in page: pick any seeded CRM user or company admin, get the settings page.

In production the CRM's own front end signs people in and hands the settings page their bearer
token; locally this page stands in for it, minting tokens with the local issuer. It is part of the
local gateway only (``/_local/...``), never of ``template.yaml``.
"""

from __future__ import annotations

import html
from urllib.parse import parse_qsl, quote

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from local.issuer import LocalIssuer
from sandbox.pipedrive.state import PipedriveSandbox

SIGN_IN_PATH = "/_local/sign-in"


def sign_in_routes(issuer: LocalIssuer, crm: PipedriveSandbox) -> list[Route]:
    def signed_in(user_id: int) -> Response:
        user = crm.users.get(user_id)
        if user is None:
            return HTMLResponse(_page(crm, f"No seeded user {user_id}."), status_code=404)
        role = "admin" if user.is_admin else "user"
        token = issuer.token(user_id=str(user.id), company_id=str(user.company_id), role=role)
        # The token travels in the fragment: never sent to a server, read once by the page.
        return RedirectResponse(f"/settings#token={quote(token)}", status_code=303)

    async def show(request: Request) -> Response:
        chosen = request.query_params.get("user", "")
        if chosen:
            return signed_in(int(chosen)) if chosen.isdigit() else HTMLResponse("", 400)
        return HTMLResponse(_page(crm, ""))

    async def choose(request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode(errors="replace")))
        chosen = form.get("user", "")
        if not chosen.isdigit():
            return HTMLResponse(_page(crm, "Choose a user."), status_code=400)
        return signed_in(int(chosen))

    return [
        Route(SIGN_IN_PATH, show, methods=["GET"]),
        Route(SIGN_IN_PATH, choose, methods=["POST"]),
    ]


def _page(crm: PipedriveSandbox, problem: str) -> str:
    rows = []
    for user in sorted(crm.users.values(), key=lambda u: (u.company_id, u.id)):
        company = crm.companies[user.company_id].name
        role = "company admin" if user.is_admin else "user"
        label = f"{user.name} <{user.email}> — {role} of {company} (user {user.id})"
        rows.append(
            f'<li><label><input type="radio" name="user" value="{user.id}" required> '
            f"{html.escape(label)}</label></li>"
        )
    note = f'<p role="alert">{html.escape(problem)}</p>' if problem else ""
    users = "".join(rows) or "<li>No user is seeded yet.</li>"
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>Local sign-in · Contact sync</title>"
        '<link rel="stylesheet" href="/assets/settings.css"></head><body><main class="narrow">'
        "<h1>Local sign-in</h1><p>The local stack stands in for the CRM's own sign-in: choose "
        "who you are.</p>"
        f'{note}<form method="post" action="{SIGN_IN_PATH}"><fieldset><legend>Seeded CRM users'
        f'</legend><ul class="plain">{users}</ul></fieldset>'
        '<button type="submit">Sign in and open Contact sync</button></form></main></body></html>'
    )
