"""The Google listener: People API ``/v1/...``, OAuth (``/o/oauth2/v2/auth``, ``/token``) and the
``/_sandbox/...`` control API, all on one plain-http port.

Each /v1 request is resolved to a People API method (named as in the discovery document, without
the ``people.`` prefix), authenticated, checked for scope and quota, then run under the state lock.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from sandbox.google.control import control_routes
from sandbox.google.oauth import oauth_routes
from sandbox.google.person import (
    UPDATE_FIELDS,
    GoogleError,
    check_person,
    error_info,
    invalid,
    iso,
    parse_mask,
    read_mask,
    rpc_status,
)
from sandbox.google.state import (
    CONTACTS_SCOPE,
    READONLY_SCOPE,
    SYSTEM_GROUPS,
    GoogleSandbox,
    Group,
)

MAX_BATCH_GET = 200
MAX_BATCH_CREATE = 200
MAX_BATCH_UPDATE = 200
MAX_BATCH_DELETE = 500
MAX_MEMBERS_MODIFY = 1000
SYSTEM_PARAMS = {
    "alt", "fields", "key", "prettyPrint", "quotaUser", "$.xgafv", "access_token", "callback",
    "upload_protocol", "uploadType", "oauth_token",
}  # fmt: skip
PERSON_ID = r"(?P<id>[^/:]+)"
GROUP_ID = r"(?P<gid>[^/:]+)"


@dataclass
class Call:
    """One authenticated /v1 request: who, the query, the JSON body and the path's ids."""

    email: str
    q: QueryParams
    body: Any
    p: dict[str, str]


Handler = Callable[[GoogleSandbox, Call], Any]


@dataclass
class Method:
    name: str  # e.g. "connections.list", "batchCreateContacts"
    http: str
    pattern: re.Pattern[str]
    kind: str  # "read" or "write" (which quota, which scope)
    params: frozenset[str]
    handler: Handler


# --- handlers ------------------------------------------------------------------------------------


def get_person(sb: GoogleSandbox, c: Call) -> Any:
    mask = read_mask(c.q.get("personFields") or c.q.get("requestMask.includeField"))
    with sb.lock:
        user = sb.user(c.email)
        if c.p["id"] in ("me", user.id):
            return sb.profile(c.email, mask)
        return sb.render(sb.contact(c.email, c.p["id"]), mask, just_read=True)


def batch_get(sb: GoogleSandbox, c: Call) -> Any:
    names = c.q.getlist("resourceNames")
    if not names:
        raise invalid("resourceNames must contain at least one resource name.")
    if len(names) > MAX_BATCH_GET:
        raise invalid(f"resourceNames must contain at most {MAX_BATCH_GET} resource names.")
    mask = read_mask(c.q.get("personFields") or c.q.get("requestMask.includeField"))
    responses = []
    with sb.lock:
        own = sb.user(c.email).resource_name
        for rn in names:
            if sb.faults.rate_partial and sb.fault_rng.random() < sb.faults.rate_partial:
                sb.count("fault_partial")
                continue  # a 200 that leaves this one out
            try:
                if rn in ("people/me", own):
                    person = sb.profile(c.email, mask)
                else:
                    person = sb.render(sb.contact(c.email, rn), mask, just_read=True)
                responses.append(
                    {"requestedResourceName": rn, "httpStatusCode": 200, "person": person}
                )
            except GoogleError as err:
                responses.append(
                    {
                        "requestedResourceName": rn,
                        "httpStatusCode": err.code,
                        "status": rpc_status(err),
                    }
                )
    return {"responses": responses}


def list_connections(sb: GoogleSandbox, c: Call) -> Any:
    if c.p["id"] != "me":
        raise invalid("Only people/me is valid for connections.")
    flat = {k: v for k, v in c.q.items() if k != "sources"}
    flat["sources"] = ",".join(sorted(c.q.getlist("sources")))
    return sb.list_connections(c.email, flat)


MAX_SEARCH_PAGE = 30


def search_contacts(sb: GoogleSandbox, c: Call) -> Any:
    """Contacts whose names, nicknames, emails, phones or organizations start a phrase with the
    query, from the search cache as of the last warm-up (an empty query); at most 30."""
    if "query" not in c.q:
        raise invalid("query is required.")
    mask = read_mask(c.q.get("readMask"), name="readMask")
    try:
        size = int(c.q.get("pageSize") or 0) or 10
    except ValueError as exc:
        raise invalid("Invalid pageSize.") from exc
    if size < 0:
        raise invalid("pageSize must not be negative.")
    hits = sb.search_contacts(c.email, c.q.get("query") or "")
    with sb.lock:
        results = [{"person": sb.render(h, mask)} for h in hits[: min(size, MAX_SEARCH_PAGE)]]
    return {"results": results} if results else {}


