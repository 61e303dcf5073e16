"""PynamoDB models of the single table (see template.yaml ``Table``).

Every item of a connection shares ``PK=CONN#<id>``; the sort key says what the item is:

- connection:    PK=CONN#<id>  SK=CONNECTION
                 GSI1 COMPANY#<company> / USER#<user>#CONN#<id>; DueIndex (sparse)
                 DUE#<shard> / <next run at>
- tokens:        PK=CONN#<id>  SK=TOKENS (the connection's sealed provider tokens)
- cursor:        PK=CONN#<id>  SK=CURSOR#<side>
- mapping:       PK=CONN#<id>  SK=MAP#<mapping id>
                 GSI1 CONN#<id>#CRM#<crm id> / MAP; GSI2 CONN#<id>#PRV#<provider id> / MAP
- pending op:    PK=CONN#<id>#OPS  SK=OP#<op id> (a partition of its own: a pass reads them
                 all, and the mappings' partition may hold 100,000 items)
- audit:         PK=CONN#<id>  SK=LOG#<iso time>#<seq>, TTL on expires_at
                 AuditIndex (sparse) <about> / SK, about = CONN#<id>#CRM#<crm id> (the CRM
                 person it names, so a pair's entries are one key), else CONN#<id>#PRV#<provider
                 id>, or CONN#<id>#DUPLICATES for a duplicate finding
- audit mention: PK=CONN#<id>#MENTION  SK=LOG#<iso time>#<seq>#<n>, TTL: each further contact
                 one entry names (the persons of a duplicate finding, a merged person), in
                 AuditIndex under that contact
- duplicate cluster: PK=CONN#<id>#CLUSTERS  SK=CLUSTER#<first crm id> (what the last full
                 listing of the CRM found)
- subscription:  PK=SUB#<provider subscription id>  SK=SUBSCRIPTION
- CRM grant:     PK=USER#<company>#<user>  SK=CRM
                 GSI1 COMPANY#<company> / CRM#USER#<user>
- CRM sign-in:   PK=CRMAUTH#<sha256 of the state>  SK=CRM_AUTH (in-flight authorization, TTL 1 hour)
- pass outcomes: PK=STATUS#<provider>#<minute>#<shard>  SK=COUNTS (status page counters, TTL 1 day)
- key claim:     PK=CLAIM#<company>#<user>  SK=KEY#<normalised contact key> (a few minutes, TTL)

Table name, endpoint and region are read from the environment once at import (TABLE_NAME,
DYNAMODB_ENDPOINT_URL, AWS_REGION) and can be re-pointed with ``configure`` (tests use a fresh
table each). Times are ISO-8601 UTC strings of fixed width (see ``iso``), so they sort as text.

A model is named for its item. Where a pass handles the same thing as a plain value
(``contactsync.store.pass_interface``, ``contactsync.store.pending``), the model's name ends in
``Item``: a ``CursorItem`` stores a ``Cursor``, an ``AuditEntryItem`` an ``AuditEntry``, a
``PendingOpItem`` a ``PendingOp``.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import Any

from pynamodb.attributes import (
    BinaryAttribute,
    BooleanAttribute,
    JSONAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
    VersionAttribute,
)
from pynamodb.exceptions import PynamoDBException
from pynamodb.indexes import GlobalSecondaryIndex, IncludeProjection, KeysOnlyProjection
from pynamodb.models import Model

from contactsync.contacts.model import Contact
from contactsync.store.attributes import ZippedJSON, ZippedText

DUE_SHARDS = 8  # DueIndex partitions: connection ids hash over these so no shard is hot


def iso(moment: datetime) -> str:
    """Fixed-width ISO-8601 UTC with microseconds, e.g. ``2024-05-01T12:00:00.000000Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def utcnow() -> datetime:
    return datetime.now(UTC)


def conditional_failure(error: PynamoDBException) -> bool:
    """The write's condition did not hold (as opposed to any other failure)."""
    return error.cause_response_code == "ConditionalCheckFailedException"


