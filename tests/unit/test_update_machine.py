"""The A/B update state machine as a table: every path the updater and the simulator take."""

from __future__ import annotations

import pytest

from linecrew.agent.errors import UpdateStateError
from linecrew.agent.update_machine import RESTING, TRANSITIONS, Event, next_state
from linecrew.shared.protocol import UpdateState as S


def _walk(start: S, events: list[Event]) -> list[S]:
    states = [start]
    for e in events:
        states.append(next_state(states[-1], e))
    return states


@pytest.mark.parametrize(("events", "expected"), [
    ([Event.START, Event.INSTALLED, Event.ACTIVATED, Event.ATTEMPT, Event.HEALTHY],
     [S.IDLE, S.INSTALLING, S.ACTIVATING, S.HEALTH, S.HEALTH, S.COMMITTED]),
    ([Event.START, Event.INSTALLED, Event.ACTIVATED, Event.ATTEMPT, Event.UNHEALTHY, Event.SWITCHED_BACK],
     [S.IDLE, S.INSTALLING, S.ACTIVATING, S.HEALTH, S.HEALTH, S.ROLLING_BACK, S.ROLLED_BACK]),
    ([Event.START, Event.INSTALL_FAILED], [S.IDLE, S.INSTALLING, S.ROLLED_BACK]),
    ([Event.ROLLBACK, Event.SWITCHED_BACK], [S.IDLE, S.ROLLING_BACK, S.ROLLED_BACK]),
])
def test_each_path_ends_at_rest(events: list[Event], expected: list[S]) -> None:
    assert _walk(S.IDLE, events) == expected
    assert expected[-1] in RESTING


@pytest.mark.parametrize(("state", "event"), [
    (S.INSTALLING, Event.START), (S.HEALTH, Event.ROLLBACK), (S.COMMITTED, Event.HEALTHY),
    (S.ROLLING_BACK, Event.START), (S.ACTIVATING, Event.HEALTHY),
])
def test_events_a_state_does_not_allow_are_refused(state: S, event: Event) -> None:
    with pytest.raises(UpdateStateError):
        next_state(state, event)


def test_every_state_that_is_not_resting_can_reach_rest() -> None:
    for state in {s for s, _ in TRANSITIONS} - RESTING:
        seen, frontier = {state}, [state]
        while frontier:
            cur = frontier.pop()
            for (s, _e), nxt in TRANSITIONS.items():
                if s == cur and nxt not in seen:
                    seen.add(nxt)
                    frontier.append(nxt)
        assert seen & RESTING, f"{state} can never come to rest"
