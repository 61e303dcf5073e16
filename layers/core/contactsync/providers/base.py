"""The one small interface every system we sync with sits behind.

A *side* is either the CRM (Pipedrive) or the user's address book (Microsoft Graph, Google People).
The engine never sees HTTP: adapters translate their API into these types and errors. Adapters are
synchronous (one Lambda invocation works on one connection at a time) and own their paging,
batching and mapping to and from the canonical ``Contact``; they send every request through the
one ``transport``, which owns the token, its refresh and the retries of a single request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol

from contactsync.contacts.model import Contact


@dataclass(frozen=True)
class RemoteContact:
    """A contact as one side holds it right now."""

    id: str
    contact: Contact
    version: str = ""  # etag / changeKey / update_time: what optimistic concurrency needs
    modified_at: str = ""  # ISO-8601 UTC, the side's own last-modified time ("" if unknown)
    in_scope: bool = True  # owned by the user (CRM) / in the chosen group or folder (provider)
    scope_reason: str = ""  # why it is out of scope, in plain words ("owned by another user")
    tag: str = ""  # our mapping id, when we created it and the side has room to carry it
    previous_ids: tuple[str, ...] = ()  # ids it had before (Google: previousResourceNames)


@dataclass(frozen=True)
class ChangePage:
    """One page of a side's changes since a position (or of a full listing when it had none).

    ``position`` is opaque to everyone but the adapter. While ``complete`` is false it continues
    this listing; once ``complete`` is true it is the cursor to read the *next* changes from.
    """

    contacts: list[RemoteContact] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)  # ids deleted on the side
    position: str = ""
    complete: bool = True
    full: bool = False  # part of a full listing (no cursor, or the cursor had expired)


@dataclass(frozen=True)
class NewContact:
    tag: str  # our mapping id, written where the side can carry it
    contact: Contact


@dataclass(frozen=True)
class ContactUpdate:
    id: str
    version: str  # the version the change was computed against (If-Match / etag)
    before: Contact  # what we believe the side holds: adapters send only fields that differ
    after: Contact


@dataclass(frozen=True)
class ContactDelete:
    id: str
    version: str = ""


@dataclass(frozen=True)
class WriteResult:
    """Outcome of one item of a (possibly batched) write. ``key`` is the tag or the id."""

    key: str
    remote: RemoteContact | None = None  # the contact as written (new id, new version)
    error: ProviderError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class ContactSide(Protocol):
    """What the reconciler needs from a side."""

    name: str  # "pipedrive", "microsoft", "google"
    carries: frozenset[str]  # canonical field names this side can store
    # What this account cannot sync, in words (shown in the connection's status); None while
    # the adapter has not learnt it yet (the status keeps what an earlier pass learnt).
    limits: tuple[str, ...] | None
    # True when a deletion it reports was of a contact in scope as it was deleted (a folder's
    # delta); False when it reports deletions of any contact, in scope or not.
    deletes_in_scope_only: bool
    # How long a write may take to show in the side's listings and change feed (0: at once).
    listing_lag: timedelta
    # What a deletion its change feed reports says of a copy made as a create's answer was
    # lost, whose tag no longer finds it (see ``sync.reconcile.lost_copies``): "tag" (the copy's
    # id is made from our tag, ``id_for_tag``: its deletion is proof), "unseen" (the feed reports
    # only contacts in scope and keeps ids: a deletion of an id no pass has seen is all but
    # certainly the copy's), "" (it cannot be told: the copy is made again).
    lost_copy_proof: str
    # How many creates one request carries: the most one lost answer leaves unknown.
    creates_per_request: int

    def read(self, position: str | None) -> ChangePage:
        """Changes since ``position``; ``None`` starts a full listing. Raises CursorExpired."""
        ...

    def fetch(self, ids: Sequence[str]) -> dict[str, RemoteContact | None]:
        """Current state of these ids; ``None`` only for an id the provider said is gone (404,
        NOT_FOUND). An id the answer left out is not in the result: unknown, never deleted."""
        ...

    def id_for_tag(self, tag: str) -> str:
        """The id a contact we create with ``tag`` gets ("" when the side chooses it)."""
        ...

    def find_tagged(self, tag: str) -> RemoteContact | None:
        """The contact carrying our mapping id, if the side has one (lost-response recovery)."""
        ...

    def lookup(self, contacts: Sequence[Contact]) -> list[RemoteContact]:
        """Contacts anywhere in the side's book that may be one of ``contacts``: sharing an email,
        a phone, or a name. The CRM searches the whole company (any owner: ``in_scope`` and
        ``scope_reason`` say whose), a provider the user's whole address book. Costs calls in
        proportion to ``contacts``, never a listing of the book; returning too much is fine (the
        engine compares normalised keys), leaving out a contact that shares an email is not."""
        ...

    def create(self, items: Sequence[NewContact]) -> list[WriteResult]: ...

    def update(self, items: Sequence[ContactUpdate]) -> list[WriteResult]: ...

    def delete(self, items: Sequence[ContactDelete]) -> list[WriteResult]: ...


# --- Errors: what went wrong, in terms the reconciler can act on ---------------------------------


class ProviderError(Exception):
    """Base of every adapter error. ``retryable`` says whether trying later can help."""

    retryable = False

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class RateLimited(ProviderError):
    """429 / throttled: stop calling this side for the connection and come back later."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float, status: int | None = 429) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class Transient(ProviderError):
    """5xx, timeout, connection reset: retried with backoff, then re-queued."""

    retryable = True


class AuthExpired(ProviderError):
    """401 after a refresh, or invalid_grant: the user must reconnect."""


class CursorExpired(ProviderError):
    """The sync token / delta link is no longer valid: do a full listing and re-match."""


class PreconditionFailed(ProviderError):
    """The contact changed since we read it (etag mismatch): re-read and re-merge."""


class NotFound(ProviderError):
    """The contact (or folder/group) does not exist."""


class InvalidContact(ProviderError):
    """The side rejected this one contact's data; the rest of the pass goes on."""


class PermissionDenied(ProviderError):
    """The user lacks a permission the operation needs; ``missing`` names it."""

    def __init__(self, message: str, *, missing: Sequence[str] = (), status: int = 403) -> None:
        super().__init__(message, status=status)
        self.missing = list(missing)