def create_contact(sb: GoogleSandbox, c: Call) -> Any:
    mask = read_mask(c.q.get("personFields"), required=False)
    with sb.lock:
        return sb.render(sb.create(c.email, check_person(c.body)), mask)


def update_contact(sb: GoogleSandbox, c: Call) -> Any:
    fields = update_mask(c.q.get("updatePersonFields"), "updatePersonFields")
    mask = read_mask(c.q.get("personFields"), required=False)
    person = check_person(c.body)
    rn = f"people/{c.p['id']}"
    if person.get("resourceName") not in (None, rn):
        raise invalid("person.resourceName does not match the requested resource name.")
    with sb.lock:
        return sb.render(sb.update(c.email, rn, person, fields), mask)


def delete_contact(sb: GoogleSandbox, c: Call) -> Any:
    sb.delete_contact(c.email, f"people/{c.p['id']}")
    return {}


def batch_create(sb: GoogleSandbox, c: Call) -> Any:
    body = require_object(c.body)
    contacts = body.get("contacts")
    if not isinstance(contacts, list) or not contacts:
        raise invalid("contacts must contain at least one contact.")
    if len(contacts) > MAX_BATCH_CREATE:
        raise invalid(f"Too many contacts in the request; the limit is {MAX_BATCH_CREATE}.")
    mask = optional_read_mask(body.get("readMask"))
    people = []
    errors: dict[str, Any] = {}
    for i, item in enumerate(contacts):
        try:
            people.append(check_person((item or {}).get("contactPerson"), "contactPerson"))
        except GoogleError as err:
            errors[str(i)] = rpc_status(err)
    with sb.lock:
        for i, person in enumerate(people):
            try:
                sb.check_groups(c.email, person)
            except GoogleError as err:
                errors[str(i)] = rpc_status(err)
        if errors:
            raise batch_failure("BatchCreateContactsErrorDetails", errors)
        created = [sb.create(c.email, person) for person in people]
        if not mask:
            return {}
        return {
            "createdPeople": [
                {"httpStatusCode": 200, "person": sb.render(new, mask)} for new in created
            ]
        }


def batch_update(sb: GoogleSandbox, c: Call) -> Any:
    body = require_object(c.body)
    contacts = body.get("contacts")
    if not isinstance(contacts, dict) or not contacts:
        raise invalid("contacts must contain at least one contact.")
    if len(contacts) > MAX_BATCH_UPDATE:
        raise invalid(f"Too many contacts in the request; the limit is {MAX_BATCH_UPDATE}.")
    fields = update_mask(body.get("updateMask"), "updateMask")
    mask = optional_read_mask(body.get("readMask"))
    with sb.lock:
        errors: dict[str, Any] = {}
        for rn, person in contacts.items():
            try:
                check_person(person)
                sb.check_update(c.email, rn, person, fields)
            except GoogleError as err:
                errors[rn] = rpc_status(err)
        if errors:
            raise batch_failure("BatchUpdateContactsErrorDetails", errors)
        updated = {rn: sb.update(c.email, rn, person, fields) for rn, person in contacts.items()}
        if not mask:
            return {}
        return {
            "updateResult": {
                rn: {
                    "requestedResourceName": rn,
                    "httpStatusCode": 200,
                    "person": sb.render(changed, mask),
                }
                for rn, changed in updated.items()
            }
        }


def batch_delete(sb: GoogleSandbox, c: Call) -> Any:
    names = require_object(c.body).get("resourceNames")
    if not isinstance(names, list) or not names:
        raise invalid("resourceNames must contain at least one resource name.")
    if len(names) > MAX_BATCH_DELETE:
        raise invalid(f"Too many resource names in the request; the limit is {MAX_BATCH_DELETE}.")
    with sb.lock:
        for rn in names:
            sb.contact(c.email, str(rn))  # all or nothing: a missing one fails the whole batch
        for rn in dict.fromkeys(str(n) for n in names):
            sb.delete_contact(c.email, rn)
    return {}


