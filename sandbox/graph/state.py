"""The Graph sandbox's in-memory world: users, folders, contacts, tokens, delta, subscriptions.

One ``GraphSandbox`` is shared by the identity listener and the Graph listener (and by tests that
poke it directly). Every mutation happens under one lock and goes through the same few methods,
so an edit made through the control API bumps the change key, shows up in delta and fires change
notifications exactly like an edit made through the Graph API.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import random
import re
import secrets
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

MAX_SUBSCRIPTION_MINUTES = 4230  # Outlook resources (contacts): just under three days
MAX_CLIENT_STATE = 128
MAX_DELTA_PAGE = 1000  # cap on Prefer: odata.maxpagesize
DEFAULT_PAGE = 10  # Graph's default page size for contacts (list and delta)
NOTIFY_WINDOW = 0.2  # seconds during which changes are gathered into one POST
DELIVERY_ATTEMPTS = 4
BREAKS = frozenset({"reset", "truncated"})  # broken answers the chaos tests can ask for
IMMUTABLE_RE = re.compile(r'idtype\s*=\s*"?immutableid"?', re.I)

# Contact properties a client may write (a subset of microsoft.graph.contact; enough for us and
# for the SDK test). Anything else in a POST/PATCH body is rejected like Graph does.
WRITABLE = frozenset(
    {
        "givenName", "middleName", "surname", "displayName", "nickName", "title", "initials",
        "generation", "fileAs", "emailAddresses", "businessPhones", "homePhones", "mobilePhone",
        "imAddresses", "companyName", "department", "jobTitle", "officeLocation", "profession",
        "manager", "assistantName", "spouseName", "children", "businessAddress", "homeAddress",
        "otherAddress", "birthday", "personalNotes", "businessHomePage", "categories",
        "yomiGivenName", "yomiSurname", "yomiCompanyName",
    }
)  # fmt: skip
LIST_PROPS = frozenset(
    {"emailAddresses", "businessPhones", "homePhones", "imAddresses", "children", "categories"}
)
ADDRESS_PROPS = frozenset({"businessAddress", "homeAddress", "otherAddress"})
EXTENDED = "singleValueExtendedProperties"


class GraphError(Exception):
    """A Graph error response: status, error code and message."""

    def __init__(self, status: int, code: str, message: str, retry_after: int = 0) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


def graph_id(prefix: str) -> str:
    """An opaque, URL-safe id shaped like an Exchange item id."""
    raw = base64.urlsafe_b64encode(uuid.uuid4().bytes + secrets.token_bytes(8))
    return prefix + raw.decode().rstrip("=")


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass
class User:
    id: str
    email: str
    display_name: str
    default_folder_id: str = ""


@dataclass
class Folder:
    id: str
    user_id: str
    display_name: str


@dataclass
class StoredContact:
    """A contact. ``id`` is its immutable id (what a client sending ``Prefer:
    IdType="ImmutableId"`` sees, and what tests use); ``rest_id`` is the default id, which Outlook
    changes whenever the item moves to another folder (``left`` keeps the one it had in each
    folder it left, so a delta of that folder reports the id its client knew)."""

    id: str
    user_id: str
    folder_id: str
    props: dict[str, Any]
    extended: dict[str, str]  # extended property id -> value
    change_key: str
    created: datetime
    modified: datetime
    rest_id: str = field(default_factory=lambda: graph_id("AAMk"))
    left: dict[str, str] = field(default_factory=dict)  # folder id -> rest id it had there

    @property
    def etag(self) -> str:
        return f'W/"{self.change_key}"'

    def wire_id(self, immutable: bool, folder_id: str | None = None) -> str:
        """The id a client sees: the immutable one, or the default id it had in ``folder_id``."""
        if immutable:
            return self.id
        if folder_id is not None and folder_id != self.folder_id:
            return self.left.get(folder_id, self.rest_id)
        return self.rest_id


def wants_immutable_ids(prefer: str | None) -> bool:
    """Whether a ``Prefer`` header asks for immutable ids (it applies to that request only)."""
    return bool(prefer) and IMMUTABLE_RE.search(prefer or "") is not None


@dataclass
class Subscription:
    id: str
    user_id: str
    resource: str
    folder_id: str | None  # None: every contact of the user
    change_types: frozenset[str]
    notification_url: str
    lifecycle_url: str | None
    client_state: str | None
    expires: datetime
    app_id: str
    immutable_ids: bool = False  # created with Prefer: IdType="ImmutableId"

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "resource": self.resource,
            "applicationId": self.app_id,
            "changeType": ",".join(sorted(self.change_types)),
            "clientState": self.client_state,
            "notificationUrl": self.notification_url,
            "lifecycleNotificationUrl": self.lifecycle_url,
            "expirationDateTime": iso(self.expires),
            "creatorId": self.user_id,
        }


@dataclass
class Delivery:
    """One pending POST of notification items to a URL (items gathered within a window)."""

    url: str
    items: list[dict[str, Any]]
    due: float  # time.monotonic() when it may be sent
    attempts: int = 0


@dataclass
class DeltaSession:
    user_id: str
    folder_id: str
    remaining: list[str]  # contact ids still to return in this round
    end_seq: int  # change sequence the round's delta token starts from
    removed: set[str] = field(default_factory=set)  # ids to report as @removed


@dataclass
class AuthCode:
    user_id: str
    client_id: str
    redirect_uri: str
    scope: str
    code_challenge: str
    code_challenge_method: str
    nonce: str
    expires: datetime


@dataclass
class AccessGrant:
    user_id: str
    client_id: str
    expires: datetime


@dataclass
class RefreshGrant:
    user_id: str
    client_id: str
    scope: str
    revoked: bool = False


@dataclass
class Limits:
    budget: int = 10_000  # requests per window per mailbox (Outlook service limit)
    window_seconds: float = 600.0
    concurrency: int = 4


class GraphSandbox:
    """State shared by the Graph and identity apps. Thread-safe: one lock around mutations."""

    def __init__(
        self,
        *,
        clock: Callable[[], datetime] | None = None,
        latency_ms: int = 0,
        client_id: str | None = None,
        client_secret: str | None = None,
    ) -> None:
        self._clock = clock or (lambda: datetime.now(UTC))
        self.clock_offset = timedelta()
        self.latency_ms = latency_ms
        self.lock = threading.RLock()
        self.tenant_id = str(uuid.uuid4())
        self.client_id = client_id or str(uuid.uuid4())
        self.client_secret = client_secret or secrets.token_urlsafe(24)
        self.access_token_lifetime = timedelta(hours=1)
        self.limits = Limits()
        self.users: dict[str, User] = {}
        # The account the authorize endpoint signs in without asking (None: it shows its form)
        self.signed_in: str | None = None
        self.folders: dict[str, Folder] = {}
        self.contacts: dict[str, StoredContact] = {}  # by immutable id
        self._by_rest_id: dict[str, str] = {}  # current default id -> immutable id
        self._ever: dict[str, StoredContact] = {}  # deleted ones too (delta reports their ids)
        self.subscriptions: dict[str, Subscription] = {}
        self.requests: list[dict[str, Any]] = []  # every Graph request seen (sub-requests too)
        self.made: list[StoredContact] = []  # every contact ever created, deleted ones too
        self.sent: list[dict[str, Any]] = []  # notification deliveries made (or given up)
        self.delivery: dict[str, Any] = {
            "duplicate": False, "delay_ms": 0, "reorder": False, "drop_rate": 0.0,
        }  # fmt: skip
        self.dropped: list[dict[str, Any]] = []  # notifications lost on purpose (drop_rate)
        self._rng = random.Random(0)  # seeded: fault runs repeat
        self._pending: list[Delivery] = []
        self._seq = 0
        self._changes: list[tuple[int, str, str, str]] = []  # (seq, user, folder, contact)
        self._delta_tokens: dict[str, tuple[str, str, int]] = {}
        self._delta_sessions: dict[str, DeltaSession] = {}
        self._codes: dict[str, AuthCode] = {}
        self._access: dict[str, AccessGrant] = {}
        self._refresh: dict[str, RefreshGrant] = {}
        self._faults: deque[tuple[int, int]] = deque()  # (status, retry_after) per request
        self.empty_delta_pages = 0  # fault: the next n delta pages come back empty (not last)
        # ("reset" / "truncated", only creates?), one per request (chaos, lost answers)
        self._breaks: deque[tuple[str, bool]] = deque()
        self._recent: dict[str, deque[float]] = {}  # user -> request times (clock seconds)
        self._in_flight: dict[str, int] = {}

    # --- the two ASGI apps over this state --------------------------------------------------

    @functools.cached_property
    def graph_app(self) -> Any:
        """The Graph listener (``/v1.0`` and the ``/_sandbox`` control API)."""
        from sandbox.graph.app import graph_app  # noqa: PLC0415 - app.py imports this module

        return graph_app(self)

    @functools.cached_property
    def identity_app(self) -> Any:
        """The identity listener (serve it over TLS: MSAL insists on https)."""
        from sandbox.graph.identity import identity_app  # noqa: PLC0415 - it imports this module

        return identity_app(self)

    # --- clock --------------------------------------------------------------------------------

    def now(self) -> datetime:
        return self._clock() + self.clock_offset

    def advance_clock(self, seconds: float) -> None:
        with self.lock:
            self.clock_offset += timedelta(seconds=seconds)

    # --- users, folders, seeding --------------------------------------------------------------

    def add_user(self, email: str, display_name: str) -> str:
        with self.lock:
            user = User(id=str(uuid.uuid4()), email=email, display_name=display_name)
            self.users[user.id] = user
            user.default_folder_id = self.add_folder(user.id, "Contacts")
            return user.id

    def add_folder(self, user_id: str, name: str) -> str:
        with self.lock:
            self.user(user_id)
            folder = Folder(id=graph_id("AQMk"), user_id=user_id, display_name=name)
            self.folders[folder.id] = folder
            return folder.id

    def user(self, user_id: str) -> User:
        user = self.users.get(user_id)
        if user is None:
            raise GraphError(404, "ErrorItemNotFound", "The user does not exist.")
        return user

    def find_user(self, key: str) -> User | None:
        """A user by id or by email (what ``login_hint`` and ``/users/{upn}`` carry)."""
        key = key.lower()
        for user in self.users.values():
            if key in (user.id.lower(), user.email.lower()):
                return user
        return None

    def folder(self, user_id: str, folder_id: str) -> Folder:
        folder = self.folders.get(folder_id)
        if folder is None and folder_id.lower() == "contacts":  # well-known name
            folder = self.folders.get(self.user(user_id).default_folder_id)
        if folder is None or folder.user_id != user_id:
            raise GraphError(404, "ErrorItemNotFound", "The specified folder could not be found.")
        return folder

    def user_folders(self, user_id: str) -> list[Folder]:
        with self.lock:
            return [f for f in self.folders.values() if f.user_id == user_id]

    def seed_contacts(self, user_id: str, folder_id: str, n: int, *, seed: int = 0) -> list[str]:
        """Create ``n`` generated people (deterministic for a given seed)."""
        rng = random.Random(seed)
        ids = []
        for i in range(n):
            ids.append(self.create_contact(user_id, folder_id, generated_person(rng, i)).id)
        return ids

    # --- contacts -----------------------------------------------------------------------------

    def contact(self, user_id: str, contact_id: str, folder_id: str | None = None) -> StoredContact:
        """A contact by its immutable id or its current default id (an id it had before a move
        is gone: 404, like Outlook)."""
        stored = self.contacts.get(contact_id) or self.contacts.get(
            self._by_rest_id.get(contact_id, "")
        )
        if stored is None or stored.user_id != user_id:
            raise GraphError(
                404, "ErrorItemNotFound", "The specified object was not found in the store."
            )
        if folder_id is not None and stored.folder_id != self.folder(user_id, folder_id).id:
            raise GraphError(
                404, "ErrorItemNotFound", "The specified object was not found in the store."
            )
        return stored

    def folder_contacts(self, user_id: str, folder_id: str | None) -> list[StoredContact]:
        with self.lock:
            fid = self.folder(user_id, folder_id).id if folder_id else None
            found = [
                c
                for c in self.contacts.values()
                if c.user_id == user_id and (fid is None or c.folder_id == fid)
            ]
            return sorted(found, key=lambda c: (c.created, c.id))

    def create_contact(
        self, user_id: str, folder_id: str, body: dict[str, Any], *, app: bool = False
    ) -> StoredContact:
        props, extended = split_body(body)
        with self.lock:
            folder = self.folder(user_id, folder_id)
            now = self.now()
            if "displayName" not in props:
                parts = (props.get("givenName"), props.get("surname"))
                props["displayName"] = " ".join(p for p in parts if p)
            stored = StoredContact(
                id=graph_id("AAMk"),
                user_id=user_id,
                folder_id=folder.id,
                props=props,
                extended=extended,
                change_key=secrets.token_urlsafe(12),
                created=now,
                modified=now,
            )
            self.contacts[stored.id] = stored
            self._by_rest_id[stored.rest_id] = stored.id
            self._ever[stored.id] = stored
            self.made.append(stored)
            self._changed(stored, folder.id, "created")
            return stored

    def update_contact(
        self, user_id: str, contact_id: str, body: dict[str, Any], *, if_match: str | None = None
    ) -> StoredContact:
        props, extended = split_body(body)
        with self.lock:
            stored = self.contact(user_id, contact_id)
            check_if_match(stored, if_match)
            stored.props.update(props)
            stored.extended.update(extended)
            stored.change_key = secrets.token_urlsafe(12)
            stored.modified = self.now()
            self._changed(stored, stored.folder_id, "updated")
            return stored

    def delete_contact(self, user_id: str, contact_id: str, *, if_match: str | None = None) -> None:
        with self.lock:
            stored = self.contact(user_id, contact_id)
            check_if_match(stored, if_match)
            del self.contacts[stored.id]
            self._by_rest_id.pop(stored.rest_id, None)
            self._changed(stored, stored.folder_id, "deleted")

    def move_contact(self, user_id: str, contact_id: str, destination: str) -> StoredContact:
        """Outlook moves an item as "delete here, create there": its default id changes (the old
        one is 404 from now on); only its immutable id stays."""
        with self.lock:
            stored = self.contact(user_id, contact_id)
            target = self.folder(user_id, destination)
            old_folder = stored.folder_id
            if target.id == old_folder:
                return stored
            stored.left[old_folder] = stored.rest_id
            self._by_rest_id.pop(stored.rest_id, None)
            stored.rest_id = graph_id("AAMk")
            self._by_rest_id[stored.rest_id] = stored.id
            stored.folder_id = target.id
            stored.change_key = secrets.token_urlsafe(12)
            stored.modified = self.now()
            self._changed(stored, old_folder, "deleted")
            self._changed(stored, target.id, "created")
            return stored

    def _changed(self, stored: StoredContact, folder_id: str, change_type: str) -> None:
        self._seq += 1
        self._changes.append((self._seq, stored.user_id, folder_id, stored.id))
        self._notify(stored, folder_id, change_type)

    # --- delta --------------------------------------------------------------------------------

    def delta_start(self, user_id: str, folder_id: str, token: str | None) -> str:
        """Open a delta round (full when ``token`` is None); returns its first skip token."""
        with self.lock:
            fid = self.folder(user_id, folder_id).id
            if token is None:
                ids = [c.id for c in self.folder_contacts(user_id, fid)]
                session = DeltaSession(user_id, fid, ids, self._seq)
            else:
                known = self._delta_tokens.get(token)
                if known is None or known[:2] != (user_id, fid):
                    raise GraphError(
                        410,
                        "SyncStateNotFound",
                        "The sync state generation is not found. The delta token is expired "
                        "and data must be synchronized again.",
                    )
                since = known[2]
                ids = []
                for seq, uid, f, cid in self._changes:
                    if seq > since and uid == user_id and f == fid and cid not in ids:
                        ids.append(cid)
                session = DeltaSession(user_id, fid, ids, self._seq)
            skip = secrets.token_urlsafe(16)
            self._delta_sessions[skip] = session
            return skip

    def delta_page(
        self, user_id: str, skip: str, size: int
    ) -> tuple[list[StoredContact | tuple[StoredContact, str]], str | None, str | None]:
        """The next page of a round: contacts in the folder, or (contact, folder) for one that
        left it (deleted or moved out); then a skip or a delta token."""
        with self.lock:
            session = self._delta_sessions.pop(skip, None)
            if session is None or session.user_id != user_id:
                raise GraphError(
                    410, "SyncStateNotFound", "The sync state generation is not found."
                )
            page: list[StoredContact | tuple[StoredContact, str]] = []
            if self.empty_delta_pages > 0:  # a page with nothing on it, and more to come
                self.empty_delta_pages -= 1
                nxt = secrets.token_urlsafe(16)
                self._delta_sessions[nxt] = session
                return page, nxt, None
            for cid in session.remaining[:size]:
                stored = self.contacts.get(cid)
                if stored is not None and stored.folder_id == session.folder_id:
                    page.append(stored)
                else:
                    page.append((self._ever[cid], session.folder_id))
            session.remaining = session.remaining[size:]
            if session.remaining:
                nxt = secrets.token_urlsafe(16)
                self._delta_sessions[nxt] = session
                return page, nxt, None
            token = secrets.token_urlsafe(24)
            self._delta_tokens[token] = (user_id, session.folder_id, session.end_seq)
            return page, None, token

    def expire_delta_tokens(self, user_id: str | None = None) -> int:
        with self.lock:
            gone = [t for t, v in self._delta_tokens.items() if user_id in (None, v[0])]
            for t in gone:
                del self._delta_tokens[t]
            self._delta_sessions = {
                k: s for k, s in self._delta_sessions.items() if user_id not in (None, s.user_id)
            }
            return len(gone)

    # --- identity: codes and tokens -----------------------------------------------------------

    def issue_code(self, user_id: str, params: dict[str, str]) -> str:
        code = secrets.token_urlsafe(32)
        with self.lock:
            self._codes[code] = AuthCode(
                user_id=user_id,
                client_id=params.get("client_id", ""),
                redirect_uri=params.get("redirect_uri", ""),
                scope=params.get("scope", ""),
                code_challenge=params.get("code_challenge", ""),
                code_challenge_method=params.get("code_challenge_method", "plain"),
                nonce=params.get("nonce", ""),
                expires=self.now() + timedelta(minutes=10),
            )
        return code

    def redeem_code(self, code: str, client_id: str, redirect_uri: str, verifier: str) -> AuthCode:
        with self.lock:
            grant = self._codes.pop(code, None)  # single use
        if grant is None or grant.expires < self.now() or grant.client_id != client_id:
            raise GraphError(
                400,
                "invalid_grant",
                "AADSTS70008: The provided authorization code "
                "or refresh token has expired or is invalid.",
            )
        if grant.redirect_uri != redirect_uri:
            raise GraphError(400, "invalid_grant", "AADSTS50148: The redirect_uri does not match.")
        if grant.code_challenge:
            if grant.code_challenge_method == "S256":
                digest = hashlib.sha256(verifier.encode()).digest()
                expected = base64.urlsafe_b64encode(digest).decode().rstrip("=")
            else:
                expected = verifier
            if not secrets.compare_digest(expected, grant.code_challenge):
                raise GraphError(
                    400,
                    "invalid_grant",
                    "AADSTS501481: The Code_Verifier does not "
                    "match the code_challenge supplied in the authorization request.",
                )
        return grant

    def issue_tokens(self, user_id: str, client_id: str, scope: str) -> tuple[str, str, int]:
        """A new access token and refresh token; returns them with the lifetime in seconds."""
        access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(48)
        with self.lock:
            self._access[access] = AccessGrant(
                user_id, client_id, self.now() + self.access_token_lifetime
            )
            self._refresh[refresh] = RefreshGrant(user_id, client_id, scope)
        return access, refresh, int(self.access_token_lifetime.total_seconds())

    def redeem_refresh(self, refresh: str, client_id: str) -> RefreshGrant:
        with self.lock:
            grant = self._refresh.get(refresh)
        if grant is None or grant.revoked or grant.client_id != client_id:
            raise GraphError(
                400,
                "invalid_grant",
                "AADSTS50173: The provided grant has expired "
                "due to it being revoked, a fresh auth token is needed.",
            )
        return grant

    def revoke_refresh_tokens(self, user_id: str) -> int:
        with self.lock:
            grants = [g for g in self._refresh.values() if g.user_id == user_id and not g.revoked]
            for g in grants:
                g.revoked = True
            return len(grants)

    def expire_access_tokens(self, user_id: str | None = None) -> int:
        with self.lock:
            grants = [g for g in self._access.values() if user_id in (None, g.user_id)]
            for g in grants:
                g.expires = self.now() - timedelta(seconds=1)
            return len(grants)

    def authenticate(self, authorization: str | None) -> str:
        """The user an ``Authorization: Bearer`` header speaks for, or a 401 GraphError."""
        if not authorization or not authorization.lower().startswith("bearer "):
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
        with self.lock:
            grant = self._access.get(authorization[7:].strip())
        if grant is None:
            raise GraphError(401, "InvalidAuthenticationToken", "IDX14100: JWT is not well formed.")
        if grant.expires <= self.now():
            raise GraphError(
                401,
                "InvalidAuthenticationToken",
                "Lifetime validation failed, the token is expired.",
            )
        return grant.user_id

    def access_token_for(self, user_id: str) -> str:
        """A fresh access token for a user without the code flow (tests, the local runner)."""
        return self.issue_tokens(user_id, self.client_id, "Contacts.ReadWrite User.Read")[0]

    # --- throttling, faults, request log ------------------------------------------------------

    def record(
        self,
        method: str,
        path: str,
        user_id: str | None,
        *,
        batched: bool,
        body: Any = None,
        prefer: str | None = None,
    ) -> None:
        """Remember a request (tests count them, look at what PATCH bodies carried and at the
        ``Prefer`` header each request, or sub-request, sent)."""
        with self.lock:
            self.requests.append(
                {
                    "method": method,
                    "path": path,
                    "user_id": user_id,
                    "batched": batched,
                    "body": body,
                    "prefer": prefer,
                }
            )

    def inject_faults(self, status: int, count: int = 1, retry_after: int = 1) -> None:
        with self.lock:
            self._faults.extend([(status, retry_after)] * count)

    def clear_faults(self) -> None:
        """Forget injected faults and breaks and restore Graph's default limits."""
        with self.lock:
            self._faults.clear()
            self._breaks.clear()
            self.empty_delta_pages = 0
            self.limits = Limits()

    def inject_breaks(self, kind: str, count: int = 1, *, only_creates: bool = False) -> None:
        """The next ``count`` requests (with ``only_creates``: requests that create contacts,
        alone or in a ``$batch``) break: ``reset`` drops the connection before the request
        runs; ``truncated`` runs it (a write happens) and cuts its JSON answer in half."""
        if kind not in BREAKS:
            raise ValueError(f"unknown break {kind!r}; one of {sorted(BREAKS)}")
        with self.lock:
            self._breaks.extend([(kind, only_creates)] * count)

    def take_break(self, *, creates: bool) -> str | None:
        """The break that hits this request, if any (``creates``: it creates contacts)."""
        with self.lock:
            if not self._breaks or (self._breaks[0][1] and not creates):
                return None
            return self._breaks.popleft()[0]

    def take_fault(self) -> GraphError | None:
        with self.lock:
            if not self._faults:
                return None
            status, retry_after = self._faults.popleft()
        if status == 429:
            return GraphError(429, "TooManyRequests", "Too many requests.", retry_after)
        code = {500: "InternalServerError", 503: "ServiceUnavailable", 504: "GatewayTimeout"}
        return GraphError(status, code.get(status, "UnknownError"), "Injected fault.", retry_after)

    def spend(self, user_id: str) -> None:
        """Count one request against the mailbox's budget; 429 (with Retry-After) beyond it."""
        with self.lock:
            now = self.now().timestamp()
            recent = self._recent.setdefault(user_id, deque())
            while recent and recent[0] <= now - self.limits.window_seconds:
                recent.popleft()
            if len(recent) >= self.limits.budget:
                wait = max(1, int(recent[0] + self.limits.window_seconds - now) + 1)
                raise GraphError(
                    429, "ApplicationThrottled", "Application is over its MailboxRequests limit.",
                    wait,
                )  # fmt: skip
            recent.append(now)

    def enter(self, user_id: str) -> None:
        """One more request in flight for the mailbox; 429 beyond the concurrency limit."""
        with self.lock:
            if self._in_flight.get(user_id, 0) >= self.limits.concurrency:
                raise GraphError(
                    429,
                    "ApplicationThrottled",
                    "Application is over its MailboxConcurrency limit.",
                    1,
                )
            self._in_flight[user_id] = self._in_flight.get(user_id, 0) + 1

    def leave(self, user_id: str, slots: int = 1) -> None:
        with self.lock:
            self._in_flight[user_id] = max(0, self._in_flight.get(user_id, 0) - slots)

    def take_slots(self, user_id: str, wanted: int) -> int:
        """Up to ``wanted`` of the mailbox's free concurrency slots (a ``$batch`` runs up to four
        of its requests at a time); how many it got. Give them back with ``leave``."""
        with self.lock:
            free = max(0, self.limits.concurrency - self._in_flight.get(user_id, 0))
            got = min(wanted, free)
            self._in_flight[user_id] = self._in_flight.get(user_id, 0) + got
            return got

    # --- subscriptions and notifications ------------------------------------------------------

    def check_subscription(self, user_id: str, body: dict[str, Any]) -> Subscription:
        """Validate a POST /subscriptions body (everything but the URL handshake)."""
        resource = str(body.get("resource") or "").strip("/")
        folder_id = self._subscribed_folder(user_id, resource)
        types = {t.strip() for t in str(body.get("changeType") or "").split(",") if t.strip()}
        if not types or not types <= {"created", "updated", "deleted"}:
            raise GraphError(400, "InvalidRequest", "Invalid changeType.")
        url = str(body.get("notificationUrl") or "")
        lifecycle = body.get("lifecycleNotificationUrl")
        for u in [url] + ([str(lifecycle)] if lifecycle else []):
            if not acceptable_url(u):
                raise GraphError(
                    400, "InvalidRequest", "The Notification Url must use https scheme."
                )
        state = body.get("clientState")
        if state is not None and len(str(state)) > MAX_CLIENT_STATE:
            raise GraphError(400, "InvalidRequest", "clientState is longer than 128 characters.")
        expires = self._subscription_expiry(body.get("expirationDateTime"))
        return Subscription(
            id=str(uuid.uuid4()),
            user_id=user_id,
            resource=resource,
            folder_id=folder_id,
            change_types=frozenset(types),
            notification_url=url,
            lifecycle_url=str(lifecycle) if lifecycle else None,
            client_state=None if state is None else str(state),
            expires=expires,
            app_id=self.client_id,
        )

    def _subscribed_folder(self, user_id: str, resource: str) -> str | None:
        parts = resource.split("/")
        lowered = [p.lower() for p in parts]
        if lowered[:1] == ["users"] and len(parts) > 2:
            parts, lowered = ["me", *parts[2:]], ["me", *lowered[2:]]
        if lowered == ["me", "contacts"]:
            return None
        if len(parts) == 4 and lowered[1] == "contactfolders" and lowered[3] == "contacts":
            with self.lock:
                return self.folder(user_id, parts[2]).id
        raise GraphError(400, "InvalidRequest", f"Resource '{resource}' is not supported.")

    def _subscription_expiry(self, value: Any) -> datetime:
        try:
            expires = parse_iso(str(value))
        except ValueError as exc:
            raise GraphError(400, "InvalidRequest", "Invalid expirationDateTime.") from exc
        now = self.now()
        if expires <= now:
            raise GraphError(400, "InvalidRequest", "expirationDateTime must be in the future.")
        if expires > now + timedelta(minutes=MAX_SUBSCRIPTION_MINUTES):
            raise GraphError(
                400,
                "InvalidRequest",
                "Subscription expiration can only be 4230 minutes in the future.",
            )
        return expires

    def add_subscription(self, sub: Subscription) -> None:
        with self.lock:
            self.subscriptions[sub.id] = sub

    def live_subscription(self, user_id: str, sub_id: str) -> Subscription:
        with self.lock:
            sub = self.subscriptions.get(sub_id)
            if sub is None or sub.user_id != user_id or sub.expires <= self.now():
                raise GraphError(404, "ResourceNotFound", f"The object was not found. Id: {sub_id}")
            return sub

    def renew_subscription(self, user_id: str, sub_id: str, expires: Any) -> Subscription:
        with self.lock:
            sub = self.live_subscription(user_id, sub_id)
            sub.expires = self._subscription_expiry(expires)
            return sub

    def delete_subscription(self, user_id: str, sub_id: str) -> None:
        with self.lock:
            self.live_subscription(user_id, sub_id)
            del self.subscriptions[sub_id]

    def _notify(self, stored: StoredContact, folder_id: str, change_type: str) -> None:
        now = self.now()
        for sub in self.subscriptions.values():
            if sub.user_id != stored.user_id or sub.expires <= now:
                continue  # expired subscriptions stop delivering
            if change_type not in sub.change_types or sub.folder_id not in (None, folder_id):
                continue
            cid = stored.wire_id(sub.immutable_ids, folder_id)
            resource = f"Users/{stored.user_id}/Contacts/{cid}"
            item = {
                    "subscriptionId": sub.id,
                    "subscriptionExpirationDateTime": iso(sub.expires),
                    "changeType": change_type,
                    "resource": resource,
                    "resourceData": {
                        "@odata.type": "#Microsoft.Graph.Contact",
                        "@odata.id": resource,
                        "@odata.etag": stored.etag,
                        "id": cid,
                    },
                    "clientState": sub.client_state,
                    "tenantId": self.tenant_id,
            }  # fmt: skip
            if self._rng.random() < float(self.delivery["drop_rate"]):
                self.dropped.append(item)  # lost on the way: Graph never promised delivery
                continue
            self._enqueue(sub.notification_url, item)

    def fire_lifecycle(self, sub_id: str, event: str) -> None:
        """Send a lifecycle event; ``subscriptionRemoved`` also removes the subscription."""
        if event not in ("reauthorizationRequired", "subscriptionRemoved", "missed"):
            raise GraphError(400, "InvalidRequest", f"Unknown lifecycle event {event!r}.")
        with self.lock:
            sub = self.subscriptions.get(sub_id)
            if sub is None:
                raise GraphError(404, "ResourceNotFound", "No such subscription.")
            if not sub.lifecycle_url:
                raise GraphError(400, "InvalidRequest", "The subscription has no lifecycle URL.")
            self._enqueue(
                sub.lifecycle_url,
                {
                    "lifecycleEvent": event,
                    "subscriptionId": sub.id,
                    "subscriptionExpirationDateTime": iso(sub.expires),
                    "clientState": sub.client_state,
                    "tenantId": self.tenant_id,
                },
            )
            if event == "subscriptionRemoved":
                del self.subscriptions[sub_id]

    def _enqueue(self, url: str, item: dict[str, Any]) -> None:
        """Join a delivery to ``url`` still gathering items, or start a new one."""
        for d in self._pending:
            if d.url == url and d.attempts == 0 and d.due > time.monotonic():
                d.items.append(item)
                return
        delay = NOTIFY_WINDOW + int(self.delivery["delay_ms"]) / 1000
        self._pending.append(Delivery(url, [item], time.monotonic() + delay))

    def pending(self) -> list[dict[str, Any]]:
        with self.lock:
            return [
                {"url": d.url, "value": list(d.items), "attempts": d.attempts}
                for d in self._pending
            ]

    def take_due(self, *, everything: bool = False) -> list[Delivery]:
        """Deliveries whose time has come (all of them when ``everything``)."""
        with self.lock:
            now = time.monotonic()
            due = [d for d in self._pending if everything or d.due <= now]
            self._pending = [d for d in self._pending if d not in due]
            if self.delivery["reorder"]:
                due.reverse()
                for d in due:
                    d.items.reverse()
            return due

    def delivered(self, d: Delivery, status: int | None) -> None:
        """Record an attempt; a failed one is retried with backoff a few times, then dropped."""
        with self.lock:
            d.attempts += 1
            ok = status is not None and 200 <= status < 300
            self.sent.append(
                {
                    "url": d.url,
                    "value": d.items,
                    "status": status,
                    "attempt": d.attempts,
                    "at": iso(self.now()),
                }
            )
            if not ok and d.attempts < DELIVERY_ATTEMPTS:
                d.due = time.monotonic() + 0.25 * 2 ** (d.attempts - 1)
                self._pending.append(d)


