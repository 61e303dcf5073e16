"""The Pipedrive sandbox's HTTP layer: v2/v1 API, OAuth server and the ``/_sandbox`` control API.

Every API route goes through ``_api``: latency, injected faults, authentication (``Authorization:
Bearer`` or ``x-api-token``), burst window and daily token budget, request counting, and errors in
Pipedrive's ``{"success": false, ...}`` shape.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from sandbox.pipedrive.records import ApiError, User

if TYPE_CHECKING:
    from sandbox.pipedrive.state import PipedriveSandbox

Handler = Callable[[Request, User], Awaitable[Any]]
ERROR_INFO = "Please check developers.pipedrive.com for more information about Pipedrive API."

# Token cost per request, by kind (approximate; see README "Rate limits").
COST = {
    "v2_get": 1,
    "v2_list": 10,
    "v2_write": 5,
    "v2_search": 20,
    "v1_get": 2,
    "v1_list": 20,
    "v1_write": 10,
}


def error_body(status: int, message: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "success": False,
        "error": message,
        "error_info": ERROR_INFO,
        "data": None,
        "additional_data": None,
    }
    if status in (401, 429):
        body["errorCode"] = status
    return body


def ok(data: Any, additional: Any = None, status: int = 200) -> tuple[int, dict[str, Any]]:
    body: dict[str, Any] = {"success": True, "data": data}
    if additional is not None:
        body["additional_data"] = additional
    return status, body


async def json_body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as exc:
        raise ApiError(400, "Invalid JSON body") from exc
    if not isinstance(body, dict):
        raise ApiError(400, "Body must be a JSON object")
    return body


def int_param(request: Request, name: str) -> int:
    try:
        return int(request.path_params[name])
    except ValueError as exc:
        raise ApiError(404, "Not found") from exc


def cut_short(body: Any, status: int, headers: dict[str, str]) -> Response:
    """An answer whose JSON is cut in half (the chaos tests' ``truncated`` break)."""
    text = json.dumps(body)
    return Response(
        text[: max(1, len(text) // 2)],
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


class DroppedConnection(Response):
    """Starts a response and never finishes it: the connection closes mid-answer (``reset``)."""

    def __init__(self) -> None:
        super().__init__()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"512")],
            }
        )