class _TableMeta:
    """Shared PynamoDB settings; ``configure`` rewrites them on every model."""

    table_name = os.environ.get("TABLE_NAME", "contactsync-local")
    host = os.environ.get("DYNAMODB_ENDPOINT_URL") or None
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    max_retry_attempts = 3


# --- indexes ------------------------------------------------------------------------------------


# PynamoDB's Index.__init_subclass__ is untyped, hence the ignores on the index classes.


class ConnectionsByOwner(GlobalSecondaryIndex["Connection"]):  # type: ignore[no-untyped-call]
    """GSI1 for connections: ``COMPANY#<company>`` / ``USER#<user>#CONN#<id>``.

    GSI1, GSI2 and DueIndex carry keys only: an update that moves no key of theirs writes
    nothing to them (with every attribute projected, each update of a 2 KB connection was
    copied whole into two indexes). A query reads the items it finds by key."""

    class Meta:
        index_name = "GSI1"
        projection = KeysOnlyProjection()

    gsi1pk = UnicodeAttribute(hash_key=True, attr_name="GSI1PK")
    gsi1sk = UnicodeAttribute(range_key=True, attr_name="GSI1SK")


class ConnectionsDue(GlobalSecondaryIndex["Connection"]):  # type: ignore[no-untyped-call]
    """DueIndex, sparse: only scheduled connections carry ``due_shard`` / ``next_run_at``."""

    class Meta:
        index_name = "DueIndex"
        projection = KeysOnlyProjection()

    due_shard = UnicodeAttribute(hash_key=True)
    next_run_at = UnicodeAttribute(range_key=True)


class MappingsByCrmId(GlobalSecondaryIndex["Mapping"]):  # type: ignore[no-untyped-call]
    """GSI1 for mappings: ``CONN#<id>#CRM#<crm id>`` / ``MAP``."""

    class Meta:
        index_name = "GSI1"
        projection = KeysOnlyProjection()

    gsi1pk = UnicodeAttribute(hash_key=True, attr_name="GSI1PK")
    gsi1sk = UnicodeAttribute(range_key=True, attr_name="GSI1SK")


class MappingsByProviderId(GlobalSecondaryIndex["Mapping"]):  # type: ignore[no-untyped-call]
    """GSI2 for mappings: ``CONN#<id>#PRV#<provider id>`` / ``MAP``."""

    class Meta:
        index_name = "GSI2"
        projection = KeysOnlyProjection()

    gsi2pk = UnicodeAttribute(hash_key=True, attr_name="GSI2PK")
    gsi2sk = UnicodeAttribute(range_key=True, attr_name="GSI2SK")


class AuditAbout(GlobalSecondaryIndex["AuditEntryItem"]):  # type: ignore[no-untyped-call]
    """AuditIndex, sparse: the entries about one contact (or a connection's duplicate findings)
    in time order. It carries what the support questions pick entries by, not ``before`` and
    ``after``: an index item stays under 1 KB, so it costs one write unit."""

    class Meta:
        index_name = "AuditIndex"
        projection = IncludeProjection(["kind", "at", "side", "message", "details"])

    about = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True, attr_name="SK")


# --- nested maps --------------------------------------------------------------------------------


class _Record(MapAttribute[str, Any]):
    """A nested map with declared fields, typed (PynamoDB's constructor and as_dict are not)."""

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)  # type: ignore[no-untyped-call]

    def as_dict(self) -> dict[str, Any]:
        return dict(super().as_dict())  # type: ignore[no-untyped-call]


class Progress(_Record):
    """How far the current (initial or full) listing is."""

    phase = UnicodeAttribute(default="")
    done = NumberAttribute(default=0)
    total = NumberAttribute(null=True)
    started_at = UnicodeAttribute(null=True)


class LastError(_Record):
    """The error that stopped the last pass, in words a user can act on."""

    code = UnicodeAttribute()
    message = UnicodeAttribute()
    at = UnicodeAttribute()
    repeats = NumberAttribute(default=0)  # failed passes in a row (throttles not counted)


# --- items --------------------------------------------------------------------------------------


