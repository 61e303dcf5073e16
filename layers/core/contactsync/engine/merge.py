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

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from contactsync.contacts.model import ALL_FIELDS, LIST_FIELDS, Contact
from contactsync.contacts.normalize import (
    Element,
    element_state,
    elements_by_identity,
    field_key,
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
    settings: SyncSettings,
    crm_modified: str,
    provider_modified: str,
    *,
    linking: bool = False,
    fed_edit_is_later: bool = False,
) -> tuple[Side, str]:
    """The side that wins a conflict under the connection's policy, and why (for the audit log).

    In a one-way connection the side that feeds it is the truth for the fields it carries: its
    change wins over an edit made only on the side it feeds, whatever the policy, unless that
    hand edit is known to be the later of the two (``fed_edit_is_later``). Two contacts
    being linked have no change since a last agreement, only values: there the policy decides,
    so a value the fed side was given by hand after the source's stays (the source is not
    written to; its next change of that field wins). Otherwise ``newest_wins`` compares the
    sides' last-modified times; a known time beats an unknown one and a tie goes to the CRM.
    """
    if settings.direction != "two_way" and not linking:
        return _one_way_winner(settings.direction, fed_edit_is_later=fed_edit_is_later)
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


def _one_way_winner(direction: str, *, fed_edit_is_later: bool) -> tuple[Side, str]:
    source: Side
    fed: Side
    if direction == "to_crm":
        source, fed, why = "provider", "crm", "direction to_crm: the address book feeds the CRM"
    else:
        source, fed, why = (
            "crm",
            "provider",
            "direction to_provider: the CRM feeds the address book",
        )
    if fed_edit_is_later:
        return fed, (
            f"{why}, but the hand edit was made after a pass had read the source's change (a "
            "write of it failed): it stays until the source changes that field again"
        )
    return source, why


def later_on_fed(
    base: Contact,
    crm: Contact,
    provider: Contact,
    settings: SyncSettings,
    remembered: Mapping[str, Contact],
) -> frozenset[str]:
    """The fields of a one-way pair whose hand edit on the fed side is known to be later than
    the source's change: the source's value is one an earlier pass read already (``remembered``
    holds it: that pass's write of it failed, and may have landed), the fed side's is new since
    that pass read it.

    Passes run when they run, so a change is only known to be later than another by the passes
    between them; the sides' modified times cannot tell, being of a contact's latest change of
    any field. Where both changes are new to a pass, the source wins.
    """
    to_crm = settings.direction == "to_crm"
    source_side, fed_side = ("provider", "crm") if to_crm else ("crm", "provider")
    source, fed = (provider, crm) if to_crm else (crm, provider)
    source_known = remembered.get(source_side, base)
    fed_known = remembered.get(fed_side, base)
    region = settings.phone_region
    carried = settings.carried("crm") & settings.carried("provider")
    return frozenset(
        f
        for f in carried
        if field_key(source, f, region) == field_key(source_known, f, region)
        and field_key(fed, f, region) != field_key(fed_known, f, region)
    )


def _other(side: str, modified: str) -> str:
    """The losing side's time, for the audit log (an unknown one says so)."""
    return f", {side} {modified}" if modified else f", {side}'s time unknown"


class _Resolver:
    """Settles conflicts for one pair; the policy is worked out once for each answer of
    ``later_on_fed``, when first needed."""

    def __init__(
        self,
        settings: SyncSettings,
        times: tuple[str, str],
        *,
        linking: bool,
        later_on_fed: frozenset[str],
    ) -> None:
        self._settings = settings
        self._times = times
        self._linking = linking
        self._later_on_fed = later_on_fed
        self._decisions: dict[bool, tuple[Side, str]] = {}
        self.conflicts: list[Conflict] = []

    def settle(self, field: str, crm_value: object, provider_value: object) -> Side:
        """The winning side; the loser's value is recorded as a Conflict."""
        later = field in self._later_on_fed
        if later not in self._decisions:
            self._decisions[later] = policy_winner(
                self._settings, *self._times, linking=self._linking, fed_edit_is_later=later
            )
        winner, reason = self._decisions[later]
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
    remembered: Mapping[str, Contact] | None = None,
) -> tuple[Contact, tuple[Conflict, ...]]:
    """The merged contact and the conflicts the policy settled (``linking``: two contacts about
    to be linked, over an empty base; ``remembered``: what a linked pair's sides were last known
    to hold where that is not the base, see ``later_on_fed``).

    The result holds only fields at least one side carries. Where nothing changed it keeps the
    base's value as stored, so formatting is never rewritten for its own sake.
    """
    later: frozenset[str] = frozenset()
    if remembered and settings.direction != "two_way" and not linking:
        later = later_on_fed(base, crm, provider, settings, remembered)
    times = (crm_modified, provider_modified)
    resolver = _Resolver(settings, times, linking=linking, later_on_fed=later)
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
