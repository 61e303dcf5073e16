"""The oracle of the chaos run: what the workload meant to happen, and the checker that holds
the three address books up against it.

Each person the workload makes has a unique email that is never edited: that is its identity.
Edits touch other fields (job title, notes; the phone only in its formatting). The checker reads
plain snapshots (``World``), so a test can hand it a world with a planted bug.

What "converged" means, person by person:

- a live person exists exactly once on each side where it is in scope for its owner (the CRM,
  the Outlook folder, the Google group), and nowhere else; a copy the user moved out of the folder
  or group still exists there, exactly once (moved out means unlinked, never deleted);
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

What the users do not do (the workload keeps to it): delete a person handed over to a colleague,
or delete a Google contact put back in the group before its connection has seen it back. Google
reports deleted contacts of every group alike, so that delete cannot be told from one made
outside the group, whose partners are left alone by design. (Outlook's folder delta reports
only what was in the folder, so there the delete is followed, and the workload does it.)
Nor do they delete, in Outlook or Google, a copy the sync made whose making no pass has
recorded yet: when the answer to a create is lost, the next pass looks the copy up by its tag,
and a copy deleted in those seconds is not found and is made again (a known limit, in the
closing note of the chaos suite).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

SIDES = ("crm", "outlook", "google")
PROVIDER_SIDES = ("outlook", "google")
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

    def stranded(self, edit: Edit) -> bool:
        """An edit made on a copy that is no longer in scope may never have left it."""
        if edit.side == "crm":
            return False
        return edit.user != self.owner or edit.side in self.outside

    def acceptable(self, name: str) -> set[str]:
        """Value keys a converged side may show for ``name``."""
        edits = self.values[name]
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

    def live(self) -> list[Intended]:
        return [p for p in self.people.values() if p.deleted_on is None]

    def create(self, email: str, owner: str, side: str, phone: str, **values: str) -> None:
        assert email not in self.people, email
        self.people[email] = Intended(
            email=email,
            owner=owner,
            phone=phone,
            values={name: [Edit(owner, side, values.get(name, ""))] for name in FIELDS},
        )

    def edit(  # one edit: who, where, what, and whether the field was settled
        self, email: str, side: str, name: str, value: str, settled: bool = True
    ) -> None:
        person = self.people[email]
        person.values[name].append(Edit(person.owner, side, value, settled))

    def delete(self, email: str, side: str, contact_id: str = "", settled: bool = True) -> None:
        self.people[email].deleted_on = side
        self.people[email].deleted_id = contact_id
        self.people[email].delete_settled = settled

    def move_out(self, email: str, side: str) -> None:
        self.people[email].outside.add(side)

    def move_in(self, email: str, side: str) -> None:
        self.people[email].outside.discard(side)

    def hand_over(self, email: str, new_owner: str) -> None:
        person = self.people[email]
        person.former_owners.add(person.owner)
        person.owner = new_owner


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


def _in_scope_sides(person: Intended) -> list[str]:
    return [s for s in SIDES if s not in person.outside]


def _check_live(person: Intended, world: World, users: list[str], verdict: Verdict) -> None:
    email = person.email
    for user in users:
        for side in SIDES:
            seen = world.count("inside", user, side, email)
            if user == person.owner:
                low = high = 0 if side in person.outside else 1
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
    cards = {s: world.cards(person.owner, s, email) for s in _in_scope_sides(person)}
    present = {s: c[0] for s, c in cards.items() if len(c) == 1}
    phone = phone_keys([person.phone])
    for side, card in present.items():
        if card.phones != phone:
            verdict.note("edits_lost", f"{email} phones in {side} are {sorted(card.phones)}")
    for name in FIELDS:
        shown = {side: card.value(name) for side, card in present.items()}
        if len(set(shown.values())) > 1:
            verdict.note("edits_lost", f"{email} {name} differs between sides: {shown}")
            continue
        if not shown:
            continue
        value = next(iter(shown.values()))
        if value in person.acceptable(name):
            continue
        last = value_key(name, person.values[name][-1].value)
        verdict.note("edits_lost", f"{email} {name} is {value!r}, meant {last!r}")


def _check_deleted(person: Intended, world: World, users: list[str], verdict: Verdict) -> None:
    email = person.email
    scope = _in_scope_sides(person)
    seen = {s: world.count("inside", person.owner, s, email) for s in scope}
    for side, n in seen.items():
        if n > 1:
            verdict.note("duplicated", f"deleted {email} is in {person.owner}'s {side} {n} times")
    everywhere = all(n == 1 for n in seen.values())
    if any(seen.values()) and not (everywhere and not person.delete_settled):
        kept = sorted(s for s, n in seen.items() if n)
        verdict.note("edits_lost", f"deleted {email} (in {person.deleted_on}) still in {kept}")
    for user in users:
        if user == person.owner:
            continue
        for side in SIDES:
            n = world.count("inside", user, side, email)
            if n:
                verdict.note("duplicated", f"deleted {email} is in {user}'s {side}")
