"""A connection's state machine: the moves the service makes are allowed, every other is refused."""

from __future__ import annotations

import itertools

import pytest
from contactsync.store.models import Connection
from contactsync.sync.connection_states import (
    RUNNING,
    TRANSITIONS,
    ConnectionState,
    TransitionRefused,
    transition,
)

S = ConnectionState

# Every move the service makes, and what makes it.
MOVES = {
    (S.CONFIGURING, S.SYNCING_INITIAL): "the user starts the sync",
    (S.STOPPED, S.SYNCING_INITIAL): "the user starts a stopped sync again",
    (S.NEEDS_REAUTH, S.SYNCING_INITIAL): "the user starts a sync whose sign-in expired",
    (S.SYNCING_INITIAL, S.ACTIVE): "the initial sync's last pass completes",
    (S.NEEDS_ATTENTION, S.ACTIVE): "a confirmed pass completes, or a held one is discarded",
    (S.NEEDS_ATTENTION, S.SYNCING_INITIAL): "a held initial sync is confirmed or discarded",
    (S.SYNCING_INITIAL, S.NEEDS_ATTENTION): "the guard holds a pass of the initial sync",
    (S.ACTIVE, S.NEEDS_ATTENTION): "the guard holds a pass",
    (S.SYNCING_INITIAL, S.NEEDS_REAUTH): "the sign-in expires during the initial sync",
    (S.ACTIVE, S.NEEDS_REAUTH): "the sign-in expires",
    (S.NEEDS_ATTENTION, S.NEEDS_REAUTH): "the sign-in expires during a confirmed pass",
    (S.NEEDS_REAUTH, S.ACTIVE): "the same account signs in again",
    **{(s, S.STOPPED): "the user stops the sync, or erases it" for s in S if s != S.STOPPED},
    **{(s, S.CONFIGURING): "another account signs in" for s in S if s != S.CONFIGURING},
}


@pytest.mark.parametrize(("current", "to"), sorted(MOVES))
def test_the_moves_the_service_makes_are_allowed(current: S, to: S) -> None:
    # Given a connection in ``current``, when it goes ``to`` for the reason in MOVES
    # Then the state to store is ``to``, as a plain string
    stored = transition(current, to)
    assert stored == to.value
    assert type(stored) is str


REFUSED = sorted(
    (current, to)
    for current, to in itertools.product(S, S)
    if current != to and (current, to) not in MOVES
)


def test_some_moves_are_refused() -> None:
    # The table is not "anything goes": a sync never comes back to life by itself
    assert (S.STOPPED, S.ACTIVE) in REFUSED
    assert (S.CONFIGURING, S.ACTIVE) in REFUSED
    assert (S.NEEDS_REAUTH, S.NEEDS_ATTENTION) in REFUSED
    assert (S.ACTIVE, S.SYNCING_INITIAL) in REFUSED


@pytest.mark.parametrize(("current", "to"), REFUSED)
def test_every_other_move_is_refused_with_both_states_named(current: S, to: S) -> None:
    # Given a connection in ``current``
    # When something would move it to a state the table does not allow from there
    with pytest.raises(TransitionRefused) as refused:
        transition(current, to)
    # Then the move is refused, and the message says from where, to where, and what is allowed
    message = str(refused.value)
    assert f"from '{current.value}' to '{to.value}'" in message
    assert all(allowed in message for allowed in TRANSITIONS[current])


@pytest.mark.parametrize("state", list(S))
def test_staying_in_a_state_is_no_move_and_always_allowed(state: S) -> None:
    # Stopping a stopped sync, say
    assert transition(state, state) == state.value


def test_a_state_given_as_a_string_is_checked_as_its_member() -> None:
    # As a connection item stores it
    assert transition("needs_attention", "syncing_initial") == "syncing_initial"
    with pytest.raises(TransitionRefused):
        transition("stopped", "active")


@pytest.mark.parametrize(("current", "to"), [("paused", "active"), ("active", "paused")])
def test_a_state_that_does_not_exist_is_refused(current: str, to: str) -> None:
    with pytest.raises(TransitionRefused, match="'paused' is no state"):
        transition(current, to)


def test_the_table_has_a_row_for_every_state_and_no_move_to_itself() -> None:
    assert set(TRANSITIONS) == set(S)
    assert all(state not in TRANSITIONS[state] for state in S)


def test_passes_run_in_the_initial_sync_active_and_held_states() -> None:
    assert {S.SYNCING_INITIAL, S.ACTIVE, S.NEEDS_ATTENTION} == RUNNING


def test_a_new_connection_starts_in_the_state_the_machine_starts_from() -> None:
    # The store makes connection items (it may not import the sync layer): its default is ours
    assert Connection.get_attributes()["state"].default == S.CONFIGURING
