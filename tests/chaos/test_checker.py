"""The chaos checker can fail: hand it worlds with planted bugs and it reports each one."""

from __future__ import annotations

import dataclasses

from tests.chaos.ledger import Card, Ledger, World, check, phone_keys

USERS = ["u1", "u2"]
PHONE = "+1 415 555 0101"


def converged_world() -> tuple[Ledger, World]:
    """Given two people of u1 - one edited on two sides, one moved out of the Outlook folder -
    and one deleted person, and a world where everything arrived."""
    ledger = Ledger()
    ledger.create("ada@x.example", "u1", "crm", PHONE, job_title="Engineer")
    ledger.edit("ada@x.example", "outlook", "job_title", "Director")
    ledger.edit("ada@x.example", "google", "notes", "met at the fair")
    ledger.create("bob@x.example", "u1", "google", PHONE, job_title="Buyer")
    ledger.move_out("bob@x.example", "outlook")
    ledger.create("cy@x.example", "u1", "outlook", PHONE)
    ledger.delete("cy@x.example", "crm")
    ada = Card("ada@x.example", "director", "met at the fair", phone_keys([PHONE]))
    bob = Card("bob@x.example", "buyer", "", phone_keys(["(415) 555-0101"]))
    world = World(
        inside={
            ("u1", "crm"): [ada, bob],
            ("u1", "outlook"): [ada],
            ("u1", "google"): [ada, bob],
            ("u2", "crm"): [],
            ("u2", "outlook"): [],
            ("u2", "google"): [],
        },
        outside={("u1", "outlook"): [bob]},
    )
    return ledger, world


def test_a_converged_world_passes() -> None:
    ledger, world = converged_world()
    # When the checker compares it with the ledger
    verdict = check(ledger, world, USERS)
    # Then it finds nothing
    assert verdict.clean, verdict.problems


def test_a_duplicated_contact_is_reported() -> None:
    ledger, world = converged_world()
    # Given the CRM holds Ada twice
    world.inside["u1", "crm"].append(world.inside["u1", "crm"][0])
    verdict = check(ledger, world, USERS)
    # Then one duplicate is reported, nothing else
    assert (verdict.lost, verdict.duplicated, verdict.edits_lost) == (0, 1, 0), verdict.problems


def test_a_lost_contact_and_a_deleted_moved_out_copy_are_reported() -> None:
    ledger, world = converged_world()
    # Given Google lost Bob, and the copy moved out of the Outlook folder was deleted
    world.inside["u1", "google"] = [
        c for c in world.inside["u1", "google"] if c.email != "bob@x.example"
    ]
    world.outside["u1", "outlook"] = []
    verdict = check(ledger, world, USERS)
    assert (verdict.lost, verdict.duplicated, verdict.edits_lost) == (2, 0, 0), verdict.problems


def test_a_missing_edit_is_reported_unless_made_while_another_was_on_its_way() -> None:
    ledger, world = converged_world()
    # Given Outlook's last job title never arrived anywhere
    stale = dataclasses.replace(world.inside["u1", "crm"][0], job_title="engineer")
    for side in ("crm", "outlook", "google"):
        world.inside["u1", side][0] = stale
    verdict = check(ledger, world, USERS)
    assert (verdict.lost, verdict.duplicated, verdict.edits_lost) == (0, 0, 1), verdict.problems
    # But had it been made while the creation's value was still on its way, it may have lost
    # the conflict to it
    ledger.people["ada@x.example"].values["job_title"][-1] = dataclasses.replace(
        ledger.people["ada@x.example"].values["job_title"][-1], settled=False
    )
    assert check(ledger, world, USERS).clean
    # And never to a value older than the last one made on a settled field
    ledger.edit("ada@x.example", "crm", "job_title", "Analyst")
    ledger.edit("ada@x.example", "outlook", "job_title", "Counsel", settled=False)
    verdict = check(ledger, world, USERS)
    assert verdict.edits_lost == 1, verdict.problems


def test_sides_that_disagree_are_reported() -> None:
    ledger, world = converged_world()
    # Given Google still shows the old notes
    google = world.inside["u1", "google"]
    google[0] = dataclasses.replace(google[0], notes="")
    verdict = check(ledger, world, USERS)
    assert verdict.edits_lost == 1, verdict.problems


def test_a_deleted_contact_that_came_back_is_reported_unless_an_edit_was_on_its_way() -> None:
    ledger, world = converged_world()
    # Given the deleted person is back on every side
    cy = Card("cy@x.example", phones=phone_keys([PHONE]))
    for side in ("crm", "outlook", "google"):
        world.inside["u1", side].append(cy)
    assert check(ledger, world, USERS).edits_lost == 1
    # But when the delete was made while an edit was on its way (the edit may win), it is right
    ledger.people["cy@x.example"].delete_settled = False
    assert check(ledger, world, USERS).clean
    # Though never on only some of the sides
    world.inside["u1", "google"].remove(world.inside["u1", "google"][-1])
    assert check(ledger, world, USERS).edits_lost == 1