# --- small pure pieces ------------------------------------------------------------------------


def split_body(body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Writable contact properties and extended properties from a POST/PATCH body."""
    props: dict[str, Any] = {}
    extended: dict[str, str] = {}
    for key, value in body.items():
        if key.startswith("@odata") or key in ("id", "changeKey", "parentFolderId"):
            continue
        if key == EXTENDED:
            for prop in value or []:
                extended[str(prop["id"])] = str(prop.get("value", ""))
            continue
        if key not in WRITABLE:
            raise GraphError(
                400,
                "RequestBodyRead",
                f"The property '{key}' does not exist on type 'microsoft.graph.contact'.",
            )
        if key == "birthday" and value:
            try:
                parse_iso(str(value))
            except ValueError as exc:
                raise GraphError(400, "RequestBodyRead", "Invalid birthday.") from exc
        props[key] = [] if key in LIST_PROPS and value is None else value
    return props, extended


def check_if_match(stored: StoredContact, if_match: str | None) -> None:
    if if_match is None or if_match.strip() == "*":
        return
    if if_match.strip() not in (stored.etag, stored.change_key, f'"{stored.change_key}"'):
        raise GraphError(
            412,
            "ErrorIrresolvableConflict",
            "The change key passed in the request does not match the current change key "
            "for the item.",
        )


def acceptable_url(url: str) -> bool:
    """https in production; plain http only to loopback, which the sandbox allows."""
    return url.startswith("https://") or url.startswith(("http://127.0.0.1", "http://localhost"))


FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tim",
         "Margaret", "John", "Katherine", "Dennis", "Sophie", "Hedy", "Claude"]  # fmt: skip
LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson",
        "Perlman", "Berners-Lee", "Hamilton", "Backus", "Johnson", "Ritchie", "Wilson"]  # fmt: skip
COMPANIES = ["Initech", "Globex", "Umbrella", "Hooli", "Stark Industries", "Wayne Enterprises"]
TITLES = ["Engineer", "Buyer", "Director", "Account Manager", "CTO", "Analyst"]
CITIES = [("Berlin", "10115", "Germany"), ("Lisbon", "1100-148", "Portugal"),
          ("Austin", "73301", "United States"), ("Leeds", "LS1 4AP", "United Kingdom")]  # fmt: skip


def generated_person(rng: random.Random, index: int) -> dict[str, Any]:
    """A plausible Outlook contact body (index keeps emails unique)."""
    given, surname = rng.choice(FIRST), rng.choice(LAST)
    company = rng.choice(COMPANIES)
    domain = company.lower().replace(" ", "") + ".example"
    city, postal, country = rng.choice(CITIES)
    body: dict[str, Any] = {
        "givenName": given,
        "surname": surname,
        "displayName": f"{given} {surname}",
        "emailAddresses": [
            {"name": f"{given} {surname}", "address": f"{given}.{surname}{index}@{domain}".lower()}
        ],
        "businessPhones": [f"+1 555 {rng.randint(100, 999)} {rng.randint(1000, 9999)}"],
        "companyName": company,
        "jobTitle": rng.choice(TITLES),
    }
    if rng.random() < 0.5:
        body["mobilePhone"] = f"+44 7700 {rng.randint(100000, 999999)}"
    if rng.random() < 0.4:
        body["businessAddress"] = {
            "street": f"{rng.randint(1, 200)} Main Street",
            "city": city,
            "state": "",
            "postalCode": postal,
            "countryOrRegion": country,
        }
    if rng.random() < 0.3:
        body["birthday"] = (
            f"{rng.randint(1950, 2000)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T00:00:00Z"
        )
    return body