class Connection(Model):
    """One user's link between their CRM persons and one provider address book (folder/group)."""

    class Meta(_TableMeta):
        pass

    pk = UnicodeAttribute(hash_key=True, attr_name="PK")
    sk = UnicodeAttribute(range_key=True, attr_name="SK", default="CONNECTION")
    gsi1pk = UnicodeAttribute(attr_name="GSI1PK")
    gsi1sk = UnicodeAttribute(attr_name="GSI1SK")
    due_shard = UnicodeAttribute(null=True)
    next_run_at = UnicodeAttribute(null=True)

    connection_id = UnicodeAttribute()
    company_id = UnicodeAttribute()
    user_id = UnicodeAttribute()
    provider = UnicodeAttribute()  # "microsoft" | "google" | "carddav"
    provider_account_id = UnicodeAttribute(null=True)
    provider_account_email = UnicodeAttribute(null=True)
    state = UnicodeAttribute(default="configuring")
    direction = UnicodeAttribute(default="two_way")  # two_way | to_crm | to_provider
    folder_id = UnicodeAttribute(null=True)
    folder_name = UnicodeAttribute(null=True)
    conflict_policy = UnicodeAttribute(default="newest_wins")
    phone_region = UnicodeAttribute(default="US")
    visible_to = NumberAttribute(null=True)  # the CRM's visible_to for persons we create
    poll_seconds = NumberAttribute(default=0)  # the adaptive polling interval last chosen
    # Vault-sealed tokens as connections stored them before they had an item of their own
    # (``ConnectionTokens``): read until the tokens are next sealed, then removed.
    legacy_credentials = BinaryAttribute(null=True, legacy_encoding=False, attr_name="credentials")
    oauth_state = BinaryAttribute(null=True, legacy_encoding=False)  # vault-sealed flow / PKCE
    # ListAttribute[str]: PynamoDB types ``of`` as the element type, so readers get list[str].
    crm_webhook_ids = ListAttribute[str](of=UnicodeAttribute, default=list)  # type: ignore[arg-type]
    crm_webhook_secret_hash = UnicodeAttribute(null=True)
    subscription_ids = ListAttribute[str](of=UnicodeAttribute, default=list)  # type: ignore[arg-type]
    # What either account cannot sync (e.g. the CRM company has contact sync off), in words,
    # as the last pass learnt it from the providers' answers.
    limits = ListAttribute[str](of=UnicodeAttribute, default=list)  # type: ignore[arg-type]
    progress = Progress(null=True)
    counts = MapAttribute[str, Any](null=True)  # type: ignore[no-untyped-call]  # name -> number
    last_error = LastError(null=True)
    last_success_at = UnicodeAttribute(null=True)
    last_full_at = UnicodeAttribute(null=True)  # the last pass that listed both sides in full
    # CRM persons a webhook asked to re-read that no pass has read yet: the next pass re-reads
    # them, so no pushed change (a delete) is lost. Added to and taken from by set updates only.
    pending_crm_ids = UnicodeSetAttribute(null=True)
    # Provider contacts the next pass re-reads by id: pairs whose write was refused as stale.
    pending_provider_ids = UnicodeSetAttribute(null=True)
    # How many times hints were added: a pass forgets the hints it read only if none was added
    # since it began (one added again meanwhile, for a contact it had read, must stay).
    hints_added = NumberAttribute(null=True)
    # When a pass request was last put on the queue for a push, if no pass has begun since:
    # further pushes only add their hints and send nothing (a burst asks for one pass).
    wake_queued_at = UnicodeAttribute(null=True)
    # Until when the scheduler's claim holds (a pass for it is queued): set in place, so a claim
    # moves no DueIndex key; every new schedule lets it go.
    claimed_until = UnicodeAttribute(null=True)
    lease_owner = UnicodeAttribute(null=True)
    lease_until = UnicodeAttribute(null=True)
    held_plan = JSONAttribute(null=True)  # summary of a pass the safety guard held back
    # What passes applied lately, judged with each new plan by the mass-change guard:
    # {since, last, reference, creates, deletes, unlinks}; closed (null) when quiet or confirmed.
    change_window = JSONAttribute(null=True)
    # Creates, deletes and unlinks wait until then for the rest of a burst (their contacts are
    # in the pending ids), so the guard judges the burst whole.
    settle_until = UnicodeAttribute(null=True)
    list_in_full = BooleanAttribute(null=True)  # more waited than the pending ids hold
    # op ids being sent right now (recovered by the next pass if this one dies)
    inflight_ops = ListAttribute[str](of=UnicodeAttribute, default=list)  # type: ignore[arg-type]
    inflight_at = UnicodeAttribute(null=True)  # ISO time they were sent
    # A pass has stored a plan and not yet finished or handed it over: set while it applies. A
    # pass that finds it set knows the planning pass died, and plans again what it never sent.
    plan_open = BooleanAttribute(default=False)
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    version = VersionAttribute()

    by_owner = ConnectionsByOwner()
    due = ConnectionsDue()