def test_a_contact_in_a_colleagues_address_book_is_reported() -> None:
    ledger, world = converged_world()
    # Given Ada turned up in u2's Google group too
    world.inside["u2", "google"].append(world.inside["u1", "google"][0])
    assert check(ledger, world, USERS).duplicated == 1


def test_an_edit_made_just_before_a_move_out_may_stay_behind() -> None:
    ledger, world = converged_world()
    # Given Bob was edited twice in Outlook and then moved out of the folder (the ledger's order)
    ledger.move_in("bob@x.example", "outlook")
    ledger.edit("bob@x.example", "outlook", "job_title", "Founder")
    ledger.edit("bob@x.example", "outlook", "job_title", "Counsel")
    ledger.move_out("bob@x.example", "outlook")
    # When only the first edit left Outlook before the move, it is what the others show
    for side in ("crm", "google"):
        cards = world.inside["u1", side]
        cards[1] = dataclasses.replace(cards[1], job_title="founder")
    assert check(ledger, world, USERS).clean
    # But a value older than the last edit made in scope is a lost edit
    ledger.edit("bob@x.example", "google", "job_title", "Analyst")
    assert check(ledger, world, USERS).edits_lost == 1


def one_way_ledger() -> Ledger:
    """u3 syncs Outlook into the CRM and the CRM into Google."""
    ledger = Ledger()
    ledger.directions["u3"] = {"outlook": "to_crm", "google": "to_provider"}
    return ledger


def test_one_way_each_side_shows_what_reaches_it() -> None:
    # Given a person made in Outlook, then edited by hand in the CRM and in Google
    ledger = one_way_ledger()
    ledger.create("dee@x.example", "u3", "outlook", PHONE, job_title="Engineer")
    ledger.edit("dee@x.example", "crm", "notes", "crm note")
    ledger.edit("dee@x.example", "google", "job_title", "Own title")
    card = Card("dee@x.example", phones=phone_keys([PHONE]))
    outlook = dataclasses.replace(card, job_title="engineer")
    crm = dataclasses.replace(card, job_title="engineer", notes="crm note")
    google = dataclasses.replace(card, job_title="own title", notes="crm note")
    world = World(
        inside={("u3", "crm"): [crm], ("u3", "outlook"): [outlook], ("u3", "google"): [google]}
    )
    # Then that world is right
    assert check(ledger, world, ["u3"]).clean
    # And a CRM note sent back to Outlook, or Google's title overwritten, is not
    wrong = dataclasses.replace(outlook, notes="crm note")
    world.inside["u3", "outlook"] = [wrong]
    world.inside["u3", "google"] = [dataclasses.replace(google, job_title="engineer")]
    assert check(ledger, world, ["u3"]).edits_lost == 2


def test_one_way_a_person_made_on_a_fed_side_stays_there_and_a_delete_there_stays() -> None:
    ledger = one_way_ledger()
    # Given one person made in Google (fed by the CRM) and one deleted there by hand
    ledger.create("eve@x.example", "u3", "google", PHONE)
    ledger.create("fay@x.example", "u3", "crm", PHONE)
    ledger.delete("fay@x.example", "google")
    eve = Card("eve@x.example", phones=phone_keys([PHONE]))
    fay = Card("fay@x.example", phones=phone_keys([PHONE]))
    world = World(inside={("u3", "crm"): [fay], ("u3", "outlook"): [], ("u3", "google"): [eve]})
    assert check(ledger, world, ["u3"]).clean
    # Then Eve copied into the CRM, or Fay copied back into Google, is reported
    world.inside["u3", "crm"] = [fay, eve]
    world.inside["u3", "google"] = [eve, fay]
    verdict = check(ledger, world, ["u3"])
    assert (verdict.duplicated, verdict.edits_lost) == (1, 1), verdict.problems
    # And the CRM's copy of Fay deleted with it is lost
    world.inside["u3", "crm"] = []
    assert check(ledger, world, ["u3"]).lost == 1


def test_an_edit_before_two_copies_are_seen_joined_may_lose_at_the_join() -> None:
    # Given Dee added on Google and Outlook at once, then retitled in the CRM
    ledger = Ledger()
    ledger.create("dee@x.example", "u1", "google", PHONE, job_title="Buyer")
    ledger.made_again("dee@x.example", "outlook", {"job_title": "Buyer", "notes": ""})
    # (the user has not seen an edit arrive everywhere since: the copies may not be joined)
    assert not ledger.joined("dee@x.example", "job_title", shown_everywhere=True)
    ledger.edit("dee@x.example", "crm", "job_title", "Designer", settled=False)
    dee = Card("dee@x.example", "buyer", "", phone_keys([PHONE]))
    world = World(inside={("u1", s): [dee] for s in ("crm", "outlook", "google")}, outside={})
    # Then the older title winning at the join is no lost edit, if every side agrees
    assert check(ledger, world, ["u1"]).clean
    split = dataclasses.replace(dee, job_title="designer")
    world.inside["u1", "crm"] = [split]
    assert check(ledger, world, ["u1"]).edits_lost == 1
    # But once that edit showed on every side, the copies are joined: the next edit must win
    world = World(inside={("u1", s): [split] for s in ("crm", "outlook", "google")}, outside={})
    assert ledger.joined("dee@x.example", "job_title", shown_everywhere=True)
    ledger.edit("dee@x.example", "outlook", "job_title", "Founder")
    (problem,) = check(ledger, world, ["u1"]).problems
    assert problem.endswith("is 'designer', meant 'founder'")