def build_app(sandbox: PipedriveSandbox) -> Starlette:
    routes: list[Route] = []

    def _api(method: str, path: str, kind: str, handler: Handler) -> None:
        label = f"{method} {path}"

        async def endpoint(request: Request) -> Response:
            sandbox.count(label)
            if sandbox.latency_ms:
                await asyncio.sleep(sandbox.latency_ms / 1000)
            headers: dict[str, str] = {}
            broken = sandbox.take_break(request.url.path)
            if broken == "reset":
                return DroppedConnection()
            try:
                fault = sandbox.take_fault(request.url.path)
                if fault == 429:
                    raise ApiError(
                        429,
                        "Request over limit",
                        {
                            "retry-after": "2",
                            "x-ratelimit-remaining": "0",
                            "x-ratelimit-reset": "2",
                            "x-ratelimit-limit": str(sandbox.burst_limit),
                        },
                    )
                if fault is not None:
                    raise ApiError(fault, "Injected fault")
                auth = request.headers.get("authorization", "")
                bearer = auth[7:].strip() if auth.lower().startswith("bearer ") else None
                api_token = request.headers.get("x-api-token") or request.query_params.get(
                    "api_token"
                )
                user = sandbox.authenticate(bearer, api_token)
                headers = sandbox.admit(user, COST[kind])
                status, body = await handler(request, user)
                if broken == "truncated":
                    return cut_short(body, status, headers)
                return JSONResponse(body, status_code=status, headers=headers)
            except ApiError as err:
                return JSONResponse(
                    error_body(err.status, err.message),
                    status_code=err.status,
                    headers=headers | err.headers,
                )

        routes.append(Route(path, endpoint, methods=[method]))

    def both_v1(method: str, path: str, kind: str, handler: Handler) -> None:
        """v1 answers on ``/v1/...`` (api.pipedrive.com) and ``/api/v1/...`` (company domain)."""
        _api(method, "/v1" + path, kind, handler)
        _api(method, "/api/v1" + path, kind, handler)

    # --- v2 persons ----------------------------------------------------------------------------

    async def list_persons(request: Request, user: User) -> Any:
        page, cursor = sandbox.list_persons(user, dict(request.query_params))
        return ok([sandbox.v2(p) for p in page], {"next_cursor": cursor})

    async def get_person(request: Request, user: User) -> Any:
        return ok(sandbox.v2(sandbox.get_person(user, int_param(request, "id"))))

    async def add_person(request: Request, user: User) -> Any:
        return ok(sandbox.v2(sandbox.create_person(user, await json_body(request))))

    async def patch_person(request: Request, user: User) -> Any:
        body = await json_body(request)
        return ok(sandbox.v2(sandbox.update_person(user, int_param(request, "id"), body)))

    async def delete_person(request: Request, user: User) -> Any:
        pid = int_param(request, "id")
        sandbox.delete_person(user, pid)
        return ok({"id": pid})

    async def search_persons(request: Request, user: User) -> Any:
        term, exact = _search_term(request)
        fields = set(
            (request.query_params.get("fields") or "custom_fields,email,notes,phone,name").split(
                ","
            )
        )
        hits = sandbox.search_persons(user, term, fields, exact)
        items = [
            {
                "result_score": score,
                "item": {
                    "id": p.id,
                    "type": "person",
                    "name": p.name,
                    "phones": [x["value"] for x in p.phones],
                    "emails": [x["value"] for x in p.emails],
                    "visible_to": p.visible_to,
                    "owner": {"id": p.owner_id},
                    "organization": {"id": p.org_id} if p.org_id else None,
                    "custom_fields": [str(v) for v in p.custom_fields.values()],
                    "notes": [p.notes] if p.notes else [],
                },
            }
            for score, p in hits[: _limit(request)]
        ]
        return ok({"items": items}, {"next_cursor": None})

    _api("GET", "/api/v2/persons", "v2_list", list_persons)
    _api("POST", "/api/v2/persons", "v2_write", add_person)
    _api("GET", "/api/v2/persons/search", "v2_search", search_persons)
    _api("GET", "/api/v2/persons/{id}", "v2_get", get_person)
    _api("PATCH", "/api/v2/persons/{id}", "v2_write", patch_person)
    _api("DELETE", "/api/v2/persons/{id}", "v2_write", delete_person)

    # --- v2 organizations ----------------------------------------------------------------------

    async def list_orgs(request: Request, user: User) -> Any:
        page, cursor = sandbox.list_orgs(user, dict(request.query_params))
        return ok([o.to_v2() for o in page], {"next_cursor": cursor})

    async def get_org(request: Request, user: User) -> Any:
        return ok(sandbox.get_org(user, int_param(request, "id")).to_v2())

    async def add_org(request: Request, user: User) -> Any:
        return ok(sandbox.create_org(user, await json_body(request)).to_v2())

    async def search_orgs(request: Request, user: User) -> Any:
        term, exact = _search_term(request)
        hits = sandbox.search_orgs(user, term, exact)
        items = [
            {
                "result_score": score,
                "item": {
                    "id": o.id,
                    "type": "organization",
                    "name": o.name,
                    "address": None,
                    "visible_to": o.visible_to,
                    "owner": {"id": o.owner_id},
                    "custom_fields": [],
                    "notes": [],
                },
            }
            for score, o in hits[: _limit(request)]
        ]
        return ok({"items": items}, {"next_cursor": None})

    _api("GET", "/api/v2/organizations", "v2_list", list_orgs)
    _api("POST", "/api/v2/organizations", "v2_write", add_org)
    _api("GET", "/api/v2/organizations/search", "v2_search", search_orgs)
    _api("GET", "/api/v2/organizations/{id}", "v2_get", get_org)

    # --- v1: merge, users, personFields, webhooks ----------------------------------------------

    async def merge(request: Request, user: User) -> Any:
        body = await json_body(request)
        try:
            keep_id = int(body["merge_with_id"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ApiError(400, "merge_with_id must be given") from exc
        gone_id = int_param(request, "id")
        kept = sandbox.merge_persons(user, gone_id, keep_id)
        return ok(
            {"id": kept.id, "name": kept.name, "owner_id": kept.owner_id, "merge_what_id": gone_id}
        )

    async def me(request: Request, user: User) -> Any:
        return ok(user.to_v1(sandbox.companies[user.company_id]))

    async def user_by_id(request: Request, user: User) -> Any:
        return ok(sandbox.user_of_company(user, int_param(request, "id")))

    async def permissions(request: Request, user: User) -> Any:
        return ok(sandbox.permissions_of(user, int_param(request, "id")))

    async def person_fields(request: Request, user: User) -> Any:
        fields = sandbox.list_person_fields(user)
        start = int(request.query_params.get("start", "0"))
        limit = min(int(request.query_params.get("limit", "100")), 500)
        page = fields[start : start + limit]
        more = start + limit < len(fields)
        pagination = {"start": start, "limit": limit, "more_items_in_collection": more}
        if more:
            pagination["next_start"] = start + limit
        return ok([f.to_v1() for f in page], {"pagination": pagination})

    async def add_person_field(request: Request, user: User) -> Any:
        return ok(sandbox.add_person_field(user, await json_body(request)).to_v1())

    async def list_webhooks(request: Request, user: User) -> Any:
        return 200, {
            "status": "ok",
            "success": True,
            "data": [w.to_v1() for w in sandbox.list_webhooks(user)],
        }

    async def add_webhook(request: Request, user: User) -> Any:
        hook = sandbox.create_webhook(user, await json_body(request))
        return 201, {"status": "ok", "success": True, "data": hook.to_v1()}

    async def delete_webhook(request: Request, user: User) -> Any:
        wid = int_param(request, "id")
        sandbox.delete_webhook(user, wid)
        return 200, {"status": "ok", "success": True, "data": {"id": wid}}

    both_v1("PUT", "/persons/{id}/merge", "v1_write", merge)
    both_v1("GET", "/users/me", "v1_get", me)
    both_v1("GET", "/users/{id}/permissions", "v1_get", permissions)
    both_v1("GET", "/users/{id}", "v1_get", user_by_id)
    both_v1("GET", "/personFields", "v1_list", person_fields)
    both_v1("POST", "/personFields", "v1_write", add_person_field)
    both_v1("GET", "/webhooks", "v1_list", list_webhooks)
    both_v1("POST", "/webhooks", "v1_write", add_webhook)
    both_v1("DELETE", "/webhooks/{id}", "v1_write", delete_webhook)

    # --- OAuth ---------------------------------------------------------------------------------

    async def authorize(request: Request) -> Response:
        sandbox.count("GET /oauth/authorize")
        q = request.query_params
        redirect_uri = q.get("redirect_uri", "")
        try:
            code = sandbox.authorize(q.get("client_id", ""), redirect_uri)
        except ApiError as err:
            return JSONResponse(
                {"error": "invalid_request", "error_description": err.message}, status_code=400
            )
        params = {"code": code} | ({"state": q["state"]} if "state" in q else {})
        sep = "&" if "?" in redirect_uri else "?"
        return RedirectResponse(f"{redirect_uri}{sep}{urlencode(params)}", status_code=302)

    async def token(request: Request) -> Response:
        sandbox.count("POST /oauth/token")
        client = _basic_credentials(request.headers.get("authorization", ""))
        if client is None or not sandbox.client_ok(*client):
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        # urlencoded form, parsed by hand: starlette's form parser needs python-multipart
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        grant_type = form.get("grant_type", "")
        try:
            if grant_type == "authorization_code":
                grant = sandbox.exchange_code(
                    client[0], form.get("code", ""), form.get("redirect_uri", "")
                )
            elif grant_type == "refresh_token":
                grant = sandbox.refresh_grant(client[0], form.get("refresh_token", ""))
            else:
                return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        except ApiError:
            return JSONResponse(
                {"error": "invalid_grant", "error_description": "Invalid or revoked grant"},
                status_code=400,
            )
        grant["api_domain"] = str(request.base_url).rstrip("/")
        return JSONResponse(grant, headers={"cache-control": "no-store"})

    async def revoke(request: Request) -> Response:
        sandbox.count("POST /oauth/revoke")
        client = _basic_credentials(request.headers.get("authorization", ""))
        if client is None or not sandbox.client_ok(*client):
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        try:
            sandbox.revoke_refresh_token(client[0], form.get("token", ""))
        except ApiError:
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        return JSONResponse({})

    routes.append(Route("/oauth/authorize", authorize, methods=["GET"]))
    routes.append(Route("/oauth/token", token, methods=["POST"]))
    routes.append(Route("/oauth/revoke", revoke, methods=["POST"]))

    routes.extend(_control_routes(sandbox))
    return Starlette(routes=routes)


def _search_term(request: Request) -> tuple[str, bool]:
    term = request.query_params.get("term", "")
    exact = request.query_params.get("exact_match", "false").lower() == "true"
    if len(term.strip()) < (1 if exact else 2):
        raise ApiError(400, "Search term must be at least 2 characters long")
    return term, exact


def _limit(request: Request) -> int:
    return max(1, min(int(request.query_params.get("limit", "100")), 500))


def _basic_credentials(header: str) -> tuple[str, str] | None:
    if not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip()).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def _control_routes(sandbox: PipedriveSandbox) -> list[Route]:
    """``/_sandbox/*``: seed, act in the app, break things, look inside. No auth (loopback)."""

    def control(
        fn: Callable[[dict[str, Any], dict[str, Any]], Any],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            body: dict[str, Any] = {}
            if request.method in ("POST", "PUT", "PATCH"):
                raw = await request.body()
                body = await request.json() if raw else {}
            try:
                result = fn(dict(request.path_params), body)
            except (KeyError, ValueError, ApiError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            return JSONResponse(result if result is not None else {"ok": True})

        return endpoint

    def pid(params: dict[str, Any]) -> int:
        return int(params["id"])

    def perms(p: dict[str, Any], b: dict[str, Any]) -> None:
        sandbox.set_permissions(pid(p), **b)

    def rate(_: dict[str, Any], b: dict[str, Any]) -> None:
        if "burst_limit" in b:
            sandbox.burst_limit = int(b["burst_limit"])
        if "daily_budget" in b:
            sandbox.daily_budget_override = b["daily_budget"]

    def latency(_: dict[str, Any], b: dict[str, Any]) -> None:
        sandbox.latency_ms = int(b.get("ms", 0))

    def listing_faults(_: dict[str, Any], b: dict[str, Any]) -> None:
        sandbox.partial_rate = float(b.get("partial_rate", sandbox.partial_rate))
        sandbox.empty_pages = int(b.get("empty_pages", sandbox.empty_pages))

    def mode(_: dict[str, Any], b: dict[str, Any]) -> None:
        current = sandbox.delivery.mode
        current.duplicate = bool(b.get("duplicate", current.duplicate))
        current.delay_ms = int(b.get("delay_ms", current.delay_ms))
        current.reorder = bool(b.get("reorder", current.reorder))
        current.drop_rate = float(b.get("drop_rate", current.drop_rate))

    def add_user(_: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        uid = sandbox.add_user(
            int(b["company_id"]),
            b["name"],
            b["email"],
            can_add_people=b.get("can_add_people", True),
            can_add_organizations=b.get("can_add_organizations", True),
            is_admin=b.get("is_admin", False),
        )
        return {"id": uid, "api_token": sandbox.api_token(uid)}

    table: list[tuple[str, str, Callable[[dict[str, Any], dict[str, Any]], Any]]] = [
        (
            "POST",
            "/companies",
            lambda p, b: {
                "id": sandbox.add_company(b["name"], contact_sync=bool(b.get("contact_sync")))
            },
        ),
        (
            "PUT",
            "/companies/{id}/contact-sync",
            lambda p, b: sandbox.set_contact_sync(pid(p), bool(b["enabled"])),
        ),
        ("POST", "/users", add_user),
        ("POST", "/tokens", lambda p, b: {"access_token": sandbox.issue_token(int(b["user_id"]))}),
        ("POST", "/oauth/login", lambda p, b: sandbox.login_as(int(b["user_id"]))),
        (
            "POST",
            "/persons/seed",
            lambda p, b: {
                "ids": sandbox.seed_persons(
                    int(b["owner_id"]),
                    int(b["n"]),
                    seed=int(b.get("seed", 0)),
                    with_orgs=bool(b.get("with_orgs", True)),
                )
            },
        ),
        (
            "PATCH",
            "/persons/{id}",
            lambda p, b: sandbox.edit_in_app(
                pid(p), b.get("changes", b), by_user_id=b.get("by_user_id")
            ).to_v2(),
        ),
        ("DELETE", "/persons/{id}", lambda p, b: sandbox.delete_in_app(pid(p))),
        (
            "PUT",
            "/persons/{id}/owner",
            lambda p, b: sandbox.change_owner(
                pid(p), int(b["owner_id"]), by_user_id=b.get("by_user_id")
            ),
        ),
        ("PUT", "/users/{id}/permissions", perms),
        ("POST", "/users/{id}/revoke", lambda p, b: sandbox.revoke_tokens(pid(p))),
        ("POST", "/users/{id}/expire", lambda p, b: sandbox.expire_access_tokens(pid(p))),
        (
            "POST",
            "/faults",
            lambda p, b: sandbox.inject_fault(
                int(b["status"]), int(b.get("count", 1)), str(b.get("path_prefix", ""))
            ),
        ),
        (
            "POST",
            "/breaks",
            lambda p, b: sandbox.inject_break(
                str(b["kind"]), int(b.get("count", 1)), str(b.get("path_prefix", ""))
            ),
        ),
        ("PUT", "/latency", latency),
        ("PUT", "/listing-faults", listing_faults),
        ("PUT", "/rate-limit", rate),
        ("POST", "/clock/advance", lambda p, b: sandbox.advance_clock(float(b["seconds"]))),
        ("GET", "/deliveries", lambda p, b: {"deliveries": sandbox.deliveries()}),
        ("PUT", "/delivery-mode", mode),
        ("GET", "/stats", lambda p, b: {"requests": sandbox.stats_snapshot()}),
        ("POST", "/stats/reset", lambda p, b: sandbox.reset_stats()),
    ]
    return [Route("/_sandbox" + path, control(fn), methods=[m]) for m, path, fn in table]
