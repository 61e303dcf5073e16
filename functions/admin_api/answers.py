"""What the admin API answers: one model per JSON answer, for its OpenAPI document and for the
resolver to check each answer against. Every model keeps fields it does not name (a newer core
may say more); a field marked "absent when …" is left out of the answer rather than null."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Answer(BaseModel):
    model_config = ConfigDict(extra="allow")


def absent(description: str) -> Any:
    """An optional field left out of the answer (not sent as null) when it has no value."""
    return Field(default=None, description=description, exclude_if=lambda value: value is None)


# --- errors ------------------------------------------------------------------------------------


class ErrorBody(Answer):
    code: str = Field(description="not_found, forbidden, conflict, invalid_request, …")
    message: str = Field(description="What went wrong, and what to do about it.")
    details: dict[str, Any] = Field(
        description="What a client can act on: allowed values, an example, missing permissions."
    )


class ErrorAnswer(Answer):
    error: ErrorBody


# --- connections -------------------------------------------------------------------------------


class Folder(Answer):
    id: str
    name: str | None


class ConnectionView(Answer):
    """A connection with its live status."""

    id: str
    user_id: str
    provider: str = Field(description="microsoft, google or carddav")
    account: str | None = Field(description="The provider account signed in, once it is.")
    state: str = Field(
        description="configuring, syncing_initial, active, needs_attention, needs_reauth, "
        "stopped or paused"
    )
    direction: str = Field(description="two_way, to_crm or to_provider")
    folder: Folder | None = Field(description="The folder, group or address book synced.")
    conflict_policy: str = Field(description="newest_wins, crm_wins or provider_wins")
    phone_region: str
    visibility: str | None = Field(description="owner, group or company (null: the CRM's default)")
    progress: dict[str, Any] = Field(description="The initial sync's phase, done and total.")
    last_success_at: str | None
    last_error: dict[str, Any] | None
    held: dict[str, Any] | None = Field(description="The pass the mass-change guard holds.")
    counts: dict[str, Any]
    limits: list[str] = Field(description="What either account cannot sync, in words.")
    cursor_age_seconds: int | None
    subscription_expires_at: str | None
    next_run_at: str | None
    poll_seconds: int
    created_at: str
    updated_at: str


class ConnectionList(Answer):
    connections: list[ConnectionView]


class ConnectionAnswer(Answer):
    """A connection after it was added or signed in again."""

    connection: ConnectionView
    authorization_url: str | None = absent(
        "Where to send the user to sign in (absent for CardDAV, which signs in at once)."
    )
    connected: str | None = absent("A CardDAV reconnect: the provider signed in.")
    connection_id: str | None = absent("A CardDAV reconnect: the connection signed in.")
    account: str | None = absent("A CardDAV reconnect: the account signed in.")
    same_account: bool | None = absent("A CardDAV reconnect: whether the links were kept.")


class SignInLink(Answer):
    authorization_url: str


class SignedIn(Answer):
    """A finished sign-in: a provider account attached to a connection, or the CRM account."""

    connected: str = Field(description="microsoft, google, carddav, or crm")
    connection_id: str | None = absent("The connection signed in (absent for the CRM).")
    account: str | None = absent("The account signed in (absent for the CRM).")
    same_account: bool | None = absent("Whether the links were kept (absent for the CRM).")
    company_id: str | None = absent("The CRM account's company (only for the CRM).")
    user_id: str | None = absent("The CRM account's user (only for the CRM).")


class Group(Answer):
    id: str
    name: str


class GroupList(Answer):
    groups: list[Group]


# --- removal -----------------------------------------------------------------------------------


class RemovedCounts(Answer):
    connections: int
    users: int | None = absent("Users removed (absent when one connection was removed).")


class Removed(Answer):
    removed: RemovedCounts


# --- troubleshooting ---------------------------------------------------------------------------


class DuplicateCandidate(Answer):
    crm_ids: list[str]
    provider_ids: list[str]
    key: str = Field(description='The match key they share ("email:bob@x.com").')
    reason: str


class Preview(Answer):
    """What a full pass would do right now (nothing is written)."""

    linked: int
    created_in_crm: int
    created_in_provider: int
    updated_crm: int
    updated_provider: int
    deleted_crm: int
    deleted_provider: int
    unlinked: int
    conflicts: int
    duplicates: int
    held: str | None = Field(description="Why the mass-change guard would hold the pass.")
    left_out: dict[str, int] = Field(description="Contacts left out, counted by reason.")
    duplicate_candidates: list[DuplicateCandidate]


class AuditEntryView(Answer):
    """One entry of the activity log."""

    id: str
    at: str
    kind: str = Field(description="write, conflict, unlink, guard, error, duplicate, pass, …")
    side: str | None
    crm_id: str | None
    provider_id: str | None
    mapping_id: str | None
    message: str
    before: Any = Field(description="The fields' values before a write.")
    after: Any = Field(description="The fields' values after a write.")
    details: Any
    undoable: bool


class MappingView(Answer):
    id: str
    crm_id: str
    provider_id: str
    linked_since: str
    detached: str | None = Field(description="The side the contact left the scope in.")
    updated_at: str


class FoundContact(Answer):
    side: str
    id: str
    exists: Literal[True]
    name: str
    in_scope: bool
    out_of_scope_because: str | None
    fields: list[str] = Field(description="The fields that hold something.")
    created_by_sync: bool


class MissingContact(Answer):
    side: str
    id: str
    exists: Literal[False]


class LastError(Answer):
    at: str
    side: str | None
    message: str


class Explanation(Answer):
    """Why one contact is, or is not, syncing."""

    syncing: bool
    reasons: list[str]
    mapping: MappingView | None
    contact: FoundContact | MissingContact
    last_error: LastError | None
    history: list[AuditEntryView]


class PersonHit(Answer):
    crm_person_id: str
    name: str
    emails: list[str]
    in_scope: bool
    scope_reason: str
    linked_to: str | None = Field(description="The provider contact it is linked to.")


class PersonHits(Answer):
    persons: list[PersonHit]


class ClusterPerson(Answer):
    id: str
    name: str
    linked_to: str | None


class Cluster(Answer):
    crm_ids: list[str]
    keys: list[str] = Field(description="The match keys the persons share.")
    persons: list[ClusterPerson]
    suggested_keep: str


class AmbiguousMatch(Answer):
    key: str
    crm_ids: list[str]
    provider_ids: list[str]
    message: str
    seen_at: str


class Duplicates(Answer):
    clusters: list[Cluster]
    ambiguous_matches: list[AmbiguousMatch]


class MergedPerson(Answer):
    crm_id: str
    link: str = Field(description="What became of its link, in words.")


class Merged(Answer):
    kept: str
    merged: list[MergedPerson]


# --- activity and held passes ------------------------------------------------------------------


class ActivityPage(Answer):
    entries: list[AuditEntryView]
    next_cursor: str | None = Field(description="Where the next page starts (null: no more).")


class Undone(Answer):
    restored: list[str] = Field(description="The fields put back.")
    entry: AuditEntryView


class Confirmed(Answer):
    queued: bool
    connection: ConnectionView


class Discarded(Answer):
    discarded: bool
    message: str
    connection: ConnectionView


# --- status ------------------------------------------------------------------------------------


class ProviderHealth(Answer):
    provider: str
    passes: int
    errors: int
    error_share: float
    error_codes: list[str]
    degraded: bool


class ServiceStatus(Answer):
    window_minutes: int
    as_of: str
    degraded: bool
    providers: list[ProviderHealth]


class PublicProvider(Answer):
    provider: str
    name: str
    status: Literal["working", "degraded"]


class PublicStatus(Answer):
    as_of: str
    window_minutes: int
    degraded: bool
    providers: list[PublicProvider]
