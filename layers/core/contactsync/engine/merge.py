"""Field-level three-way merge of one contact pair against its base.

For every field the CRM's value and the provider's value are compared with the base (the snapshot
both sides agreed on after the last pass), always in normalised form:

- changed on one side only: that side's value is taken;
- changed the same way on both: taken once;
- changed differently on both: the connection's conflict policy picks a winner and the loser's
  value is reported as a ``Conflict``.

A field a side does not carry is treated as unchanged on that side: it is never taken from it
(it has nothing there) and so never blanked because of it. Multi-valued fields merge element by
element, keyed by the element's normalised value; an element's label and primary flag are its
state, so "added", "removed" and "relabelled" are just changes of that state.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from contactsync.contacts.model import ALL_FIELDS, LIST_FIELDS, Contact
from contactsync.contacts.normalize import (
    Element,
    element_state,
    elements_by_identity,
    scalar_key,
)

Side = Literal["crm", "provider"]
Direction = Literal["two_way", "to_crm", "to_provider"]
ConflictPolicy = Literal["newest_wins", "crm_wins", "provider_wins"]


@dataclass(frozen=True)
class SyncSettings:
    """What a connection's owner chose, and what each side can carry."""

    direction: Direction = "two_way"
    conflict_policy: ConflictPolicy = "newest_wins"
    phone_region: str = "US"
    crm_fields: frozenset[str] = frozenset(ALL_FIELDS)  # what the CRM side can carry
    provider_fields: frozenset[str] = frozenset(ALL_FIELDS)  # what the provider side can carry
    guard_share: float = 0.10  # mass-change guard: more than this share of mapped contacts ...
    guard_min: int = 20  # ... and more than this many contacts
    # Sides whose reported deletions are only ever of contacts in scope (see ContactSide).
    deletes_in_scope_only: frozenset[str] = frozenset()

    def carried(self, side: Side) -> frozenset[str]:
        """The fields ``side`` can carry."""
        return self.crm_fields if side == "crm" else self.provider_fields

    def may_write(self, side: Side) -> bool:
        """Whether the direction lets a pass write to ``side``."""
        if side == "crm":
            return self.direction != "to_provider"
        return self.direction != "to_crm"


@dataclass(frozen=True)
class Conflict:
    """A field both sides changed differently, and how the policy settled it."""

    field: str
    winner: Side
    winner_value: object
    loser: Side
    loser_value: object
    reason: str  # e.g. "newest_wins: provider modified 2026-11-25T10:00:00Z"


_Pick = Literal["base", "crm", "provider", "conflict"]


def _pick(base: Hashable, crm: Hashable, provider: Hashable) -> _Pick:
    """Which value a three-way merge takes, given the normalised states."""
    crm_changed, provider_changed = crm != base, provider != base
    if not crm_changed and not provider_changed:
        return "base"
    if crm_changed and (not provider_changed or crm == provider):
        return "crm"
    if not crm_changed:
        return "provider"
    return "conflict"


def _instant(value: str) -> datetime | None:
    """An ISO-8601 time as an aware datetime (naive means UTC); None when unknown or unreadable."""
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def policy_winner(
    settings: SyncSettings, crm_modified: str, provider_modified: str, *, linking: bool = False
) -> tuple[Side, str]:
    """The side that wins a conflict under the connection's policy, and why (for the audit log).

    In a one-way connection the side that feeds it is the truth for the fields it carries: its
    change wins over an edit made only on the side it feeds, whatever the policy. Two contacts
    being linked have no change since a last agreement, only values: there the policy decides,
    so a value the fed side was given by hand after the source's stays (the source is not
    written to; its next change of that field wins). Otherwise ``newest_wins`` compares the
    sides' last-modified times; a known time beats an unknown one and a tie goes to the CRM.
    """
    if settings.direction == "to_crm" and not linking:
        return "provider", "direction to_crm: the address book feeds the CRM"
    if settings.direction == "to_provider" and not linking:
        return "crm", "direction to_provider: the CRM feeds the address book"
    if settings.conflict_policy == "crm_wins":
        return "crm", "crm_wins"
    if settings.conflict_policy == "provider_wins":
        return "provider", "provider_wins"
    crm_at, provider_at = _instant(crm_modified), _instant(provider_modified)
    if provider_at is not None and (crm_at is None or provider_at > crm_at):
        beaten = _other("CRM", crm_modified)
        return "provider", f"newest_wins: provider modified {provider_modified}{beaten}"
    if crm_at is None:
        return "crm", "newest_wins: neither side's time is known, the CRM wins ties"
    if crm_at == provider_at:
        return "crm", f"newest_wins: both modified {crm_modified}, the CRM wins ties"
    return "crm", f"newest_wins: CRM modified {crm_modified}{_other('provider', provider_modified)}"


