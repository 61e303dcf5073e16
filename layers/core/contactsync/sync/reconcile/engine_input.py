"""Building the engine's input from what a pass read (the pairs it touched, with their mappings,
and the contacts no mapping names), planning, and planning again with the copies the look-ups
found on the other side."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from contactsync.engine.plan import (
    UNCHANGED,
    Outcome,
    PairInput,
    PassInput,
    Plan,
    Unchanged,
)
from contactsync.engine.plan_pass import plan_pass
from contactsync.providers.base import RemoteContact
from contactsync.store.pass_interface import SIDES
from contactsync.store.pending import PendingOp
from contactsync.sync.connection_states import ConnectionState
from contactsync.sync.reconcile.context import PassScope
from contactsync.sync.reconcile.feeds import SideChanges
from contactsync.sync.reconcile.look_around import look_up_copies
from contactsync.sync.reconcile.mass_changes import open_window

# A pair a pass read: [its mapping, the CRM contact, the provider contact], each contact as read
# (None: deleted), or UNCHANGED when that side did not change.
Pairs = dict[str, list[Any]]


@dataclass(frozen=True)
class Planned:
    """A plan, with what the pass needs to save it as pending writes."""

    plan: Plan
    pass_input: PassInput
    versions: dict[str, tuple[str, str]]  # mapping id -> (CRM version, provider version)
    linked_before: frozenset[str]  # mapping ids of the pairs read that were linked
    moved_versions: frozenset[str]  # mapping ids whose contacts' versions moved
    found_ids: set[tuple[str, str]]  # (side, id) of what the look-ups before creating found
    mapped: int  # linked pairs as the plan counted them

    def worth_saving(self, outcome: Outcome) -> bool:
        """A no-op still updates the mapping when a side's version moved (a formatting-only
        edit), or the next conditional write would be refused as stale."""
        return (
            bool(outcome.writes)
            or outcome.kind != "noop"
            or outcome.mapping_id in self.moved_versions
        )

    def pending_ops(self, outcomes: list[Outcome]) -> list[PendingOp]:
        return [
            PendingOp.from_outcome(
                seq,
                outcome,
                self.versions.get(outcome.mapping_id, ("", "")),
                was_linked=outcome.mapping_id in self.linked_before,
            )
            for seq, outcome in enumerate(outcomes)
        ]


def plan_changes(
    scope: PassScope,
    crm: SideChanges,
    provider: SideChanges,
    *,
    mapped: int,
    counts: dict[str, int],
) -> Planned:
    """Plan what both sides' changes call for. ``mapped``: the linked pairs as last counted (a
    full listing counts them afresh)."""
    store, cid = scope.store, scope.cid
    pairs, unmapped = _pairs_and_unmapped(scope, crm, provider)
    _read_partners_of_returns(scope, pairs)
    linked_before = frozenset(m.mapping_id for m, _, _ in pairs.values() if not m.detached)
    pair_inputs = [PairInput(mapping=m, crm=c, provider=p) for m, c, p in pairs.values()]
    versions = {
        m.mapping_id: (_version(c, m.crm_version), _version(p, m.provider_version))
        for m, c, p in pairs.values()
    }
    moved_versions = frozenset(
        m.mapping_id
        for m, _, _ in pairs.values()
        if versions[m.mapping_id] != (m.crm_version, m.provider_version)
    )
    full = crm.full and provider.full
    if full:
        mapped = store.count_mappings(cid)
    # A full listing decides afresh which contacts are possible duplicates; other passes
    # respect what the last one decided.
    on_hold: frozenset[tuple[str, str]] = frozenset()
    if not full:
        on_hold = frozenset(
            (name, contact_id)
            for name in SIDES
            for contact_id in store.review_holds(cid, name, [r.id for r in unmapped[name]])
        )
    pass_input = PassInput(
        settings=scope.settings,
        pairs=pair_inputs,
        unmapped_crm=unmapped["crm"],
        unmapped_provider=unmapped["provider"],
        mapped_total=mapped,
        full_listing=full,
        confirmed=scope.confirmed,
        initial=scope.conn.state == ConnectionState.SYNCING_INITIAL,
        on_hold=on_hold,
        window=open_window(scope.conn, scope.ctx.clock()),
    )
    plan = plan_pass(pass_input, new_mapping_id=scope.ctx.new_id)
    # A provider side listed in full this pass holds its whole scope already: what is not
    # unmapped there is linked (no look-up, which would cost a search per contact to copy
    # on an initial sync). The CRM lists only the user's persons: it is always searched.
    listed = {
        "provider": [
            entry[2]
            for entry in pairs.values()
            if isinstance(entry[2], RemoteContact) and entry[2].in_scope
        ]
        if provider.full
        else None
    }
    found, found_ids = look_up_copies(scope, plan, unmapped, listed, counts=counts)
    if any(found.values()):
        linked = frozenset(
            (name, r.id)
            for name in SIDES
            for r in found[name]
            if listed.get(name) is not None or store.mapping_for(cid, name, r.id) is not None
        )
        pass_input = replace(
            pass_input,
            found_crm=found["crm"],
            found_provider=found["provider"],
            found_linked=linked,
        )
        plan = plan_pass(pass_input, new_mapping_id=scope.ctx.new_id)
    # Versions of contacts that are linked or created now: known from what was read.
    by_id = {(name, r.id): r for name in SIDES for r in (*found[name], *unmapped[name])}
    for outcome in plan.outcomes:
        if outcome.mapping_id not in versions:
            crm_remote = by_id.get(("crm", outcome.crm_id))
            prv_remote = by_id.get(("provider", outcome.provider_id))
            versions[outcome.mapping_id] = (
                crm_remote.version if crm_remote else "",
                prv_remote.version if prv_remote else "",
            )
    return Planned(plan, pass_input, versions, linked_before, moved_versions, found_ids, mapped)


def _pairs_and_unmapped(
    scope: PassScope, crm: SideChanges, provider: SideChanges
) -> tuple[Pairs, dict[str, list[RemoteContact]]]:
    """The pairs whose contacts changed, by mapping id, and the changed contacts no mapping
    names, per side."""
    pairs: Pairs = {}
    unmapped: dict[str, list[RemoteContact]] = {"crm": [], "provider": []}
    for name, changes in (("crm", crm), ("provider", provider)):
        slot = 1 if name == "crm" else 2
        items: list[tuple[str, RemoteContact | None]] = [
            *changes.contacts.items(),
            *((d, None) for d in changes.deleted),
        ]
        for contact_id, remote in items:
            mapping = scope.store.mapping_for(scope.cid, name, contact_id)
            if mapping is None:
                if remote is not None:
                    unmapped[name].append(remote)
                continue
            entry = pairs.setdefault(mapping.mapping_id, [mapping, UNCHANGED, UNCHANGED])
            entry[slot] = remote
    return pairs, unmapped


def _read_partners_of_returns(scope: PassScope, pairs: Pairs) -> None:
    """A contact back in scope is merged with what its partner holds now. While they were
    apart the partner's edits were read but not agreed (the base stayed), so "unchanged
    since the last pass" does not mean "holds the base": read it again."""
    wanted: dict[str, list[list[Any]]] = {"crm": [], "provider": []}
    for entry in pairs.values():
        mapping, crm, provider = entry
        if not mapping.detached:
            continue
        away, stayed = (crm, provider) if mapping.detached == "crm" else (provider, crm)
        if isinstance(away, RemoteContact) and away.in_scope and stayed is UNCHANGED:
            wanted["provider" if mapping.detached == "crm" else "crm"].append(entry)
    for name, entries in wanted.items():
        if not entries:
            continue
        slot = 1 if name == "crm" else 2
        ids = [e[0].crm_id if name == "crm" else e[0].provider_id for e in entries]
        found = scope.sides.of(name).fetch(ids)
        for entry, contact_id in zip(entries, ids, strict=True):
            if contact_id in found:  # left out of the answer: unknown, keep what we had
                entry[slot] = found[contact_id]


def _version(remote: RemoteContact | Unchanged | None, stored: str) -> str:
    return remote.version if isinstance(remote, RemoteContact) else stored
