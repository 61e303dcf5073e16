"""Properties of the engine, checked with hypothesis over generated contacts and settings.

Values come from small pools so that collisions (same email on two contacts, the same phone
written three ways) happen often. The stateful test at the end plays two in-memory sides and a
mapping store through random edits and passes, applying each plan with a tiny applier.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import replace

from contactsync.contacts.model import ALL_FIELDS, LIST_FIELDS, Address, Contact, Email, Phone
from contactsync.contacts.normalize import (
    ElementState,
    comparable,
    element_identity,
    element_state,
    elements_by_identity,
    field_key,
)
from contactsync.engine.matching import match_unmapped
from contactsync.engine.merge import Conflict, Side, SyncSettings, merge
from contactsync.engine.pairs import plan_pair
from contactsync.engine.plan import (
    UNCHANGED,
    MappingState,
    Outcome,
    PairInput,
    PassInput,
    Plan,
)
from contactsync.engine.plan_pass import plan_pass
from contactsync.providers.base import RemoteContact
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

FAST = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- Generated data -------------------------------------------------------------------------------

NAMES = ["Ann", "Bob", "Cy", "Dee", ""]
ORGS = ["Acme", "Globex", ""]
EMAILS = ["ann@x.com", "bob@x.com", "cy@y.org", "dee@y.org"]
PHONES = ["4155550100", "4155550101", "2125550199"]
ADDRESSES = [Address(street="1 Main St", city="Springfield"), Address(city="Paris", country="FR")]
WEBSITES = ["https://acme.example", "globex.example/about"]
LABELS = ["work", "home", "mobile"]
TIMES = ["", "2026-11-25T09:00:00Z", "2026-11-25T10:00:00Z", "2026-11-25T10:00:00+00:00"]


def phone_variants(digits: str) -> list[str]:
    """The same US number as different systems write it."""
    area, exchange, line = digits[:3], digits[3:6], digits[6:]
    return [digits, f"+1 ({area}) {exchange}-{line}", f"{area}.{exchange}.{line}", f"+1{digits}"]


@st.composite
def contacts(draw: st.DrawFn) -> Contact:
    labels, flags = st.sampled_from(LABELS), st.booleans()
    emails = draw(st.lists(st.sampled_from(EMAILS), unique=True, max_size=2))
    phones = draw(st.lists(st.sampled_from(PHONES), unique=True, max_size=2))
    addresses = draw(st.lists(st.sampled_from(ADDRESSES), unique=True, max_size=2))
    return Contact(
        given_name=draw(st.sampled_from(NAMES)),
        family_name=draw(st.sampled_from(["Lee", ""])),
        organization=draw(st.sampled_from(ORGS)),
        job_title=draw(st.sampled_from(["CTO", "CEO", ""])),
        notes=draw(st.sampled_from(["", "vip", "met at the fair"])),
        birthday=draw(st.sampled_from(["", "1990-01-01"])),
        emails=tuple(Email(e, draw(labels), draw(flags)) for e in emails),
        phones=tuple(Phone(draw(st.sampled_from(phone_variants(p))), draw(labels)) for p in phones),
        addresses=tuple(replace(a, label=draw(labels)) for a in addresses),
        websites=tuple(draw(st.lists(st.sampled_from(WEBSITES), unique=True, max_size=2))),
    )


@st.composite
def reformatted(draw: st.DrawFn, contact: Contact) -> Contact:
    """The same contact as another system might format it: never a real change."""

    def case(text: str) -> str:
        return draw(st.sampled_from([text, text.upper(), text.lower(), f" {text}  "]))

    def digits_of(value: str) -> str:
        return "".join(ch for ch in value if ch.isdigit())[-10:]

    emails = [replace(e, value=case(e.value), label=case(e.label)) for e in contact.emails]
    phones = [
        replace(p, value=draw(st.sampled_from(phone_variants(digits_of(p.value)))))
        for p in contact.phones
    ]
    addresses = [replace(a, street=case(a.street), city=case(a.city)) for a in contact.addresses]
    return contact.with_fields(
        given_name=case(contact.given_name),
        organization=case(contact.organization),
        notes=contact.notes + draw(st.sampled_from(["", " ", "\n"])),
        emails=tuple(draw(st.permutations(emails))),
        phones=tuple(draw(st.permutations(phones))),
        addresses=tuple(draw(st.permutations(addresses))),
        websites=tuple(w.upper() for w in draw(st.permutations(contact.websites))),
    )


@st.composite
def edited(draw: st.DrawFn, contact: Contact, also: frozenset[str] = frozenset()) -> Contact:
    """A user edit: some fields (and all of ``also``) take other values, possibly the same ones."""
    other = draw(contacts())
    chosen = draw(st.sets(st.sampled_from(ALL_FIELDS), min_size=1, max_size=4)) | also
    return contact.with_fields(**{f: getattr(other, f) for f in chosen})


field_sets = st.sets(st.sampled_from(ALL_FIELDS), max_size=3).map(
    lambda dropped: frozenset(ALL_FIELDS) - dropped
)
sync_settings = st.builds(
    SyncSettings,
    direction=st.sampled_from(["two_way", "to_crm", "to_provider"]),
    conflict_policy=st.sampled_from(["newest_wins", "crm_wins", "provider_wins"]),
    crm_fields=field_sets,
    provider_fields=field_sets,
)
SIDES: tuple[Side, Side] = ("crm", "provider")


def applied(outcome: Outcome, side: Side, holds: Contact) -> Contact:
    """What ``side`` holds after the outcome's writes (a side stores exactly what it is sent)."""
    for write in outcome.writes:
        if write.side == side:
            return write.after
    return holds