def _other(side: str, modified: str) -> str:
    """The losing side's time, for the audit log (an unknown one says so)."""
    return f", {side} {modified}" if modified else f", {side}'s time unknown"


class _Resolver:
    """Settles conflicts for one pair; the policy is worked out once, when first needed."""

    def __init__(
        self, settings: SyncSettings, crm_modified: str, provider_modified: str, *, linking: bool
    ) -> None:
        self._settings = settings
        self._times = (crm_modified, provider_modified)
        self._linking = linking
        self._decision: tuple[Side, str] | None = None
        self.conflicts: list[Conflict] = []

    def settle(self, field: str, crm_value: object, provider_value: object) -> Side:
        """The winning side; the loser's value is recorded as a Conflict."""
        if self._decision is None:
            self._decision = policy_winner(self._settings, *self._times, linking=self._linking)
        winner, reason = self._decision
        if winner == "crm":
            conflict = Conflict(field, "crm", crm_value, "provider", provider_value, reason)
        else:
            conflict = Conflict(field, "provider", provider_value, "crm", crm_value, reason)
        self.conflicts.append(conflict)
        return winner


def _merge_scalar(field: str, base: str, crm: str, provider: str, resolver: _Resolver) -> str:
    pick = _pick(scalar_key(field, base), scalar_key(field, crm), scalar_key(field, provider))
    if pick == "conflict":
        pick = resolver.settle(field, crm, provider)
    return {"base": base, "crm": crm, "provider": provider}[pick]


def _merge_elements(
    field: str,
    base: Sequence[Element],
    crm: Sequence[Element],
    provider: Sequence[Element],
    *,
    region: str,
    resolver: _Resolver,
) -> tuple[Element, ...]:
    """Merge a multi-valued field element by element (absent is a state too: "removed")."""
    keyed = [elements_by_identity(items, region) for items in (base, crm, provider)]
    in_base, in_crm, in_provider = keyed
    merged: list[Element] = []
    for identity in dict.fromkeys([*in_crm, *in_provider, *in_base]):
        found = [k.get(identity) for k in keyed]
        states = [None if e is None else element_state(e) for e in found]
        pick = _pick(*states)
        if pick == "conflict":
            pick = resolver.settle(field, found[1], found[2])
        chosen = {"base": found[0], "crm": found[1], "provider": found[2]}[pick]
        if chosen is not None:
            merged.append(chosen)
    return tuple(merged)


def merge(  # noqa: PLR0917  # three contacts, the settings and the two sides' times
    base: Contact,
    crm: Contact,
    provider: Contact,
    settings: SyncSettings,
    crm_modified: str = "",
    provider_modified: str = "",
    *,
    linking: bool = False,
) -> tuple[Contact, tuple[Conflict, ...]]:
    """The merged contact and the conflicts the policy settled (``linking``: two contacts about
    to be linked, over an empty base).

    The result holds only fields at least one side carries. Where nothing changed it keeps the
    base's value as stored, so formatting is never rewritten for its own sake.
    """
    resolver = _Resolver(settings, crm_modified, provider_modified, linking=linking)
    values: dict[str, object] = {}
    for field in ALL_FIELDS:
        crm_carries, provider_carries = (
            field in settings.crm_fields,
            field in settings.provider_fields,
        )
        if not crm_carries and not provider_carries:
            continue
        base_value = getattr(base, field)
        crm_value = getattr(crm, field) if crm_carries else base_value
        provider_value = getattr(provider, field) if provider_carries else base_value
        if field in LIST_FIELDS:
            values[field] = _merge_elements(
                field,
                base_value,
                crm_value,
                provider_value,
                region=settings.phone_region,
                resolver=resolver,
            )
        else:
            values[field] = _merge_scalar(field, base_value, crm_value, provider_value, resolver)
    return Contact().with_fields(**values), tuple(resolver.conflicts)
