"""The control API under ``/_sandbox/`` (JSON, no auth): what other processes (``make run``,
benchmarks) use to seed users and contacts, play the user editing in Google Contacts, move the
clock and switch failure modes on. Every route calls the same ``GoogleSandbox`` method a test
would call directly, so edits get new etags and show up in sync-token listings.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.google.person import GoogleError, invalid
from sandbox.google.state import MY_CONTACTS, GoogleSandbox

Handler = Callable[[Request], Awaitable[Response]]
Action = Callable[[dict[str, str], dict[str, Any]], Any]


def control_routes(sb: GoogleSandbox) -> list[Route]:
    def guarded(fn: Action) -> Handler:
        async def endpoint(request: Request) -> Response:
            try:
                raw = await request.body()
                body = json.loads(raw) if raw else {}
                if not isinstance(body, dict):
                    raise invalid("A JSON object is expected.")
                result = fn(dict(request.path_params), body)
            except GoogleError as err:
                return JSONResponse(err.body(), status_code=err.code)
            except (ValueError, KeyError, TypeError) as exc:
                return JSONResponse(invalid(str(exc)).body(), status_code=400)
            return JSONResponse(result if result is not None else {"ok": True})

        return endpoint

    def rn(p: dict[str, str]) -> str:
        return f"people/{p['cid'].removeprefix('people/')}"

    def add_user(p: dict[str, str], b: dict[str, Any]) -> Any:
        return {"resourceName": sb.add_user(b["email"], b.get("name", ""))}

    def sign_in(p: dict[str, str], b: dict[str, Any]) -> Any:
        sb.signed_in = b.get("email")
        return {"signed_in": sb.signed_in}

    def token(p: dict[str, str], b: dict[str, Any]) -> Any:
        return {"access_token": sb.token_for(p["email"])}

    def add_group(p: dict[str, str], b: dict[str, Any]) -> Any:
        return {"resourceName": sb.add_group(p["email"], b["name"])}

    def list_contacts(p: dict[str, str], b: dict[str, Any]) -> Any:
        return sb.contacts(p["email"])

    def add_contact(p: dict[str, str], b: dict[str, Any]) -> Any:
        groups = b.get("groups") or [MY_CONTACTS]
        return {"resourceName": sb.add_contact(p["email"], b["person"], groups)}

    def seed(p: dict[str, str], b: dict[str, Any]) -> Any:
        names = sb.seed_contacts(p["email"], int(b.get("n", 1)), seed=int(b.get("seed", 0)))
        return {"resourceNames": names}

    def edit(p: dict[str, str], b: dict[str, Any]) -> Any:
        sb.update_contact(p["email"], rn(p), b["changes"])

    def delete(p: dict[str, str], b: dict[str, Any]) -> Any:
        sb.delete_contact(p["email"], rn(p))

    def set_groups(p: dict[str, str], b: dict[str, Any]) -> Any:
        sb.set_groups(p["email"], rn(p), b["groups"])

    def revoke(p: dict[str, str], b: dict[str, Any]) -> Any:
        sb.revoke(p["email"])

    def expire_tokens(p: dict[str, str], b: dict[str, Any]) -> Any:
        sb.expire_access_tokens()

    def advance(p: dict[str, str], b: dict[str, Any]) -> Any:
        sb.advance(float(b["seconds"]))
        return {"now": sb.now().isoformat()}

    def quota(p: dict[str, str], b: dict[str, Any]) -> Any:
        sb.set_quota(
            reads_per_minute=b.get("reads_per_minute"),
            writes_per_minute=b.get("writes_per_minute"),
            full_syncs_per_minute=b.get("full_syncs_per_minute"),
        )
        return dict(sb.quota)

    def strictness(p: dict[str, str], b: dict[str, Any]) -> Any:
        with sb.lock:
            if "sync_lag_seconds" in b:
                sb.sync_lag = timedelta(seconds=float(b["sync_lag_seconds"]))
            if "stale_read_seconds" in b:
                sb.stale_read = timedelta(seconds=float(b["stale_read_seconds"]))
            return {
                "sync_lag_seconds": sb.sync_lag.total_seconds(),
                "stale_read_seconds": sb.stale_read.total_seconds(),
            }

    def rename(p: dict[str, str], b: dict[str, Any]) -> Any:
        return {"resourceName": sb.change_resource_name(p["email"], rn(p))}

    def latency(p: dict[str, str], b: dict[str, Any]) -> Any:
        sb.latency_ms = int(b["ms"])

    def faults(p: dict[str, str], b: dict[str, Any]) -> Any:
        return asdict(sb.set_faults(**b))

    def stats(p: dict[str, str], b: dict[str, Any]) -> Any:
        return sb.stats_snapshot()

    table: list[tuple[str, str, Action]] = [
        ("POST", "/users", add_user),
        ("GET", "/users", lambda p, b: sb.users()),
        ("POST", "/signed_in", sign_in),
        ("POST", "/users/{email}/token", token),
        ("POST", "/users/{email}/groups", add_group),
        ("GET", "/users/{email}/contacts", list_contacts),
        ("POST", "/users/{email}/contacts", add_contact),
        ("POST", "/users/{email}/seed", seed),
        ("PATCH", "/users/{email}/contacts/{cid}", edit),
        ("DELETE", "/users/{email}/contacts/{cid}", delete),
        ("PUT", "/users/{email}/contacts/{cid}/groups", set_groups),
        ("POST", "/users/{email}/revoke", revoke),
        ("POST", "/tokens/expire", expire_tokens),
        ("POST", "/advance", advance),
        ("POST", "/quota", quota),
        ("POST", "/strictness", strictness),
        ("POST", "/users/{email}/contacts/{cid}/rename", rename),
        ("POST", "/latency", latency),
        ("POST", "/faults", faults),
        ("GET", "/faults", lambda p, b: asdict(sb.set_faults())),
        ("GET", "/stats", stats),
    ]
    return [Route("/_sandbox" + path, guarded(fn), methods=[m]) for m, path, fn in table]
