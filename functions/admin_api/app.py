"""Admin API: the CRM settings page and support staff manage connections here.

Thin: parse and validate (Powertools resolver with validation, which also publishes the OpenAPI
document), call the connection or support service, shape the response. Domain errors become HTTP
errors in one place below, always as ``{"error": {"code", "message", "details"}}``.
"""

from __future__ import annotations

import base64
import binascii
import json
from functools import lru_cache
from pathlib import Path as FilePath
from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError as RouteNotFound
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from aws_lambda_powertools.utilities.typing import LambdaContext
from contactsync.providers.base import AuthExpired, PermissionDenied, ProviderError
from contactsync.runtime.json_body import body_problem
from contactsync.runtime.observability import logger, metrics, tracer
from contactsync.runtime.wiring import build_queue, build_wiring
from contactsync.store.repository import AUDIT_ENTRY_ID_PATTERN, OWNER_ID_PATTERN, owner_id
from contactsync.sync.connections import Caller, CardDavLogin, ConnectionService
from contactsync.sync.erasure import Erasure
from contactsync.sync.errors import ServiceError
from contactsync.sync.support import SupportService, public_status, service_status
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

OPENAPI: dict[str, Any] = {
    "title": "contactsync admin API",
    "version": "1.0.0",
    "description": "Connections between CRM persons and Microsoft 365 / Google / CardDAV contacts: "
    "set-up, status, troubleshooting and history.",
    "security_schemes": {"bearer": HTTPBearer(bearerFormat="JWT")},
    "security": [{"bearer": []}],
}

app = APIGatewayHttpResolver(enable_validation=True)
app.enable_swagger(path="/docs", **OPENAPI)

ConnectionId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
CrmPersonId = Annotated[str, Field(min_length=1, max_length=18, pattern=r"^[0-9]+$")]
ProviderContactId = r"^[A-Za-z0-9_=+/.:@~-]+$"  # CardDAV ids are paths, with "@" at Fastmail
EntryId = Annotated[str, Path(max_length=40, pattern=AUDIT_ENTRY_ID_PATTERN)]
OwnerId = Annotated[str, Path(min_length=1, max_length=128, pattern=OWNER_ID_PATTERN)]


class NewConnection(BaseModel):
    """``microsoft`` and ``google`` answer with a sign-in URL; ``carddav`` (iCloud, Fastmail,
    Nextcloud, …) signs in at once with a username and an app-specific password, and the server
    URL or the account's email address to find the server from."""

    model_config = ConfigDict(extra="forbid")
    provider: Literal["microsoft", "google", "carddav"]
    server_url: str | None = Field(default=None, min_length=8, max_length=512)
    email: str | None = Field(
        default=None, min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$"
    )
    username: str | None = Field(default=None, min_length=1, max_length=320)
    password: SecretStr | None = Field(default=None, min_length=1, max_length=512)

    @model_validator(mode="after")
    def login_only_for_carddav(self) -> NewConnection:
        given = [f for f in ("server_url", "email", "username", "password") if getattr(self, f)]
        if self.provider != "carddav" and given:
            raise ValueError(f"{', '.join(given)}: only for provider carddav")
        if self.provider == "carddav":
            missing = [f for f in ("username", "password") if not getattr(self, f)]
            if not (self.server_url or self.email):
                missing.append("server_url (or email)")
            if missing:
                raise ValueError(f"a carddav connection needs {', '.join(missing)}")
        return self

    def login(self) -> CardDavLogin | None:
        if self.provider != "carddav":
            return None
        return CardDavLogin(
            username=self.username or "",
            password=self.password.get_secret_value() if self.password else "",
            server_url=self.server_url or "",
            email=self.email or "",
        )


class NewPassword(BaseModel):
    """Reconnecting a CardDAV account: the new app-specific password (and, if they changed,
    the username or server URL)."""

    model_config = ConfigDict(extra="forbid")
    password: SecretStr = Field(min_length=1, max_length=512)
    username: str | None = Field(default=None, min_length=1, max_length=320)
    server_url: str | None = Field(default=None, min_length=8, max_length=512)

    def login(self) -> CardDavLogin:
        return CardDavLogin(
            username=self.username or "",
            password=self.password.get_secret_value(),
            server_url=self.server_url or "",
        )


class ConnectionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    folder_id: str | None = Field(default=None, min_length=1, max_length=512)
    direction: Literal["two_way", "to_crm", "to_provider"] | None = None
    conflict_policy: Literal["newest_wins", "crm_wins", "provider_wins"] | None = None
    phone_region: str | None = Field(default=None, min_length=2, max_length=2)
    visibility: Literal["owner", "group", "company"] | None = Field(
        default=None,
        description="Who sees the CRM persons the sync creates: the owner only, the owner's "
        "visibility group, or the entire company (unset: the CRM's default).",
    )


class NewGroup(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100, pattern=r"\S")


class DuplicateMerge(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keep: CrmPersonId
    merge: list[CrmPersonId] = Field(min_length=1, max_length=20)


class Unauthorized(ServiceError):
    status = 401
    code = "unauthorized"


@lru_cache(maxsize=1)
def service() -> ConnectionService:
    """Built on first use, once per cold start."""
    return ConnectionService(build_wiring(), build_queue())


def erasure() -> Erasure:
    return Erasure(service())


def support() -> SupportService:
    """Cheap to build: it shares the connection service's wiring and queue."""
    built = service()
    return SupportService(built.wiring, built.queue)


def caller_from(event: Any) -> Caller:
    """The caller as the JWT authorizer vouched for them (claims arrive as strings)."""
    claims = event.request_context.authorizer.jwt_claim or {}
    user_id = str(claims.get("sub") or "")
    company_id = str(claims.get("company_id") or "")
    if not user_id or not company_id:
        raise Unauthorized("the token names no user or company")
    try:
        owner_id(user_id, "the token's sub")
        owner_id(company_id, "the token's company_id")
    except ValueError as exc:
        raise Unauthorized(str(exc)) from exc
    return Caller(user_id=user_id, company_id=company_id, is_admin=claims.get("role") == "admin")


def _error(status: int, code: str, message: str, details: Any = None) -> Response[Any]:
    return Response(
        status_code=status,
        content_type="application/json",
        body={"error": {"code": code, "message": message, "details": details or {}}},
    )


@app.exception_handler(ServiceError)
def service_error(exc: ServiceError) -> Response[Any]:
    return _error(exc.status, exc.code, exc.message, exc.details)


@app.exception_handler(ProviderError)
def provider_error(exc: ProviderError) -> Response[Any]:
    """A side failed where no service turned it into a domain error: never a bare 500."""
    if isinstance(exc, AuthExpired):
        return _error(409, "conflict", f"sign in again: {exc.message}")
    if isinstance(exc, PermissionDenied):
        return _error(403, "forbidden", exc.message, {"missing_permissions": exc.missing})
    return _error(503, "provider_unavailable", f"a provider did not answer: {exc.message}")


@app.not_found
def route_not_found(exc: RouteNotFound) -> Response[Any]:
    return _error(404, "not_found", "no such route")


@app.exception_handler(UnicodeDecodeError)
def undecodable_body(exc: UnicodeDecodeError) -> Response[Any]:
    """A body that is not UTF-8 (API Gateway hands it over base64-encoded) is not JSON either."""
    return _error(400, "invalid_request", "the request body must be UTF-8 encoded JSON")


@app.exception_handler(RequestValidationError)
def invalid_request(exc: RequestValidationError) -> Response[Any]:
    problems = [
        {"where": ".".join(str(p) for p in e.get("loc", ())), "problem": e.get("msg", "")}
        for e in exc.errors()
    ]
    return _error(422, "invalid_request", "the request is not valid", {"problems": problems})


@app.post("/crm/connect")
def connect_crm() -> dict[str, str]:
    return service().crm_authorization(caller_from(app.current_event))


@app.post("/connections")
def create_connection(body: NewConnection) -> Response[Any]:
    created = service().create(caller_from(app.current_event), body.provider, body.login())
    return Response(status_code=201, content_type="application/json", body=created)


@app.get("/oauth/<provider>/callback", include_in_schema=False)
def oauth_landing(provider: Annotated[str, Path(min_length=1, max_length=32)]) -> Response[str]:
    """Where the provider sends the browser back: a page of the settings UI that finishes the
    sign-in with the signed-in user's own credentials (this GET alone attaches nothing)."""
    return page("signed-in.html")


@app.post("/oauth/<provider>/callback")
def oauth_callback(
    provider: Annotated[str, Path(min_length=1, max_length=32)],
    state: Annotated[str, Query(min_length=1, max_length=512)],
    code: Annotated[str | None, Query(max_length=4096)] = None,
    error: Annotated[str | None, Query(max_length=512)] = None,
) -> dict[str, Any]:
    """Finish a sign-in: only the user who started it can, with their bearer token."""
    caller = caller_from(app.current_event)
    query = {k: v for k, v in (app.current_event.query_string_parameters or {}).items()}
    return service().finish_authorization(provider, query, caller)


@app.get("/connections")
def list_connections() -> dict[str, Any]:
    return {"connections": service().list_for(caller_from(app.current_event))}


@app.get("/connections/<connection_id>")
def get_connection(connection_id: ConnectionId) -> dict[str, Any]:
    return service().get(caller_from(app.current_event), connection_id)


@app.get("/connections/<connection_id>/groups")
def list_groups(connection_id: ConnectionId) -> dict[str, Any]:
    return {"groups": service().groups(caller_from(app.current_event), connection_id)}


@app.post("/connections/<connection_id>/groups")
def create_group(connection_id: ConnectionId, body: NewGroup) -> Response[Any]:
    """A new folder (Outlook) or contact group (Google) made for the sync, to choose next."""
    created = service().create_group(caller_from(app.current_event), connection_id, body.name)
    return Response(status_code=201, content_type="application/json", body=created)


@app.patch("/connections/<connection_id>")
def update_connection(connection_id: ConnectionId, body: ConnectionSettings) -> dict[str, Any]:
    changes = body.model_dump(exclude_none=True)
    return service().update_settings(caller_from(app.current_event), connection_id, changes)


@app.delete("/connections/<connection_id>")
def remove_connection(connection_id: ConnectionId) -> dict[str, Any]:
    """Remove the connection for good: its sync stops, the provider's grant is revoked where the
    provider allows it, and its tokens, links, history and activity log are erased."""
    return erasure().remove_connection(caller_from(app.current_event), connection_id)


@app.delete("/users/<user_id>")
def remove_user(user_id: OwnerId) -> dict[str, Any]:
    """Remove a user of the caller's company for good (admins; or the user themself): every
    connection as above, and the CRM grant (revoked, erased)."""
    return erasure().remove_user(caller_from(app.current_event), user_id)


@app.delete("/companies/<company_id>")
def remove_company(company_id: OwnerId) -> dict[str, Any]:
    """Remove everything stored for the caller's company (admins only)."""
    return erasure().remove_company(caller_from(app.current_event), company_id)


@app.post("/connections/<connection_id>/start")
def start(connection_id: ConnectionId) -> dict[str, Any]:
    return service().start(caller_from(app.current_event), connection_id)


@app.post("/connections/<connection_id>/stop")
def stop(connection_id: ConnectionId) -> dict[str, Any]:
    return service().stop(caller_from(app.current_event), connection_id)


@app.post("/connections/<connection_id>/reconnect")
def reconnect(
    connection_id: ConnectionId, body: Annotated[NewPassword | None, Body()] = None
) -> dict[str, Any]:
    login = body.login() if body is not None else None
    return service().reconnect(caller_from(app.current_event), connection_id, login)


@app.post("/connections/<connection_id>/resync")
def resync(connection_id: ConnectionId) -> dict[str, Any]:
    return service().resync(caller_from(app.current_event), connection_id)


# --- support: preview, explain, duplicates, activity, held passes, status ----------------------


@app.get("/connections/<connection_id>/preview")
def preview(connection_id: ConnectionId) -> dict[str, Any]:
    return support().preview(caller_from(app.current_event), connection_id)


@app.get("/connections/<connection_id>/explain")
def explain(
    connection_id: ConnectionId,
    crm_person_id: Annotated[
        str | None, Query(min_length=1, max_length=18, pattern=r"^[0-9]+$")
    ] = None,
    provider_contact_id: Annotated[
        str | None, Query(min_length=1, max_length=512, pattern=ProviderContactId)
    ] = None,
) -> dict[str, Any]:
    return support().explain(
        caller_from(app.current_event),
        connection_id,
        crm_person_id=crm_person_id,
        provider_contact_id=provider_contact_id,
    )


@app.get("/connections/<connection_id>/contacts")
def find_contacts(
    connection_id: ConnectionId,
    q: Annotated[str, Query(min_length=2, max_length=100)],
) -> dict[str, Any]:
    """CRM persons by name or email (anyone's), to pick one to explain."""
    return support().find(caller_from(app.current_event), connection_id, q)


@app.get("/connections/<connection_id>/duplicates")
def duplicates(connection_id: ConnectionId) -> dict[str, Any]:
    return support().duplicates(caller_from(app.current_event), connection_id)


@app.post("/connections/<connection_id>/duplicates/merge")
def merge_duplicates(connection_id: ConnectionId, body: DuplicateMerge) -> dict[str, Any]:
    caller = caller_from(app.current_event)
    return support().merge_duplicates(caller, connection_id, body.keep, body.merge)


@app.get("/connections/<connection_id>/activity")
def activity(
    connection_id: ConnectionId,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(min_length=1, max_length=2048)] = None,
    kind: Annotated[str | None, Query(min_length=1, max_length=32, pattern=r"^[a-z_]+$")] = None,
) -> dict[str, Any]:
    return support().activity(
        caller_from(app.current_event), connection_id, limit=limit, cursor=cursor, kind=kind
    )


