"""The sync engine: pure functions from "what changed" to "what to write" (no I/O, no clock).

- ``merge``: field-level three-way merge of one pair against its base;
- ``grouping``: things connected through the keys they share (matching and duplicates use it);
- ``matching``: linking unmapped contacts one to one, reporting possible duplicates;
- ``plan``: the plan's shapes — what a pass reads and what it should write;
- ``updates``, ``deletes``, ``pairs``: planning one mapped pair (merge, delete, scope change);
- ``new_contacts``: links, copies and held copies of contacts no mapping holds yet;
- ``guard``: the mass-change guard;
- ``plan_pass``: a whole pass, in order; ``plan_summary``: what a plan would do, for people.
"""

from contactsync.engine.matching import DuplicateCandidate, match_unmapped
from contactsync.engine.merge import Conflict, SyncSettings, merge, policy_winner
from contactsync.engine.pairs import plan_pair
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
)
from contactsync.engine.plan_pass import plan_pass
from contactsync.engine.plan_summary import preview

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
