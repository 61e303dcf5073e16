"""How the Graph sandbox writes things down: contacts, folders, errors, replies."""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from sandbox.graph.state import EXTENDED, Folder, GraphError, GraphSandbox, StoredContact, iso

CONTACT_DEFAULTS: dict[str, Any] = {
    "birthday": None, "fileAs": "", "displayName": "", "givenName": None, "initials": None,
    "middleName": None, "nickName": None, "surname": None, "title": None, "yomiGivenName": None,
    "yomiSurname": None, "yomiCompanyName": None, "generation": None, "imAddresses": [],
    "jobTitle": None, "companyName": None, "department": None, "officeLocation": None,
    "profession": None, "businessHomePage": None, "assistantName": None, "manager": None,
    "homePhones": [], "mobilePhone": None, "businessPhones": [], "spouseName": None,
    "personalNotes": "", "children": [], "emailAddresses": [], "homeAddress": {},
    "businessAddress": {}, "otherAddress": {}, "categories": [],
}  # fmt: skip

EXPAND_RE = re.compile(r"singleValueExtendedProperties\(\$filter=id eq '((?:[^']|'')*)'\)", re.I)
# ``emailAddresses/any(a:a/address eq '...')``: the only filter Graph takes on that collection
# (``any`` with ``eq`` on ``address``; no other sub-property, operator or function).
EMAIL_FILTER_RE = re.compile(
    r"^emailAddresses/any\((\w+):\s*\1/address eq '((?:[^']|'')*)'\)$", re.I
)
NAME_FILTER_RE = re.compile(r"^displayName eq '((?:[^']|'')*)'$", re.I)
TAG_FILTER_RE = re.compile(
    r"^singleValueExtendedProperties/any\((\w+):\s*\1/id eq '((?:[^']|'')*)'"
    r"\s+and\s+\1/value eq '((?:[^']|'')*)'\)$",
    re.I,
)


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


def error_reply(err: GraphError) -> Reply:
    headers = {"Retry-After": str(err.retry_after)} if err.status in (429, 503) else {}
    body = {
        "error": {
            "code": err.code,
            "message": err.message,
            "innerError": {"date": iso(datetime.now(UTC)), "request-id": secrets.token_hex(16)},
        }
    }
    return Reply(err.status, body, headers)


# --- rendering ---------------------------------------------------------------------------------


def render_contact(
    c: StoredContact, expand: str | None = None, *, immutable: bool = True
) -> dict[str, Any]:
    """A contact as Graph shows it; ``immutable`` is whether the request sent ``Prefer:
    IdType="ImmutableId"`` (the control API always shows the immutable id)."""
    body: dict[str, Any] = {
        "@odata.etag": c.etag,
        "id": c.wire_id(immutable),
        "createdDateTime": iso(c.created),
        "lastModifiedDateTime": iso(c.modified),
        "changeKey": c.change_key,
        "parentFolderId": c.folder_id,
        **CONTACT_DEFAULTS,
        **json.loads(json.dumps(c.props)),  # a copy: callers may not alias our state
    }
    wanted = expanded_ids(expand)
    if wanted is not None:
        body[EXTENDED] = [
            {"id": pid, "value": value}
            for pid, value in c.extended.items()
            if not wanted or pid.lower() in wanted
        ]
    return body


def expanded_ids(expand: str | None) -> set[str] | None:
    """The extended property ids an ``$expand`` asks for (empty set: all; None: not asked)."""
    if not expand or EXTENDED.lower() not in expand.lower():
        return None
    return {m.replace("''", "'").lower() for m in EXPAND_RE.findall(expand)}


def render_folder(f: Folder, sb: GraphSandbox) -> dict[str, Any]:
    default = sb.user(f.user_id).default_folder_id
    return {
        "id": f.id,
        "displayName": f.display_name,
        "parentFolderId": "" if f.id == default else default,
    }


def to_response(reply: Reply) -> Response:
    if reply.body is None:
        return Response(status_code=reply.status, headers=reply.headers)
    return JSONResponse(reply.body, status_code=reply.status, headers=reply.headers)


def cut_short(reply: Reply) -> Response:
    """The reply with its JSON body cut in half (the chaos tests' ``truncated`` break)."""
    if reply.body is None:
        return to_response(reply)
    text = json.dumps(reply.body)
    return Response(
        text[: max(1, len(text) // 2)],
        status_code=reply.status,
        headers=reply.headers,
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
