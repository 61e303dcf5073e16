"""A connection's states and the moves allowed between them. Every state change goes through
``transition``, which refuses a move that ``TRANSITIONS`` does not hold.

The moves, and what makes them:

- configuring, stopped, needs_reauth → syncing_initial: the user starts the sync;
- syncing_initial, needs_attention → active: a pass completes;
- syncing_initial, active → needs_attention: the mass-change guard holds a pass;
- needs_attention → active or syncing_initial (what it was): the held pass is confirmed (its
  pass opens its plan) or discarded;
- syncing_initial, active, needs_attention → needs_reauth: the provider's sign-in expired;
- needs_reauth → active: the same account signed in again;
- any state → stopped: the user stops the sync, or erases the connection;
- any state → configuring: another account signed in (its folder is chosen afresh).

Staying in the state a connection is in is no change, and always allowed (stopping a stopped
connection).
"""

from __future__ import annotations

from enum import StrEnum


class ConnectionState(StrEnum):
    CONFIGURING = "configuring"  # made, signing in or choosing a folder: nothing syncs
    SYNCING_INITIAL = "syncing_initial"  # started: passes list both sides, link and copy
    ACTIVE = "active"  # passes keep both sides in step
    NEEDS_ATTENTION = "needs_attention"  # a pass held by the mass-change guard waits for a user
    NEEDS_REAUTH = "needs_reauth"  # the provider's sign-in expired: nothing syncs until renewed
    STOPPED = "stopped"  # the user stopped it (or it is being erased): nothing is written


RUNNING = frozenset(
    {ConnectionState.SYNCING_INITIAL, ConnectionState.ACTIVE, ConnectionState.NEEDS_ATTENTION}
)
"""The states in which passes run for a connection (a held pass runs once confirmed)."""

TRANSITIONS: dict[ConnectionState, frozenset[ConnectionState]] = {
    ConnectionState.CONFIGURING: frozenset(
        {ConnectionState.SYNCING_INITIAL, ConnectionState.STOPPED}
    ),
    ConnectionState.SYNCING_INITIAL: frozenset(
        {
            ConnectionState.ACTIVE,
            ConnectionState.NEEDS_ATTENTION,
            ConnectionState.NEEDS_REAUTH,
            ConnectionState.STOPPED,
            ConnectionState.CONFIGURING,
        }
    ),
    ConnectionState.ACTIVE: frozenset(
        {
            ConnectionState.NEEDS_ATTENTION,
            ConnectionState.NEEDS_REAUTH,
            ConnectionState.STOPPED,
            ConnectionState.CONFIGURING,
        }
    ),
    ConnectionState.NEEDS_ATTENTION: frozenset(
        {
            ConnectionState.ACTIVE,
            ConnectionState.SYNCING_INITIAL,
            ConnectionState.NEEDS_REAUTH,
            ConnectionState.STOPPED,
            ConnectionState.CONFIGURING,
        }
    ),
    ConnectionState.NEEDS_REAUTH: frozenset(
        {
            ConnectionState.ACTIVE,
            ConnectionState.SYNCING_INITIAL,
            ConnectionState.STOPPED,
            ConnectionState.CONFIGURING,
        }
    ),
    ConnectionState.STOPPED: frozenset(
        {ConnectionState.SYNCING_INITIAL, ConnectionState.CONFIGURING}
    ),
}
"""From each state, the other states a connection may go to."""


class TransitionRefused(ValueError):
    """A state change the table does not allow, or from a state it does not know."""


def transition(current: str, to: str) -> str:
    """The state to store for a connection in ``current`` that goes ``to``: ``to`` itself, once
    the table allows the move. Raises ``TransitionRefused`` otherwise."""
    current, to = str(current), str(to)  # (a member's str is its value)
    known = _known(current, current, to)
    target = _known(to, current, to)
    if target != known and target not in TRANSITIONS[known]:
        allowed = ", ".join(sorted(TRANSITIONS[known]))
        raise TransitionRefused(
            f"a connection cannot go from {current!r} to {to!r} "
            f"(from {current!r} it may go to {allowed})"
        )
    return target.value


def _known(state: str, current: str, to: str) -> ConnectionState:
    try:
        return ConnectionState(state)
    except ValueError:
        raise TransitionRefused(
            f"a connection cannot go from {current!r} to {to!r}: {state!r} is no state"
        ) from None