class ConnectionTokens(Model):
    """A connection's vault-sealed provider tokens (about 1.5 KB): an item apart from the
    connection item, which every pass and scheduler claim writes (with the tokens in it, each
    of those writes cost two units)."""

    class Meta(_TableMeta):
        pass

    pk = UnicodeAttribute(hash_key=True, attr_name="PK")
    sk = UnicodeAttribute(range_key=True, attr_name="SK", default="TOKENS")
    sealed = BinaryAttribute(legacy_encoding=False)
    updated_at = UnicodeAttribute()


class CursorItem(Model):
    """Where one side's change feed was last read up to (opaque to all but the adapter): the
    table item of a pass's ``Cursor``."""

    class Meta(_TableMeta):
        pass

    pk = UnicodeAttribute(hash_key=True, attr_name="PK")
    sk = UnicodeAttribute(range_key=True, attr_name="SK")
    side = UnicodeAttribute()  # "crm" | "provider"
    position = UnicodeAttribute(default="")
    complete = BooleanAttribute(default=True)
    full = BooleanAttribute(default=False)
    taken_at = UnicodeAttribute(null=True)
    updated_at = UnicodeAttribute()


class Mapping(Model):
    """A linked pair (CRM person <-> provider contact) and the base both sides last agreed on."""

    class Meta(_TableMeta):
        pass

    pk = UnicodeAttribute(hash_key=True, attr_name="PK")
    sk = UnicodeAttribute(range_key=True, attr_name="SK")
    gsi1pk = UnicodeAttribute(attr_name="GSI1PK")
    gsi1sk = UnicodeAttribute(attr_name="GSI1SK", default="MAP")
    gsi2pk = UnicodeAttribute(attr_name="GSI2PK")
    gsi2sk = UnicodeAttribute(attr_name="GSI2SK", default="MAP")

    mapping_id = UnicodeAttribute()
    connection_id = UnicodeAttribute()
    crm_id = UnicodeAttribute()
    provider_id = UnicodeAttribute()
    base = UnicodeAttribute()  # JSON of Contact.to_dict()
    crm_version = UnicodeAttribute(default="")
    provider_version = UnicodeAttribute(default="")
    # "crm" / "provider": that side's contact left the sync scope; the pair is unlinked and the
    # other side left alone, but remembered so neither side is copied again (no duplicate).
    detached = UnicodeAttribute(default="")
    # JSON {side: Contact.to_dict()}: what a side holds where it differs from the base (one-way
    # connections only; absent otherwise).
    holds = UnicodeAttribute(null=True)
    refusals = NumberAttribute(default=0)  # writes refused in a row as stale
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()

    by_crm_id = MappingsByCrmId()
    by_provider_id = MappingsByProviderId()

    @property
    def base_contact(self) -> Contact:
        """The base as a canonical contact."""
        return Contact.from_dict(json.loads(self.base))

    @property
    def held_contacts(self) -> dict[str, Contact]:
        """What each side holds where it differs from the base."""
        raw: dict[str, Any] = json.loads(self.holds) if self.holds else {}
        return {side: Contact.from_dict(value) for side, value in raw.items()}


