"""Google's OAuth 2.0 endpoints, just enough for a web-server app: authorize and token.

``/o/oauth2/v2/auth`` shows a sign-in and consent form (choose the account; allow or deny) unless
``login_hint`` or the control API's ``signed_in`` names the account: then it consents at once.
Either way it redirects back with ``code`` and ``state`` (or ``error=access_denied``). ``/token``
redeems a code (PKCE checked when a challenge was sent) or a refresh token, answering in Google's
shape. No id_token is issued: an unsigned one would teach clients bad habits and we do not need
one.
"""

from __future__ import annotations

import base64
import binascii
import html
import secrets
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from sandbox.consent import authorize_request, consent_page
from sandbox.google.state import GoogleSandbox, OAuthError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def error_page(error: str, description: str) -> HTMLResponse:
    """What Google shows in the browser when it will not redirect back (400, no redirect)."""
    text = html.escape(f"Error 400: {error}. {description}")
    return HTMLResponse(f"<!doctype html><title>Error</title><p>{text}</p>", status_code=400)


def oauth_error(err: OAuthError) -> JSONResponse:
    return JSONResponse(
        {"error": err.error, "error_description": err.description}, status_code=err.status
    )


def oauth_routes(sb: GoogleSandbox) -> list[Route]:
    def redirect_ok(uri: str) -> bool:
        parts = urlsplit(uri)
        loopback = parts.scheme in ("http", "https") and parts.hostname in LOOPBACK
        return loopback or uri in sb.redirect_uris

    async def authorize(request: Request) -> Response:
        sb.count("oauth.authorize")
        q, account, decision = await authorize_request(request)
        if q.get("client_id") != sb.client_id:
            return error_page("invalid_client", "The OAuth client was not found.")
        redirect = q.get("redirect_uri", "")
        if not redirect_ok(redirect):
            return error_page("redirect_uri_mismatch", "The redirect URI is not registered.")
        if q.get("response_type") != "code":
            return error_page("unsupported_response_type", "Only response_type=code is served.")
        if not q.get("scope"):
            return error_page("invalid_request", "Missing required parameter: scope")
        if q.get("code_challenge_method", "S256") not in ("S256", "plain"):
            return error_page("invalid_request", "Invalid code_challenge_method.")
        email = account if decision is not None else q.get("login_hint") or sb.signed_in
        if not email:  # nobody named: a person chooses the account and consents
            accounts = [(u["email"], f"{u['name']} <{u['email']}>") for u in sb.users()]
            return consent_page("Google", "contactsync", accounts, q)
        known = {u["email"].lower() for u in sb.users()}
        if decision is not None and decision != "approve":
            params = {"error": "access_denied"}
        elif email.lower() in known:
            params = {"code": sb.issue_code(email, q), "scope": q["scope"]}
        else:
            params = {"error": "access_denied"}
        if "state" in q:
            params["state"] = q["state"]
        sep = "&" if "?" in redirect else "?"
        return RedirectResponse(f"{redirect}{sep}{urlencode(params)}", status_code=302)

    def client_of(form: dict[str, str], request: Request) -> str:
        """The authenticated client id (form fields or HTTP Basic), or invalid_client."""
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        basic = request.headers.get("authorization", "")
        if basic.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(basic[6:], validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                decoded = ""
            client_id, _, secret = decoded.partition(":")
        if client_id != sb.client_id:
            raise OAuthError("invalid_client", "The OAuth client was not found.", 401)
        if not secrets.compare_digest(secret.encode(), sb.client_secret.encode()):
            raise OAuthError("invalid_client", "Unauthorized", 401)
        return client_id

    async def token(request: Request) -> Response:
        sb.count("oauth.token")
        form = dict(parse_qsl((await request.body()).decode(errors="replace")))
        try:
            client_id = client_of(form, request)
            grant_type = form.get("grant_type", "")
            if grant_type == "authorization_code":
                body = sb.redeem_code(
                    form.get("code", ""),
                    client_id,
                    form.get("redirect_uri", ""),
                    form.get("code_verifier", ""),
                )
            elif grant_type == "refresh_token":
                body = sb.redeem_refresh(form.get("refresh_token", ""), client_id)
            else:
                raise OAuthError("unsupported_grant_type", f"Invalid grant_type: {grant_type}")
        except OAuthError as err:
            return oauth_error(err)
        return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    async def revoke(request: Request) -> Response:
        sb.count("oauth.revoke")
        form = dict(parse_qsl((await request.body()).decode(errors="replace")))
        token = form.get("token") or request.query_params.get("token", "")
        try:
            sb.revoke_token(token)
        except OAuthError as err:
            return oauth_error(err)
        return JSONResponse({})

    return [
        Route("/o/oauth2/v2/auth", authorize, methods=["GET", "POST"]),
        Route("/token", token, methods=["POST"]),
        Route("/revoke", revoke, methods=["POST"]),
    ]
