"""The device's A/B update as a pure state machine: states from the protocol, events, and one table.

The real updater (``agent.updates.Updater``) persists each state before its side effect and asks this
table for the next one; the fleet simulator walks the same table, so a change to the update flow is a
change here and both follow it. No I/O, no clock: tested with tables of (state, event) cases.
"""

from __future__ import annotations

from enum import StrEnum

from linecrew.agent.errors import UpdateStateError
from linecrew.shared.protocol import UpdateState as S


class Event(StrEnum):
    START = "start"                    # a verified release and payload: begin installing into the other slot
    INSTALLED = "installed"            # the other slot holds the new model, hash checked
    INSTALL_FAILED = "install_failed"  # nothing was activated: the old model is still active
    ACTIVATED = "activated"            # the active link points at the new slot
    ATTEMPT = "attempt"                # a health-check attempt is about to run (counted first: loop detection)
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"            # failed, or no pass within the allowed attempts
    ROLLBACK = "rollback"              # asked for: by the server's rollout, or by hand
    SWITCHED_BACK = "switched_back"    # the active link points at the previous slot again


TRANSITIONS: dict[tuple[S, Event], S] = {
    (S.IDLE, Event.START): S.INSTALLING,
    (S.COMMITTED, Event.START): S.INSTALLING,
    (S.ROLLED_BACK, Event.START): S.INSTALLING,
    (S.INSTALLING, Event.INSTALLED): S.ACTIVATING,
    (S.INSTALLING, Event.INSTALL_FAILED): S.ROLLED_BACK,
    (S.ACTIVATING, Event.ACTIVATED): S.HEALTH,
    (S.HEALTH, Event.ATTEMPT): S.HEALTH,
    (S.HEALTH, Event.HEALTHY): S.COMMITTED,
    (S.HEALTH, Event.UNHEALTHY): S.ROLLING_BACK,
    (S.IDLE, Event.ROLLBACK): S.ROLLING_BACK,
    (S.COMMITTED, Event.ROLLBACK): S.ROLLING_BACK,
    (S.ROLLED_BACK, Event.ROLLBACK): S.ROLLING_BACK,
    (S.ROLLING_BACK, Event.SWITCHED_BACK): S.ROLLED_BACK,
}

# States an update rests in; any other state is an interrupted update that ``resume`` carries on.
RESTING = frozenset({S.IDLE, S.COMMITTED, S.ROLLED_BACK})


def next_state(state: S, event: Event) -> S:
    """The state after ``event``; an event the state does not allow is a bug or a corrupt record."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise UpdateStateError(f"update event {event.value!r} is not allowed in state {state.value!r}") from None


def is_resting(state: S) -> bool:
    return state in RESTING