def pair_plan(
    cfg: SyncSettings, base: Contact, crm: Contact, provider: Contact, times: tuple[str, str]
) -> Outcome:
    mapping = MappingState("m1", "c1", "p1", base, "cv", "pv")
    pair = PairInput(
        mapping,
        RemoteContact("c1", crm, "cv", modified_at=times[0]),
        RemoteContact("p1", provider, "pv", modified_at=times[1]),
    )
    return plan_pair(pair, cfg)


@st.composite
def pair_states(draw: st.DrawFn) -> tuple[SyncSettings, Contact, Contact, Contact, tuple[str, str]]:
    """Settings, a base, and what each side holds after the users' edits (only carried fields).

    Edits are the likeliest case, and both sides' edits share some fields, so conflicts are common.
    """
    cfg = draw(sync_settings)
    base = draw(contacts()).only(cfg.crm_fields | cfg.provider_fields)
    overlap = frozenset(draw(st.sets(st.sampled_from(ALL_FIELDS), max_size=3)))

    def after_users(side: Side) -> Contact:
        kind = draw(st.sampled_from(["untouched", "reformatted", "edited", "edited"]))
        if kind == "untouched":
            holds = base
        elif kind == "reformatted":
            holds = draw(reformatted(base))
        else:
            holds = draw(edited(base, overlap))
        return holds.only(cfg.carried(side))

    times = (draw(st.sampled_from(TIMES)), draw(st.sampled_from(TIMES)))
    return cfg, base, after_users("crm"), after_users("provider"), times


# --- Properties of one pair -----------------------------------------------------------------------


@FAST
@given(cfg=sync_settings, data=st.data())
def test_no_user_change_means_no_writes(cfg: SyncSettings, data: st.DataObject) -> None:
    # Given both sides hold the base, possibly formatted differently
    base = data.draw(contacts()).only(cfg.crm_fields | cfg.provider_fields)
    crm = data.draw(reformatted(base)).only(cfg.crm_fields)
    provider = data.draw(reformatted(base)).only(cfg.provider_fields)
    # When the pair is planned
    outcome = pair_plan(cfg, base, crm, provider, ("", ""))
    # Then nothing is written and nothing conflicts
    assert outcome.writes == ()
    assert outcome.conflicts == ()


@FAST
@given(state=pair_states())
def test_replanning_after_applying_writes_nothing(
    state: tuple[SyncSettings, Contact, Contact, Contact, tuple[str, str]],
) -> None:
    # Given a planned pair whose writes have been applied
    cfg, base, crm, provider, times = state
    outcome = pair_plan(cfg, base, crm, provider, times)
    assert outcome.new_base is not None
    crm_after, provider_after = applied(outcome, "crm", crm), applied(outcome, "provider", provider)
    # When the pair is planned again against the new base
    again = pair_plan(cfg, outcome.new_base, crm_after, provider_after, times)
    # Then there is nothing more to write
    assert again.writes == ()


@FAST
@given(state=pair_states())
def test_after_a_two_way_pass_both_sides_agree(
    state: tuple[SyncSettings, Contact, Contact, Contact, tuple[str, str]],
) -> None:
    # Given a two-way pair edited on either or both sides, planned and applied
    cfg, base, crm, provider, times = state
    cfg = replace(cfg, direction="two_way")
    outcome = pair_plan(cfg, base, crm, provider, times)
    crm_after, provider_after = applied(outcome, "crm", crm), applied(outcome, "provider", provider)
    # Then both sides hold the same values in every field both carry
    shared = cfg.crm_fields & cfg.provider_fields
    region = cfg.phone_region
    assert comparable(crm_after, region, shared) == comparable(provider_after, region, shared)


def _element_states(contact: Contact, field: str, region: str) -> dict[str, ElementState]:
    return {
        i: element_state(e)
        for i, e in elements_by_identity(getattr(contact, field), region).items()
    }


