"""The sync plan's shapes: what one pass reads, and what it should write.

``plan_pass`` (in ``engine.plan_pass``) is pure. It takes what changed on each side since the
last pass (and the mappings those contacts belong to) and returns a ``Plan``: one ``Outcome`` per
pair, each with at most one ``Write`` per side and the new base to store. The reconciler applies
it, or applies nothing when the plan is ``held`` by the mass-change guard.

Direction. A one-way connection never writes the side it does not feed. The merge still runs as
in two-way, but for the side that cannot be written the new base keeps *that side's* current
values. So the base stays the truth of what that side holds: the other side's unsent edits keep
showing as changes against it, and once the direction is switched back to two-way the next pass
that touches the pair sends them. (Storing the merged result instead would make the stale side
look "edited back" and undo them.) What the written side holds then differs from the base: the
mapping keeps it (``holds``), so a pass that sees no change there still knows what is there —
the ``before`` of its next write, and its edits that the base does not have.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from contactsync.contacts.model import Contact
from contactsync.engine.matching import DuplicateCandidate
from contactsync.engine.merge import Conflict, ConflictPolicy, Direction, Side, SyncSettings
from contactsync.providers.base import RemoteContact

__all__ = [
    "SIDES",
    "SIDE_NAMES",
    "UNCHANGED",
    "ChangeWindow",
    "Conflict",
    "ConflictPolicy",
    "Direction",
    "DuplicateCandidate",
    "GuardTrip",
    "MappingState",
    "Outcome",
    "PairInput",
    "PassInput",
    "Plan",
    "Side",
    "SyncSettings",
    "Unchanged",
    "Write",
    "other_side",
]

SIDES: tuple[Side, Side] = ("crm", "provider")
SIDE_NAMES: dict[Side, str] = {"crm": "the CRM", "provider": "the provider"}


@dataclass(frozen=True)
class MappingState:
    """What the store keeps per linked pair."""

    mapping_id: str
    crm_id: str
    provider_id: str
    base: Contact  # the canonical snapshot both sides agreed on after the last pass
    crm_version: str = ""
    provider_version: str = ""
    # The side whose contact left the sync scope ("" while linked). A detached pair syncs
    # nothing; it remembers that the two contacts are one person, so the one still in scope is
    # not copied again, and the pair links again when the other comes back into scope.
    detached: str = ""
    # What a side holds where it differs from the base (side -> contact; only that side's
    # fields). Only one-way connections make such pairs: see the module's docstring.
    holds: dict[str, Contact] = dataclasses.field(default_factory=dict)
    refusals: int = 0  # writes to this pair refused in a row as stale (reset by a success)


class Unchanged:
    """The type of ``UNCHANGED``: "this side reported no change" (its state is the base)."""

    _instance: Unchanged | None = None

    def __new__(cls) -> Unchanged:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED = Unchanged()


@dataclass(frozen=True)
class PairInput:
    mapping: MappingState
    crm: RemoteContact | Unchanged | None  # None = deleted on the CRM side
    provider: RemoteContact | Unchanged | None  # None = deleted on the provider side


@dataclass(frozen=True)
class ChangeWindow:
    """What the connection's passes applied since its last quiet or confirmed moment.

    The guard judges each plan together with it, so a mass change that arrives in ten passes is
    held as surely as one that arrives in one.
    """

    reference: int = 0  # linked pairs when the window opened: the share is taken of these
    creates: int = 0
    deletes: int = 0
    unlinks: int = 0  # linked pairs that left the sync scope, or lost their partner one-way


@dataclass(frozen=True)
class PassInput:
    settings: SyncSettings
    pairs: Sequence[PairInput]  # mapped pairs with a change on at least one side
    unmapped_crm: Sequence[RemoteContact]  # changed/new CRM contacts with no mapping
    unmapped_provider: Sequence[RemoteContact]  # changed/new provider contacts with no mapping
    mapped_total: int  # how many mappings the connection has in all
    full_listing: bool = False  # both unmapped lists are complete listings
    confirmed: bool = False  # the user confirmed a guard-held pass
    initial: bool = False  # the connection's first sync is still running (creating is its job)
    # Unlinked contacts ("crm"/"provider", id) a full listing found to be possible duplicates:
    # matched if a match appears, but never copied to the other side while they wait for review.
    on_hold: frozenset[tuple[str, str]] = frozenset()
    # What earlier passes applied lately (None: nothing, the window is closed).
    window: ChangeWindow | None = None
    # Contacts a look-up found in each side's whole book (``ContactSide.lookup``) by the keys of
    # those this pass would copy there. They are matched against, never copied. One that is
    # linked already (``found_linked``: ("crm"/"provider", id)) or out of scope (a CRM person
    # owned by another user) is never linked either: a new contact sharing a key with it is held.
    found_crm: Sequence[RemoteContact] = ()
    found_provider: Sequence[RemoteContact] = ()
    found_linked: frozenset[tuple[str, str]] = frozenset()


@dataclass(frozen=True)
class Write:
    """One intended write on one side."""

    side: Side
    kind: Literal["create", "update", "delete"]
    target_id: str  # "" for create
    version: str  # version the write is based on ("" for create)
    before: Contact  # what the side holds now (Contact() for create)
    after: Contact  # what it should hold (Contact() for delete); only the side's carried fields


@dataclass(frozen=True)
class Outcome:
    """What to do for one pair (existing mapping, new link, or new contact).

    ``kind`` "noop" means nothing to write; the reconciler may still store the new base and the
    sides' new versions.
    """

    mapping_id: str
    crm_id: str  # "" until created
    provider_id: str  # "" until created
    new_base: Contact | None  # the agreed snapshot after the writes; None = drop the mapping
    writes: tuple[Write, ...]  # at most one per side
    conflicts: tuple[Conflict, ...] = ()
    kind: Literal["merge", "link", "create", "delete", "unlink", "noop"] = "merge"
    reason: str = ""  # plain words for the audit log ("removed from folder", ...)
    detached: str = ""  # with new_base: keep the mapping, detached on this side
    holds: dict[str, Contact] = dataclasses.field(default_factory=dict)  # see MappingState


@dataclass(frozen=True)
class GuardTrip:
    creates: int
    deletes: int
    mapped_total: int
    message: str  # "this pass would delete 340 of 1,200 contacts in Outlook ..."
    unlinks: int = 0


@dataclass(frozen=True)
class Plan:
    outcomes: tuple[Outcome, ...]
    duplicates: tuple[DuplicateCandidate, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()  # (contact id, plain-words reason) left alone
    held: GuardTrip | None = None  # set => apply NOTHING, ask the user


def other_side(side: Side) -> Side:
    return "provider" if side == "crm" else "crm"