def list_groups(sb: GoogleSandbox, c: Call) -> Any:
    try:
        size = int(c.q.get("pageSize") or 0) or 30
        start = int(c.q.get("pageToken") or 0)
    except ValueError as exc:
        raise invalid("Invalid pageSize or pageToken.") from exc
    if not 1 <= size <= 1000:
        raise invalid("pageSize must be between 1 and 1000.")
    with sb.lock:
        groups = sb.groups(c.email)
        page = [render_group(sb, c.email, g, None) for g in groups[start : start + size]]
    out: dict[str, Any] = {"contactGroups": page, "totalItems": len(groups)}
    if start + size < len(groups):
        out["nextPageToken"] = str(start + size)
    return out


def get_group(sb: GoogleSandbox, c: Call) -> Any:
    try:
        max_members = int(c.q.get("maxMembers") or 0)
    except ValueError as exc:
        raise invalid("Invalid maxMembers.") from exc
    with sb.lock:
        return render_group(
            sb, c.email, sb.group(c.email, f"contactGroups/{c.p['gid']}"), max_members
        )


def create_group(sb: GoogleSandbox, c: Call) -> Any:
    group = require_object(c.body).get("contactGroup") or {}
    name = str(group.get("name") or "").strip()
    if not name:
        raise invalid("contactGroup.name must not be empty.")
    with sb.lock:
        rn = sb.add_group(c.email, name)
        return render_group(sb, c.email, sb.group(c.email, rn), None)


def modify_members(sb: GoogleSandbox, c: Call) -> Any:
    body = require_object(c.body)
    add = [str(n) for n in body.get("resourceNamesToAdd") or []]
    remove = [str(n) for n in body.get("resourceNamesToRemove") or []]
    if len(add) + len(remove) > MAX_MEMBERS_MODIFY:
        raise invalid(f"At most {MAX_MEMBERS_MODIFY} resource names can be modified at once.")
    return sb.modify_members(c.email, f"contactGroups/{c.p['gid']}", add, remove)


# --- small pieces --------------------------------------------------------------------------------


def require_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise invalid("Invalid JSON payload received. Expected an object.")
    return body


def update_mask(value: Any, name: str) -> list[str]:
    paths = parse_mask(str(value or ""), name=name, allowed=UPDATE_FIELDS)
    if not paths:
        raise invalid(
            f"{name} mask is required. Please specify one or more valid paths. Valid paths are "
            "documented at https://developers.google.com/people/api/rest/v1/people/updateContact."
        )
    return paths


def optional_read_mask(value: Any) -> set[str]:
    """A batch readMask: empty means "skip the post-mutate get" (no people in the answer)."""
    return set(read_mask(str(value), name="readMask")) if value else set()


def batch_failure(kind: str, errors: dict[str, Any]) -> GoogleError:
    first = next(iter(errors.values()))
    status = {9: "FAILED_PRECONDITION", 5: "NOT_FOUND"}.get(first["code"], "INVALID_ARGUMENT")
    detail = {"@type": f"type.googleapis.com/google.people.v1.{kind}", "contactErrors": errors}
    return GoogleError(400, status, first["message"], [detail])


def render_group(
    sb: GoogleSandbox, email: str, g: Group, max_members: int | None
) -> dict[str, Any]:
    members = sb.members(email, g.resource_name)
    out: dict[str, Any] = {
        "resourceName": g.resource_name,
        "etag": g.etag,
        "metadata": {"updateTime": iso(g.updated)},
        "groupType": "SYSTEM_CONTACT_GROUP" if g.system else "USER_CONTACT_GROUP",
        "name": g.name,
        "formattedName": SYSTEM_GROUPS[g.resource_name][1] if g.system else g.name,
    }
    if members:
        out["memberCount"] = len(members)  # proto3 JSON leaves out zeros
    if max_members and members:
        out["memberResourceNames"] = members[:max_members]
    return out