def _edit_survives(
    merged: Contact,
    conflicts: Sequence[Conflict],
    *,
    side: Side,
    base: Contact,
    holds: Contact,
    field: str,
    region: str,
) -> bool:
    """Whether one side's edit of ``field`` is in the merged result or a recorded loser."""
    losers = [c for c in conflicts if c.field == field and c.loser == side]
    if field not in LIST_FIELDS:
        return field_key(merged, field, region) == field_key(holds, field, region) or bool(losers)
    lost = {
        element_identity(e, region)  # type: ignore[arg-type]  # an element of this field
        for c in losers
        for e in (c.loser_value, c.winner_value)
        if e is not None
    }
    mine, before = _element_states(holds, field, region), _element_states(base, field, region)
    result = _element_states(merged, field, region)
    for identity in mine.keys() | before.keys():
        if mine.get(identity) == before.get(identity):
            continue  # not edited on this side
        if result.get(identity) != mine.get(identity) and identity not in lost:
            return False
    return True


@FAST
@given(state=pair_states())
def test_every_user_edit_is_merged_or_recorded_as_a_conflict_loser(
    state: tuple[SyncSettings, Contact, Contact, Contact, tuple[str, str]],
) -> None:
    # Given a pair edited on either or both sides
    cfg, base, crm, provider, times = state
    # When merged
    merged, conflicts = merge(base, crm, provider, cfg, *times)
    # Then each side's edit of each field it carries is in the result or lost to a conflict
    region = cfg.phone_region
    for side, holds in zip(SIDES, (crm, provider), strict=True):
        for field in cfg.carried(side):
            if field_key(holds, field, region) != field_key(base, field, region):
                survived = _edit_survives(
                    merged, conflicts, side=side, base=base, holds=holds, field=field, region=region
                )
                assert survived, (side, field)


# --- Matching -------------------------------------------------------------------------------------


@FAST
@given(
    crm=st.lists(contacts(), max_size=6),
    provider=st.lists(contacts(), max_size=6),
    out_of_scope=st.sets(st.integers(0, 5)),
)
def test_matching_never_links_one_contact_to_two(
    crm: list[Contact], provider: list[Contact], out_of_scope: set[int]
) -> None:
    # Given contacts from small pools (so keys collide), some out of scope
    crm_remote = [
        RemoteContact(f"c{i}", c, in_scope=i not in out_of_scope) for i, c in enumerate(crm)
    ]
    provider_remote = [RemoteContact(f"p{i}", c) for i, c in enumerate(provider)]
    # When unmapped contacts from both sides are matched
    result = match_unmapped(crm_remote, provider_remote, "US")
    crm_linked = [m.crm.id for m in result.matches]
    provider_linked = [m.provider.id for m in result.matches]
    # Then nobody is linked twice, and every contact lands in exactly one place
    assert len(set(crm_linked)) == len(crm_linked)
    assert len(set(provider_linked)) == len(provider_linked)
    placed = [
        *crm_linked,
        *provider_linked,
        *(r.id for r in (*result.unmatched_crm, *result.unmatched_provider)),
        *(contact_id for contact_id, _ in result.skipped),
    ]
    assert sorted(placed) == sorted(r.id for r in (*crm_remote, *provider_remote))


# --- A stateful model: two sides, a mapping store, passes -----------------------------------------

STATEFUL_SETTINGS = SyncSettings(provider_fields=frozenset(ALL_FIELDS) - {"notes", "birthday"})


