"""The control API under ``/_sandbox/`` (JSON, no auth): what tests and ``make run`` use to seed
people, play the user editing in Outlook, and switch on the failure modes.

Edits made here go through the same ``GraphSandbox`` methods as the Graph API, so they bump the
change key, appear in delta and fire change notifications.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.graph.render import error_reply, render_contact, to_response
from sandbox.graph.state import GraphError, GraphSandbox

Handler = Callable[[Request], Awaitable[Response]]


def control_routes(sb: GraphSandbox) -> list[Route]:
    async def body_of(request: Request) -> dict[str, Any]:
        raw = await request.body()
        data = json.loads(raw) if raw else {}
        if not isinstance(data, dict):
            raise GraphError(400, "BadRequest", "A JSON object is expected.")
        return data

    def guarded(fn: Callable[[Request, dict[str, Any]], Any]) -> Handler:
        async def endpoint(request: Request) -> Response:
            try:
                result = fn(request, await body_of(request))
            except GraphError as err:
                return to_response(error_reply(err))
            except (ValueError, KeyError, TypeError) as exc:
                return to_response(error_reply(GraphError(400, "BadRequest", str(exc))))
            return JSONResponse(result if result is not None else {"ok": True})

        return endpoint

    def p(request: Request, name: str) -> str:
        return str(request.path_params[name])

    def add_user(request: Request, body: dict[str, Any]) -> Any:
        uid = sb.add_user(body["email"], body.get("display_name") or body["email"])
        return {"id": uid, "default_folder_id": sb.users[uid].default_folder_id}

    def list_users(request: Request, body: dict[str, Any]) -> Any:
        with sb.lock:
            return [
                {
                    "id": u.id,
                    "email": u.email,
                    "display_name": u.display_name,
                    "default_folder_id": u.default_folder_id,
                }
                for u in sb.users.values()
            ]

    def add_folder(request: Request, body: dict[str, Any]) -> Any:
        return {"id": sb.add_folder(p(request, "uid"), body["name"])}

    def seed(request: Request, body: dict[str, Any]) -> Any:
        ids = sb.seed_contacts(
            p(request, "uid"),
            p(request, "fid"),
            int(body.get("n", 1)),
            seed=int(body.get("seed", 0)),
        )
        return {"ids": ids}

    def create(request: Request, body: dict[str, Any]) -> Any:
        return render_contact(sb.create_contact(p(request, "uid"), p(request, "fid"), body))

    def get_contact(request: Request, body: dict[str, Any]) -> Any:
        with sb.lock:
            return render_contact(sb.contact(p(request, "uid"), p(request, "cid")), expand=EVERY)

    def update(request: Request, body: dict[str, Any]) -> Any:
        return render_contact(sb.update_contact(p(request, "uid"), p(request, "cid"), body))

    def delete(request: Request, body: dict[str, Any]) -> Any:
        sb.delete_contact(p(request, "uid"), p(request, "cid"))

    def move(request: Request, body: dict[str, Any]) -> Any:
        moved = sb.move_contact(p(request, "uid"), p(request, "cid"), body["destinationId"])
        return render_contact(moved)

    def revoke(request: Request, body: dict[str, Any]) -> Any:
        return {"revoked": sb.revoke_refresh_tokens(p(request, "uid"))}

    def expire_tokens(request: Request, body: dict[str, Any]) -> Any:
        return {"expired": sb.expire_access_tokens(body.get("user_id"))}

    def expire_delta(request: Request, body: dict[str, Any]) -> Any:
        return {"expired": sb.expire_delta_tokens(body.get("user_id"))}

    def empty_delta(request: Request, body: dict[str, Any]) -> Any:
        with sb.lock:
            sb.empty_delta_pages = int(body.get("count", 1))

    def latency(request: Request, body: dict[str, Any]) -> Any:
        sb.latency_ms = int(body["ms"])

    def faults(request: Request, body: dict[str, Any]) -> Any:
        sb.inject_faults(
            int(body["status"]), int(body.get("count", 1)), int(body.get("retry_after", 1))
        )

    def breaks(request: Request, body: dict[str, Any]) -> Any:
        sb.inject_breaks(
            str(body["kind"]),
            int(body.get("count", 1)),
            only_creates=bool(body.get("only_creates", False)),
        )

    def limits(request: Request, body: dict[str, Any]) -> Any:
        with sb.lock:
            for key in ("budget", "window_seconds", "concurrency"):
                if key in body:
                    setattr(sb.limits, key, type(getattr(sb.limits, key))(body[key]))
            return vars(sb.limits)

    def clock(request: Request, body: dict[str, Any]) -> Any:
        sb.advance_clock(float(body.get("advance_seconds", 0)))
        return {"now": sb.now().isoformat()}

    def lifecycle(request: Request, body: dict[str, Any]) -> Any:
        sb.fire_lifecycle(p(request, "sid"), body["event"])

    def subscriptions(request: Request, body: dict[str, Any]) -> Any:
        with sb.lock:
            return [s.as_json() for s in sb.subscriptions.values()]

    def notifications(request: Request, body: dict[str, Any]) -> Any:
        with sb.lock:
            return {"pending": sb.pending(), "sent": list(sb.sent)}

    def delivery(request: Request, body: dict[str, Any]) -> Any:
        with sb.lock:
            for key in ("duplicate", "delay_ms", "reorder", "drop_rate"):
                if key in body:
                    sb.delivery[key] = body[key]
            return dict(sb.delivery)

    def sign_in(request: Request, body: dict[str, Any]) -> Any:
        with sb.lock:
            sb.signed_in = body.get("email")
        return {"signed_in": sb.signed_in}

    def user_token(request: Request, body: dict[str, Any]) -> Any:
        with sb.lock:
            user = sb.find_user(p(request, "uid"))
        if user is None:
            raise GraphError(404, "ResourceNotFound", "No such user.")
        return {"access_token": sb.access_token_for(user.id)}

    def requests_seen(request: Request, body: dict[str, Any]) -> Any:
        with sb.lock:
            return list(sb.requests)

    base = "/_sandbox"
    table: list[tuple[str, str, Callable[[Request, dict[str, Any]], Any]]] = [
        ("POST", "/users", add_user),
        ("GET", "/users", list_users),
        ("POST", "/signed_in", sign_in),
        ("POST", "/users/{uid}/token", user_token),
        ("POST", "/users/{uid}/folders", add_folder),
        ("POST", "/users/{uid}/folders/{fid}/seed", seed),
        ("POST", "/users/{uid}/folders/{fid}/contacts", create),
        ("GET", "/users/{uid}/contacts/{cid}", get_contact),
        ("POST", "/users/{uid}/contacts/{cid}", update),
        ("DELETE", "/users/{uid}/contacts/{cid}", delete),
        ("POST", "/users/{uid}/contacts/{cid}/move", move),
        ("POST", "/users/{uid}/revoke", revoke),
        ("POST", "/tokens/expire", expire_tokens),
        ("POST", "/delta/expire", expire_delta),
        ("POST", "/delta/empty", empty_delta),
        ("POST", "/latency", latency),
        ("POST", "/faults", faults),
        ("POST", "/breaks", breaks),
        ("POST", "/limits", limits),
        ("POST", "/clock", clock),
        ("GET", "/subscriptions", subscriptions),
        ("POST", "/subscriptions/{sid}/lifecycle", lifecycle),
        ("GET", "/notifications", notifications),
        ("POST", "/notifications/settings", delivery),
        ("GET", "/requests", requests_seen),
    ]
    return [Route(base + path, guarded(fn), methods=[method]) for method, path, fn in table]


EVERY = "singleValueExtendedProperties"  # $expand without a filter: every extended property
