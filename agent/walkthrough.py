"""Procedure walk-through: one step at a time, warnings first, every completed step logged.

Pure: ``plan`` turns a section's units into what is said in order (each warning before the step it guards:
a warning the section opens with, or one written just before a step); ``WalkThrough`` moves through it on
"next"/"done" (the current step is complete: logged, then the next one), "back", "repeat", and "stop". Its
state is a small value the assistant keeps in the device store, so an agent restart resumes at the same step.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from linecrew.agent.commands import REPEAT, match
from linecrew.agent.knowledge import UnitRef

START = re.compile(r"\b(walk|take|talk|run) me through\b|\bstep by step\b|\bguide me through\b", re.I)
_MOVES = {
    "done": re.compile(r"^(done|finished|complete(d)?|got it|ok(ay)?,? done|that'?s done|check)\b"),
    "next": re.compile(r"^(next( step)?|go on|continue|what'?s next|and then|then what)\b"),
    "back": re.compile(r"^(back|go back|previous( step)?|last step|step back)\b"),
    "repeat": re.compile(rf"^{REPEAT}\b"),
    "stop": re.compile(r"^(stop|end|quit|cancel|exit)( the)?( walk[- ]?through| procedure)?\s*$"),
}


def move(text: str) -> str | None:
    """The walk-through command in a short utterance, or None."""
    return match(text, _MOVES, max_words=5)


def plan(units: list[UnitRef]) -> list[list[UnitRef]]:
    """What is said at each stop: a step with the warnings that guard it (before it); steps only."""
    stops: list[list[UnitRef]] = []
    guard: list[UnitRef] = []
    for u in sorted(units, key=lambda x: x.position):
        if u.kind == "warning":
            guard.append(u)
        elif u.kind == "step":
            stops.append([*guard, u])
            guard = []
    return stops


@dataclass(frozen=True)
class WalkState:
    doc: str
    section: int
    index: int  # the stop being worked on
    total: int
    title: str
    job_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Step:
    """What to say now, and what to log (a completed step) — the result of one move."""

    state: WalkState | None  # None: the walk-through is over
    say: list[UnitRef]
    completed: UnitRef | None = None
    finished: bool = False


def start(doc: str, section: int, title: str, stops: list[list[UnitRef]], job_id: str | None) -> Step:
    state = WalkState(doc, section, 0, len(stops), title, job_id)
    return Step(state, stops[0])


def advance(state: WalkState, stops: list[list[UnitRef]], command: str) -> Step:
    """One move; ``stops`` is ``plan`` of the same section (re-read from the base on every move)."""
    i = min(state.index, len(stops) - 1)
    if command == "repeat":
        return Step(state, stops[i])
    if command == "back":
        j = max(0, i - 1)
        return Step(WalkState(**{**state.as_dict(), "index": j}), stops[j])
    if command == "stop":
        return Step(None, [])
    current = stops[i][-1]  # "done" / "next": the current step is complete
    if i + 1 >= len(stops):
        return Step(None, [], completed=current, finished=True)
    return Step(WalkState(**{**state.as_dict(), "index": i + 1}), stops[i + 1], completed=current)