class SyncModel(RuleBasedStateMachine):
    """Users edit two address books; passes keep them in sync through the engine."""

    @initialize()
    def start(self) -> None:
        self.sides: dict[Side, dict[str, RemoteContact]] = {"crm": {}, "provider": {}}
        self.changed: dict[Side, set[str]] = {"crm": set(), "provider": set()}
        self.mappings: dict[str, MappingState] = {}
        self.counter = itertools.count(1)
        self.clock = itertools.count(1)

    # -- what users do --

    def _now(self) -> str:
        return f"2026-11-25T10:{next(self.clock) % 60:02d}:00Z"

    def _put(self, side: Side, remote: RemoteContact) -> None:
        self.sides[side][remote.id] = remote
        self.changed[side].add(remote.id)

    def _pick(self, side: Side, data: st.DataObject) -> RemoteContact:
        return self.sides[side][data.draw(st.sampled_from(sorted(self.sides[side])))]

    @rule(side=st.sampled_from(SIDES), contact=contacts())
    def create(self, side: Side, contact: Contact) -> None:
        new_id = f"{side[0]}{next(self.counter)}"
        only = STATEFUL_SETTINGS.carried(side)
        self._put(side, RemoteContact(new_id, contact.only(only), "v1", self._now()))

    @precondition(lambda self: self.sides["crm"] or self.sides["provider"])
    @rule(side=st.sampled_from(SIDES), data=st.data(), formatting_only=st.booleans())
    def edit(self, side: Side, data: st.DataObject, formatting_only: bool) -> None:
        if not self.sides[side]:
            return
        remote = self._pick(side, data)
        change = reformatted if formatting_only else edited
        contact = data.draw(change(remote.contact)).only(STATEFUL_SETTINGS.carried(side))
        version = f"v{next(self.counter)}"
        self._put(side, replace(remote, contact=contact, version=version, modified_at=self._now()))

    @precondition(lambda self: self.sides["crm"] or self.sides["provider"])
    @rule(side=st.sampled_from(SIDES), data=st.data())
    def delete(self, side: Side, data: st.DataObject) -> None:
        if self.sides[side]:
            remote = self._pick(side, data)
            del self.sides[side][remote.id]
            self.changed[side].add(remote.id)

    @precondition(lambda self: self.sides["crm"] or self.sides["provider"])
    @rule(side=st.sampled_from(SIDES), data=st.data())
    def move_scope(self, side: Side, data: st.DataObject) -> None:
        if self.sides[side]:
            remote = self._pick(side, data)
            moved = replace(remote, in_scope=not remote.in_scope, scope_reason="moved")
            self._put(side, replace(moved, version=f"v{next(self.counter)}"))

    # -- a pass, as the reconciler would run it --

    def _one_pass(self) -> Plan:
        by_side = {
            side: {getattr(m, f"{side}_id"): m for m in self.mappings.values()} for side in SIDES
        }
        pairs: dict[str, list[object]] = {}
        unmapped: dict[Side, list[RemoteContact]] = {"crm": [], "provider": []}
        for slot, side in enumerate(SIDES, start=1):
            for contact_id in sorted(self.changed[side]):
                remote = self.sides[side].get(contact_id)
                mapping = by_side[side].get(contact_id)
                if mapping is None:
                    if remote is not None:
                        unmapped[side].append(remote)
                    continue
                pairs.setdefault(mapping.mapping_id, [mapping, UNCHANGED, UNCHANGED])[slot] = remote
        self.changed = {"crm": set(), "provider": set()}
        plan = plan_pass(
            PassInput(
                STATEFUL_SETTINGS,
                [PairInput(*entry) for entry in pairs.values()],  # type: ignore[arg-type]
                unmapped["crm"],
                unmapped["provider"],
                len(self.mappings),
            ),
            new_mapping_id=lambda: f"m{next(self.counter)}",
        )
        assert plan.held is None  # the model stays far below the guard's minimum
        for outcome in plan.outcomes:
            self._apply(outcome)
        return plan

    def _apply(self, outcome: Outcome) -> None:
        ids = {"crm": outcome.crm_id, "provider": outcome.provider_id}
        for write in outcome.writes:
            store = self.sides[write.side]
            version = f"v{next(self.counter)}"
            if write.kind == "create":
                new_id = f"{write.side[0]}{next(self.counter)}"
                store[new_id] = RemoteContact(new_id, write.after, version, self._now())
                ids[write.side] = new_id
            elif write.kind == "update":
                assert store[write.target_id].version == write.version  # not a stale write
                store[write.target_id] = replace(
                    store[write.target_id], contact=write.after, version=version
                )
            else:
                assert store[write.target_id].version == write.version
                del store[write.target_id]
            self.changed[write.side].add(ids[write.side] or write.target_id)  # our echo
        if outcome.new_base is None:
            self.mappings.pop(outcome.mapping_id, None)
            return
        crm, provider = self.sides["crm"][ids["crm"]], self.sides["provider"][ids["provider"]]
        self.mappings[outcome.mapping_id] = MappingState(
            outcome.mapping_id, crm.id, provider.id, outcome.new_base, crm.version, provider.version
        )

    @rule()
    def sync(self) -> None:
        # When a pass runs and its writes are applied
        self._one_pass()
        # Then the pass that reads our own writes back writes nothing
        echo = self._one_pass()
        assert [w for o in echo.outcomes for w in o.writes] == []
        # And every mapping links two contacts that exist
        for mapping in self.mappings.values():
            assert mapping.crm_id in self.sides["crm"]
            assert mapping.provider_id in self.sides["provider"]

    # -- what must always hold --

    @invariant()
    def each_contact_is_mapped_at_most_once(self) -> None:
        for side in SIDES:
            mapped = [getattr(m, f"{side}_id") for m in self.mappings.values()]
            assert len(mapped) == len(set(mapped))


SyncModel.TestCase.settings = settings(
    max_examples=100, stateful_step_count=40, deadline=None, suppress_health_check=list(HealthCheck)
)
TestSyncModel = SyncModel.TestCase
