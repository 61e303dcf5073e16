"""How the Google sandbox stores and renders a person (People API v1 JSON), and its errors.

Pure functions only: the state module decides *when* a person changes, this module decides what
the stored fields look like and what a client sees for a given ``personFields`` mask.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

PEOPLE_SERVICE = "people.googleapis.com"
FIELDS_DOC = "https://developers.google.com/people/api/rest/v1/people/get"

# personFields / readMask values (people.get reference).
READ_FIELDS = frozenset(
    {
        "addresses", "ageRanges", "biographies", "birthdays", "calendarUrls", "clientData",
        "coverPhotos", "emailAddresses", "events", "externalIds", "genders", "imClients",
        "interests", "locales", "locations", "memberships", "metadata", "miscKeywords", "names",
        "nicknames", "occupations", "organizations", "phoneNumbers", "photos", "relations",
        "sipAddresses", "skills", "urls", "userDefined",
    }
)  # fmt: skip
# updatePersonFields / updateMask values (people.updateContact reference).
UPDATE_FIELDS = frozenset(
    {
        "addresses", "biographies", "birthdays", "calendarUrls", "clientData", "emailAddresses",
        "events", "externalIds", "genders", "imClients", "interests", "locales", "locations",
        "memberships", "miscKeywords", "names", "nicknames", "occupations", "organizations",
        "phoneNumbers", "relations", "sipAddresses", "urls", "userDefined",
    }
)  # fmt: skip
# Every property of the Person schema; anything else in a body is an unknown JSON name.
PERSON_PROPERTIES = READ_FIELDS | {
    "resourceName", "etag", "ageRange", "braggingRights", "fileAses", "relationshipInterests",
    "relationshipStatuses", "residences", "taglines",
}  # fmt: skip
OUTPUT_ONLY = frozenset({"resourceName", "etag", "metadata", "photos", "coverPhotos", "ageRanges"})
ITEM_OUTPUT_ONLY = ("formattedType", "canonicalForm", "displayNameLastFirst")

STATUS_CODES = {
    "INVALID_ARGUMENT": 3, "NOT_FOUND": 5, "ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8, "FAILED_PRECONDITION": 9, "INTERNAL": 13, "UNAVAILABLE": 14,
    "UNAUTHENTICATED": 16,
}  # fmt: skip


@dataclass
class GoogleError(Exception):
    """A People API error: HTTP status, google.rpc status name, message and optional details."""

    code: int
    status: str
    message: str
    details: list[dict[str, Any]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.code} {self.status}: {self.message}"

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message, "status": self.status}
        if self.details:
            error["details"] = self.details
        return {"error": error}


def invalid(message: str) -> GoogleError:
    return GoogleError(400, "INVALID_ARGUMENT", message)


def error_info(reason: str, domain: str = PEOPLE_SERVICE, **metadata: str) -> dict[str, Any]:
    info: dict[str, Any] = {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": reason,
        "domain": domain,
    }
    if metadata:
        info["metadata"] = metadata
    return info


def rpc_status(err: GoogleError) -> dict[str, Any]:
    """A google.rpc.Status (what batch responses carry per item)."""
    status: dict[str, Any] = {"code": STATUS_CODES.get(err.status, 2), "message": err.message}
    if err.details:
        status["details"] = err.details
    return status


def iso(moment: datetime) -> str:
    """Google's timestamps: UTC with microseconds and a Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- masks ---------------------------------------------------------------------------------------


def parse_mask(value: str | None, *, name: str, allowed: frozenset[str]) -> list[str]:
    """A comma-separated field mask; unknown paths are rejected like Google does."""
    paths = [p.strip() for p in (value or "").split(",") if p.strip()]
    for path in paths:
        short = path.removeprefix("person.")
        if short not in allowed:
            raise invalid(
                f'Invalid {name} mask path: "{path}". Valid paths are documented at {FIELDS_DOC}.'
            )
    return [p.removeprefix("person.") for p in paths]


def read_mask(value: str | None, *, name: str = "personFields", required: bool = True) -> set[str]:
    """The fields to render; all of them when an optional mask is missing."""
    paths = parse_mask(value, name=name, allowed=READ_FIELDS)
    if not paths:
        if required:
            raise invalid(
                f"{name} mask is required. Please specify one or more valid paths. "
                f"Valid paths are documented at {FIELDS_DOC}."
            )
        return set(READ_FIELDS)
    return set(paths)


# --- storing -------------------------------------------------------------------------------------


def check_person(body: Any, where: str = "person") -> dict[str, Any]:
    """Reject what the real API rejects: a non-object or an unknown JSON name."""
    if not isinstance(body, dict):
        raise invalid(f"Invalid JSON payload received. Expected an object at '{where}'.")
    for key in body:
        if key not in PERSON_PROPERTIES:
            raise invalid(
                f"Invalid JSON payload received. Unknown name \"{key}\" at '{where}': "
                "Cannot find field."
            )
    for key in SINGLETONS:  # a contact may carry at most one of each
        value = body.get(key)
        if isinstance(value, list) and len(value) > 1:
            raise invalid(f"{where}.{key}: only one {key[:-1]} is allowed per contact.")
    return body


SINGLETONS = ("names", "birthdays", "biographies", "genders")


