"""The sign-in and consent form the sandboxes' authorize endpoints show a person.

Real identity providers ask who is signing in and whether to grant the app's request; so do the
sandboxes, unless ``login_hint`` (or the sandbox's control API) names the account, which keeps
scripts and the official SDKs working without a browser. The form posts back to the authorize
endpoint with the original request's parameters, the chosen account and the decision.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import HTMLResponse

FORM_FIELDS = ("account", "decision")


async def authorize_request(request: Request) -> tuple[dict[str, str], str | None, str | None]:
    """The authorize request's parameters, and for a posted form the chosen account and the
    decision ("approve" or anything else)."""
    if request.method != "POST":
        return dict(request.query_params), None, None
    form = dict(parse_qsl((await request.body()).decode(errors="replace")))
    account, decision = form.pop("account", ""), form.pop("decision", "")
    return form, account, decision


def consent_page(
    provider: str, app_name: str, accounts: Sequence[tuple[str, str]], query: dict[str, str]
) -> HTMLResponse:
    """Choose an account, then approve or deny ``app_name``'s request (a POST to the same URL)."""
    hidden = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in query.items()
        if k not in FORM_FIELDS
    )
    choices = "".join(
        f'<li><label><input type="radio" name="account" value="{html.escape(value)}"'
        f"{' checked' if i == 0 else ''}> {html.escape(label)}</label></li>"
        for i, (value, label) in enumerate(accounts)
    )
    scope = html.escape(query.get("scope", ""))
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Sign in · {html.escape(provider)} (sandbox)</title></head><body><main>"
        f"<h1>Sign in to {html.escape(provider)}</h1>"
        f'<form method="post">{hidden}<fieldset><legend>Choose an account</legend>'
        f'<ul style="list-style:none;padding:0">{choices or "<li>No account exists.</li>"}</ul>'
        f"</fieldset><p>{html.escape(app_name)} wants to read and write your contacts "
        f"(<code>{scope}</code>).</p>"
        '<button type="submit" name="decision" value="approve">Allow</button> '
        '<button type="submit" name="decision" value="deny">Deny</button>'
        "</form></main></body></html>"
    )
    return HTMLResponse(body, headers={"Cache-Control": "no-store"})