class PendingOpItem(Model):
    """A pass's ``PendingOp`` (JSON in ``payload``), stored before its writes are sent so a
    crashed pass can be recovered."""

    class Meta(_TableMeta):
        pass

    pk = UnicodeAttribute(hash_key=True, attr_name="PK")
    sk = UnicodeAttribute(range_key=True, attr_name="SK")
    op_id = UnicodeAttribute()
    side = UnicodeAttribute()  # "crm" | "provider"
    kind = UnicodeAttribute()  # "create" | "update" | "delete"
    mapping_id = UnicodeAttribute()
    target_id = UnicodeAttribute(default="")  # empty for a create
    payload = ZippedText(default="{}")  # JSON
    created_at = UnicodeAttribute()


class Subscription(Model):
    """A provider push subscription (Graph), found by its id when a notification arrives."""

    class Meta(_TableMeta):
        pass

    pk = UnicodeAttribute(hash_key=True, attr_name="PK")
    sk = UnicodeAttribute(range_key=True, attr_name="SK", default="SUBSCRIPTION")
    subscription_id = UnicodeAttribute()
    connection_id = UnicodeAttribute()
    client_state_hash = UnicodeAttribute()  # sha256 hex of the clientState secret
    resource = UnicodeAttribute()
    expires_at_iso = UnicodeAttribute()
    created_at = UnicodeAttribute()


class AuditEntryItem(Model):
    """What a pass changed and why: the table item of an ``AuditEntry``, with what the activity
    log and AuditIndex need besides. Expires after 90 days (table TTL)."""

    class Meta(_TableMeta):
        pass

    pk = UnicodeAttribute(hash_key=True, attr_name="PK")
    sk = UnicodeAttribute(range_key=True, attr_name="SK")
    connection_id = UnicodeAttribute()
    at = UnicodeAttribute()
    kind = UnicodeAttribute()  # write | conflict | unlink | guard | error | duplicate | pass
    side = UnicodeAttribute(null=True)
    crm_id = UnicodeAttribute(null=True)
    provider_id = UnicodeAttribute(null=True)
    mapping_id = UnicodeAttribute(null=True)
    message = UnicodeAttribute(default="")
    before = ZippedJSON(null=True)  # (compressed: the entry stays under 1 KB, one write unit)
    after = ZippedJSON(null=True)
    details = JSONAttribute(null=True)
    expires_at = TTLAttribute()
    about = UnicodeAttribute(null=True)  # AuditIndex: the contact it is about (None: none)

    by_about = AuditAbout()


class AuditMention(Model):
    """An audit entry found under one more contact than its own ``about``: the other persons of
    a duplicate finding, the person a merge took away. Only what AuditIndex shows."""

    class Meta(_TableMeta):
        pass

    pk = UnicodeAttribute(hash_key=True, attr_name="PK")  # CONN#<id>#MENTION
    sk = UnicodeAttribute(range_key=True, attr_name="SK")  # the entry's sort key + #<n>
    about = UnicodeAttribute()
    kind = UnicodeAttribute()
    at = UnicodeAttribute()
    message = UnicodeAttribute(default="")
    expires_at = TTLAttribute()


class GrantsByCompany(GlobalSecondaryIndex["CrmGrant"]):  # type: ignore[no-untyped-call]
    """GSI1 for CRM grants: ``COMPANY#<company>`` / ``CRM#USER#<user>`` (erasing a company)."""

    class Meta:
        index_name = "GSI1"
        projection = KeysOnlyProjection()

    gsi1pk = UnicodeAttribute(hash_key=True, attr_name="GSI1PK")
    gsi1sk = UnicodeAttribute(range_key=True, attr_name="GSI1SK")


class CrmGrant(Model):
    """A user's CRM OAuth tokens, sealed by the vault."""

    class Meta(_TableMeta):
        pass

    pk = UnicodeAttribute(hash_key=True, attr_name="PK")
    sk = UnicodeAttribute(range_key=True, attr_name="SK", default="CRM")
    company_id = UnicodeAttribute()
    user_id = UnicodeAttribute()
    tokens = BinaryAttribute(legacy_encoding=False)
    updated_at = UnicodeAttribute()
    gsi1pk = UnicodeAttribute(null=True, attr_name="GSI1PK")
    gsi1sk = UnicodeAttribute(null=True, attr_name="GSI1SK")
    by_company = GrantsByCompany()


