"""The Graph listener: ``/v1.0/...`` (the API) and ``/_sandbox/...`` (the control API).

Graph routes live in one async ``dispatch`` function over plain values so that a top-level request
and a ``$batch`` sub-request run exactly the same code (and both count against the limits).
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.graph.control import control_routes
from sandbox.graph.render import (
    EMAIL_FILTER_RE,
    NAME_FILTER_RE,
    TAG_FILTER_RE,
    DroppedConnection,
    Reply,
    cut_short,
    error_reply,
    render_contact,
    render_folder,
    to_response,
)
from sandbox.graph.state import (
    DEFAULT_PAGE,
    MAX_DELTA_PAGE,
    Folder,
    GraphError,
    GraphSandbox,
    StoredContact,
    wants_immutable_ids,
)

MAX_BATCH = 20
MAX_TOP = 1000
DELTA_NAMES = {"delta", "delta()", "microsoft.graph.delta", "microsoft.graph.delta()"}
MOVE_NAMES = {"move", "microsoft.graph.move"}
VALIDATION_TIMEOUT = 10.0
CONCURRENCY_RETRY_AFTER = 1  # seconds; Graph sends a Retry-After with a MailboxConcurrency 429

# --- the Graph routes --------------------------------------------------------------------------


@dataclass
class Call:
    """One Graph request (top-level or a $batch sub-request), already authenticated."""

    user_id: str
    method: str
    segments: list[str]  # path below /v1.0, split on "/"
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: Any
    base: str  # ".../v1.0"

    @property
    def immutable(self) -> bool:
        """``Prefer: IdType="ImmutableId"`` on this very request (a $batch sub-request carries
        its own headers)."""
        return wants_immutable_ids(self.headers.get("prefer"))

    def link(self, path: str, params: dict[str, str]) -> str:
        return f"{self.base}/{path}?{urlencode(params, quote_via=quote, safe='$')}"


async def dispatch(sb: GraphSandbox, call: Call) -> Reply:
    try:
        return await route(sb, call)
    except GraphError as err:
        return error_reply(err)


async def route(sb: GraphSandbox, call: Call) -> Reply:
    segs = list(call.segments)
    low = [s.lower() for s in segs]
    m = call.method
    if low[:1] == ["users"] and len(segs) >= 2:
        user = sb.find_user(segs[1])
        if user is None or user.id != call.user_id:
            raise GraphError(403, "ErrorAccessDenied", "Access is denied. Check credentials.")
        segs, low = ["me", *segs[2:]], ["me", *low[2:]]
    if low == ["me"] and m == "GET":
        user = sb.user(call.user_id)
        return Reply(
            200,
            {
                "@odata.context": f"{call.base}/$metadata#users/$entity",
                "id": user.id,
                "displayName": user.display_name,
                "mail": user.email,
                "userPrincipalName": user.email,
            },
        )
    if low[:2] == ["me", "contactfolders"]:
        return await folder_routes(sb, call, segs[2:], low[2:])
    if low[:2] == ["me", "contacts"]:
        return contact_routes(sb, call, None, segs[2:], low[2:])
    if low[:1] == ["subscriptions"]:
        return await subscription_routes(sb, call, segs[1:])
    raise GraphError(400, "BadRequest", f"Resource not found for the segment '{segs[0]}'.")


async def folder_routes(sb: GraphSandbox, call: Call, segs: list[str], low: list[str]) -> Reply:
    m = call.method
    if not segs:
        if m == "GET":  # the default Contacts folder is the parent: not listed, like Graph
            with sb.lock:
                default = sb.user(call.user_id).default_folder_id
                found = [
                    render_folder(f, sb) for f in sb.user_folders(call.user_id) if f.id != default
                ]
            return page_of(call, "me/contactFolders", found)
        if m == "POST":
            name = str((call.body or {}).get("displayName") or "")
            if not name:
                raise GraphError(400, "ErrorInvalidRequest", "displayName is required.")
            fid = sb.add_folder(call.user_id, name)
            return Reply(201, render_folder(sb.folders[fid], sb))
    elif len(segs) == 1 and m == "GET":
        return Reply(200, render_folder(sb.folder(call.user_id, segs[0]), sb))
    elif len(segs) >= 2 and low[1] == "contacts":
        folder = sb.folder(call.user_id, segs[0])
        if len(segs) == 3 and low[2] in DELTA_NAMES and m == "GET":
            return delta(sb, call, folder)
        return contact_routes(sb, call, folder.id, segs[2:], low[2:])
    raise GraphError(405, "ErrorInvalidRequest", "Unsupported request.")


def contact_routes(
    sb: GraphSandbox, call: Call, folder_id: str | None, segs: list[str], low: list[str]
) -> Reply:
    m, uid = call.method, call.user_id
    expand = call.query.get("$expand")
    if not segs:
        if m == "GET":
            found = sb.folder_contacts(uid, folder_id)
            flt = call.query.get("$filter")
            if flt:
                found = filter_contacts(found, flt)
            where = f"me/contactFolders/{folder_id}/contacts" if folder_id else "me/contacts"
            shown = [render_contact(c, expand, immutable=call.immutable) for c in found]
            return page_of(call, where, shown)
        if m == "POST":
            body = require_object(call.body)
            target = folder_id or sb.user(uid).default_folder_id
            made = sb.create_contact(uid, target, body)
            return Reply(201, render_contact(made, expand, immutable=call.immutable))
    elif len(segs) == 1:
        cid = segs[0]
        if m == "GET":
            with sb.lock:
                stored = sb.contact(uid, cid, folder_id)
                return Reply(200, render_contact(stored, expand, immutable=call.immutable))
        if m == "PATCH":
            with sb.lock:
                sb.contact(uid, cid, folder_id)
                stored = sb.update_contact(
                    uid, cid, require_object(call.body), if_match=call.headers.get("if-match")
                )
                return Reply(200, render_contact(stored, expand, immutable=call.immutable))
        if m == "DELETE":
            with sb.lock:
                sb.contact(uid, cid, folder_id)
                sb.delete_contact(uid, cid, if_match=call.headers.get("if-match"))
            return Reply(204)
    elif len(segs) == 2 and low[1] in MOVE_NAMES and m == "POST":
        destination = str(require_object(call.body).get("destinationId") or "")
        with sb.lock:
            sb.contact(uid, segs[0], folder_id)
            moved = sb.move_contact(uid, segs[0], destination)
            return Reply(201, render_contact(moved, immutable=call.immutable))
    raise GraphError(405, "ErrorInvalidRequest", "Unsupported request.")


def require_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise GraphError(400, "BadRequest", "Empty Payload. JSON content expected.")
    return body


def filter_contacts(found: list[StoredContact], flt: str) -> list[StoredContact]:
    """The ``$filter`` shapes we support: a match on a single-value extended property, on one
    of the email addresses, or on the display name (string comparisons ignore case, as
    Exchange's do)."""
    email = EMAIL_FILTER_RE.match(flt.strip())
    if email:
        wanted = email.group(2).replace("''", "'").casefold()
        return [
            c
            for c in found
            if any(
                str((e or {}).get("address") or "").casefold() == wanted
                for e in c.props.get("emailAddresses") or []
            )
        ]
    name = NAME_FILTER_RE.match(flt.strip())
    if name:
        wanted = name.group(1).replace("''", "'").casefold()
        return [c for c in found if str(c.props.get("displayName") or "").casefold() == wanted]
    m = TAG_FILTER_RE.match(flt.strip())
    if not m:
        raise GraphError(400, "ErrorInvalidUrlQueryFilter", "The filter is not supported.")
    pid, value = m.group(2).replace("''", "'").lower(), m.group(3).replace("''", "'")
    return [c for c in found if any(k.lower() == pid and v == value for k, v in c.extended.items())]


def page_of(call: Call, path: str, items: list[dict[str, Any]]) -> Reply:
    """``$top``/``$skip`` paging with an ``@odata.nextLink`` while more remain."""
    try:
        top = min(int(call.query.get("$top", DEFAULT_PAGE)), MAX_TOP)
        skip = int(call.query.get("$skip", 0))
    except ValueError as exc:
        raise GraphError(400, "BadRequest", "Invalid $top or $skip.") from exc
    body: dict[str, Any] = {
        "@odata.context": f"{call.base}/$metadata#{path}",
        "value": items[skip : skip + top],
    }
    if skip + top < len(items):
        body["@odata.nextLink"] = call.link(path, {**call.query, "$skip": str(skip + top)})
    return Reply(200, body)


def delta(sb: GraphSandbox, call: Call, folder: Folder) -> Reply:
    size, applied = DEFAULT_PAGE, ""
    prefer = call.headers.get("prefer", "")
    found = re.search(r"odata\.maxpagesize=(\d+)", prefer)
    if found:
        size = max(1, min(int(found.group(1)), MAX_DELTA_PAGE))
        applied = f"odata.maxpagesize={size}"
    skip = call.query.get("$skiptoken")
    if skip is None:
        skip = sb.delta_start(call.user_id, folder.id, call.query.get("$deltatoken"))
    items, next_skip, token = sb.delta_page(call.user_id, skip, size)
    path = f"me/contactFolders/{folder.id}/contacts/delta"
    expand = call.query.get("$expand")
    value = [
        render_contact(i, expand, immutable=call.immutable)
        if isinstance(i, StoredContact)
        else {
            "@odata.type": "#microsoft.graph.contact",
            "id": i[0].wire_id(call.immutable, i[1]),
            "@removed": {"reason": "deleted"},  # also what a move out of the folder looks like
        }
        for i in items
    ]
    body: dict[str, Any] = {
        "@odata.context": f"{call.base}/$metadata#Collection(contact)",
        "value": value,
    }
    keep = {k: v for k, v in call.query.items() if k == "$expand"}
    if next_skip:
        body["@odata.nextLink"] = call.link(path, {**keep, "$skiptoken": next_skip})
    else:
        body["@odata.deltaLink"] = call.link(path, {**keep, "$deltatoken": token or ""})
    return Reply(200, body, {"Preference-Applied": applied} if applied else {})


async def subscription_routes(sb: GraphSandbox, call: Call, segs: list[str]) -> Reply:
    m, uid = call.method, call.user_id
    if not segs and m == "POST":
        sub = sb.check_subscription(uid, require_object(call.body))
        sub.immutable_ids = call.immutable  # notifications keep the id type it was created with
        for url in [sub.notification_url] + ([sub.lifecycle_url] if sub.lifecycle_url else []):
            if not await endpoint_validates(url):
                raise GraphError(
                    400,
                    "InvalidRequest",
                    "Subscription validation request failed. Notification endpoint must "
                    "respond with 200 OK to validation request.",
                )
        sb.add_subscription(sub)
        return Reply(
            201, {"@odata.context": f"{call.base}/$metadata#subscriptions/$entity", **sub.as_json()}
        )
    if not segs and m == "GET":
        with sb.lock:
            now = sb.now()
            subs = [
                s.as_json()
                for s in sb.subscriptions.values()
                if s.user_id == uid and s.expires > now
            ]
        return Reply(200, {"value": subs})
    if len(segs) == 1:
        if m == "GET":
            return Reply(200, sb.live_subscription(uid, segs[0]).as_json())
        if m == "PATCH":
            body = require_object(call.body)
            return Reply(
                200, sb.renew_subscription(uid, segs[0], body.get("expirationDateTime")).as_json()
            )
        if m == "DELETE":
            sb.delete_subscription(uid, segs[0])
            return Reply(204)
    raise GraphError(405, "ErrorInvalidRequest", "Unsupported request.")


async def endpoint_validates(url: str) -> bool:
    """Graph's handshake: POST ?validationToken=…; want 200, text/plain, the token, in 10 s."""
    token = f"Validation: Testing client application reachability {secrets.token_hex(8)}"
    sep = "&" if "?" in url else "?"
    try:
        async with httpx.AsyncClient(timeout=VALIDATION_TIMEOUT) as client:
            resp = await client.post(
                f"{url}{sep}validationToken={quote(token)}",
                headers={"Content-Type": "text/plain; charset=utf-8"},
            )
    except httpx.HTTPError:
        return False
    plain = resp.headers.get("content-type", "").startswith("text/plain")
    return resp.status_code == 200 and plain and resp.text == token


# --- $batch ------------------------------------------------------------------------------------


async def run_batch(sb: GraphSandbox, user_id: str, body: Any, base: str) -> Reply:
    requests = body.get("requests") if isinstance(body, dict) else None
    if not isinstance(requests, list) or not requests:
        raise GraphError(400, "BadRequest", "Invalid batch payload.")
    if len(requests) > MAX_BATCH:
        raise GraphError(400, "BadRequest", "Maximum number of requests in a batch is 20.")
    ids = [str(r.get("id", "")) for r in requests if isinstance(r, dict)]
    if len(ids) != len(requests) or "" in ids or len(set(ids)) != len(ids):
        raise GraphError(400, "BadRequest", "Each request needs a unique id.")
    # Graph hands Outlook up to four of a batch's requests at a time: the batch holds min(n, 4)
    # of the mailbox's concurrency slots. Those another request holds are not free; a
    # sub-request beyond the slots the batch got is refused (429 inside the 200 answer).
    wanted = min(len(requests), sb.limits.concurrency)
    held = sb.take_slots(user_id, wanted)
    try:
        if sb.latency_ms:  # in flight while "slow": the slots stay taken
            await asyncio.sleep(sb.latency_ms / 1000)
        return Reply(
            200,
            {
                "responses": await run_sub_requests(
                    sb, user_id, requests, base, held if held < wanted else None
                )
            },
        )
    finally:
        sb.leave(user_id, held)


async def run_sub_requests(
    sb: GraphSandbox, user_id: str, requests: list[Any], base: str, slots: int | None
) -> list[dict[str, Any]]:
    """Each sub-request's answer; with ``slots`` set, those beyond it get MailboxConcurrency."""
    responses = []
    for i, req in enumerate(requests):
        method = str(req.get("method", "GET")).upper()
        url = str(req.get("url", "")).lstrip("/")
        url = url[5:] if url.lower().startswith("v1.0/") else url
        path, _, qs = url.partition("?")
        headers = {str(k).lower(): str(v) for k, v in (req.get("headers") or {}).items()}
        sb.record(
            method, path, user_id, batched=True, body=req.get("body"), prefer=headers.get("prefer")
        )
        if slots is not None and i >= slots:
            reply = error_reply(
                GraphError(
                    429,
                    "ApplicationThrottled",
                    "Application is over its MailboxConcurrency limit.",
                    CONCURRENCY_RETRY_AFTER,
                )
            )
        elif "body" in req and "content-type" not in headers:
            reply = error_reply(
                GraphError(400, "BadRequest", "Content-Type header must be specified.")
            )
        else:
            try:
                sb.spend(user_id)
                call = Call(
                    user_id,
                    method,
                    path.split("/"),
                    dict(parse_qsl(qs)),
                    headers,
                    req.get("body"),
                    base,
                )
                reply = await dispatch(sb, call)
            except GraphError as err:
                reply = error_reply(err)
        out: dict[str, Any] = {
            "id": req["id"],
            "status": reply.status,
            "headers": {"Content-Type": "application/json", **reply.headers},
        }
        if reply.body is not None:
            out["body"] = reply.body
        responses.append(out)
    return responses


# --- the ASGI app ------------------------------------------------------------------------------


def graph_app(sb: GraphSandbox) -> Starlette:
    async def graph_endpoint(request: Request) -> Response:
        path = request.path_params["path"].strip("/")
        base = str(request.base_url).rstrip("/") + "/v1.0"
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        fault = sb.take_fault()
        if fault is not None:
            sb.record(request.method, path, None, batched=False, body=body)
            return to_response(error_reply(fault))
        broken = sb.take_break(creates=_creates(request.method, path, body))
        if broken == "reset":
            sb.record(request.method, path, None, batched=False, body=body)
            return DroppedConnection()
        try:
            user_id = sb.authenticate(request.headers.get("authorization"))
        except GraphError as err:
            sb.record(request.method, path, None, batched=False, body=body)
            return to_response(error_reply(err))
        sb.record(
            request.method, path, user_id, batched=False, body=body,
            prefer=request.headers.get("prefer"),
        )  # fmt: skip
        if isinstance(body, str):
            return to_response(error_reply(GraphError(400, "BadRequest", "Invalid JSON.")))
        if path.lower() == "$batch" and request.method == "POST":
            try:  # the batch takes its own slots
                reply = await run_batch(sb, user_id, body, base)
            except GraphError as err:
                reply = error_reply(err)
            return cut_short(reply) if broken == "truncated" else to_response(reply)
        try:
            sb.enter(user_id)
        except GraphError as err:
            return to_response(error_reply(err))
        try:
            if sb.latency_ms:  # in flight while "slow": counts against the concurrency limit
                await asyncio.sleep(sb.latency_ms / 1000)
            sb.spend(user_id)
            headers = {k.lower(): v for k, v in request.headers.items()}
            call = Call(
                user_id,
                request.method,
                path.split("/"),
                dict(request.query_params),
                headers,
                body,
                base,
            )
            reply = await dispatch(sb, call)
        except GraphError as err:
            reply = error_reply(err)
        finally:
            sb.leave(user_id)
        return cut_short(reply) if broken == "truncated" else to_response(reply)

    methods = ["GET", "POST", "PATCH", "DELETE", "PUT"]
    routes = [Route("/v1.0/{path:path}", graph_endpoint, methods=methods), *control_routes(sb)]
    return Starlette(routes=routes)


def _creates(method: str, path: str, body: Any) -> bool:
    """Whether a request creates contacts: a POST to a contacts collection, or a ``$batch``
    holding one."""

    def creating(verb: str, url: str) -> bool:
        return verb.upper() == "POST" and url.partition("?")[0].rstrip("/").endswith("/contacts")

    if path.lower() == "$batch" and method == "POST" and isinstance(body, dict):
        inner = body.get("requests") or []
        return any(
            isinstance(r, dict) and creating(str(r.get("method", "")), str(r.get("url", "")))
            for r in inner
        )
    return creating(method, "/" + path)
