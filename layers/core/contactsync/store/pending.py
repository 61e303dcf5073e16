"""Pending operations: a planned outcome saved *before* anything is sent to a provider.

A pass turns its plan into pending operations, stores them, and only then calls the providers.
A pass that crashes, times out or is throttled leaves the rest stored; the next pass finishes them
first, so nothing is lost and nothing doubles: the id a create made is written down the moment
the provider answers (a receipt), and a create whose answer never came looks for our tag before
creating again.
The last operation of a plan carries the cursors: they advance only after everything before them.
Plain values: the table items that hold them are ``PendingOpItem`` (``contactsync.store.models``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from contactsync.contacts.model import Contact
from contactsync.engine.plan import Conflict, Outcome, Write

CURSOR_OP_ID = "~cursors"  # sorts after every numbered op


@dataclass(frozen=True)
class PendingOp:
    """One planned outcome (its writes, or the plan's cursors) as a pass stores it before it
    sends anything; stored as a ``PendingOpItem`` whose payload is ``to_json``."""

    op_id: str
    mapping_id: str = ""
    crm_id: str = ""
    provider_id: str = ""
    writes: tuple[Write, ...] = ()
    new_base: Contact | None = None
    kind: str = "merge"
    reason: str = ""
    conflicts: tuple[Conflict, ...] = ()
    crm_version: str = ""
    provider_version: str = ""
    detached: str = ""  # the side whose contact left scope: keep the mapping, unlinked
    holds: dict[str, Contact] = field(default_factory=dict)  # see MappingState.holds
    cursors: dict[str, dict[str, Any]] = field(default_factory=dict)  # side -> Cursor fields
    # side -> id of the contact this op's create made there, written down as soon as the
    # provider answered: a pass that dies before recording the mapping is finished from it,
    # even if the user deleted the new contact meanwhile (then its tag can no longer be found).
    receipts: dict[str, str] = field(default_factory=dict)
    # The pair was linked (a mapping, not detached) when planned: with what the op leaves, this
    # says how the connection's count of linked pairs moves.
    was_linked: bool = False

    @property
    def is_cursor_op(self) -> bool:
        return self.op_id == CURSOR_OP_ID

    @classmethod
    def from_outcome(
        cls, seq: int, outcome: Outcome, versions: tuple[str, str], *, was_linked: bool = False
    ) -> PendingOp:
        return cls(
            op_id=f"{seq:09d}",
            mapping_id=outcome.mapping_id,
            crm_id=outcome.crm_id,
            provider_id=outcome.provider_id,
            writes=outcome.writes,
            new_base=outcome.new_base,
            kind=outcome.kind,
            reason=outcome.reason,
            conflicts=outcome.conflicts,
            crm_version=versions[0],
            provider_version=versions[1],
            detached=outcome.detached,
            was_linked=was_linked,
            holds=outcome.holds,
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "op_id": self.op_id,
                "mapping_id": self.mapping_id,
                "crm_id": self.crm_id,
                "provider_id": self.provider_id,
                "writes": [_write_to_dict(w) for w in self.writes],
                "new_base": self.new_base.to_dict() if self.new_base is not None else None,
                "kind": self.kind,
                "reason": self.reason,
                "conflicts": [_conflict_to_dict(c) for c in self.conflicts],
                "crm_version": self.crm_version,
                "provider_version": self.provider_version,
                "detached": self.detached,
                "holds": {side: c.to_dict() for side, c in self.holds.items()},
                "cursors": self.cursors,
                "receipts": self.receipts,
                "was_linked": self.was_linked,
            },
            separators=(",", ":"),
            default=str,
        )

    @classmethod
    def from_json(cls, raw: str) -> PendingOp:
        data = json.loads(raw)
        base = data.get("new_base")
        return cls(
            op_id=data["op_id"],
            mapping_id=data.get("mapping_id", ""),
            crm_id=data.get("crm_id", ""),
            provider_id=data.get("provider_id", ""),
            writes=tuple(_write_from_dict(w) for w in data.get("writes", [])),
            new_base=Contact.from_dict(base) if base is not None else None,
            kind=data.get("kind", "merge"),
            reason=data.get("reason", ""),
            conflicts=tuple(Conflict(**c) for c in data.get("conflicts", [])),
            crm_version=data.get("crm_version", ""),
            provider_version=data.get("provider_version", ""),
            detached=data.get("detached", ""),
            holds={side: Contact.from_dict(c) for side, c in data.get("holds", {}).items()},
            cursors=data.get("cursors", {}),
            receipts=data.get("receipts", {}),
            # Saved before this was written down: only new pairs were not linked.
            was_linked=data.get("was_linked", data.get("kind") not in ("create", "link")),
        )


def _write_to_dict(write: Write) -> dict[str, Any]:
    return {
        "side": write.side,
        "kind": write.kind,
        "target_id": write.target_id,
        "version": write.version,
        "before": write.before.to_dict(),
        "after": write.after.to_dict(),
    }


def _write_from_dict(data: dict[str, Any]) -> Write:
    return Write(
        side=data["side"],
        kind=data["kind"],
        target_id=data["target_id"],
        version=data["version"],
        before=Contact.from_dict(data["before"]),
        after=Contact.from_dict(data["after"]),
    )


def _conflict_to_dict(conflict: Conflict) -> dict[str, Any]:
    return {
        "field": conflict.field,
        "winner": conflict.winner,
        "winner_value": plain_value(conflict.winner_value),
        "loser": conflict.loser,
        "loser_value": plain_value(conflict.loser_value),
        "reason": conflict.reason,
    }


def plain_value(value: Any) -> Any:
    """Conflict values may be tuples of dataclasses (emails ...): make them JSON."""
    if isinstance(value, tuple | list):
        return [plain_value(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return {k: plain_value(getattr(value, k)) for k in value.__dataclass_fields__}
    return value