class CrmAuthorization(Model):
    """A CRM sign-in in flight: the sealed OAuth state to check the callback against."""

    class Meta(_TableMeta):
        pass

    pk = UnicodeAttribute(hash_key=True, attr_name="PK")
    sk = UnicodeAttribute(range_key=True, attr_name="SK", default="CRM_AUTH")
    company_id = UnicodeAttribute()
    user_id = UnicodeAttribute()
    oauth_state = BinaryAttribute(legacy_encoding=False)
    created_at = UnicodeAttribute()
    expires_at = TTLAttribute()


class ReviewHold(Model):
    """A contact left unlinked as a possible duplicate: never copied to the other side until a
    person resolves it (merge) or a full listing no longer finds it ambiguous."""

    class Meta(_TableMeta):
        pass

    pk = UnicodeAttribute(hash_key=True, attr_name="PK")
    sk = UnicodeAttribute(range_key=True, attr_name="SK")  # HOLD#<side>#<contact id>
    side = UnicodeAttribute()
    contact_id = UnicodeAttribute()
    reason = UnicodeAttribute(default="")
    created_at = UnicodeAttribute()


class DuplicateCluster(Model):
    """CRM persons of the user that look like one person (they share a match key), as the last
    full listing of the CRM found them: what the duplicates page starts from."""

    class Meta(_TableMeta):
        pass

    pk = UnicodeAttribute(hash_key=True, attr_name="PK")  # CONN#<id>#CLUSTERS
    sk = UnicodeAttribute(range_key=True, attr_name="SK")  # CLUSTER#<first crm id>
    crm_ids = ListAttribute[str](of=UnicodeAttribute)  # type: ignore[arg-type]
    keys = ListAttribute[str](of=UnicodeAttribute)  # type: ignore[arg-type]
    found_at = UnicodeAttribute()


class KeyClaim(Model):
    """One of a user's connections is about to make a person in the CRM with this normalised key
    ("email:ann@x.com"): the user's other connections do not make it too while it lasts."""

    class Meta(_TableMeta):
        pass

    pk = UnicodeAttribute(hash_key=True, attr_name="PK")  # CLAIM#<company>#<user>
    sk = UnicodeAttribute(range_key=True, attr_name="SK")  # KEY#<key>
    owner = UnicodeAttribute()  # the connection holding it
    until = UnicodeAttribute()  # ISO time it lapses (TTL deletes it later, at leisure)
    made = UnicodeAttribute(null=True)  # the CRM person made under it, once made
    expires_at = TTLAttribute()


class PassOutcomes(Model):
    """How many passes touching one provider ended, and how many in error, in one minute.

    The status page's raw counts: every pass adds to one of a few shards of its minute (so no
    single item is hot), and the page reads the last 15 minutes' items by key.
    """

    class Meta(_TableMeta):
        pass

    pk = UnicodeAttribute(hash_key=True, attr_name="PK")
    sk = UnicodeAttribute(range_key=True, attr_name="SK", default="COUNTS")
    provider = UnicodeAttribute()
    minute = UnicodeAttribute()  # "2025-03-01T12:34" (UTC)
    passes = NumberAttribute(null=True)
    errors = NumberAttribute(null=True)
    error_codes = UnicodeSetAttribute(null=True)
    expires_at = TTLAttribute()


MODELS: tuple[type[Model], ...] = (
    Connection,
    ConnectionTokens,
    CursorItem,
    Mapping,
    PendingOpItem,
    Subscription,
    AuditEntryItem,
    AuditMention,
    CrmGrant,
    CrmAuthorization,
    ReviewHold,
    DuplicateCluster,
    KeyClaim,
    PassOutcomes,
)


def configure(table_name: str, endpoint_url: str | None, region: str) -> None:
    """Point every model at ``table_name`` (on ``endpoint_url``, e.g. DynamoDB Local)."""
    for model in MODELS:
        model.Meta.table_name = table_name
        model.Meta.host = endpoint_url
        model.Meta.region = region
        model._connection = None  # PynamoDB caches its connection per class


def current_table() -> str:
    return str(Connection.Meta.table_name)
