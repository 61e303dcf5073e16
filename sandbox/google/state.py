"""The Google sandbox's in-memory world: users, contacts, groups, sync tokens, OAuth grants.

One ``GoogleSandbox`` backs the HTTP listener and the tests that poke it directly. Every change
goes through the same few methods under one lock, so a "user edit" made here (or through the
control API) gets a new etag and shows up in sync-token listings exactly like an API write.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import random
import secrets
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sandbox.google.person import (
    UPDATE_FIELDS,
    GoogleError,
    Rendering,
    check_person,
    deleted_person,
    error_info,
    group_names,
    invalid,
    read_mask,
    render_person,
    stored_fields,
)

CONTACTS_SCOPE = "https://www.googleapis.com/auth/contacts"
READONLY_SCOPE = "https://www.googleapis.com/auth/contacts.readonly"
MY_CONTACTS = "contactGroups/myContacts"
STARRED = "contactGroups/starred"
SYSTEM_GROUPS = {MY_CONTACTS: ("myContacts", "My Contacts"), STARRED: ("starred", "Starred")}
SORT_ORDERS = (
    "LAST_MODIFIED_ASCENDING",
    "LAST_MODIFIED_DESCENDING",
    "FIRST_NAME_ASCENDING",
    "LAST_NAME_ASCENDING",
)
SYNC_TOKEN_LIFETIME = timedelta(days=7)  # counted from the full sync that began the chain
SYNC_LAG = timedelta(seconds=2)  # writes reach sync-token listings this much later
STALE_READ = timedelta(seconds=2)  # a get this soon after a write may show the previous etag
READS_PER_MINUTE = 180  # per user; users report 90 to 180 in practice
WRITES_PER_MINUTE = 90
FULL_SYNC_STARTS_PER_MINUTE = 10  # first pages of full syncs per user (their own extra quota)
ACCESS_TOKEN_LIFETIME = timedelta(hours=1)
CODE_LIFETIME = timedelta(minutes=10)
QUOTA_WINDOW = 60.0  # seconds of sandbox time


@dataclass
class Faults:
    """Switchable failures for chaos tests (rates are probabilities per /v1 request)."""

    rate_429: float = 0.0  # RESOURCE_EXHAUSTED before the request runs
    rate_503: float = 0.0  # UNAVAILABLE before the request runs
    rate_reset: float = 0.0  # the connection drops before the request runs
    rate_malformed: float = 0.0  # the request runs, its JSON answer is cut short
    slow_ms: int = 0  # extra delay per request, on top of latency_ms
    expire_sync_tokens: bool = False  # the next syncToken call gets EXPIRED_SYNC_TOKEN
    rate_partial: float = 0.0  # getBatchGet leaves out each requested name with this chance
    empty_pages: int = 0  # the next n connections.list pages come back empty (not the last)
    malformed_next: str = ""  # the next request of this method runs and its answer is cut short


@dataclass
class Group:
    resource_name: str
    name: str
    updated: datetime
    etag: str
    system: bool = False


@dataclass
class StoredContact:
    id: str  # "c123..."
    fields: dict[str, Any]
    groups: list[str]
    etag: str
    source_etag: str
    updated: datetime
    seq: int  # the user's change counter when this contact last changed
    deleted: bool = False
    previous_etags: tuple[str, str] = ("", "")  # (etag, source etag) before the last write
    previous_names: list[str] = field(default_factory=list)  # resource names it had before

    @property
    def resource_name(self) -> str:
        return f"people/{self.id}"


@dataclass
class User:
    id: str
    email: str
    name: str
    contacts: dict[str, StoredContact] = field(default_factory=dict)
    groups: dict[str, Group] = field(default_factory=dict)
    seq: int = 0
    # searchContacts reads a cache, refreshed only by a warm-up request (an empty query):
    # contact id -> the texts a query matches, as they were at the last warm-up.
    search_cache: dict[str, list[str]] | None = None

    @property
    def resource_name(self) -> str:
        return f"people/{self.id}"


@dataclass
class SyncPoint:
    email: str
    seq: int
    issued: datetime
    params: tuple[Any, ...]
    chain_started: datetime  # when the full sync that began this chain of tokens ran


@dataclass(frozen=True)
class Listing:
    """One connections.list run (full or incremental): what it returns, page after page."""

    email: str
    params: tuple[Any, ...]
    ids: tuple[str, ...]
    end_seq: int  # the change count the run's sync token starts from
    incremental: bool
    chain_started: datetime  # the full sync's time (a chain of tokens ages from it)
    run: str = field(default_factory=lambda: secrets.token_urlsafe(18))


@dataclass
class AuthCode:
    email: str
    client_id: str
    redirect_uri: str
    scope: str
    challenge: str
    method: str
    offline: bool
    expires: datetime


@dataclass
class AccessGrant:
    email: str
    scope: str
    expires: datetime


@dataclass
class RefreshGrant:
    email: str
    client_id: str
    scope: str


def digest(token: str) -> str:
    """Tokens are kept by hash only, never in plain text."""
    return hashlib.sha256(token.encode()).hexdigest()


class GoogleSandbox:
    """State behind the People API and OAuth sandbox. Thread-safe: one lock around everything."""

    def __init__(
        self,
        *,
        latency_ms: int = 0,
        seed: int = 0,
        clock: Callable[[], datetime] | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
    ) -> None:
        self.latency_ms = latency_ms
        self._clock = clock or (lambda: datetime.now(UTC))
        self._offset = timedelta()
        self._rng = random.Random(seed)
        self.fault_rng = random.Random(seed + 1)
        self.lock = threading.RLock()
        project = self._rng.randrange(10**11, 10**12)
        self.client_id = client_id or f"{project}-sandbox.apps.googleusercontent.com"
        self.client_secret = client_secret or secrets.token_urlsafe(24)
        self.redirect_uris: set[str] = set()  # besides any loopback URI, which is always fine
        self.signed_in: str | None = None
        self.faults = Faults()
        self.sync_token_lifetime = SYNC_TOKEN_LIFETIME
        self.sync_lag = SYNC_LAG
        self.stale_read = STALE_READ
        self.quota = {
            "read": READS_PER_MINUTE,
            "write": WRITES_PER_MINUTE,
            "full_sync": FULL_SYNC_STARTS_PER_MINUTE,
        }
        self._aliases: dict[tuple[str, str], str] = {}  # (email, old id) -> current id
        self._users: dict[str, User] = {}
        self._sync_points: dict[str, SyncPoint] = {}
        self._expired_sync_tokens: set[str] = set()  # expired by the fault switch
        self._pages: dict[str, tuple[Listing, int]] = {}  # page token -> (run, position)
        self._codes: dict[str, AuthCode] = {}
        self._access: dict[str, AccessGrant] = {}
        self._refresh: dict[str, RefreshGrant] = {}
        self._recent: dict[tuple[str, str], deque[float]] = {}
        self._mutating: Counter[str] = Counter()
        self._stats: Counter[str] = Counter()

    # --- clock ------------------------------------------------------------------------------

    def now(self) -> datetime:
        return self._clock() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the sandbox clock (sync-token expiry, access-token expiry, quota windows)."""
        with self.lock:
            self._offset += timedelta(seconds=seconds)

    # --- users and groups -------------------------------------------------------------------

    def add_user(self, email: str, name: str = "") -> str:
        with self.lock:
            if email.lower() in self._users:
                raise ValueError(f"user {email} exists")
            user = User(id=str(self._rng.randrange(10**20, 10**21)), email=email, name=name)
            now = self.now()
            for rn, (short, _) in SYSTEM_GROUPS.items():
                user.groups[rn] = Group(rn, short, now, self._etag(), system=True)
            self._users[email.lower()] = user
            return user.resource_name

    def user(self, email: str) -> User:
        user = self._users.get(email.lower())
        if user is None:
            raise GoogleError(404, "NOT_FOUND", f"No such user {email}.")
        return user

    def users(self) -> list[dict[str, str]]:
        with self.lock:
            return [
                {"email": u.email, "name": u.name, "resourceName": u.resource_name}
                for u in self._users.values()
            ]

    def add_group(self, email: str, name: str) -> str:
        with self.lock:
            user = self.user(email)
            if any(g.name == name for g in user.groups.values()):
                raise GoogleError(409, "ALREADY_EXISTS", "Contact group name already exists.")
            rn = f"contactGroups/{self._rng.getrandbits(60):x}"
            user.groups[rn] = Group(rn, name, self.now(), self._etag())
            return rn

    def group(self, email: str, resource_name: str) -> Group:
        group = self.user(email).groups.get(resource_name)
        if group is None:
            raise GoogleError(404, "NOT_FOUND", "Requested entity was not found.")
        return group

    def groups(self, email: str) -> list[Group]:
        with self.lock:
            return list(self.user(email).groups.values())

    def members(self, email: str, resource_name: str) -> list[str]:
        with self.lock:
            return [
                c.resource_name
                for c in self.user(email).contacts.values()
                if not c.deleted and resource_name in c.groups
            ]

    def modify_members(
        self, email: str, group: str, add: Sequence[str], remove: Sequence[str]
    ) -> dict[str, list[str]]:
        """members:modify: people not found and people it would leave without a group."""
        with self.lock:
            user = self.user(email)
            self.group(email, group)
            not_found: list[str] = []
            last_group: list[str] = []
            for rn in add:
                c = user.contacts.get(rn.removeprefix("people/"))
                if c is None or c.deleted:
                    not_found.append(rn)
                elif group not in c.groups:
                    c.groups.append(group)
                    self._touch(user, c)
            for rn in remove:
                c = user.contacts.get(rn.removeprefix("people/"))
                if c is None or c.deleted:
                    not_found.append(rn)
                elif group in c.groups:
                    if not any(g not in (group, STARRED) for g in c.groups):
                        last_group.append(rn)
                        continue
                    c.groups.remove(group)
                    self._touch(user, c)
            out = {}
            if not_found:
                out["notFoundResourceNames"] = not_found
            if last_group:
                out["canNotRemoveLastContactGroupResourceNames"] = last_group
            return out

    # --- contacts: every change goes through _touch -----------------------------------------

    def add_contact(
        self,
        email: str,
        person: dict[str, Any],
        groups: Sequence[str] = (MY_CONTACTS,),
    ) -> str:
        """A contact the user added (person in People API JSON); returns ``people/c<id>``."""
        return self.create(email, person, groups).resource_name

    def seed_contacts(self, email: str, n: int, *, seed: int = 0) -> list[str]:
        """``n`` generated people (deterministic for a given seed)."""
        rng = random.Random(seed)
        return [self.add_contact(email, generated_person(rng, i)) for i in range(n)]

    def update_contact(self, email: str, resource_name: str, changes: dict[str, Any]) -> None:
        """A user edit: each key replaces that whole field (None clears it)."""
        with self.lock:
            check_person(changes)
            mask = list(changes)
            for key in mask:
                if key not in UPDATE_FIELDS:
                    raise invalid(f"Field {key} cannot be edited.")
            stored = self.contact(email, resource_name)
            self.update(email, resource_name, {**changes, "etag": stored.etag}, mask)

    def delete_contact(self, email: str, resource_name: str) -> None:
        with self.lock:
            stored = self.contact(email, resource_name)
            stored.deleted = True
            self._touch(self.user(email), stored)

    def set_groups(self, email: str, resource_name: str, groups: Sequence[str]) -> None:
        with self.lock:
            stored = self.contact(email, resource_name)
            stored.groups = self._checked_groups(email, list(groups))
            self._touch(self.user(email), stored)

    def contacts(self, email: str) -> list[dict[str, Any]]:
        """Current contacts as the API renders them with every field."""
        with self.lock:
            user = self.user(email)
            return [
                self.render(c, read_mask(None, required=False))
                for c in self._ordered(user, "LAST_MODIFIED_ASCENDING")
            ]

    def contact(self, email: str, resource_name: str) -> StoredContact:
        """A live contact by resource name (a name it had before a change still finds it)."""
        user = self.user(email)
        cid = resource_name.removeprefix("people/")
        cid = self._aliases.get((user.email.lower(), cid), cid)
        stored = user.contacts.get(cid)
        if stored is None or stored.deleted:
            raise GoogleError(404, "NOT_FOUND", "Requested entity was not found.")
        return stored

    def create(
        self, email: str, body: dict[str, Any], groups: Sequence[str] = (MY_CONTACTS,)
    ) -> StoredContact:
        """A new contact in ``groups`` plus the groups its memberships name."""
        with self.lock:
            user = self.user(email)
            check_person(body)
            groups = self._checked_groups(email, [*groups, *group_names(body)])
            cid = f"c{self._rng.randrange(10**18, 10**19)}"
            stored = StoredContact(
                id=cid,
                fields=stored_fields(body),
                groups=groups,
                etag="",
                source_etag="",
                updated=self.now(),
                seq=0,
            )
            user.contacts[cid] = stored
            self._touch(user, stored)
            return stored

    def update(
        self, email: str, resource_name: str, body: dict[str, Any], mask: list[str]
    ) -> StoredContact:
        """updateContact: the etag must be current; only the masked fields change."""
        with self.lock:
            user = self.user(email)
            stored = self.contact(email, resource_name)
            check_etag(stored, body)
            new_groups = None
            if "memberships" in mask:
                new_groups = self._checked_groups(email, group_names(body))
            for key in mask:
                if key == "memberships":
                    continue
                value = stored_fields({key: body.get(key)}).get(key)
                if value in (None, [], ""):
                    stored.fields.pop(key, None)
                else:
                    stored.fields[key] = value
            if new_groups is not None:
                stored.groups = new_groups
            self._touch(user, stored)
            return stored

    def check_groups(self, email: str, person: dict[str, Any]) -> None:
        """Would ``create`` accept this person's memberships? (batch validation)"""
        with self.lock:
            self._checked_groups(email, [MY_CONTACTS, *group_names(person)])

    def check_update(
        self, email: str, resource_name: str, body: dict[str, Any], mask: list[str]
    ) -> None:
        """Would ``update`` accept this? (batch validation before anything changes)"""
        with self.lock:
            check_etag(self.contact(email, resource_name), body)
            if "memberships" in mask:
                self._checked_groups(email, group_names(body))

    def _checked_groups(self, email: str, groups: list[str]) -> list[str]:
        user = self.user(email)
        for g in groups:
            if g not in user.groups:
                raise invalid(f"Contact group resource name {g} is invalid or not found.")
        if not any(g != STARRED for g in groups):
            raise GoogleError(
                400, "FAILED_PRECONDITION", "A contact must belong to at least one contact group."
            )
        return list(dict.fromkeys(groups))

    def _touch(self, user: User, stored: StoredContact) -> None:
        user.seq += 1
        stored.seq = user.seq
        stored.previous_etags = (stored.etag, stored.source_etag)
        stored.etag = self._etag()
        stored.source_etag = "#" + self._etag()[1:]
        stored.updated = self.now()

    def _etag(self) -> str:
        return "%" + base64.b64encode(self._rng.randbytes(12)).decode()

    def render(
        self, c: StoredContact, mask: set[str], *, just_read: bool = False
    ) -> dict[str, Any]:
        """A person as the API shows it. ``just_read`` (get, getBatchGet): within
        ``stale_read`` of a write Google may still hand out the previous etag."""
        etag, source_etag = c.etag, c.source_etag
        if just_read and c.previous_etags[0] and self.now() - c.updated < self.stale_read:
            etag, source_etag = c.previous_etags
        r = Rendering(c.resource_name, etag, c.id, source_etag, c.updated, list(c.groups))
        if c.deleted:
            return deleted_person(r)
        person = render_person(c.fields, r, mask)
        if c.previous_names and "metadata" in person:
            person["metadata"]["previousResourceNames"] = list(c.previous_names)
        return person

    def change_resource_name(self, email: str, resource_name: str) -> str:
        """Give a contact a new resource name, as Google does when a contact gets linked to a
        profile: the old name still resolves in get/getBatchGet (to the person under its new
        name), and sync listings show it with ``metadata.previousResourceNames``."""
        with self.lock:
            user = self.user(email)
            stored = self.contact(email, resource_name)
            del user.contacts[stored.id]
            self._aliases[(user.email.lower(), stored.id)] = new_id = (
                f"c{self._rng.randrange(10**18, 10**19)}"
            )
            for (who, old), current in list(self._aliases.items()):
                if who == user.email.lower() and current == stored.id:
                    self._aliases[(who, old)] = new_id
            stored.previous_names.append(stored.resource_name)
            stored.id = new_id
            user.contacts[new_id] = stored
            self._touch(user, stored)
            return stored.resource_name

    def search_contacts(self, email: str, query: str) -> list[StoredContact]:
        """``people:searchContacts``: an empty query is the warm-up that refreshes the user's
        search cache; any other matches the cache as of the last warm-up (none: nothing)."""
        with self.lock:
            user = self.user(email)
            if not query.strip():
                user.search_cache = {
                    c.id: searchable_texts(c.fields)
                    for c in user.contacts.values()
                    if not c.deleted
                }
                return []
            wanted = " ".join(query.casefold().split())
            hits = []
            for cid, texts in (user.search_cache or {}).items():
                stored = user.contacts.get(cid)
                if stored is None or stored.deleted:
                    continue
                if any(prefix_phrase(wanted, text) for text in texts):
                    hits.append(stored)
            return hits

    def profile(self, email: str, mask: set[str]) -> dict[str, Any]:
        """The signed-in user's own person (people/me)."""
        with self.lock:
            user = self.user(email)
            given, _, family = user.name.partition(" ")
            fields: dict[str, Any] = {"emailAddresses": [{"value": user.email}]}
            if user.name:
                fields["names"] = [{"givenName": given, "familyName": family}]
            r = Rendering(
                user.resource_name, "%" + user.id[:12], user.id, "#" + user.id[:12],
                self.now(), [], source_type="PROFILE",
            )  # fmt: skip
            return render_person(fields, r, mask & {"names", "emailAddresses", "metadata"})

    # --- connections.list -------------------------------------------------------------------

    def list_connections(self, email: str, q: dict[str, str]) -> dict[str, Any]:
        with self.lock:
            user = self.user(email)
            mask = read_mask(q.get("personFields") or q.get("requestMask.includeField"))
            try:
                size = int(q.get("pageSize") or 0) or 100
            except ValueError as exc:
                raise invalid("Invalid value for pageSize.") from exc
            if not 1 <= size <= 1000:
                raise invalid("pageSize must be between 1 and 1000.")
            order = q.get("sortOrder") or SORT_ORDERS[0]
            if order not in SORT_ORDERS:
                raise invalid(f"Invalid value at 'sort_order', \"{order}\".")
            sync_params = (tuple(sorted(mask)), order, q.get("sources", ""))
            wants_token = q.get("requestSyncToken", "").lower() == "true"
            sync_token = q.get("syncToken") or None
            page_params = (*sync_params, wants_token, size, sync_token)
            token = q.get("pageToken")
            position = 0
            if token:  # page tokens stay valid, so a client may retry a page
                listing, position = self._pages.get(token, (None, 0))
                if listing is None or listing.email != user.email.lower():
                    raise invalid("Page token is invalid.")
                if listing.params != page_params:
                    raise invalid("Parameters in the request do not match the page token.")
            elif sync_token:
                listing = self._incremental(user, sync_token, sync_params, page_params)
            else:
                if wants_token:  # the first page of a full sync has its own, extra quota
                    self.spend(email, "full_sync")
                ids = tuple(c.id for c in self._ordered(user, order))
                listing = Listing(user.email.lower(), page_params, ids, user.seq, False, self.now())
            wants = wants_token or bool(sync_token)
            return self._page(user, listing, position, size, mask, wants_sync_token=wants)

    def _incremental(
        self, user: User, token: str, sync_params: tuple[Any, ...], page_params: tuple[Any, ...]
    ) -> Listing:
        if self.faults.expire_sync_tokens:
            self.faults.expire_sync_tokens = False
            self._expired_sync_tokens.add(token)
        if token in self._expired_sync_tokens:  # like a lapsed one: expired for good, not unknown
            raise expired_sync_token()
        point = self._sync_points.get(token)
        if point is None or point.email != user.email.lower():
            raise invalid("Sync token is invalid.")
        if self.now() - point.chain_started > self.sync_token_lifetime:
            raise expired_sync_token()  # 7 days after the full sync, however fresh the token
        if point.params != sync_params:
            raise invalid("Parameters in the request do not match the sync token.")
        changed = sorted(
            (c for c in user.contacts.values() if c.seq > point.seq), key=lambda c: c.seq
        )
        # Writes reach sync listings only after a lag; the next token starts before the first
        # change not shown yet, so it comes with a later listing (some shown ones come again).
        shown_from = self.now() - self.sync_lag
        late = [c.seq for c in changed if c.updated > shown_from]
        ids = tuple(c.id for c in changed if c.updated <= shown_from)
        end_seq = min(late) - 1 if late else user.seq
        return Listing(user.email.lower(), page_params, ids, end_seq, True, point.chain_started)

    def _page(
        self,
        user: User,
        listing: Listing,
        position: int,
        size: int,
        mask: set[str],
        *,
        wants_sync_token: bool,
    ) -> dict[str, Any]:
        if self.faults.empty_pages > 0:  # nothing on this page, yet more to come
            self.faults.empty_pages -= 1
            token = f"{listing.run}.{position}"
            self._pages[token] = (listing, position)
            return {"nextPageToken": token, "totalPeople": len(listing.ids),
                    "totalItems": len(listing.ids)}  # fmt: skip
        chunk = listing.ids[position : position + size]
        position += len(chunk)
        people = []
        for cid in chunk:
            c = user.contacts.get(self._aliases.get((user.email.lower(), cid), cid))
            if c is None:
                continue  # renamed while the listing was paged: it comes under its new name
            if c.deleted and not listing.incremental:
                continue  # deleted while a full listing was being paged
            people.append(self.render(c, mask))
        out: dict[str, Any] = {}
        if people:
            out["connections"] = people
        if position < len(listing.ids):
            token = f"{listing.run}.{position}"  # the same page always hands out the same token
            self._pages[token] = (listing, position)
            out["nextPageToken"] = token
        elif wants_sync_token:
            token = secrets.token_urlsafe(32)
            sync_params = listing.params[:3]
            self._sync_points[token] = SyncPoint(
                listing.email, listing.end_seq, self.now(), sync_params, listing.chain_started
            )
            out["nextSyncToken"] = token
        out["totalPeople"] = out["totalItems"] = len(listing.ids)
        return out

    def _ordered(self, user: User, order: str) -> list[StoredContact]:
        alive = [c for c in user.contacts.values() if not c.deleted]

        def name_part(c: StoredContact, part: str) -> str:
            names = c.fields.get("names") or [{}]
            return str(names[0].get(part) or "").lower()

        if order == "FIRST_NAME_ASCENDING":
            return sorted(alive, key=lambda c: (name_part(c, "givenName"), c.seq))
        if order == "LAST_NAME_ASCENDING":
            return sorted(alive, key=lambda c: (name_part(c, "familyName"), c.seq))
        ordered = sorted(alive, key=lambda c: (c.updated, c.seq))
        return ordered[::-1] if order == "LAST_MODIFIED_DESCENDING" else ordered

    # --- OAuth ------------------------------------------------------------------------------

    def token_for(self, email: str, scope: str = CONTACTS_SCOPE) -> str:
        """A valid access token for ``email`` (tests that skip the OAuth dance use this)."""
        with self.lock:
            self.user(email)
            token = "ya29." + secrets.token_urlsafe(48)
            self._access[digest(token)] = AccessGrant(
                email.lower(), scope, self.now() + ACCESS_TOKEN_LIFETIME
            )
            return token

    def issue_code(self, email: str, q: dict[str, str]) -> str:
        with self.lock:
            code = "4/" + secrets.token_urlsafe(32)
            self._codes[digest(code)] = AuthCode(
                email=email.lower(),
                client_id=q.get("client_id", ""),
                redirect_uri=q.get("redirect_uri", ""),
                scope=q.get("scope", ""),
                challenge=q.get("code_challenge", ""),
                method=q.get("code_challenge_method", "plain" if q.get("code_challenge") else ""),
                offline=q.get("access_type") == "offline",
                expires=self.now() + CODE_LIFETIME,
            )
            return code

    def redeem_code(
        self, code: str, client_id: str, redirect_uri: str, verifier: str
    ) -> dict[str, Any]:
        """The token response for an authorization code (single use, PKCE checked)."""
        with self.lock:
            grant = self._codes.pop(digest(code), None)
            if grant is None or grant.expires < self.now() or grant.client_id != client_id:
                raise OAuthError("invalid_grant", "Bad Request")
            if grant.redirect_uri != redirect_uri:
                raise OAuthError("redirect_uri_mismatch", "Bad Request")
            if grant.challenge:
                if not verifier:
                    raise OAuthError("invalid_grant", "Missing code verifier.")
                if grant.method == "S256":
                    hashed = hashlib.sha256(verifier.encode()).digest()
                    computed = base64.urlsafe_b64encode(hashed).decode().rstrip("=")
                else:
                    computed = verifier
                if not secrets.compare_digest(computed, grant.challenge):
                    raise OAuthError("invalid_grant", "Invalid code verifier.")
            body = self._access_response(grant.email, grant.scope)
            if grant.offline:
                refresh = "1//" + secrets.token_urlsafe(48)
                self._refresh[digest(refresh)] = RefreshGrant(grant.email, client_id, grant.scope)
                body["refresh_token"] = refresh
            return body

    def redeem_refresh(self, refresh_token: str, client_id: str) -> dict[str, Any]:
        with self.lock:
            grant = self._refresh.get(digest(refresh_token))
            if grant is None or grant.client_id != client_id:
                raise OAuthError("invalid_grant", "Token has been expired or revoked.")
            return self._access_response(grant.email, grant.scope)

    def _access_response(self, email: str, scope: str) -> dict[str, Any]:
        token = "ya29." + secrets.token_urlsafe(48)
        self._access[digest(token)] = AccessGrant(email, scope, self.now() + ACCESS_TOKEN_LIFETIME)
        return {
            "access_token": token,
            "expires_in": int(ACCESS_TOKEN_LIFETIME.total_seconds()) - 1,
            "scope": scope,
            "token_type": "Bearer",
        }

    def authenticate(self, authorization: str | None) -> tuple[str, set[str]]:
        """The user and scopes behind a Bearer header, or Google's 401."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthenticated("CREDENTIALS_MISSING")
        with self.lock:
            grant = self._access.get(digest(token.strip()))
            if grant is None:
                raise unauthenticated("ACCESS_TOKEN_TYPE_UNSUPPORTED")
            if grant.expires <= self.now():
                raise unauthenticated("ACCESS_TOKEN_EXPIRED")
            return grant.email, set(grant.scope.split())

    def signed_in_grants(self, email: str) -> int:
        """How many refresh tokens of the user work (tests: was the grant revoked?)."""
        with self.lock:
            return sum(1 for g in self._refresh.values() if g.email == email.lower())

    def revoke_token(self, token: str) -> None:
        """``POST /revoke``: a refresh or access token ends the whole grant of its user (Google
        revokes the grant a token belongs to); an unknown token is Google's 400."""
        with self.lock:
            refresh = self._refresh.get(digest(token))
            access = self._access.get(digest(token))
            email = refresh.email if refresh is not None else access.email if access else None
        if email is None:
            raise OAuthError("invalid_token", "Token expired or revoked")
        self.revoke(email)

    def revoke(self, email: str) -> None:
        """The user removed our app: their refresh and access tokens stop working."""
        with self.lock:
            key = email.lower()
            self._refresh = {k: g for k, g in self._refresh.items() if g.email != key}
            self._access = {k: g for k, g in self._access.items() if g.email != key}

    def expire_access_tokens(self) -> None:
        with self.lock:
            for grant in self._access.values():
                grant.expires = min(grant.expires, self.now())

    # --- quota, overlap and stats -----------------------------------------------------------

    def set_quota(
        self,
        *,
        reads_per_minute: int | None = None,
        writes_per_minute: int | None = None,
        full_syncs_per_minute: int | None = None,
    ) -> None:
        with self.lock:
            if reads_per_minute is not None:
                self.quota["read"] = reads_per_minute
            if writes_per_minute is not None:
                self.quota["write"] = writes_per_minute
            if full_syncs_per_minute is not None:
                self.quota["full_sync"] = full_syncs_per_minute

    def spend(self, email: str, kind: str) -> None:
        """Count one read or write against the user's per-minute quota; 429 beyond it."""
        with self.lock:
            now = self.now().timestamp()
            recent = self._recent.setdefault((email.lower(), kind), deque())
            while recent and recent[0] <= now - QUOTA_WINDOW:
                recent.popleft()
            if len(recent) >= self.quota[kind]:
                self._stats["quota_exceeded"] += 1
                raise quota_exceeded(kind)
            recent.append(now)

    @contextmanager
    def mutation(self, email: str) -> Iterator[None]:
        """Mark a mutating request in flight; overlapping ones for a user are counted."""
        key = email.lower()
        with self.lock:
            if self._mutating[key]:
                self._stats["concurrent_mutations"] += 1
            self._mutating[key] += 1
        try:
            yield
        finally:
            with self.lock:
                self._mutating[key] -= 1

    def count(self, name: str) -> None:
        with self.lock:
            self._stats[name] += 1

    def stats_snapshot(self) -> dict[str, int]:
        """Request counts by method name, plus ``total`` and the event counters."""
        with self.lock:
            return dict(self._stats)

    def draw_fault(self, method: str) -> str | None:
        """Which switched-on fault hits this request of ``method`` (e.g. "batchCreateContacts"),
        if any (seeded, reproducible)."""
        with self.lock:
            f = self.faults
            if f.malformed_next and f.malformed_next == method:
                f.malformed_next = ""
                return "malformed"
            for name, rate in (
                ("reset", f.rate_reset),
                ("429", f.rate_429),
                ("503", f.rate_503),
                ("malformed", f.rate_malformed),
            ):
                if rate and self.fault_rng.random() < rate:
                    self._stats[f"fault_{name}"] += 1
                    return name
            return None

    def set_faults(self, **values: Any) -> Faults:
        with self.lock:
            for key, value in values.items():
                if not hasattr(self.faults, key):
                    raise ValueError(f"unknown fault {key!r}")
                setattr(self.faults, key, type(getattr(self.faults, key))(value))
            return copy.copy(self.faults)


