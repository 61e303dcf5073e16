"""The records the Pipedrive sandbox keeps, and how each one looks in the API's JSON.

Shapes follow the v2 API (persons, organizations) and v1 API (users, personFields, webhooks);
see README.md for the documentation each shape was checked against.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NotRequired, TypedDict

PERSON_KEYS = frozenset(
    {
        "name",
        "first_name",
        "last_name",
        "owner_id",
        "org_id",
        "emails",
        "phones",
        "visible_to",
        "label_ids",
        "custom_fields",
        "job_title",
        "birthday",
        "postal_address",
        "notes",
        "ims",
        "add_time",
        "update_time",
        "marketing_status",
    }
)
# Fields the API reads and writes only when the company has contact sync enabled: left out of
# every answer otherwise, and a write that sets one is refused with 403.
CONTACT_SYNC_FIELDS = ("ims", "postal_address", "notes", "birthday", "job_title")
ADDRESS_PARTS = (
    "value",
    "country",
    "admin_area_level_1",
    "admin_area_level_2",
    "locality",
    "sublocality",
    "route",
    "street_number",
    "subpremise",
    "postal_code",
)
PERMISSION_KEYS = (
    "can_add_deals",
    "can_add_people",
    "can_add_organizations",
    "can_add_products",
    "can_add_custom_fields",
    "can_edit_custom_fields",
    "can_merge_people",
    "can_merge_organizations",
    "can_delete_deals",
    "can_export_data_from_lists",
    "can_see_other_users",
    "can_use_api",
    "can_use_import",
)
# What GET /v1/users/{id}/permissions lists by default: the client's permissions model at HEAD
# has no can_add_people / can_add_organizations (the 2023-06 changelog: POST answers 403).
LISTED_PERMISSION_KEYS = tuple(
    k for k in PERMISSION_KEYS if k not in ("can_add_people", "can_add_organizations")
)


def iso(moment: datetime) -> str:
    """RFC 3339 in UTC with second precision, as the v2 API writes times."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_millis(moment: datetime) -> str:
    """Webhook meta timestamps carry milliseconds: ``2023-01-01T00:00:00.000Z``."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def v1_time(moment: datetime) -> str:
    """v1 endpoints write ``YYYY-MM-DD HH:MM:SS`` (UTC)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def parse_rfc3339(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def new_hash_key() -> str:
    """Custom fields are keyed by a random 40-character hex hash."""
    return secrets.token_hex(20)


class TokenAnswer(TypedDict):
    """The OAuth token endpoint's answer: a new access token and the refresh token to use next."""

    access_token: str
    token_type: str
    expires_in: int
    refresh_token: str
    scope: str
    api_domain: NotRequired[str]  # the company's API address, added by the endpoint


class ApiError(Exception):
    """An error answer in Pipedrive's shape (``success: false``)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


# ``visible_to`` a plan allows (the API's role-settings documentation): Essential / Advanced know
# owner & followers (1) and the entire company (3); Professional / Enterprise add visibility
# groups: owner only (1), owner's visibility group (3), its sub-groups too (5), entire company (7).
VISIBILITY_BY_PLAN = {
    "essential": (1, 3),
    "advanced": (1, 3),
    "professional": (1, 3, 5, 7),
    "enterprise": (1, 3, 5, 7),
}


@dataclass
class Company:
    id: int
    name: str
    domain: str
    contact_sync: bool = False  # the company turned on Pipedrive's contact sync

    plan: str = "professional"


@dataclass
class User:
    id: int
    company_id: int
    name: str
    email: str
    is_admin: bool
    api_token: str
    permissions: dict[str, bool]
    active: bool = True

    def can(self, permission: str) -> bool:
        return self.is_admin or self.permissions.get(permission, False)

    def to_v1(self, company: Company) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "email": self.email,
            "company_id": company.id,
            "company_name": company.name,
            "company_domain": company.domain,
            "is_admin": 1 if self.is_admin else 0,
            "active_flag": self.active,
            "lang": 1,
            "locale": "en_US",
            "timezone_name": "UTC",
            "default_currency": "EUR",
        }


@dataclass
class Organization:
    id: int
    company_id: int
    name: str
    owner_id: int
    add_time: datetime
    update_time: datetime
    visible_to: int = 3
    deleted: bool = False

    def to_v2(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "owner_id": self.owner_id,
            "add_time": iso(self.add_time),
            "update_time": iso(self.update_time),
            "is_deleted": self.deleted,
            "visible_to": self.visible_to,
            "address": None,
            "label_ids": [],
            "custom_fields": {},
        }


@dataclass
class Person:
    id: int
    company_id: int
    name: str
    first_name: str | None
    last_name: str | None
    owner_id: int
    org_id: int | None
    add_time: datetime
    update_time: datetime
    emails: list[dict[str, Any]] = field(default_factory=list)
    phones: list[dict[str, Any]] = field(default_factory=list)
    visible_to: int = 3
    label_ids: list[int] = field(default_factory=list)
    custom_fields: dict[str, Any] = field(default_factory=dict)
    job_title: str | None = None
    birthday: str | None = None
    postal_address: dict[str, Any] | None = None
    notes: str | None = None
    deleted: bool = False

    def to_v2(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "owner_id": self.owner_id,
            "org_id": self.org_id,
            "picture_id": None,
            "add_time": iso(self.add_time),
            "update_time": iso(self.update_time),
            "emails": [dict(e) for e in self.emails],
            "phones": [dict(p) for p in self.phones],
            "is_deleted": self.deleted,
            "visible_to": self.visible_to,
            "label_ids": list(self.label_ids),
            "custom_fields": dict(self.custom_fields),
            "im": [],
            "job_title": self.job_title,
            "birthday": self.birthday,
            "postal_address": dict(self.postal_address) if self.postal_address else None,
            "notes": self.notes,
        }


@dataclass
class PersonField:
    id: int
    key: str
    name: str
    field_type: str
    add_time: datetime
    custom: bool

    def to_v1(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "key": self.key,
            "name": self.name,
            "field_type": self.field_type,
            "add_time": v1_time(self.add_time),
            "update_time": v1_time(self.add_time),
            "active_flag": True,
            "edit_flag": self.custom,
            "mandatory_flag": False,
            "bulk_edit_allowed": True,
            "add_visible_flag": True,
        }


@dataclass
class Webhook:
    id: int
    company_id: int
    owner_id: int
    user_id: int
    event_action: str
    event_object: str
    subscription_url: str
    http_auth_user: str | None
    http_auth_password: str | None
    version: str
    name: str
    add_time: datetime
    active: bool = True
    ban_counter: int = 0
    banned_until: float = 0.0  # time.monotonic() value
    last_delivery_time: datetime | None = None
    last_http_status: int | None = None

    def matches(self, action: str, entity: str) -> bool:
        return self.event_action in ("*", action) and self.event_object in ("*", entity)

    def to_v1(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "company_id": self.company_id,
            "owner_id": self.owner_id,
            "user_id": self.user_id,
            "event_action": self.event_action,
            "event_object": self.event_object,
            "subscription_url": self.subscription_url,
            "version": self.version,
            "is_active": 1 if self.active else 0,
            "add_time": iso(self.add_time),
            "remove_time": None,
            "type": "general",
            "http_auth_user": self.http_auth_user,
            # The sandbox never echoes a secret back, even though the real API may.
            "http_auth_password": "******" if self.http_auth_password else None,
            "remove_reason": None,
            "last_delivery_time": iso(self.last_delivery_time) if self.last_delivery_time else None,
            "last_http_status": self.last_http_status,
            "admin_id": self.owner_id,
            "name": self.name,
        }
