"""The identity listener: just enough of the Microsoft identity platform (v2.0) for MSAL.

Served over TLS (MSAL refuses non-https authorities). ``/{tenant}/oauth2/v2.0/authorize`` shows a
sign-in and consent form (choose the account; allow or deny) unless ``login_hint`` or the control
API's ``signed_in`` names the account: then it approves at once. Either way it redirects back with
``code`` and ``state`` (or ``error=access_denied``). The token endpoint checks the client secret
and the PKCE verifier, and answers like Entra ID (token_type, scope, expires_in, access/refresh/id
tokens and ``client_info``, which MSAL uses to build the account's home id).
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from sandbox.consent import authorize_request, consent_page
from sandbox.graph.state import GraphError, GraphSandbox, User

RESERVED_SCOPES = {"openid", "profile", "offline_access", "email"}
KEY_ID = "sandbox-key-1"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def oauth_error(error: str, description: str, status: int = 400) -> JSONResponse:
    body = {
        "error": error,
        "error_description": description,
        "error_codes": [int(description[6:11])] if description.startswith("AADSTS") else [],
        "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
        "trace_id": secrets.token_hex(16),
        "correlation_id": secrets.token_hex(16),
    }
    return JSONResponse(body, status_code=status)


def loopback(uri: str) -> bool:
    """The sandbox accepts any loopback redirect URI (a real app registers its own)."""
    return urlsplit(uri).hostname in ("127.0.0.1", "localhost")


def identity_app(sb: GraphSandbox) -> Starlette:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_numbers()

    def issuer(request: Request) -> str:
        return f"{str(request.base_url).rstrip('/')}/{sb.tenant_id}/v2.0"

    async def openid_configuration(request: Request) -> Response:
        tenant = request.path_params["tenant"]
        root = str(request.base_url).rstrip("/")
        return JSONResponse(
            {
                "issuer": issuer(request),
                "authorization_endpoint": f"{root}/{tenant}/oauth2/v2.0/authorize",
                "token_endpoint": f"{root}/{tenant}/oauth2/v2.0/token",
                "jwks_uri": f"{root}/{tenant}/discovery/v2.0/keys",
                "response_types_supported": ["code", "id_token", "code id_token"],
                "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "client_secret_basic",
                ],
                "code_challenge_methods_supported": ["plain", "S256"],
                "tenant_region_scope": "EU",
            }
        )

    async def keys(request: Request) -> Response:
        def as_b64(n: int) -> str:
            return b64url(n.to_bytes((n.bit_length() + 7) // 8, "big"))

        jwk = {
            "kty": "RSA",
            "use": "sig",
            "kid": KEY_ID,
            "n": as_b64(public.n),
            "e": as_b64(public.e),
        }
        return JSONResponse({"keys": [jwk]})

    async def authorize(request: Request) -> Response:
        q, account, decision = await authorize_request(request)
        if q.get("client_id") != sb.client_id:
            return oauth_error("unauthorized_client", "AADSTS700016: Application not found.")
        redirect = q.get("redirect_uri", "")
        if not loopback(redirect):
            return oauth_error("invalid_request", "AADSTS50011: The redirect URI does not match.")
        if q.get("response_type") != "code":
            return oauth_error("unsupported_response_type", "Only response_type=code is served.")
        with sb.lock:
            named = account if decision is not None else q.get("login_hint") or sb.signed_in
            if not named:  # nobody named: a person chooses the account and consents
                accounts = [(u.email, f"{u.display_name} <{u.email}>") for u in sb.users.values()]
                return consent_page("Microsoft", "contactsync", accounts, q)
            user = sb.find_user(named)
        if decision is not None and decision != "approve":
            params = {
                "error": "access_denied",
                "error_description": "AADSTS65004: User declined to consent to access the app.",
                "state": q.get("state", ""),
            }
        elif user is None:
            params = {
                "error": "access_denied",
                "error_description": "No such user.",
                "state": q.get("state", ""),
            }
        else:
            params = {"code": sb.issue_code(user.id, q), "state": q.get("state", "")}
        sep = "&" if "?" in redirect else "?"
        return RedirectResponse(f"{redirect}{sep}{urlencode(params)}", status_code=302)

    def client_ok(form: dict[str, str], request: Request) -> bool:
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        basic = request.headers.get("authorization", "")
        if basic.lower().startswith("basic "):
            client_id, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
        return client_id == sb.client_id and secrets.compare_digest(secret, sb.client_secret)

    def tokens(user: User, scope: str, nonce: str, iss: str) -> dict[str, Any]:
        granted = " ".join(s for s in scope.split() if s.lower() not in RESERVED_SCOPES)
        access, refresh, lifetime = sb.issue_tokens(user.id, sb.client_id, scope)
        now = int(sb.now().timestamp())
        claims = {
            "iss": iss, "aud": sb.client_id, "tid": sb.tenant_id, "oid": user.id,
            "sub": b64url(f"{user.id}:{sb.client_id}".encode()), "preferred_username": user.email,
            "name": user.display_name, "iat": now, "nbf": now, "exp": now + lifetime, "ver": "2.0",
        }  # fmt: skip
        if nonce:
            claims["nonce"] = nonce
        id_token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": KEY_ID})
        info = b64url(json.dumps({"uid": user.id, "utid": sb.tenant_id}).encode())
        return {
            "token_type": "Bearer",
            "scope": granted,
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": access,
            "refresh_token": refresh,
            "id_token": id_token,
            "client_info": info,
        }

    async def token(request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode()))
        if not client_ok(form, request):
            return oauth_error(
                "invalid_client", "AADSTS7000215: Invalid client secret provided.", 401
            )
        grant_type = form.get("grant_type")
        try:
            if grant_type == "authorization_code":
                code = sb.redeem_code(
                    form.get("code", ""),
                    sb.client_id,
                    form.get("redirect_uri", ""),
                    form.get("code_verifier", ""),
                )
                body = tokens(
                    sb.user(code.user_id),
                    form.get("scope") or code.scope,
                    code.nonce,
                    issuer(request),
                )
            elif grant_type == "refresh_token":
                grant = sb.redeem_refresh(form.get("refresh_token", ""), sb.client_id)
                body = tokens(
                    sb.user(grant.user_id), form.get("scope") or grant.scope, "", issuer(request)
                )
            else:
                return oauth_error("unsupported_grant_type", "AADSTS70003: Unsupported grant.")
        except GraphError as err:
            return oauth_error(err.code, err.message)
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    return Starlette(
        routes=[
            Route("/{tenant}/v2.0/.well-known/openid-configuration", openid_configuration),
            Route("/{tenant}/discovery/v2.0/keys", keys),
            Route("/{tenant}/oauth2/v2.0/authorize", authorize, methods=["GET", "POST"]),
            Route("/{tenant}/oauth2/v2.0/token", token, methods=["POST"]),
        ]
    )