class OAuthError(Exception):
    """An OAuth token-endpoint error: ``{"error", "error_description"}``."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


SEARCHED = {
    "names": ("displayName", "givenName", "familyName", "middleName", "unstructuredName"),
    "nicknames": ("value",),
    "emailAddresses": ("value",),
    "phoneNumbers": ("value", "canonicalForm"),
    "organizations": ("name",),
}


def searchable_texts(fields: dict[str, Any]) -> list[str]:
    """What searchContacts matches: names, nicknames, emails, phones, organizations."""
    texts = []
    for field_name, keys in SEARCHED.items():
        for entry in fields.get(field_name) or []:
            for key in keys:
                value = (entry or {}).get(key)
                if isinstance(value, str) and value.strip():
                    texts.append(" ".join(value.casefold().split()))
    for name in fields.get("names") or []:  # the display name Google composes from the parts
        parts = [(name or {}).get(k) for k in ("givenName", "middleName", "familyName")]
        texts.append(" ".join(" ".join(str(p) for p in parts if p).casefold().split()))
    return texts


def prefix_phrase(query: str, text: str) -> bool:
    """Google's rule: the query is a prefix of the text from one of its word starts ("foo name"
    matches "f", "foo n", "nam"; not "oo n")."""
    return any(text[i:].startswith(query) for i in range(len(text)) if i == 0 or text[i - 1] == " ")


def check_etag(stored: StoredContact, body: dict[str, Any]) -> None:
    sent = body.get("etag")
    sources = ((body.get("metadata") or {}).get("sources")) or []
    source_etags = [s.get("etag") for s in sources if isinstance(s, dict) and s.get("etag")]
    if not sent and not source_etags:
        raise invalid(
            "Request must set person.etag or person.metadata.sources.etag for the source "
            "that is being updated."
        )
    if sent and sent != stored.etag:
        raise GoogleError(
            400,
            "FAILED_PRECONDITION",
            "Request person.etag is different than the current person.etag. "
            "Clear local cache and get the latest person.",
        )
    if not sent and stored.source_etag not in source_etags:
        raise GoogleError(
            400,
            "FAILED_PRECONDITION",
            "Request person.metadata.sources.etag is different than the current "
            "person.metadata.sources.etag. Clear local cache and get the latest person.",
        )


def expired_sync_token() -> GoogleError:
    return GoogleError(
        400,
        "FAILED_PRECONDITION",
        "Sync token is expired. Clear local cache and retry call without the sync token.",
        [error_info("EXPIRED_SYNC_TOKEN")],
    )


def unauthenticated(reason: str) -> GoogleError:
    return GoogleError(
        401,
        "UNAUTHENTICATED",
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
        "cookie or other valid authentication credential. See "
        "https://developers.google.com/identity/sign-in/web/devconsole-project.",
        [error_info(reason, "googleapis.com", service="people.googleapis.com")],
        {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", error="invalid_token"'},
    )


def quota_exceeded(kind: str) -> GoogleError:
    metric, limit = {
        "read": ("Read requests", "ReadRequestsPerMinutePerUser"),
        "write": ("Write requests", "WriteRequestsPerMinutePerUser"),
        "full_sync": ("Full sync requests", "FullSyncRequestsPerMinutePerUser"),
    }[kind]
    return GoogleError(
        429,
        "RESOURCE_EXHAUSTED",
        f"Quota exceeded for quota metric '{metric}' and limit '{metric} per minute per user' "
        "of service 'people.googleapis.com' for consumer 'project_number:000000000000'.",
        [
            error_info(
                "RATE_LIMIT_EXCEEDED",
                "googleapis.com",
                quota_metric=f"people.googleapis.com/{kind}_requests",
                quota_limit=limit,
                service="people.googleapis.com",
            )
        ],
    )


FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tim",
         "Margaret", "John", "Katherine", "Dennis", "Sophie", "Hedy", "Claude"]  # fmt: skip
LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson",
        "Perlman", "Berners-Lee", "Hamilton", "Backus", "Johnson", "Ritchie", "Wilson"]  # fmt: skip
COMPANIES = ["Initech", "Globex", "Umbrella", "Hooli", "Stark Industries", "Wayne Enterprises"]
TITLES = ["Engineer", "Buyer", "Director", "Account Manager", "CTO", "Analyst"]


def generated_person(rng: random.Random, index: int) -> dict[str, Any]:
    """A plausible Google contact (index keeps emails unique)."""
    given, family, company = rng.choice(FIRST), rng.choice(LAST), rng.choice(COMPANIES)
    domain = company.lower().replace(" ", "") + ".example"
    person: dict[str, Any] = {
        "names": [{"givenName": given, "familyName": family}],
        "emailAddresses": [{"value": f"{given}.{family}{index}@{domain}".lower(), "type": "work"}],
        "phoneNumbers": [
            {"value": f"+1 555 {rng.randint(100, 999)} {rng.randint(1000, 9999)}", "type": "work"}
        ],
        "organizations": [{"name": company, "title": rng.choice(TITLES)}],
    }
    if rng.random() < 0.3:
        person["birthdays"] = [
            {"date": {"year": rng.randint(1950, 2000), "month": rng.randint(1, 12),
                      "day": rng.randint(1, 28)}}
        ]  # fmt: skip
    return person
