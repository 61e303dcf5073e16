"""The sync engine: pure functions from "what changed" to "what to write" (no I/O, no clock).

- ``merge``: field-level three-way merge of one pair against its base;
- ``grouping``: things connected through the keys they share (matching and duplicates use it);
- ``matching``: linking unmapped contacts one to one, reporting possible duplicates;
- ``plan``: a whole pass — pairs, links, creations, direction, the mass-change guard.
"""

from contactsync.engine.matching import DuplicateCandidate, match_unmapped
from contactsync.engine.merge import Conflict, SyncSettings, merge, policy_winner
from contactsync.engine.plan import (
    UNCHANGED,
    GuardTrip,
    MappingState,
    Outcome,
    PairInput,
    PassInput,
    Plan,
    Unchanged,
    Write,
    plan_pair,
    plan_pass,
    preview,
)

__all__ = [
    "UNCHANGED",
    "Conflict",
    "DuplicateCandidate",
    "GuardTrip",
    "MappingState",
    "Outcome",
    "PairInput",
    "PassInput",
    "Plan",
    "SyncSettings",
    "Unchanged",
    "Write",
    "match_unmapped",
    "merge",
    "plan_pair",
    "plan_pass",
    "policy_winner",
    "preview",
]
