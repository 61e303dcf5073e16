"""The Pipedrive sandbox's in-memory, thread-safe state and every operation on it.

The HTTP layer (``app.py``) only parses requests and calls these methods; tests and the local
stack may call them directly to seed data or to act "as the user in the Pipedrive app".
"""

from __future__ import annotations

import base64
import json
import random
import secrets
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sandbox.pipedrive.app import build_app
from sandbox.pipedrive.delivery import DeliveryWorker
from sandbox.pipedrive.records import (
    ADDRESS_PARTS,
    CONTACT_SYNC_FIELDS,
    LISTED_PERMISSION_KEYS,
    PERMISSION_KEYS,
    PERSON_KEYS,
    VISIBILITY_BY_PLAN,
    ApiError,
    Company,
    Organization,
    Person,
    PersonField,
    TokenAnswer,
    User,
    Webhook,
    iso_millis,
    new_hash_key,
    parse_rfc3339,
)

MAX_PAGE = 500
MAX_WEBHOOKS_PER_USER = 40
ACCESS_TOKEN_SECONDS = 3599
BURST_WINDOW_SECONDS = 2.0
DEFAULT_BURST_LIMIT = 40  # requests per user per rolling 2 s; a mid plan (see README)
BASE_DAILY_TOKENS = 30_000  # per seat, times the plan multiplier (see README)
DEFAULT_PLAN_MULTIPLIER = 3
DEFAULT_PERSON_FIELDS = (
    ("name", "Name", "varchar"),
    ("first_name", "First name", "varchar"),
    ("last_name", "Last name", "varchar"),
    ("email", "Email", "varchar"),
    ("phone", "Phone", "phone"),
    ("org_id", "Organization", "org"),
    ("owner_id", "Owner", "user"),
    ("label_ids", "Labels", "set"),
    ("visible_to", "Visible to", "visible_to"),
)


class SandboxClock:
    """Wall-clock UTC plus an offset the control API can move forward."""

    def __init__(self) -> None:
        self._offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def advance(self, seconds: float) -> None:
        self._offset += timedelta(seconds=seconds)


@dataclass
class Fault:
    status: int
    remaining: int
    path_prefix: str = ""


@dataclass
class OAuthGrant:
    user_id: int
    client_id: str
    expires_at: datetime