@app.post("/connections/<connection_id>/activity/<entry_id>/undo")
def undo(connection_id: ConnectionId, entry_id: EntryId) -> dict[str, Any]:
    return support().undo(caller_from(app.current_event), connection_id, entry_id)


@app.post("/connections/<connection_id>/confirm")
def confirm(connection_id: ConnectionId) -> dict[str, Any]:
    return support().confirm(caller_from(app.current_event), connection_id)


@app.post("/connections/<connection_id>/discard")
def discard(connection_id: ConnectionId) -> dict[str, Any]:
    return support().discard(caller_from(app.current_event), connection_id)


@app.get("/status")
def status() -> dict[str, Any]:
    caller_from(app.current_event)  # any signed-in caller may look
    return service_status(service().wiring.clock())


@app.get("/public/status")
def status_for_everyone() -> dict[str, Any]:
    """The public status page's data: per provider working or degraded, nothing of any tenant."""
    return public_status(service().wiring.clock())


# --- the settings page and the public status page (static files, same origin as the API) -------

PAGES = FilePath(__file__).resolve().parent / "pages"
PAGE_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
PAGE_HEADERS = {
    # Nothing but our own files runs or loads; no framing; the callback URL (it carries the
    # provider's one-time code) is never sent on as a referrer.
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
AssetName = Annotated[str, Path(max_length=64, pattern=r"^[a-z-]+\.(js|css)$")]


def page(name: str) -> Response[str]:
    """One of the files in ``pages/``, with the headers every page carries."""
    path = PAGES / name
    if not path.is_file():
        return _error(404, "not_found", f"no page {name!r}")
    return Response(
        status_code=200,
        content_type=PAGE_TYPES[path.suffix],
        body=path.read_text(encoding="utf-8"),
        headers=dict(PAGE_HEADERS),
    )


@app.get("/settings", include_in_schema=False)
def settings_page() -> Response[str]:
    return page("settings.html")


@app.get("/status-page", include_in_schema=False)
def status_page() -> Response[str]:
    return page("status.html")


@app.get("/assets/<name>", include_in_schema=False)
def asset(name: AssetName) -> Response[str]:
    return page(name)


@app.get("/openapi.json", include_in_schema=False)
def openapi_document() -> Response[Any]:
    return Response(status_code=200, content_type="application/json", body=openapi_json())


def openapi_json() -> str:
    """The API's OpenAPI document, generated from the routes and models above."""
    return app.get_openapi_json_schema(**OPENAPI)


def _hostile_body(event: dict[str, Any]) -> dict[str, Any] | None:
    """A 400 for a body too large, too deep or with too long a number, before it is parsed."""
    body = event.get("body")
    if event.get("isBase64Encoded") and isinstance(body, str):
        try:
            body = base64.b64decode(body)
        except binascii.Error:
            body = None  # the resolver answers it as an undecodable body
    problem = body_problem(body)
    if problem is None:
        return None
    refusal = {"error": {"code": "invalid_request", "message": problem.message, "details": {}}}
    return {
        "statusCode": problem.status,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(refusal),
        "isBase64Encoded": False,
    }


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return _hostile_body(event) or app.resolve(event, context)