def stored_fields(body: dict[str, Any]) -> dict[str, Any]:
    """The writable fields of a client's person, output-only parts removed (a deep copy)."""
    out: dict[str, Any] = {}
    for key, value in body.items():
        if key in OUTPUT_ONLY or key == "memberships" or value is None:
            continue
        out[key] = [stored_item(key, v) for v in value] if isinstance(value, list) else value
    return copy.deepcopy(out)


def stored_item(key: str, item: Any) -> Any:
    if not isinstance(item, dict):
        return item
    kept = {k: v for k, v in item.items() if k not in ITEM_OUTPUT_ONLY and k != "metadata"}
    if key == "names":
        kept.pop("displayName", None)  # names[].displayName is output only
    meta = item.get("metadata") or {}
    if isinstance(meta, dict) and (meta.get("primary") or meta.get("sourcePrimary")):
        kept["metadata"] = {"sourcePrimary": True}
    return kept


def group_names(body: dict[str, Any]) -> list[str]:
    """The contact groups named in a person's ``memberships`` (None entries skipped)."""
    names = []
    for m in body.get("memberships") or []:
        cgm = (m or {}).get("contactGroupMembership") or {}
        name = cgm.get("contactGroupResourceName") or (
            f"contactGroups/{cgm['contactGroupId']}" if cgm.get("contactGroupId") else None
        )
        if name:
            names.append(str(name))
    return names


# --- rendering -----------------------------------------------------------------------------------


@dataclass
class Rendering:
    """What a rendered contact needs besides its fields."""

    resource_name: str
    etag: str
    source_id: str
    source_etag: str
    update_time: datetime
    groups: list[str]
    source_type: str = "CONTACT"


def render_person(fields: dict[str, Any], r: Rendering, mask: set[str]) -> dict[str, Any]:
    """A person as the API returns it: resourceName, etag and the masked fields."""
    source = {"type": r.source_type, "id": r.source_id}
    out: dict[str, Any] = {"resourceName": r.resource_name, "etag": r.etag}
    for key in sorted(mask):
        if key == "metadata":
            out["metadata"] = {
                "sources": [
                    {
                        **source,
                        "etag": r.source_etag,
                        "updateTime": iso(r.update_time),
                    }
                ],
                "objectType": "PERSON",
            }
        elif key == "memberships":
            if r.groups:
                out["memberships"] = [membership(g, source) for g in r.groups]
        elif key in fields:
            value = copy.deepcopy(fields[key])
            out[key] = render_items(key, value, source) if isinstance(value, list) else value
    return out


def membership(group: str, source: dict[str, str]) -> dict[str, Any]:
    return {
        "metadata": {"source": dict(source)},
        "contactGroupMembership": {
            "contactGroupId": group.removeprefix("contactGroups/"),
            "contactGroupResourceName": group,
        },
    }


def render_items(key: str, items: list[Any], source: dict[str, str]) -> list[Any]:
    primary = next((i for i, v in enumerate(items) if isinstance(v, dict) and v.get("metadata")), 0)
    out = []
    for i, given in enumerate(items):
        if not isinstance(given, dict):
            out.append(given)
            continue
        meta: dict[str, Any] = {"source": dict(source)}
        if i == primary:
            meta.update(primary=True, sourcePrimary=True)
        item = {**given, "metadata": meta}
        if isinstance(item.get("type"), str) and item["type"]:
            item["formattedType"] = item["type"][:1].upper() + item["type"][1:]
        if key == "names":
            item.update(name_display(item))
        elif key == "phoneNumbers" and isinstance(item.get("value"), str):
            canonical = canonical_phone(item["value"])
            if canonical:
                item["canonicalForm"] = canonical
        elif key == "addresses" and "formattedValue" not in item:
            item["formattedValue"] = formatted_address(item)
        out.append(item)
    return out


def name_display(name: dict[str, Any]) -> dict[str, str]:
    given = " ".join(str(name[k]) for k in ("givenName", "middleName") if name.get(k))
    family = str(name.get("familyName") or "")
    display = " ".join(p for p in (given, family) if p) or str(name.get("unstructuredName") or "")
    last_first = f"{family}, {given}" if family and given else display
    return {"displayName": display, "displayNameLastFirst": last_first}


def canonical_phone(value: str) -> str | None:
    """E.164 when the number is already international (Google also infers a region; we don't)."""
    digits = re.sub(r"\D", "", value)
    return f"+{digits}" if value.strip().startswith("+") and 7 <= len(digits) <= 15 else None


def formatted_address(address: dict[str, Any]) -> str:
    line2 = " ".join(str(address[k]) for k in ("city", "region", "postalCode") if address.get(k))
    parts = [str(address.get("streetAddress") or ""), line2, str(address.get("country") or "")]
    return "\n".join(p for p in parts if p)


def deleted_person(r: Rendering) -> dict[str, Any]:
    """How a sync-token listing reports a deleted contact."""
    return {
        "resourceName": r.resource_name,
        "etag": r.etag,
        "metadata": {
            "sources": [
                {
                    "type": r.source_type,
                    "id": r.source_id,
                    "etag": r.source_etag,
                    "updateTime": iso(r.update_time),
                }
            ],
            "objectType": "PERSON",
            "deleted": True,
        },
    }