def encode_cursor(key: tuple[Any, int]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode()


def decode_cursor(cursor: str) -> tuple[Any, int]:
    try:
        value, ident = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return value, int(ident)
    except (ValueError, TypeError) as exc:
        raise ApiError(400, "Invalid cursor") from exc


class PipedriveSandbox:
    """One in-memory Pipedrive (many companies). ``app`` is its ASGI application."""

    def __init__(
        self,
        *,
        clock: Callable[[], datetime] | None = None,
        latency_ms: int = 0,
        burst_limit: int = DEFAULT_BURST_LIMIT,
        webhook_retry_delays: tuple[float, ...] = (3.0, 30.0, 150.0),
    ) -> None:
        self._lock = threading.RLock()
        self._own_clock = SandboxClock()
        self.clock: Callable[[], datetime] = clock or self._own_clock
        self.latency_ms = latency_ms
        self.burst_limit = burst_limit
        self.plan_multiplier = DEFAULT_PLAN_MULTIPLIER
        self.daily_budget_override: int | None = None
        self.client_id = "sandbox-" + secrets.token_hex(8)
        self.client_secret = secrets.token_urlsafe(24)
        self.companies: dict[int, Company] = {}
        self.users: dict[int, User] = {}
        self.persons: dict[int, Person] = {}
        self.orgs: dict[int, Organization] = {}
        self.person_fields: dict[int, list[PersonField]] = {}
        self.webhooks: dict[int, Webhook] = {}
        self._ids: Counter[str] = Counter()
        self._access: dict[str, OAuthGrant] = {}
        self._refresh: dict[str, tuple[int, str]] = {}  # refresh token -> (user id, client id)
        self._codes: dict[str, tuple[int, str, str]] = {}  # code -> (user, client, redirect)
        self._login_user: int | None = None
        self._faults: list[Fault] = []
        # The permissions answer as the API documents it at HEAD does not list can_add_people /
        # can_add_organizations (still enforced: POST answers 403). True lists them too.
        self.lists_add_permissions = False
        self.partial_rate = 0.0  # an ``ids=`` listing leaves out each asked-for id this often
        self.empty_pages = 0  # the next n listing pages come back empty, more to come
        self._fault_rng = random.Random(0)
        self._breaks: list[tuple[str, str]] = []  # (kind, path prefix), one per request (chaos)
        self._bursts: dict[int, deque[float]] = {}
        self._spent: dict[tuple[int, str], int] = {}  # (company, UTC day) -> tokens
        self.stats: Counter[str] = Counter()
        self.delivery = DeliveryWorker(
            retry_delays=webhook_retry_delays, on_result=self._record_delivery
        )
        self.app = build_app(self)

    # --- ids and time --------------------------------------------------------------------------

    def _next_id(self, kind: str) -> int:
        self._ids[kind] += 1
        return self._ids[kind]

    def now(self) -> datetime:
        return self.clock()

    def advance_clock(self, seconds: float) -> None:
        if self.clock is not self._own_clock:
            raise ValueError("the clock was supplied by the caller; move it there")
        self._own_clock.advance(seconds)

    # --- seeding -------------------------------------------------------------------------------

    def add_company(self, name: str, *, contact_sync: bool = False) -> int:
        """A company; ``contact_sync`` is whether it enabled contact sync (off, the default,
        hides ``ims``, ``postal_address``, ``notes``, ``birthday``, ``job_title``)."""
        with self._lock:
            cid = self._next_id("company")
            domain = "".join(c for c in name.lower() if c.isalnum()) or f"company{cid}"
            self.companies[cid] = Company(cid, name, domain, contact_sync)
            now = self.now()
            self.person_fields[cid] = [
                PersonField(self._next_id("field"), key, label, ftype, now, custom=False)
                for key, label, ftype in DEFAULT_PERSON_FIELDS
            ]
            return cid

    def add_user(
        self,
        company_id: int,
        name: str,
        email: str,
        *,
        can_add_people: bool = True,
        can_add_organizations: bool = True,
        is_admin: bool = False,
    ) -> int:
        with self._lock:
            if company_id not in self.companies:
                raise ValueError(f"no company {company_id}")
            uid = self._next_id("user")
            permissions = dict.fromkeys(PERMISSION_KEYS, True)
            permissions["can_add_people"] = can_add_people
            permissions["can_add_organizations"] = can_add_organizations
            self.users[uid] = User(
                uid, company_id, name, email, is_admin, secrets.token_hex(20), permissions
            )
            if self._login_user is None:
                self._login_user = uid
            return uid

    def set_contact_sync(self, company_id: int, enabled: bool) -> None:
        with self._lock:
            self.companies[company_id].contact_sync = enabled

    def v2(self, person: Person) -> dict[str, Any]:
        """A person as the v2 API shows it to its company."""
        return self._shown(person.company_id, person.to_v2()) or {}

    def _shown(self, company_id: int, data: dict[str, Any] | None) -> dict[str, Any] | None:
        if data is None or self.companies[company_id].contact_sync:
            return data
        return {k: v for k, v in data.items() if k not in CONTACT_SYNC_FIELDS}

    def api_token(self, user_id: int) -> str:
        """The user's personal API token (sent as ``x-api-token``)."""
        return self.users[user_id].api_token

    def issue_token(self, user_id: int) -> str:
        """An OAuth access token for ``user_id``, as if the user had installed the app."""
        with self._lock:
            return self._grant(user_id, self.client_id)["access_token"]

    def seed_persons(
        self, owner_id: int, n: int, *, seed: int = 0, with_orgs: bool = True
    ) -> list[int]:
        """Add ``n`` persons owned by ``owner_id`` (no webhooks: like an import)."""
        rng = random.Random(seed)
        firsts = ("Ann", "Bob", "Cleo", "Dan", "Eve", "Finn", "Gia", "Hugo", "Ida", "Jon")
        lasts = ("Lee", "Moss", "Novak", "Ortiz", "Park", "Quinn", "Ruiz", "Silva", "Tamm")
        with self._lock:
            owner = self.users[owner_id]
            org_ids: list[int] = []
            if with_orgs:
                for k in range(max(1, n // 5)):
                    org_ids.append(self._insert_org(owner.company_id, f"Org {seed}-{k}", owner_id))
            ids = []
            now = self.now()
            for k in range(n):
                first, last = rng.choice(firsts), rng.choice(lasts)
                pid = self._next_id("person")
                self.persons[pid] = Person(
                    id=pid,
                    company_id=owner.company_id,
                    name=f"{first} {last}",
                    first_name=first,
                    last_name=last,
                    owner_id=owner_id,
                    org_id=rng.choice(org_ids) if org_ids else None,
                    add_time=now,
                    update_time=now,
                    emails=[
                        {
                            "value": f"{first}.{last}.{seed}.{k}@example.com".lower(),
                            "label": "work",
                            "primary": True,
                        }
                    ],
                    phones=[
                        {
                            "value": f"+3725{rng.randrange(10**6, 10**7)}",
                            "label": "mobile",
                            "primary": True,
                        }
                    ],
                )
                ids.append(pid)
            return ids

    # --- authentication ------------------------------------------------------------------------

    def authenticate(self, bearer: str | None, api_token: str | None) -> User:
        with self._lock:
            if bearer:
                grant = self._access.get(bearer)
                if grant is not None and grant.expires_at > self.now():
                    user = self.users.get(grant.user_id)
                    if user is not None and user.active:
                        return user
            if api_token:
                for user in self.users.values():
                    if user.active and secrets.compare_digest(user.api_token, api_token):
                        return user
        raise ApiError(401, "unauthorized access")

    def login_as(self, user_id: int) -> None:
        """Who approves the next ``/oauth/authorize`` (the sandbox has no login page)."""
        with self._lock:
            self._login_user = user_id

    def authorize(self, client_id: str, redirect_uri: str) -> str:
        with self._lock:
            if client_id != self.client_id:
                raise ApiError(400, "invalid client_id")
            if self._login_user is None:
                raise ApiError(400, "no user to log in as")
            code = secrets.token_urlsafe(16)
            self._codes[code] = (self._login_user, client_id, redirect_uri)
            return code

    def client_ok(self, client_id: str, client_secret: str) -> bool:
        return secrets.compare_digest(client_id, self.client_id) and secrets.compare_digest(
            client_secret, self.client_secret
        )

    def exchange_code(self, client_id: str, code: str, redirect_uri: str) -> TokenAnswer:
        with self._lock:
            found = self._codes.pop(code, None)
            if found is None or found[1] != client_id or found[2] != redirect_uri:
                raise ApiError(400, "invalid_grant")
            return self._grant(found[0], client_id)

    def refresh_grant(self, client_id: str, refresh_token: str) -> TokenAnswer:
        with self._lock:
            found = self._refresh.get(refresh_token)
            if found is None or found[1] != client_id:
                raise ApiError(400, "invalid_grant")
            # Pipedrive rotates refresh tokens: the answer carries a new one, the old one is spent.
            del self._refresh[refresh_token]
            return self._grant(found[0], client_id)

    def refresh_tokens_of(self, user_id: int) -> int:
        """How many refresh tokens of the user work (tests: was the grant revoked?)."""
        with self._lock:
            return sum(1 for u, _ in self._refresh.values() if u == user_id)

    def revoke_refresh_token(self, client_id: str, refresh_token: str) -> None:
        """``POST /oauth/revoke``: the grant's refresh token and the user's access tokens for
        the app stop working."""
        with self._lock:
            found = self._refresh.get(refresh_token)
            if found is None or found[1] != client_id:
                raise ApiError(400, "invalid_grant")
            del self._refresh[refresh_token]
            for token in [t for t, g in self._access.items() if g.user_id == found[0]]:
                del self._access[token]

    def _grant(self, user_id: int, client_id: str, refresh_token: str | None = None) -> TokenAnswer:
        access = f"{user_id}:{secrets.token_hex(20)}"
        refresh = refresh_token or f"{user_id}:{secrets.token_hex(24)}"
        expires = self.now() + timedelta(seconds=ACCESS_TOKEN_SECONDS)
        self._access[access] = OAuthGrant(user_id, client_id, expires)
        self._refresh[refresh] = (user_id, client_id)
        return {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": ACCESS_TOKEN_SECONDS,
            "refresh_token": refresh,
            "scope": "base,contacts:full",
        }

    def revoke_tokens(self, user_id: int) -> None:
        """Uninstall: every access and refresh token of the user stops working."""
        with self._lock:
            for token in [t for t, g in self._access.items() if g.user_id == user_id]:
                del self._access[token]
            for token in [t for t, (u, _) in self._refresh.items() if u == user_id]:
                del self._refresh[token]

    def expire_access_tokens(self, user_id: int) -> None:
        """Access tokens lapse but the refresh token still works (forces a refresh)."""
        with self._lock:
            for grant in self._access.values():
                if grant.user_id == user_id:
                    grant.expires_at = self.now() - timedelta(seconds=1)

    def set_permissions(self, user_id: int, **flags: bool) -> None:
        with self._lock:
            user = self.users[user_id]
            for key, value in flags.items():
                if key == "is_admin":
                    user.is_admin = bool(value)
                elif key in PERMISSION_KEYS:
                    user.permissions[key] = bool(value)
                else:
                    raise ValueError(f"unknown permission {key}")

    def permissions_of(self, user: User, target_id: int) -> dict[str, bool]:
        with self._lock:
            target = self._user_in_company(user, target_id)
            if target.id != user.id and not user.is_admin:
                raise ApiError(403, "You do not have permission to see other users' permissions.")
            keys = PERMISSION_KEYS if self.lists_add_permissions else LISTED_PERMISSION_KEYS
            return {k: target.can(k) for k in keys}

    def user_of_company(self, user: User, target_id: int) -> dict[str, Any]:
        """``GET /v1/users/{id}``: any user of the caller's company (404 for another company)."""
        with self._lock:
            return self._user_in_company(user, target_id).to_v1(self.companies[user.company_id])

    def _user_in_company(self, user: User, target_id: int) -> User:
        target = self.users.get(target_id)
        if target is None or target.company_id != user.company_id:
            raise ApiError(404, "User not found")
        return target

    # --- rate limits, faults, stats ------------------------------------------------------------

    def daily_budget(self, company_id: int) -> int:
        if self.daily_budget_override is not None:
            return self.daily_budget_override
        seats = sum(1 for u in self.users.values() if u.company_id == company_id and u.active)
        return BASE_DAILY_TOKENS * self.plan_multiplier * max(1, seats)

    def admit(self, user: User, cost: int) -> dict[str, str]:
        """Charge one request to the user's burst window and the company's daily budget.

        Returns the rate-limit headers; raises a 429 ApiError when either limit is exceeded.
        """
        with self._lock:
            window = self._bursts.setdefault(user.id, deque())
            now = time.monotonic()
            while window and window[0] <= now - BURST_WINDOW_SECONDS:
                window.popleft()
            reset = max(1, int(BURST_WINDOW_SECONDS - (now - window[0]) + 0.999)) if window else 2
            headers = {"x-ratelimit-limit": str(self.burst_limit), "x-ratelimit-reset": str(reset)}
            if len(window) >= self.burst_limit:
                headers |= {"x-ratelimit-remaining": "0", "retry-after": str(reset)}
                self.stats["429 over the burst limit"] += 1
                raise ApiError(429, "Request over limit", headers)
            day = (user.company_id, self.now().strftime("%Y-%m-%d"))
            budget = self.daily_budget(user.company_id)
            if self._spent.get(day, 0) + cost > budget:
                midnight = (self.now() + timedelta(days=1)).replace(
                    hour=0, minute=0, second=0, microsecond=0
                )
                wait = str(max(1, int((midnight - self.now()).total_seconds())))
                headers |= {"x-ratelimit-remaining": "0", "retry-after": wait}
                raise ApiError(429, "Daily token budget exceeded", headers)
            window.append(now)
            self._spent[day] = self._spent.get(day, 0) + cost
            headers["x-ratelimit-remaining"] = str(self.burst_limit - len(window))
            return headers

    def tokens_spent(self, company_id: int) -> int:
        with self._lock:
            return self._spent.get((company_id, self.now().strftime("%Y-%m-%d")), 0)

    def inject_fault(self, status: int, count: int = 1, path_prefix: str = "") -> None:
        with self._lock:
            self._faults.append(Fault(status, count, path_prefix))

    def take_fault(self, path: str) -> int | None:
        with self._lock:
            for fault in self._faults:
                if fault.remaining > 0 and path.startswith(fault.path_prefix):
                    fault.remaining -= 1
                    return fault.status
            self._faults = [f for f in self._faults if f.remaining > 0]
            return None

    def inject_break(self, kind: str, count: int = 1, path_prefix: str = "") -> None:
        """The next ``count`` API requests under ``path_prefix`` break: ``reset`` drops the
        connection before the request runs; ``truncated`` runs it (a write happens) and cuts its
        JSON answer in half."""
        if kind not in ("reset", "truncated"):
            raise ValueError(f"unknown break {kind!r}")
        with self._lock:
            self._breaks.extend([(kind, path_prefix)] * count)

    def take_break(self, path: str) -> str | None:
        with self._lock:
            for i, (kind, prefix) in enumerate(self._breaks):
                if path.startswith(prefix):
                    del self._breaks[i]
                    return kind
            return None

    def clear_breaks(self) -> None:
        with self._lock:
            self._breaks.clear()
            self._faults.clear()

    def count(self, route: str) -> None:
        with self._lock:
            self.stats[route] += 1

    def stats_snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.stats)

    def reset_stats(self) -> None:
        with self._lock:
            self.stats.clear()

    # --- persons -------------------------------------------------------------------------------

    def _visible(self, user: User, person: Person) -> bool:
        return (
            person.company_id == user.company_id
            and not person.deleted
            and (person.visible_to != 1 or person.owner_id == user.id or user.is_admin)
        )

    def get_person(self, user: User, person_id: int) -> Person:
        with self._lock:
            person = self.persons.get(person_id)
            if person is None or not self._visible(user, person):
                raise ApiError(404, "Person not found")
            return person

    def list_persons(self, user: User, query: dict[str, str]) -> tuple[list[Person], str | None]:
        with self._lock:
            items = [p for p in self.persons.values() if self._visible(user, p)]
            if query.get("ids"):
                wanted = {int(x) for x in query["ids"].split(",")[:100] if x.strip()}
                items = [p for p in items if p.id in wanted]
                if self.partial_rate:  # a 200 that leaves some out says nothing about them
                    items = [p for p in items if self._fault_rng.random() >= self.partial_rate]
            if query.get("owner_id"):
                items = [p for p in items if p.owner_id == int(query["owner_id"])]
            if query.get("org_id"):
                items = [p for p in items if p.org_id == int(query["org_id"])]
            if query.get("updated_since"):
                since = self._rfc3339(query["updated_since"], "updated_since")
                items = [p for p in items if p.update_time >= since]
            if query.get("updated_until"):
                until = self._rfc3339(query["updated_until"], "updated_until")
                items = [p for p in items if p.update_time < until]
            return self._page(items, query)

    def _rfc3339(self, text: str, name: str) -> datetime:
        try:
            return parse_rfc3339(text)
        except ValueError as exc:
            raise ApiError(400, f"Invalid {name}: expected RFC3339") from exc

    def _page(self, items: list[Any], query: dict[str, str]) -> tuple[list[Any], str | None]:
        """Cursor pagination over ``items`` (persons or organizations)."""
        sort_by = query.get("sort_by", "id")
        direction = query.get("sort_direction", "asc")
        if sort_by not in ("id", "update_time", "add_time") or direction not in ("asc", "desc"):
            raise ApiError(400, "Invalid sort_by or sort_direction")
        try:
            limit = int(query.get("limit", "100"))
        except ValueError as exc:
            raise ApiError(400, "limit must be an integer") from exc
        if not 1 <= limit <= MAX_PAGE:
            raise ApiError(400, f"limit must be between 1 and {MAX_PAGE}")

        def key(item: Any) -> tuple[Any, int]:
            if sort_by == "id":
                return (item.id, item.id)
            moment: datetime = getattr(item, sort_by)
            return (int(moment.timestamp() * 1_000_000), item.id)

        descending = direction == "desc"
        ordered = sorted(items, key=key, reverse=descending)
        if query.get("cursor"):
            mark = decode_cursor(query["cursor"])
            ordered = [i for i in ordered if (key(i) <= mark if descending else key(i) >= mark)]
        if self.empty_pages > 0 and ordered:  # an empty page, and a cursor to go on from
            self.empty_pages -= 1
            return [], encode_cursor(key(ordered[0]))
        page = ordered[:limit]
        next_cursor = encode_cursor(key(ordered[limit])) if len(ordered) > limit else None
        return page, next_cursor

    def create_person(self, user: User, body: dict[str, Any], *, source: str = "api") -> Person:
        with self._lock:
            if not user.can("can_add_people"):
                raise ApiError(403, "You do not have permission to add people.")
            values = self._person_values(user, body)
            name, first, last = self._names(values, None)
            if not name:
                raise ApiError(400, "Name must be given.")
            now = self.now()
            pid = self._next_id("person")
            person = Person(
                id=pid,
                company_id=user.company_id,
                name=name,
                first_name=first,
                last_name=last,
                owner_id=values.get("owner_id", user.id),
                org_id=values.get("org_id"),
                add_time=now,
                update_time=now,
            )
            for attr in (
                "emails",
                "phones",
                "visible_to",
                "label_ids",
                "custom_fields",
                "job_title",
                "birthday",
                "postal_address",
                "notes",
            ):
                if attr in values and values[attr] is not None:
                    setattr(person, attr, values[attr])
            self.persons[pid] = person
            self._emit(
                user, "create", "person", pid, data=person.to_v2(), previous=None, source=source
            )
            return person

    def update_person(
        self, user: User, person_id: int, body: dict[str, Any], *, source: str = "api"
    ) -> Person:
        with self._lock:
            person = self.get_person(user, person_id)
            values = self._person_values(user, body)
            before = person.to_v2()
            if {"name", "first_name", "last_name"} & values.keys():
                person.name, person.first_name, person.last_name = self._names(values, person)
                if not person.name:
                    raise ApiError(400, "Name must be given.")
            for attr in (
                "owner_id",
                "org_id",
                "emails",
                "phones",
                "visible_to",
                "label_ids",
                "job_title",
                "birthday",
                "postal_address",
                "notes",
            ):
                if attr in values:
                    default: Any = [] if attr in ("emails", "phones", "label_ids") else None
                    setattr(person, attr, values[attr] if values[attr] is not None else default)
            if "custom_fields" in values:
                for field_key, value in (values["custom_fields"] or {}).items():
                    if value is None:
                        person.custom_fields.pop(field_key, None)
                    else:
                        person.custom_fields[field_key] = value
            self._touch(user, person, before, source)
            return person

    def _touch(
        self, user: User, person: Person, before: dict[str, Any], source: str, **meta: Any
    ) -> None:
        """Bump update_time and send a ``change`` webhook if anything actually changed."""
        after = person.to_v2()
        previous = {k: v for k, v in before.items() if after.get(k) != v}
        if not previous:
            return
        person.update_time = max(self.now(), person.update_time)
        after = person.to_v2()
        previous["update_time"] = before["update_time"]
        self._emit(
            user,
            "change",
            "person",
            person.id,
            data=after,
            previous=previous,
            source=source,
            **meta,
        )

    def delete_person(
        self, user: User, person_id: int, *, source: str = "api", **meta: Any
    ) -> None:
        with self._lock:
            person = self.get_person(user, person_id)
            last = person.to_v2()
            person.deleted = True
            person.update_time = max(self.now(), person.update_time)
            self._emit(
                user, "delete", "person", person_id, data=None, previous=last, source=source, **meta
            )

    def merge_persons(self, user: User, person_id: int, merge_with_id: int) -> Person:
        """``PUT /v1/persons/{id}/merge``: ``merge_with_id`` survives, ``id`` is deleted.

        The survivor keeps its own values; its empty fields are filled from the other person;
        emails and phones are combined. Webhooks v2 send ``delete`` (``merged_to_id``) for the
        merged person and ``change`` (``merged_from_id``) for the survivor.
        """
        with self._lock:
            if not user.can("can_merge_people"):
                raise ApiError(403, "You do not have permission to merge people.")
            if person_id == merge_with_id:
                raise ApiError(400, "Cannot merge a person with itself")
            gone = self.get_person(user, person_id)
            keep = self.get_person(user, merge_with_id)
            before = keep.to_v2()
            for attr in (
                "org_id",
                "job_title",
                "birthday",
                "postal_address",
                "notes",
                "first_name",
                "last_name",
            ):
                if getattr(keep, attr) in (None, "") and getattr(gone, attr) not in (None, ""):
                    setattr(keep, attr, getattr(gone, attr))
            for attr in ("emails", "phones"):
                have = {e["value"].strip().lower() for e in getattr(keep, attr)}
                for entry in getattr(gone, attr):
                    if entry["value"].strip().lower() not in have:
                        getattr(keep, attr).append({**entry, "primary": False})
            for field_key, value in gone.custom_fields.items():
                keep.custom_fields.setdefault(field_key, value)
            self.delete_person(user, person_id, merged_to_id=str(keep.id))
            self._touch(user, keep, before, "api", merged_from_id=str(person_id))
            return keep

    def change_owner(self, person_id: int, owner_id: int, *, by_user_id: int | None = None) -> None:
        """Re-own a person in the app (e.g. an admin reassigns it)."""
        with self._lock:
            person = self.persons[person_id]
            actor = self.users[by_user_id or person.owner_id]
            self._app_request(actor)
            self.update_person(actor, person_id, {"owner_id": owner_id}, source="app")

    def edit_in_app(
        self, person_id: int, changes: dict[str, Any], *, by_user_id: int | None = None
    ) -> Person:
        """The user edits the person in the Pipedrive web app (``change_source: app``); the
        app's own requests count against the same per-user burst window as ours."""
        with self._lock:
            person = self.persons[person_id]
            actor = self.users[by_user_id or person.owner_id]
            self._app_request(actor)
            return self.update_person(actor, person_id, changes, source="app")

    def delete_in_app(self, person_id: int, *, by_user_id: int | None = None) -> None:
        with self._lock:
            person = self.persons[person_id]
            actor = self.users[by_user_id or person.owner_id]
            self._app_request(actor)
            self.delete_person(actor, person_id, source="app")

    def _app_request(self, user: User) -> None:
        """A request the web app makes for the user: it takes a place in the user's burst
        window (the app itself is never refused here; it only leaves less room for us)."""
        window = self._bursts.setdefault(user.id, deque())
        now = time.monotonic()
        while window and window[0] <= now - BURST_WINDOW_SECONDS:
            window.popleft()
        window.append(now)

    def _person_values(self, user: User, body: dict[str, Any]) -> dict[str, Any]:
        """Validate a v2 person body; unknown keys are a 400, like the real schema check."""
        if not isinstance(body, dict):
            raise ApiError(400, "Body must be a JSON object")
        unknown = set(body) - PERSON_KEYS
        if unknown:
            raise ApiError(400, f"Unknown parameters: {', '.join(sorted(unknown))}")
        needs_sync = sorted(set(body) & set(CONTACT_SYNC_FIELDS))
        if needs_sync and not self.companies[user.company_id].contact_sync:
            raise ApiError(
                403,
                f"Setting {', '.join(needs_sync)} requires contact sync to be enabled for the "
                "company.",
            )
        values = dict(body)
        for attr in ("emails", "phones"):
            if attr in values and values[attr] is not None:
                values[attr] = self._contact_points(attr, values[attr])
        if values.get("owner_id") is not None:
            self._user_in_company(user, int(values["owner_id"]))
            values["owner_id"] = int(values["owner_id"])
        if values.get("org_id") is not None:
            org = self.orgs.get(int(values["org_id"]))
            if org is None or org.company_id != user.company_id or org.deleted:
                raise ApiError(400, "Organization not found")
            values["org_id"] = org.id
        if values.get("visible_to") is not None:
            allowed = VISIBILITY_BY_PLAN[self.companies[user.company_id].plan]
            value = values["visible_to"]
            if isinstance(value, bool) or not isinstance(value, int) or value not in allowed:
                raise ApiError(
                    400, f"visible_to must be one of {', '.join(str(v) for v in allowed)}"
                )
        if values.get("birthday") is not None:
            try:
                datetime.strptime(values["birthday"], "%Y-%m-%d")
            except (TypeError, ValueError) as exc:
                raise ApiError(400, "birthday must be YYYY-MM-DD") from exc
        address = values.get("postal_address")
        if isinstance(address, str):
            values["postal_address"] = {"value": address} if address else None
        elif isinstance(address, dict):
            values["postal_address"] = {k: address.get(k) for k in ADDRESS_PARTS if address.get(k)}
        elif address is not None:
            raise ApiError(400, "postal_address must be an object")
        for text in ("name", "first_name", "last_name", "job_title", "notes"):
            if values.get(text) is not None and not isinstance(values[text], str):
                raise ApiError(400, f"{text} must be a string")
        if values.get("custom_fields") is not None and not isinstance(
            values["custom_fields"], dict
        ):
            raise ApiError(400, "custom_fields must be an object")
        return values

    @staticmethod
    def _contact_points(attr: str, items: Any) -> list[dict[str, Any]]:
        if not isinstance(items, list):
            raise ApiError(400, f"{attr} must be an array")
        points = []
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("value"), str):
                raise ApiError(400, f"{attr} items need a string value")
            if not item["value"].strip():
                continue
            points.append(
                {
                    "value": item["value"],
                    "primary": bool(item.get("primary", False)),
                    "label": str(item.get("label") or "work"),
                }
            )
        if points and not any(p["primary"] for p in points):
            points[0]["primary"] = True
        return points

    @staticmethod
    def _names(values: dict[str, Any], person: Person | None) -> tuple[str, str | None, str | None]:
        """``name`` or ``first_name``+``last_name``: the other is filled in automatically."""
        name = values.get("name")
        has_parts = "first_name" in values or "last_name" in values
        if name is not None and not has_parts:
            first, _, last = name.strip().partition(" ")
            return name.strip(), first or None, last.strip() or None
        first = values.get("first_name", person.first_name if person else None)
        last = values.get("last_name", person.last_name if person else None)
        if name is None:
            name = " ".join(p.strip() for p in (first, last) if p and p.strip())
        return name.strip(), first or None, last or None

    # --- organizations -------------------------------------------------------------------------

    def _insert_org(self, company_id: int, name: str, owner_id: int) -> int:
        oid = self._next_id("org")
        now = self.now()
        self.orgs[oid] = Organization(oid, company_id, name, owner_id, now, now)
        return oid

    def get_org(self, user: User, org_id: int) -> Organization:
        with self._lock:
            org = self.orgs.get(org_id)
            if org is None or org.company_id != user.company_id or org.deleted:
                raise ApiError(404, "Organization not found")
            return org

    def list_orgs(self, user: User, query: dict[str, str]) -> tuple[list[Organization], str | None]:
        with self._lock:
            items = [o for o in self.orgs.values() if o.company_id == user.company_id]
            items = [o for o in items if not o.deleted]
            if query.get("ids"):
                wanted = {int(x) for x in query["ids"].split(",")[:100] if x.strip()}
                items = [o for o in items if o.id in wanted]
            if query.get("owner_id"):
                items = [o for o in items if o.owner_id == int(query["owner_id"])]
            return self._page(items, query)

    def create_org(self, user: User, body: dict[str, Any]) -> Organization:
        with self._lock:
            if not user.can("can_add_organizations"):
                raise ApiError(403, "You do not have permission to add organizations.")
            name = body.get("name")
            if not isinstance(name, str) or not name.strip():
                raise ApiError(400, "Name must be given.")
            owner_id = int(body.get("owner_id") or user.id)
            self._user_in_company(user, owner_id)
            oid = self._insert_org(user.company_id, name.strip(), owner_id)
            org = self.orgs[oid]
            self._emit(
                user, "create", "organization", oid, data=org.to_v2(), previous=None, source="api"
            )
            return org

    def search_orgs(self, user: User, term: str, exact: bool) -> list[tuple[float, Organization]]:
        with self._lock:
            needle = " ".join(term.split()).casefold()
            hits = []
            for org in self.orgs.values():
                if org.company_id != user.company_id or org.deleted:
                    continue
                name = " ".join(org.name.split()).casefold()
                if (name == needle) if exact else (needle in name):
                    hits.append((1.0 if name == needle else 0.5, org))
            return sorted(hits, key=lambda h: (-h[0], h[1].id))

    def search_persons(
        self, user: User, term: str, fields: set[str], exact: bool
    ) -> list[tuple[float, Person]]:
        with self._lock:
            needle = term.strip().casefold()
            hits = []
            for person in self.persons.values():
                if not self._visible(user, person):
                    continue
                haystack: list[str] = []
                if "name" in fields:
                    haystack.append(person.name)
                if "email" in fields:
                    haystack += [e["value"] for e in person.emails]
                if "phone" in fields:
                    haystack += [p["value"] for p in person.phones]
                if "notes" in fields and person.notes:
                    haystack.append(person.notes)
                if "custom_fields" in fields:
                    haystack += [str(v) for v in person.custom_fields.values() if v is not None]
                found = [h.casefold() for h in haystack]
                if any((h == needle) if exact else (needle in h) for h in found):
                    hits.append((1.0 if needle in found else 0.5, person))
            return sorted(hits, key=lambda h: (-h[0], h[1].id))

    # --- person fields -------------------------------------------------------------------------

    def list_person_fields(self, user: User) -> list[PersonField]:
        with self._lock:
            return list(self.person_fields[user.company_id])

    def add_person_field(self, user: User, body: dict[str, Any]) -> PersonField:
        with self._lock:
            if not user.can("can_add_custom_fields"):
                raise ApiError(403, "You do not have permission to add custom fields.")
            name, ftype = body.get("name"), body.get("field_type")
            if not isinstance(name, str) or not name.strip():
                raise ApiError(400, "Field name must be given.")
            if ftype not in ("varchar", "text", "double", "date", "phone", "enum", "set"):
                raise ApiError(400, "Invalid field_type")
            created = PersonField(
                self._next_id("field"), new_hash_key(), name.strip(), ftype, self.now(), True
            )
            self.person_fields[user.company_id].append(created)
            return created

    # --- webhooks ------------------------------------------------------------------------------

    def create_webhook(self, user: User, body: dict[str, Any]) -> Webhook:
        with self._lock:
            url = body.get("subscription_url")
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise ApiError(400, "subscription_url must be a full, valid URL")
            action, entity = body.get("event_action"), body.get("event_object")
            if action not in ("create", "change", "delete", "*"):
                raise ApiError(400, "Invalid event_action")
            if entity not in (
                "activity",
                "deal",
                "lead",
                "note",
                "organization",
                "person",
                "pipeline",
                "product",
                "stage",
                "user",
                "*",
            ):
                raise ApiError(400, "Invalid event_object")
            version = str(body.get("version") or "2.0")
            if version not in ("1.0", "2.0"):
                raise ApiError(400, "Invalid version")
            target = self._user_in_company(user, int(body.get("user_id") or user.id))
            if target.id != user.id and not user.is_admin:
                raise ApiError(403, "Only admins can create webhooks for other users")
            owned = [w for w in self.webhooks.values() if w.user_id == target.id]
            if len(owned) >= MAX_WEBHOOKS_PER_USER:
                raise ApiError(400, f"Maximum of {MAX_WEBHOOKS_PER_USER} webhooks per user reached")
            wid = self._next_id("webhook")
            hook = Webhook(
                id=wid,
                company_id=user.company_id,
                owner_id=user.id,
                user_id=target.id,
                event_action=action,
                event_object=entity,
                subscription_url=url,
                http_auth_user=body.get("http_auth_user") or None,
                http_auth_password=body.get("http_auth_password") or None,
                version=version,
                name=str(body.get("name") or f"webhook {wid}"),
                add_time=self.now(),
            )
            self.webhooks[wid] = hook
            return hook

    def list_webhooks(self, user: User) -> list[Webhook]:
        with self._lock:
            return [
                w
                for w in self.webhooks.values()
                if w.company_id == user.company_id and (user.is_admin or w.user_id == user.id)
            ]

    def delete_webhook(self, user: User, webhook_id: int) -> None:
        with self._lock:
            hook = self.webhooks.get(webhook_id)
            if hook is None or hook.company_id != user.company_id:
                raise ApiError(404, "Webhook not found")
            if hook.user_id != user.id and not user.is_admin:
                raise ApiError(403, "You can only delete your own webhooks")
            del self.webhooks[webhook_id]

    def _permitted(self, company_id: int, owner_id: int | None, visible_to: int) -> list[User]:
        return [
            u
            for u in self.users.values()
            if u.company_id == company_id
            and u.active
            and (visible_to != 1 or u.id == owner_id or u.is_admin)
        ]

    def _emit(
        self,
        actor: User,
        action: str,
        entity: str,
        entity_id: int,
        *,
        data: dict[str, Any] | None,
        previous: dict[str, Any] | None,
        source: str,
        **extra_meta: Any,
    ) -> None:
        """Queue a v2 payload for every matching webhook whose user may see the object."""
        state = data or previous or {}
        permitted = self._permitted(
            actor.company_id, state.get("owner_id"), int(state.get("visible_to") or 3)
        )
        permitted_ids = [str(u.id) for u in permitted]
        company = self.companies[actor.company_id]
        correlation = str(uuid.uuid4())
        event_id = str(uuid.uuid4())
        for hook in list(self.webhooks.values()):
            if hook.company_id != actor.company_id or not hook.active:
                continue
            if hook.version != "2.0" or not hook.matches(action, entity):
                continue
            if str(hook.user_id) not in permitted_ids:
                continue
            if hook.banned_until > time.monotonic():
                continue  # banned webhooks lose their events
            meta = {
                "action": action,
                "entity": entity,
                "company_id": str(company.id),
                "correlation_id": correlation,
                "entity_id": str(entity_id),
                "id": event_id,
                "is_bulk_edit": False,
                "timestamp": iso_millis(self.now()),
                "type": "general",
                "user_id": str(actor.id),
                "version": "2.0",
                "webhook_id": str(hook.id),
                "webhook_owner_id": str(hook.owner_id),
                "change_source": source,
                "attempt": 1,
                "host": f"{company.domain}.pipedrive.com",
                "permitted_user_ids": permitted_ids,
                **extra_meta,
            }
            shown = (
                (self._shown(company.id, data), self._shown(company.id, previous))
                if entity == "person"
                else (data, previous)
            )
            payload = {"meta": meta, "data": shown[0], "previous": shown[1]}
            auth = (
                (hook.http_auth_user or "", hook.http_auth_password or "")
                if hook.http_auth_user or hook.http_auth_password
                else None
            )
            self.delivery.enqueue(hook.id, hook.subscription_url, auth, payload)

    def _record_delivery(self, webhook_id: int, attempt: int, status: int | None) -> None:
        with self._lock:
            hook = self.webhooks.get(webhook_id)
            if hook is None:
                return
            hook.last_delivery_time = self.now()
            hook.last_http_status = status
            failed = status is None or not 200 <= status < 300
            if failed and attempt == 1:
                hook.ban_counter += 1
                if hook.ban_counter >= 10:
                    hook.banned_until = time.monotonic() + 30 * 60
                    hook.ban_counter = 0

    def deliveries(self) -> list[dict[str, Any]]:
        return self.delivery.deliveries()

    def wait_for_deliveries(self, timeout: float = 10.0) -> bool:
        return self.delivery.wait_idle(timeout)

    def close(self) -> None:
        self.delivery.stop()

    # --- control-API helpers -------------------------------------------------------------------

    def user(self, user_id: int) -> User:
        return self.users[user_id]

    def persons_of(self, owner_id: int) -> Iterable[Person]:
        with self._lock:
            return [p for p in self.persons.values() if p.owner_id == owner_id and not p.deleted]