PERSON_FIELDS_PARAMS = "personFields requestMask.includeField sources"
TABLE: list[tuple[str, str, str, str, str, Handler]] = [
    ("connections.list", "GET", f"people/{PERSON_ID}/connections", "read",
           f"{PERSON_FIELDS_PARAMS} pageSize pageToken requestSyncToken syncToken sortOrder",
           list_connections),
    ("getBatchGet", "GET", "people:batchGet", "read",
           f"{PERSON_FIELDS_PARAMS} resourceNames", batch_get),
    ("searchContacts", "GET", "people:searchContacts", "read",
           "query pageSize readMask sources", search_contacts),
    ("createContact", "POST", "people:createContact", "write", "personFields sources",
           create_contact),
    ("batchCreateContacts", "POST", "people:batchCreateContacts", "write", "", batch_create),
    ("batchUpdateContacts", "POST", "people:batchUpdateContacts", "write", "", batch_update),
    ("batchDeleteContacts", "POST", "people:batchDeleteContacts", "write", "", batch_delete),
    ("updateContact", "PATCH", f"people/{PERSON_ID}:updateContact", "write",
           "updatePersonFields personFields sources", update_contact),
    ("deleteContact", "DELETE", f"people/{PERSON_ID}:deleteContact", "write", "",
           delete_contact),
    ("get", "GET", f"people/{PERSON_ID}", "read", PERSON_FIELDS_PARAMS, get_person),
    ("contactGroups.list", "GET", "contactGroups", "read",
           "pageSize pageToken groupFields syncToken", list_groups),
    ("contactGroups.create", "POST", "contactGroups", "write", "", create_group),
    ("contactGroups.members.modify", "POST", f"contactGroups/{GROUP_ID}/members:modify",
           "write", "", modify_members),
    ("contactGroups.get", "GET", f"contactGroups/{GROUP_ID}", "read",
           "groupFields maxMembers", get_group),
]  # fmt: skip
METHODS = [
    Method(name, http, re.compile(f"^{path}$"), kind, frozenset(params.split()), handler)
    for name, http, path, kind, params, handler in TABLE
]


def resolve(http: str, path: str) -> tuple[Method, dict[str, str]]:
    allowed = False
    for m in METHODS:
        found = m.pattern.match(path)
        if found:
            if m.http == http:
                return m, found.groupdict()
            allowed = True
    if allowed:
        raise GoogleError(405, "INVALID_ARGUMENT", f"Method {http} is not allowed on {path}.")
    raise GoogleError(404, "NOT_FOUND", f"Method not found: v1/{path}.")


def check_query(m: Method, q: QueryParams) -> None:
    for key in q:
        if key not in m.params and key not in SYSTEM_PARAMS:
            raise invalid(
                f'Invalid JSON payload received. Unknown name "{key}": Cannot bind query '
                f"parameter. Field '{key}' could not be found in request message."
            )


def check_scope(m: Method, scopes: set[str]) -> None:
    needed = {CONTACTS_SCOPE} if m.kind == "write" else {CONTACTS_SCOPE, READONLY_SCOPE}
    if m.name == "get" or scopes & needed:
        return
    raise GoogleError(
        403,
        "PERMISSION_DENIED",
        "Request had insufficient authentication scopes.",
        [error_info("ACCESS_TOKEN_SCOPE_INSUFFICIENT", "googleapis.com")],
    )


class DroppedConnection(Response):
    """Starts a response and never finishes it: the server closes the connection mid-answer."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"512")],
            }
        )


def error_response(err: GoogleError) -> JSONResponse:
    return JSONResponse(err.body(), status_code=err.code, headers=err.headers)


# --- the ASGI app --------------------------------------------------------------------------------


def google_app(sb: GoogleSandbox) -> Starlette:
    async def v1(request: Request) -> Response:
        sb.count("total")
        path = request.path_params["path"]
        fault = None
        try:
            email, scopes = sb.authenticate(request.headers.get("authorization"))
            m, params = resolve(request.method, path)
            sb.count(m.name)
            check_query(m, request.query_params)
            check_scope(m, scopes)
            raw = await request.body()
            try:
                body = json.loads(raw) if raw else None
            except ValueError as exc:
                raise invalid("Invalid JSON payload received.") from exc
            with sb.mutation(email) if m.kind == "write" else nullcontext():
                delay = sb.latency_ms + sb.faults.slow_ms
                if delay:
                    await asyncio.sleep(delay / 1000)
                fault = sb.draw_fault(m.name)
                if fault == "reset":
                    return DroppedConnection()
                if fault == "429":
                    raise GoogleError(
                        429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."
                    )
                if fault == "503":
                    raise GoogleError(503, "UNAVAILABLE", "The service is currently unavailable.")
                sb.spend(email, m.kind)
                result = m.handler(sb, Call(email, request.query_params, body, params))
        except GoogleError as err:
            return error_response(err)
        if fault == "malformed":
            text = json.dumps(result)
            return Response(text[: max(1, len(text) // 2)], media_type="application/json")
        return JSONResponse(result)

    routes = [
        Route("/v1/{path:path}", v1, methods=["GET", "POST", "PATCH", "DELETE", "PUT"]),
        *oauth_routes(sb),
        *control_routes(sb),
    ]
    return Starlette(routes=routes)
