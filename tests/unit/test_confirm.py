"""Actions ask first: read back, then done only after a yes (voice or key); nothing is queued on a guess."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest

from linecrew.agent import confirm
from linecrew.agent.assistant import Assistant, JobContext
from linecrew.agent.confirm import answer_to_prompt, read_back
from linecrew.agent.knowledge import SAMPLE_KB, KnowledgeBase
from linecrew.agent.store import AgentStore
from linecrew.shared.errors import ModelError


@pytest.mark.parametrize(("text", "expected"), [
    ("yes", True), ("Yes.", True), ("yep, do it", True), ("confirm", True), ("go ahead", True),
    ("no", False), ("No, cancel that", False), ("scratch that", False), ("don't", False),
    ("yes I need two more insulators for the pole on Elm street", None), ("what?", None), ("", None),
    ("the transformer is leaking", None),
])
def test_what_counts_as_an_answer_to_a_read_back(text: str, expected: bool | None) -> None:
    assert answer_to_prompt(text) is expected


def test_read_backs_say_what_will_be_sent() -> None:
    blocked = read_back("job_status", {"status": "blocked", "reason": "road flooded"}, "", "J-1", 0)
    assert blocked.readback == "Mark job J-1 as blocked because road flooded and tell dispatch?"
    parts = read_back("parts_request", {"items": [{"part": "insulators", "quantity": 2}]}, "", None, 0)
    assert parts.readback == "Request 2 x insulators for no job set?"
    assert read_back("log_note", {"text": "seal 448812"}, "", "J-2", 0).payload == {"text": "seal 448812",
                                                                                  "job_id": "J-2"}


def test_a_status_with_no_job_set_is_offered_as_a_note_not_queued_as_a_status() -> None:
    """The server drops a status that names no job: "Done: job (none set) is done; dispatch is told" told nobody."""
    said = "we're done on the pad mount, job complete"
    p = read_back("job_status", {"status": "done"}, said, None, 0)
    assert p.intent == "log_note" and p.payload == {"text": said, "job_id": None}
    assert p.readback == ('No job is set on this device, so none can be marked done. '
                          f'Save "{said}" as a note for dispatch?')


class _NoModel:
    """No weights here: any question is answered from retrieval alone (actions never reach the model)."""

    version = "none@000000000000"

    def submit(self, *a: object, **k: object) -> Future[object]:
        f: Future[object] = Future()
        f.set_exception(ModelError("no model in this test"))
        return f


@pytest.fixture
def assistant(tmp_path: Path) -> Iterator[Assistant]:
    store = AgentStore(tmp_path, device_id="truck-1")
    kb = KnowledgeBase(store.db)
    kb.ensure_indexed(SAMPLE_KB)
    a = Assistant(store, _NoModel(), kb)  # type: ignore[arg-type]
    a.set_job(JobContext("J-7"))
    yield a
    store.close()


def test_a_status_is_queued_only_after_a_yes(assistant: Assistant) -> None:
    first = assistant.ask("The job is done, power is restored")
    assert first.needs_confirmation and "Mark job J-7 as done" in first.answer
    assert assistant.store.outbox.depth() == 0, "nothing queued on the guess"
    done = assistant.ask("yes")
    assert done.intent == "confirm" and done.actions == ["job status done queued"]
    assert assistant.store.outbox.depth() == 1
    assert assistant.ask("yes").intent != "confirm", "a second yes confirms nothing"


@pytest.mark.parametrize(("said", "answer"), [("yes", "Nothing is waiting for a yes."), ("go ahead", "Nothing is "
                                               "waiting for a yes."), ("no", "Nothing to cancel."),
                                               ("cancel that", "Nothing to cancel.")])
def test_a_yes_or_a_no_with_nothing_read_back_answers_nothing(said: str, answer: str, assistant: Assistant) -> None:
    """A yes heard as a question was offered to an expert (another yes escalated "yes"); a no was read back as a note
    "no"."""
    r = assistant.ask(said)
    assert r.answer == answer and not r.needs_confirmation and assistant.pending() is None
    assert assistant.store.outbox.depth() == 0


@pytest.mark.parametrize(("said", "bare"), [("yes", True), ("yep please", True), ("nope", False),
                                            ("never mind", False), ("no voltage on the line", None),
                                            ("yes the jaws are burnt, what do I check", None), ("ok", None)])
def test_only_a_whole_utterance_of_yes_or_no_is_a_bare_answer(said: str, bare: bool | None) -> None:
    assert confirm.bare_answer(said) is bare


def test_a_no_cancels_and_a_key_press_confirms(assistant: Assistant) -> None:
    assistant.ask("I need two fuse cutouts and one insulator")
    assert assistant.ask("no, cancel").answer.startswith("Cancelled") and assistant.store.outbox.depth() == 0
    assistant.ask("note: meter seal number is 448812")
    assert assistant.confirm(True).actions[0].startswith("note ")
    assert assistant.store.outbox.depth() == 1


def test_a_read_back_expires_and_a_new_action_replaces_it(assistant: Assistant, monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    assistant.ask("We're on site")
    assistant.ask("Send me 3 crossarms")  # replaces the status
    assert assistant.ask("yes").actions == ["parts request queued"]
    assistant.ask("We're on site")
    real = confirm.PendingAction.expired
    monkeypatch.setattr(confirm.PendingAction, "expired", lambda self, now: real(self, now + 121))
    assert assistant.ask("yes").intent != "confirm", "a stale read-back is not confirmed"
    assert assistant.store.outbox.depth() == 1


def test_an_emergency_still_escalates_at_once(assistant: Assistant) -> None:
    r = assistant.ask("A live wire is down and my partner got a shock")
    assert r.route == "escalated" and not r.needs_confirmation and assistant.store.outbox.depth() == 1


def _db_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.glob("agent.db*")))


def test_a_note_waiting_for_its_yes_is_sealed_at_rest(assistant: Assistant, tmp_path: Path) -> None:
    """The read-back's payload (the note, the job's address, the conversation) never lies in the file as said."""
    assistant.set_job(JobContext("J-7", location="41 Quarry Lane"))
    r = assistant.ask("note: customer keeps a spare key under the blue flowerpot")
    assert r.needs_confirmation and assistant.store.get("pending_action")["payload"]["text"].endswith("flowerpot")
    raw = _db_bytes(tmp_path)
    assert b"flowerpot" not in raw and b"Quarry Lane" not in raw
    assert assistant.confirm(True).actions[0].startswith("note ")
    assert b"flowerpot" not in _db_bytes(tmp_path)


def test_a_value_written_before_sealing_is_still_read(tmp_path: Path) -> None:
    store = AgentStore(tmp_path, device_id="truck-1")
    with store.db.transaction() as conn:
        conn.execute("INSERT INTO kv (key, value) VALUES ('current_job', ?)", ('{"job_id": "J-1"}',))
    assert store.get("current_job") == {"job_id": "J-1"}
    store.put("current_job", {"job_id": "J-2"})
    assert store.get("current_job") == {"job_id": "J-2"}
    assert store.db.scalar("SELECT value FROM kv WHERE key='current_job'").startswith("sealed:")
    store.close()


@pytest.mark.parametrize("again", ["say that again", "Sorry, what was that?", "can you repeat that please",
                                   "didn't catch that"])
def test_a_typed_say_that_again_repeats_the_last_reply_and_queues_nothing(assistant: Assistant, again: str) -> None:
    assert assistant.ask(again).answer == "There is nothing to repeat yet."
    first = assistant.ask("note: the meter seal number is 448812")
    r = assistant.ask(again)
    assert r.intent == "repeat" and r.answer == first.answer and r.needs_confirmation
    assert assistant.store.outbox.depth() == 0 and assistant.pending() is not None, "the read-back still waits"
    assert assistant.ask("yes").actions[0].startswith("note ") and assistant.store.outbox.depth() == 1
    asked = assistant.ask("what do I check before I close a cutout")
    assert assistant.ask(again).answer == asked.answer and assistant.ask(again).citations == asked.citations


def test_repeat_with_a_step_number_is_a_question_not_a_repeat(assistant: Assistant) -> None:
    assistant.ask("what do I check before I close a cutout")
    assert assistant.ask("repeat step 2 of lockout").intent == "procedure_question"


def test_a_request_too_long_to_be_one_is_refused_plainly_and_does_nothing(assistant: Assistant) -> None:
    r = assistant.ask("note: " + "the gate code is 4471 " * 100)
    assert r.intent == "other" and "too long" in r.answer and not r.needs_confirmation
    assert assistant.pending() is None and assistant.store.outbox.depth() == 0
    assert assistant.ask("note: the gate code is 4471").needs_confirmation  # one of a usual length is heard
