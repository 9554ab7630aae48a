"""Walk-through: warnings before the step they guard, moves, logged steps, and a restart in the middle."""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path

import pytest

from linecrew.agent import walkthrough
from linecrew.agent.assistant import Assistant, JobContext
from linecrew.agent.intents import classify
from linecrew.agent.knowledge import SAMPLE_KB, KnowledgeBase, UnitRef
from linecrew.agent.store import AgentStore


class _NoModel:
    def submit(self, *a: object, **kw: object) -> Future[object]:
        raise AssertionError("a walk-through needs no model")


def _assistant(folder: Path) -> Assistant:
    store = AgentStore(folder, device_id="truck-3")
    kb = KnowledgeBase(store.db)
    kb.ensure_indexed(SAMPLE_KB)
    return Assistant(store, _NoModel(), kb)  # type: ignore[arg-type]


def _u(pos: int, kind: str, text: str, number: int | None = None) -> UnitRef:
    return UnitRef("d.md", "T", "H", 0, pos, kind, number, pos + 1, text)


def test_a_warning_is_read_before_the_step_it_guards() -> None:
    stops = walkthrough.plan([_u(0, "warning", "Warning: stay clear."), _u(1, "step", "Open it.", 1),
                              _u(2, "sentence", "Prose is not a stop."), _u(3, "warning", "Never touch X."),
                              _u(4, "step", "Close it.", 2)])
    assert [[u.text for u in s] for s in stops] == [["Warning: stay clear.", "Open it."],
                                                    ["Never touch X.", "Close it."]]


@pytest.mark.parametrize(("text", "move"), [("done", "done"), ("Done.", "done"), ("next step", "next"),
                                             ("go back", "back"), ("say that again", "repeat"),
                                             ("stop the walk-through", "stop"),
                                             ("The next step.", "next"), ("okay, done", "done"),
                                             ("done with the meter, what now", None)])
def test_moves_are_short_commands(text: str, move: str | None) -> None:
    assert walkthrough.move(text) == move


def test_a_stray_word_is_never_an_emergency() -> None:
    for word in ("next", "done", "back", "repeat", "again"):
        assert classify(word).name != "safety_emergency", word


def test_walk_through_logs_each_done_step_and_survives_a_restart(tmp_path: Path) -> None:
    a = _assistant(tmp_path / "dev")
    a.set_job(JobContext("J-7", "Grounding"))
    first = a.ask("walk me through installing grounds")
    assert first.intent == "walkthrough" and first.answer.startswith("Protective grounding")
    assert "step 1 of 5" in first.answer and "Warning" in first.answer  # the warning guards step 1
    assert first.citations[0].endswith(":warning-1") and first.citations[1].endswith(":step-1")
    assert "ground-end clamp first" in a.ask("done").answer
    assert "ground-end clamp first" in a.ask("repeat").answer
    a.store.close()

    a = _assistant(tmp_path / "dev")  # the agent restarted
    again = a.ask("repeat")
    assert again.intent == "walkthrough" and "Step 2 of 5" in again.answer
    assert "step 1 of 5" in a.ask("back").answer
    for _ in range(5):
        last = a.ask("done")
    assert "procedure is complete" in last.answer and a.walk_state() is None
    notes = a.store.db.query("SELECT job_id FROM notes")
    assert len(notes) == 6 and {n["job_id"] for n in notes} == {"J-7"}  # step 1 twice (back), then 2..5


@pytest.mark.parametrize(("said", "section"), [("walk me through grounding", "installing-grounds"),
                                               ("walk me through removing grounds", "removing-grounds"),
                                               ("walk me through lockout", "steps"),
                                               ("walk me through the lockout release", "release")])
def test_a_procedure_named_without_a_section_is_walked_from_its_first_steps(said: str, section: str,
                                                                             tmp_path: Path) -> None:
    """"walk me through grounding" walked the removing steps: both sections named "grounding" equally well, and the
    search ranked the removing section first."""
    first = _assistant(tmp_path / "dev").ask(said)
    assert first.intent == "walkthrough" and first.citations[0].split("#")[1].startswith(f"{section}:")


def test_walking_through_something_with_no_procedure_is_an_honest_no(tmp_path: Path) -> None:
    a = _assistant(tmp_path / "dev")
    r = a.ask("walk me through baking a cake")
    assert r.abstained and a.walk_state() is None


def test_walk_me_through_this_job_walks_the_procedure_for_the_job_and_asks_no_expert(tmp_path: Path) -> None:
    a = _assistant(tmp_path / "dev")
    assert classify("walk me through this job").name != "escalate_to_expert"  # it asks for no person
    a.set_job(JobContext("J-9", "Replace blown fuse", "pole 14"))
    first = a.ask("walk me through this job")
    assert first.intent == "walkthrough" and first.citations == ["fuse-cutout-replacement.md#re-fusing-steps:step-1"]
    assert int(a.store.db.scalar("SELECT COUNT(*) FROM outbox WHERE type = 'escalation'") or 0) == 0
    a.store.close()
