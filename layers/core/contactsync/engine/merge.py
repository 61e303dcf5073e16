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
from datetime import UTC, datetime, timedelta
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
    fed_edit_is_new: bool = True,
) -> tuple[Side, str]:
    """The side that wins a conflict under the connection's policy, and why (for the audit log).

    In a one-way connection the side that feeds it is the truth for the fields it carries: its
    change wins over an edit made only on the side it feeds, whatever the policy — unless that
    hand edit is new to this pass (``fed_edit_is_new``) and known to be newer than the source's
    change: a pass between the two would have written the source's value and then kept the hand
    edit, so the outcome does not hang on when passes run. (A hand edit an earlier pass already
    saw is older than any change new to this one, whatever the fed side's time says: that time
    may be of a later write of other fields.) Two contacts being linked have no change since a
    last agreement, only values: there the policy decides, so a value the fed side was given by
    hand after the source's stays (the source is not written to; its next change of that field
    wins). Otherwise ``newest_wins`` compares the sides' last-modified times; a known time beats
    an unknown one and a tie goes to the CRM.
    """
    if settings.direction != "two_way" and not linking:
        times = (crm_modified, provider_modified) if fed_edit_is_new else ("", "")
        return _one_way_winner(settings.direction, *times)
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


def _one_way_winner(direction: str, crm_modified: str, provider_modified: str) -> tuple[Side, str]:
    """The source wins, unless the fed side was edited after the source's change (known to be
    after it: a source time given to the second may be up to a second later)."""
    source: Side
    fed: Side
    if direction == "to_crm":
        source, fed, why = "provider", "crm", "direction to_crm: the address book feeds the CRM"
        source_time, fed_time, fed_name = provider_modified, crm_modified, "CRM"
    else:
        source, fed = "crm", "provider"
        why = "direction to_provider: the CRM feeds the address book"
        source_time, fed_time, fed_name = crm_modified, provider_modified, "address book"
    source_at, fed_at = _instant(source_time), _instant(fed_time)
    if source_at is not None and not source_at.microsecond:
        source_at += timedelta(seconds=1)  # a time to the second: the change may be that late
    if source_at is not None and fed_at is not None and fed_at > source_at:
        return fed, (
            f"{why}, but the {fed_name} was edited by hand at {fed_time}, after the source "
            f"changed ({source_time}): the hand edit stays until the source changes it again"
        )
    return source, why


def _old_on_fed(
    base: Contact, crm: Contact, provider: Contact, settings: SyncSettings, fed_known: Contact
) -> frozenset[str]:
    """The fields whose value on the fed side of a one-way pair is no hand edit new to this pass.

    The fed side's modified time is that of its latest change, of whatever field. It tells when
    a conflicting hand edit was made only where every change new on the fed side is on a field
    the source changed too; otherwise every field is taken as old, and the source wins.
    """
    to_crm = settings.direction == "to_crm"
    source, fed = (provider, crm) if to_crm else (crm, provider)
    carried = settings.carried("crm" if to_crm else "provider")
    region = settings.phone_region
    new = {f for f in carried if field_key(fed, f, region) != field_key(fed_known, f, region)}
    source_changed = {
        f for f in ALL_FIELDS if field_key(source, f, region) != field_key(base, f, region)
    }
    if not new <= source_changed:
        return frozenset(ALL_FIELDS)
    return frozenset(ALL_FIELDS) - new


def _other(side: str, modified: str) -> str:
    """The losing side's time, for the audit log (an unknown one says so)."""
    return f", {side} {modified}" if modified else f", {side}'s time unknown"


class _Resolver:
    """Settles conflicts for one pair; the policy is worked out once per kind of hand edit."""

    def __init__(
        self,
        settings: SyncSettings,
        times: tuple[str, str],
        *,
        linking: bool,
        old_on_fed: frozenset[str],
    ) -> None:
        self._settings = settings
        self._times = times
        self._linking = linking
        self._old_on_fed = old_on_fed
        self._decisions: dict[bool, tuple[Side, str]] = {}
        self.conflicts: list[Conflict] = []

    def settle(self, field: str, crm_value: object, provider_value: object) -> Side:
        """The winning side; the loser's value is recorded as a Conflict."""
        new = field not in self._old_on_fed
        if new not in self._decisions:
            self._decisions[new] = policy_winner(
                self._settings, *self._times, linking=self._linking, fed_edit_is_new=new
            )
        winner, reason = self._decisions[new]
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
    fed_known: Contact | None = None,
) -> tuple[Contact, tuple[Conflict, ...]]:
    """The merged contact and the conflicts the policy settled (``linking``: two contacts about
    to be linked, over an empty base; ``fed_known``: in a one-way connection, what the fed side
    held after the last pass, so a hand edit already seen then is told from a new one).

    The result holds only fields at least one side carries. Where nothing changed it keeps the
    base's value as stored, so formatting is never rewritten for its own sake.
    """
    old_on_fed = (
        _old_on_fed(base, crm, provider, settings, fed_known or base)
        if settings.direction != "two_way" and not linking
        else frozenset()
    )
    times = (crm_modified, provider_modified)
    resolver = _Resolver(settings, times, linking=linking, old_on_fed=old_on_fed)
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
