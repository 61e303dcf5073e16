"""The canonical contact: the one shape every provider adapter maps to and from.

Values are kept as the user typed them; normalisation (see ``normalize``) is only for comparing.
Everything is immutable so a snapshot (the mapping's *base*) can never be changed by accident.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

# Field names, in a fixed order. Adapters say which of these they can carry.
SCALAR_FIELDS = (
    "given_name",
    "middle_name",
    "family_name",
    "display_name",
    "organization",
    "job_title",
    "birthday",
    "notes",
)
LIST_FIELDS = ("emails", "phones", "addresses", "websites")
ALL_FIELDS = SCALAR_FIELDS + LIST_FIELDS


@dataclass(frozen=True)
class Email:
    value: str
    label: str = "work"
    primary: bool = False


@dataclass(frozen=True)
class Phone:
    value: str
    label: str = "work"
    primary: bool = False


@dataclass(frozen=True)
class Address:
    street: str = ""
    city: str = ""
    region: str = ""
    postal_code: str = ""
    country: str = ""
    label: str = "work"


@dataclass(frozen=True)
class Contact:
    """A person as both sides see it. Empty string / empty tuple means "no value"."""

    given_name: str = ""
    middle_name: str = ""
    family_name: str = ""
    display_name: str = ""
    emails: tuple[Email, ...] = ()
    phones: tuple[Phone, ...] = ()
    organization: str = ""
    job_title: str = ""
    addresses: tuple[Address, ...] = ()
    birthday: str = ""  # ISO date "YYYY-MM-DD", or "--MM-DD" when the year is unknown
    notes: str = ""
    websites: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what the store keeps as a mapping's base)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Contact:
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {k: v for k, v in data.items() if k in known}
        values["emails"] = tuple(Email(**e) for e in values.get("emails", ()))
        values["phones"] = tuple(Phone(**p) for p in values.get("phones", ()))
        values["addresses"] = tuple(Address(**a) for a in values.get("addresses", ()))
        values["websites"] = tuple(values.get("websites", ()))
        return cls(**values)

    def with_fields(self, **changes: Any) -> Contact:
        return replace(self, **changes)

    def only(self, names: frozenset[str] | set[str]) -> Contact:
        """This contact with every field outside ``names`` emptied (what a side can carry)."""
        empty = Contact()
        return replace(self, **{n: getattr(empty, n) for n in ALL_FIELDS if n not in names})

    @property
    def full_name(self) -> str:
        if self.display_name.strip():
            return self.display_name.strip()
        parts = (self.given_name, self.middle_name, self.family_name)
        return " ".join(p.strip() for p in parts if p.strip())

    def is_empty(self) -> bool:
        return self == Contact()