def carddav_ledger() -> Ledger:
    """u1 syncs a CardDAV book too, two-way; u2 has none; u3 sends theirs one way into the CRM."""
    ledger = Ledger()
    ledger.directions["u1"] = {"outlook": "two_way", "google": "two_way", "carddav": "two_way"}
    ledger.directions["u3"] = {"outlook": "to_crm", "google": "to_provider", "carddav": "to_crm"}
    return ledger


def test_a_card_is_expected_only_in_the_books_of_those_who_sync_one() -> None:
    # Given a person of u1's made in the CRM and one of u2's, who syncs no CardDAV book
    ledger = carddav_ledger()
    ledger.create("gil@x.example", "u1", "crm", PHONE, job_title="Buyer")
    ledger.create("hal@x.example", "u2", "crm", PHONE)
    gil = Card("gil@x.example", "buyer", phones=phone_keys([PHONE]))
    hal = Card("hal@x.example", phones=phone_keys([PHONE]))
    sides = ("crm", "outlook", "google")
    world = World(
        inside={
            **{("u1", side): [gil] for side in (*sides, "carddav")},
            **{("u2", side): [hal] for side in sides},
        }
    )
    assert check(ledger, world, USERS).clean
    # Then Gil missing from u1's book is lost, and a card of Hal's anywhere is a duplicate
    world.inside["u1", "carddav"] = [hal]
    verdict = check(ledger, world, USERS)
    assert (verdict.lost, verdict.duplicated) == (1, 1), verdict.problems


def test_a_person_handed_over_goes_to_the_sides_of_the_colleague() -> None:
    # Given u1 edited Gil's card, then handed Gil over to u2 (who has no book)
    ledger = carddav_ledger()
    ledger.create("gil@x.example", "u1", "crm", PHONE, job_title="Buyer")
    ledger.edit("gil@x.example", "carddav", "job_title", "Founder")
    ledger.hand_over("gil@x.example", "u2")
    gil = Card("gil@x.example", "founder", phones=phone_keys([PHONE]))
    sides = ("crm", "outlook", "google")
    world = World(
        inside={
            **{("u2", side): [gil] for side in sides},
            **{("u1", side): [gil] for side in ("outlook", "google", "carddav")},
        }
    )
    # Then u2's sides show the title written in u1's book (or, had it not left the book before
    # the hand-over, the one before it); u1's copies are left alone, and u2 has no book to miss
    assert check(ledger, world, USERS).clean
    for side in sides:
        world.inside["u2", side] = [dataclasses.replace(gil, job_title="buyer")]
    assert check(ledger, world, USERS).clean
    # But an edit u2 makes afterwards is the one to show
    ledger.edit("gil@x.example", "outlook", "job_title", "Counsel")
    assert check(ledger, world, USERS).edits_lost == 1


def test_one_way_a_card_reaches_the_crm_and_what_the_crm_feeds() -> None:
    # Given u3's card of Ivy (their book feeds the CRM, which feeds Google), edited in the CRM
    ledger = carddav_ledger()
    ledger.create("ivy@x.example", "u3", "carddav", PHONE, job_title="Analyst")
    ledger.edit("ivy@x.example", "crm", "notes", "crm note")
    ivy = Card("ivy@x.example", "analyst", phones=phone_keys([PHONE]))
    noted = dataclasses.replace(ivy, notes="crm note")
    world = World(
        inside={("u3", "crm"): [noted], ("u3", "google"): [noted], ("u3", "carddav"): [ivy]}
    )
    assert check(ledger, world, ["u3"]).clean
    # Then the CRM's note sent back to the card, or Ivy copied into Outlook, is reported
    world.inside["u3", "carddav"] = [noted]
    world.inside["u3", "outlook"] = [ivy]
    verdict = check(ledger, world, ["u3"])
    assert (verdict.duplicated, verdict.edits_lost) == (1, 1), verdict.problems


def test_one_way_a_hand_edit_made_while_the_sources_edit_was_on_its_way_awaits_it() -> None:
    # Given Outlook feeding the CRM: an Outlook edit, then (before it arrived) a CRM hand edit
    ledger = one_way_ledger()
    ledger.create("eve@x.example", "u3", "outlook", PHONE, job_title="Engineer")
    person = ledger.people["eve@x.example"]
    ledger.edit("eve@x.example", "outlook", "job_title", "Counsel")
    ledger.edit("eve@x.example", "crm", "job_title", "Own title", settled=False)
    # Then the CRM awaits the source's value (the sync cannot order the two; the source wins):
    # the field is not settled while the CRM shows its own
    assert person.awaited("job_title", "crm") == "Counsel"
    # And a hand edit made on a settled field awaits nothing, nor does a source side
    ledger.edit("eve@x.example", "crm", "job_title", "Settled title")
    assert person.awaited("job_title", "crm") is None
    assert person.awaited("job_title", "outlook") is None
