"""The oracle of the chaos run: what the workload meant to happen, and the checker that holds
the three address books up against it.

Each person the workload makes has a unique email that is never edited: that is its identity.
Edits touch other fields (job title, notes; the phone only in its formatting). The checker reads
plain snapshots (``World``), so a test can hand it a world with a planted bug.

Every user syncs their CRM persons with an Outlook folder and a Google group; some also with a
CardDAV address book, or a group in one (``Ledger.directions`` says which sides each user has).

What "converged" means, person by person:

- a live person exists exactly once on each side where it is in scope for its owner (the CRM,
  the Outlook folder, the Google group, the CardDAV book or group), and nowhere else; a copy the
  user moved out of the folder or group still exists there, exactly once (moved out means
  unlinked, never deleted);
- a colleague who handed the person over may keep a stale copy (at most one: "left alone");
- for each field, every side in scope shows the last intended value; sides never disagree. An
  edit made while an earlier one was still on its way (some side in scope did not show the
  last value yet) may lose the conflict to it: then any value from the last edit made on a
  settled field onwards is right. An edit made on a settled field is never lost;
- a deleted person is gone from every side in scope; where the delete was made while an edit
  was still on its way (an edit wins over a delete), it may instead be present exactly once on
  every one of them.

The checker keeps its own rules and its own normaliser: it never reads the service's audit log
or calls the service's code to decide whether an edit is lost.

What the users do not do (the workload keeps to it): move out of the folder or group a person
they added on two sides themselves (its being everywhere does not say the sync linked the two:
moved out before, the CRM's copy is rightly made again in the folder, and a delete of it counts
as made while an edit was on its way: until linked, the copy it does not reach stays); delete a
person handed over to a colleague, or delete a Google contact (or a card of a CardDAV group) put
back in the group before its connection has seen it back. Google, like a CardDAV book synced
through one of its groups, reports deleted contacts of every group alike, so that delete cannot
be told from one made outside the group, whose partners are left alone by design. (Outlook's
folder delta reports only what was in the folder, so there the delete is followed, and the
workload does it.) Nor do they delete, in Google, a copy the sync made whose making no pass has
recorded yet: when the answer to a create is lost, the next pass looks the copy up by its tag,
and a Google copy deleted before then is made again (the README says why: Google's deletions
name no tag, are of every group's contacts, under resource names that change). In Outlook and
CardDAV they do delete such copies: the delete must be followed like any other.

A person the user added on two sides is two contacts until the sync joins them, and the join
compares the two as wholes: it cannot know which fields were edited since each copy was made,
so the copy modified last wins a field where they differ (``newest_wins``; a phone reformatted
on one copy makes that copy the newer). So an edit made before the user can see the copies
joined (before an edit made since shows on every side) counts as made while another was on its
way: it may lose to the value the other copy holds.

One-way connections: a user whose Outlook feeds the CRM (``to_crm``) and whose CRM feeds Google
(``to_provider``), with a CardDAV book going one way too, has changes that flow only along those
arrows. What a side must show follows
from the arrows alone (``reach``): a person made on a side is on every side it reaches; a field
shows the last value written on any side that reaches it (a hand edit on the fed side stays
until the source writes that field; one made while a source's edit of it was on its way loses
to that edit once a pass reads it, so the field is not settled until the side shows it:
``Intended.awaited``); a delete removes the copies on the sides it reaches and
leaves the others alone, exactly once, never copied back. The service decides "edited since the
last pass" per connection, which a user cannot see for a connection that never writes back, so
a one-way delete counts as settled only when no other side of the person was ever touched.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime

SIDES = ("crm", "outlook", "google", "carddav")
PROVIDER_SIDES = ("outlook", "google", "carddav")
TWO_WAY = {"outlook": "two_way", "google": "two_way"}  # a user without a CardDAV book
FIELDS = ("job_title", "notes")
PHONE_REGION = "US"


def value_key(name: str, value: str) -> str:
    """A field's value as a person reads it: case, spacing and line breaks never count (notes
    keep their case and inner spacing)."""
    text = unicodedata.normalize("NFKC", value).replace("\r\n", "\n").replace("\r", "\n")
    if name == "notes":
        return text.strip()
    return " ".join(text.split()).casefold()


def phone_keys(values: list[str]) -> frozenset[str]:
    """The workload writes ten-digit US numbers: a number is its last ten digits."""
    return frozenset(re.sub(r"\D", "", v)[-10:] for v in values if v.strip())


def sides_of(directions: dict[str, str]) -> frozenset[str]:
    """The sides a user has: the CRM and each provider they connected."""
    return frozenset({"crm", *directions})


def reach_of(directions: dict[str, str]) -> dict[str, frozenset[str]]:
    """For each side, the sides a change made there reaches, given the directions of the user's
    provider connections (each over the CRM)."""
    arrows = set()
    for side, direction in directions.items():
        if direction in ("two_way", "to_crm"):
            arrows.add((side, "crm"))
        if direction in ("two_way", "to_provider"):
            arrows.add(("crm", side))
    reach = {}
    for start in SIDES:
        seen, todo = {start}, [start]
        while todo:
            here = todo.pop()
            for source, target in arrows:
                if source == here and target not in seen:
                    seen.add(target)
                    todo.append(target)
        reach[start] = frozenset(seen)
    return reach


@dataclass(frozen=True)
class Card:
    """One contact as a side shows it, reduced to what the oracle checks (normalised)."""

    email: str
    job_title: str = ""
    notes: str = ""
    phones: frozenset[str] = frozenset()
    id: str = field(default="", compare=False)  # the side's id, for a failure's printout

    def value(self, name: str) -> str:
        return str(getattr(self, name))


@dataclass
class World:
    """What the sides hold: ``inside[(user, side)]`` are the contacts in the sync scope (the
    user's CRM persons, the Outlook folder, the Google group); ``outside[(user, side)]`` the
    user's other provider contacts."""

    inside: dict[tuple[str, str], list[Card]] = field(default_factory=dict)
    outside: dict[tuple[str, str], list[Card]] = field(default_factory=dict)

    def count(self, where: str, user: str, side: str, email: str) -> int:
        cards = (self.inside if where == "inside" else self.outside).get((user, side), [])
        return sum(1 for c in cards if c.email == email)

    def ids(self, user: str, email: str) -> dict[str, list[str]]:
        """Where copies of ``email`` are, by side, with their ids (a failure's printout)."""
        found: dict[str, list[str]] = {}
        for where, books in (("", self.inside), (" (outside)", self.outside)):
            for (owner, side), cards in books.items():
                if owner == user:
                    copies = [c.id for c in cards if c.email == email]
                    if copies:
                        found[side + where] = copies
        return found

    def cards(self, user: str, side: str, email: str) -> list[Card]:
        return [c for c in self.inside.get((user, side), []) if c.email == email]


@dataclass(frozen=True)
class Edit:
    user: str  # whose side it was made on (the owner at the time)
    side: str
    value: str
    settled: bool = True  # every side in scope showed the field's last value when it was made
    at: str = field(default_factory=lambda: datetime.now(UTC).strftime("%H:%M:%S.%f")[:-3])


@dataclass
class Intended:
    """One person as the workload meant it."""

    email: str
    owner: str
    phone: str  # as first written; edits only reformat it
    values: dict[str, list[Edit]]  # field -> every value written, in order (first: creation)
    deleted_on: str | None = None
    deleted_id: str = ""  # the copy the user deleted (for a failure's printout)
    delete_settled: bool = True  # every side showed every last value when it was deleted
    outside: set[str] = field(default_factory=set)  # provider sides it was moved out of
    former_owners: set[str] = field(default_factory=set)
    reach: dict[str, frozenset[str]] = field(default_factory=lambda: reach_of(TWO_WAY))
    present: set[str] = field(default_factory=lambda: set(sides_of(TWO_WAY)))  # meant to be on
    touched: set[str] = field(default_factory=set)  # sides edited by hand since it was made
    made_twice: bool = False  # the user added it on a second side too (see ``made_again``)
    joined_after: dict[str, int] = field(default_factory=dict)  # see ``made_again``
    one_way: bool = False  # its owner's connections do not all go both ways

    def sources(self, side: str) -> set[str]:
        """The sides whose changes reach ``side`` (itself included)."""
        return {s for s in SIDES if side in self.reach[s]}

    def expected(self, name: str, side: str) -> str:
        """The last value written for ``name`` on a side that reaches ``side``."""
        edits = [e for e in self.values[name] if e.side in self.sources(side)]
        return edits[-1].value if edits else ""

    def awaited(self, name: str, side: str) -> str | None:
        """One way: the value of a source's edit ``side`` still waits for, when the last edit
        that reaches it is a hand edit made on it while that source's edit was on its way. The
        service cannot order the two (it sees the source's edit only when a pass reads it), and
        the source wins: until the side shows that value the field is not settled, and an edit
        made meanwhile may lose to it too."""
        edits = [e for e in self.values[name] if e.side in self.sources(side)]
        if not self.one_way or not edits or edits[-1].settled or edits[-1].side != side:
            return None
        earlier = [e for e in edits[:-1] if e.side != side]
        return earlier[-1].value if earlier else None

    def in_scope(self) -> list[str]:
        return [s for s in SIDES if s in self.present and s not in self.outside]

    def stranded(self, edit: Edit) -> bool:
        """An edit made on a copy that is no longer in scope may never have left it."""
        if edit.side == "crm":
            return False
        return edit.user != self.owner or edit.side in self.outside

    def acceptable(self, name: str, side: str) -> set[str]:
        """Value keys ``side``, converged, may show for ``name``."""
        edits = [e for e in self.values[name] if e.side in self.sources(side)]
        if not edits:
            return {""}
        # Edits made on a copy now out of scope may have left it before it went out, or not:
        # any of them, from the last edit made where it is still in scope onwards, may be the
        # one the other sides ended with. The creation reached every side before any move or
        # hand-over (the workload waits for that), so it is the floor.
        floor = max([0, *(i for i, e in enumerate(edits) if i > 0 and not self.stranded(e))])
        # An edit made while the one before was on its way may lose the conflict to it (and that
        # one to the one before, if it was made unsettled too).
        while floor > 0 and not edits[floor].settled:
            floor -= 1
        return {value_key(name, e.value) for e in edits[floor:]}


class Ledger:
    """Every intended create, edit, delete, move and hand-over, in the order they were made."""

    def __init__(self) -> None:
        self.people: dict[str, Intended] = {}
        self.directions: dict[str, dict[str, str]] = {}  # user -> side -> direction (two-way)

    def live(self) -> list[Intended]:
        return [p for p in self.people.values() if p.deleted_on is None]

    def create(self, email: str, owner: str, side: str, phone: str, **values: str) -> None:
        assert email not in self.people, email
        directions = self.directions.get(owner, TWO_WAY)
        assert side in sides_of(directions), (owner, side)
        reach = reach_of(directions)
        self.people[email] = Intended(
            email=email,
            owner=owner,
            phone=phone,
            values={name: [Edit(owner, side, values.get(name, ""))] for name in FIELDS},
            reach=reach,
            present=set(reach[side]),
            one_way=set(directions.values()) != {"two_way"},
        )

    def made_again(self, email: str, side: str, values: dict[str, str]) -> None:
        """The user adds the same person (same email, phone and values) on another side where
        the sync has not put it: it must be linked with the copies there are, not duplicated."""
        person = self.people[email]
        person.present |= person.reach[side]
        person.made_twice = True
        for name in FIELDS:
            person.values[name].append(Edit(person.owner, side, values[name]))
        # Until an edit made after this shows on every side, the user cannot tell that the sync
        # joined the copies: an edit made before then may lose at the join (see the docstring).
        person.joined_after = {name: len(person.values[name]) for name in FIELDS}

    def joined(self, email: str, name: str, shown_everywhere: bool) -> bool:
        """Whether the copies of a person added on two sides are seen joined, for ``name``:
        ``shown_everywhere`` (every side shows the last value) after an edit made since."""
        person = self.people[email]
        after = person.joined_after.get(name)
        if after is None:
            return True
        if shown_everywhere and len(person.values[name]) > after:
            del person.joined_after[name]
            return True
        return False

    def edit(  # one edit: who, where, what, and whether the field was settled
        self, email: str, side: str, name: str, value: str, settled: bool = True
    ) -> None:
        person = self.people[email]
        person.values[name].append(Edit(person.owner, side, value, settled))
        person.touched.add(side)

    def touch(self, email: str, side: str) -> None:
        """An edit the oracle does not check (a phone or a title written another way)."""
        self.people[email].touched.add(side)

    def delete(self, email: str, side: str, contact_id: str = "", settled: bool = True) -> None:
        self.people[email].deleted_on = side
        self.people[email].deleted_id = contact_id
        self.people[email].delete_settled = settled

    def move_out(self, email: str, side: str) -> None:
        self.people[email].outside.add(side)

    def move_in(self, email: str, side: str) -> None:
        self.people[email].outside.discard(side)

    def hand_over(self, email: str, new_owner: str) -> None:
        """The CRM person goes to a colleague (both sync two-way): it is meant to be on every
        side the colleague has, and what was written on the sides of the one who handed it over
        reached the CRM (they stay among the sources)."""
        person = self.people[email]
        after = self.directions.get(new_owner, TWO_WAY)
        assert not person.one_way and set(after.values()) == {"two_way"}
        person.former_owners.add(person.owner)
        person.owner = new_owner
        linked = {s for s in PROVIDER_SIDES if "crm" in person.reach[s]} | set(after)
        person.reach = reach_of(dict.fromkeys(linked, "two_way"))
        person.present = set(sides_of(after))


@dataclass
class Verdict:
    lost: int = 0
    duplicated: int = 0
    edits_lost: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return self.lost == self.duplicated == self.edits_lost == 0

    def note(self, kind: str, text: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        self.problems.append(f"{kind}: {text}")


def check(ledger: Ledger, world: World, users: list[str]) -> Verdict:
    verdict = Verdict()
    known = set(ledger.people)
    for (user, side), cards in world.inside.items():
        for email in sorted({c.email for c in cards} - known):
            verdict.note("duplicated", f"{email!r} in {user}'s {side} was never made")
    for person in ledger.people.values():
        if person.deleted_on is None:
            _check_live(person, world, users, verdict)
        else:
            _check_deleted(person, world, users, verdict)
    return verdict


def _check_live(person: Intended, world: World, users: list[str], verdict: Verdict) -> None:
    email = person.email
    for user in users:
        for side in SIDES:
            seen = world.count("inside", user, side, email)
            if user == person.owner:
                low = high = 1 if side in person.in_scope() else 0
            elif user in person.former_owners and side != "crm":
                low, high = 0, 1  # the colleague's stale copy is left alone
            else:
                low = high = 0
            _count(verdict, email, f"{user}'s {side}", seen, low, high)
    for side in person.outside:
        seen = world.count("outside", person.owner, side, email)
        _count(verdict, email, f"{person.owner}'s {side} (moved out)", seen, 1, 1)
    _check_values(person, world, verdict)


def _count(verdict: Verdict, email: str, where: str, seen: int, low: int, high: int) -> None:  # noqa: PLR0917
    if seen < low:
        verdict.note("lost", f"{email} missing from {where}")
    elif seen > high:
        verdict.note("duplicated", f"{email} is in {where} {seen} times")


def _check_values(person: Intended, world: World, verdict: Verdict) -> None:
    email = person.email
    cards = {s: world.cards(person.owner, s, email) for s in person.in_scope()}
    present = {s: c[0] for s, c in cards.items() if len(c) == 1}
    phone = phone_keys([person.phone])
    for side, card in present.items():
        if card.phones != phone:
            verdict.note("edits_lost", f"{email} phones in {side} are {sorted(card.phones)}")
    for name in FIELDS:
        # Sides fed by the same sources must agree (in a two-way sync: all of them).
        groups: dict[frozenset[str], dict[str, str]] = {}
        for side, card in present.items():
            groups.setdefault(frozenset(person.sources(side)), {})[side] = card.value(name)
        for shown in groups.values():
            if len(set(shown.values())) > 1:
                verdict.note("edits_lost", f"{email} {name} differs between sides: {shown}")
                continue
            side, value = next(iter(shown.items()))
            if value in person.acceptable(name, side):
                continue
            meant = value_key(name, person.expected(name, side))
            verdict.note("edits_lost", f"{email} {name} in {side} is {value!r}, meant {meant!r}")


def _check_deleted(person: Intended, world: World, users: list[str], verdict: Verdict) -> None:
    email = person.email
    scope = person.in_scope()
    assert person.deleted_on is not None
    gone = [s for s in scope if s in person.reach[person.deleted_on]]
    seen = {s: world.count("inside", person.owner, s, email) for s in scope}
    for side, n in seen.items():
        if n > 1:
            verdict.note("duplicated", f"deleted {email} is in {person.owner}'s {side} {n} times")
    for side in scope:
        if side not in gone and seen[side] == 0:  # a side the delete does not reach keeps it
            verdict.note("lost", f"{email} missing from {person.owner}'s {side} (left alone)")
    kept = sorted(s for s in gone if seen[s])
    # An edit on its way wins over the delete: then, two-way, it is back on every side; one way,
    # each side the delete reaches may keep it.
    excused = not person.delete_settled and (person.one_way or all(seen[s] == 1 for s in gone))
    if kept and not excused:
        verdict.note("edits_lost", f"deleted {email} (in {person.deleted_on}) still in {kept}")
    for user in users:
        if user == person.owner:
            continue
        for side in SIDES:
            n = world.count("inside", user, side, email)
            if n:
                verdict.note("duplicated", f"deleted {email} is in {user}'s {side}")
