"""A spoken question the procedures cannot answer as first recognised is tried as the recogniser also heard it:
the alternatives travel from the decoder's beam through the final, the turn and the voice loop to the assistant,
which answers one only when a procedure answers it confidently, says what it heard, and never acts on one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from linecrew.agent.assistant import HEARD_AS, Assistant
from linecrew.agent.audio import CHUNK_SAMPLES, SAMPLE_RATE, AudioChunk
from linecrew.agent.errors import KnowledgeError
from linecrew.agent.evaluation import Case, judge, load_cases
from linecrew.agent.speech import Final, Hypothesis, SpeechConfig, StreamingRecognizer
from linecrew.agent.voice import Turn
from tests.helpers.grounded import sample_assistant

MISHEARD = "what be be for swamping a meter"  # "what PPE for swapping a meter", as tiny.en heard it
HEARD = "what PPE for swapping a meter"


@pytest.fixture
def assistant(tmp_path: Path) -> Assistant:
    return sample_assistant(tmp_path / "dev")


def _queued(a: Assistant) -> int:
    return int(a.store.db.scalar("SELECT COUNT(*) FROM outbox") or 0)


# ------------------------------------------------------------------------------------------ the assistant
def test_a_misheard_question_is_answered_as_also_heard_and_says_what_it_heard(assistant: Assistant) -> None:
    first = assistant.ask(MISHEARD)
    assert first.abstained  # without the other readings: no procedure
    assistant.store.put("pending_action", None)
    r = assistant.ask(MISHEARD, alternatives=["what be be for swapping the meter?", HEARD])
    assert not r.abstained and r.grounded and r.heard_as is not None
    assert r.answer.startswith(HEARD_AS.format(r.heard_as.rstrip("?")))
    assert r.citations and all(c.startswith("meter-replacement.md") for c in r.citations)
    assert "arc-rated" in r.answer and assistant.pending() is None  # an answer, no offer to ask an expert


def test_a_first_reading_a_procedure_answers_is_answered_and_the_others_are_not_tried(assistant: Assistant) -> None:
    r = assistant.ask(HEARD, alternatives=["which grounding clamp goes on first"])
    assert r.heard_as is None and r.citations == ["meter-replacement.md#before-you-start:item-3"]
    assert not r.answer.startswith("I heard")


def test_a_reading_answered_without_confidence_is_not_taken(assistant: Assistant) -> None:
    # "love" for "glove": a procedure answers it, but weakly (below HEARD_AS_MIN): the first reading's honest
    # abstention stands
    r = assistant.ask(MISHEARD, alternatives=["what class of love for 7200 volts"])
    assert r.abstained and r.heard_as is None and r.citations == []


def test_another_reading_never_becomes_an_action(assistant: Assistant) -> None:
    r = assistant.ask(MISHEARD, alternatives=["order two more fuse links for the bucket"])
    assert r.abstained and r.heard_as is None
    assert r.intent == "procedure_question" and _queued(assistant) == 0
    pending = assistant.pending()
    assert pending is not None and pending.intent == "escalate_to_expert"  # only the offer to ask an expert
    assert pending.payload["question"] == MISHEARD


def test_an_action_or_a_remark_said_first_is_never_replaced_by_another_reading(assistant: Assistant) -> None:
    r = assistant.ask("order two more fuse links for the bucket", alternatives=[HEARD])
    assert r.intent == "parts_request" and r.needs_confirmation and r.heard_as is None


def test_the_judge_does_not_take_what_was_heard_for_a_claim(assistant: Assistant) -> None:
    case = Case("what class of glove for 7,500 volts", answerable=True, facts=("class 1",), source="rubber-gloves.md")
    answer = (HEARD_AS.format("what class of glove for 9999 volts") + " Rubber insulating gloves - Glove classes: "
              "class 1: maximum use voltage: 7,500 V")
    assert judge(assistant.kb, case, answer, False, ["rubber-gloves.md#x"])["contradiction"] is False


def test_a_labelled_case_carries_its_readings_and_refuses_any_other_shape(tmp_path: Path) -> None:
    p = tmp_path / "qa.jsonl"
    p.write_text('{"question": "what be be", "alternatives": ["what PPE"], "answerable": true}\n')
    assert load_cases(p)[0].alternatives == ("what PPE",)
    p.write_text('{"question": "what be be", "alternatives": "what PPE", "answerable": true}\n')
    with pytest.raises(KnowledgeError, match="alternatives"):
        load_cases(p)


# ------------------------------------------------------------------------------------------ the voice path
class _Vad:
    def probs(self, windows: np.ndarray) -> np.ndarray:
        return (np.abs(windows).mean(axis=1) > 0.01).astype(np.float32)

    def reset(self) -> None: ...


class _BeamDecoder:
    """Greedy partials say the first words; the final's beam has other readings, one disagreeing with the
    words already shown."""

    version = "fake@1"

    def decode(self, audio: np.ndarray, prefix: str = "", *, final: bool = False) -> Hypothesis:
        if not final:
            return Hypothesis("what be be"[: 0 if prefix else None], -0.1, 0.01)
        return Hypothesis(MISHEARD, -0.1, 0.01, (HEARD, "what be be for swapping a meter", "cut the be be"))

    def warm_up(self) -> None: ...


def test_the_final_carries_the_beams_other_readings_of_the_whole_utterance() -> None:
    rec = StreamingRecognizer(SpeechConfig(), decoder=_BeamDecoder(), vad=_Vad())  # type: ignore[arg-type]
    chunks, t = [], 0.0
    for seconds, voiced in ((0.3, False), (2.5, True), (1.0, False)):
        for _ in range(int(seconds * SAMPLE_RATE / CHUNK_SAMPLES)):
            t += CHUNK_SAMPLES / SAMPLE_RATE
            chunks.append(AudioChunk(np.full(CHUNK_SAMPLES, 0.1 if voiced else 0.0, np.float32), t))
    final = next(e for e in rec.process(chunks) if isinstance(e, Final))
    assert final.text == MISHEARD
    # every other reading of the whole utterance, whatever the partials showed; the first is not among them
    assert final.alternatives == (HEARD, "what be be for swapping a meter", "cut the be be")


def _final(text: str, alternatives: tuple[str, ...] = ()) -> Final:
    return Final(1, text, 0.0, 1.0, -0.2, 0.01, 100.0, "tiny@0", alternatives=alternatives)


def test_a_turns_other_readings_are_its_sentences_before_with_the_last_one_as_also_heard() -> None:
    turn = Turn("The can's leaking. " + MISHEARD, (_final("The can's leaking."), _final(MISHEARD, (HEARD,))), 1.0,
                100.0)
    assert turn.alternatives == (f"The can's leaking. {HEARD}",)
    assert Turn("x", (), 1.0, 100.0).alternatives == ()


def test_the_voice_loop_hands_the_readings_to_the_assistant_without_the_wake_phrase() -> None:
    from linecrew.agent.voice_loop import VoiceLoop

    asked: list[tuple[str, tuple[str, ...]]] = []

    class _Reply:
        answer = "ok"

    def ask(text: str, alternatives: tuple[str, ...] = ()) -> Any:
        asked.append((text, tuple(alternatives)))
        return _Reply()

    class _Session:
        def turns(self, chunks: object, gap_s: float) -> object:
            said = f"hey linecrew {MISHEARD}"
            yield Turn(said, (_final(said, (f"hey linecrew {HEARD}", "hey you there")),), 1.0, 100.0)
            yield Turn("how do I test it", (_final("how do I test it"),), 2.0, 100.0)

    loop = VoiceLoop(_Session(), ask, wake_phrase="hey linecrew")  # type: ignore[arg-type]
    list(loop.run([]))
    assert asked == [(MISHEARD, (HEARD,))]  # a reading without the wake phrase is not the technician's request


def test_a_question_is_only_read_again_as_a_question() -> None:
    from linecrew.agent.voice import other_readings

    first = "How often are the grounding sets electrically tested?"
    readings = ["However not the grounding sets electrically tested.", "How often are the grounding set tested",
                "  "]
    assert other_readings(first, readings) == ("How often are the grounding set tested",)
    assert other_readings("refuse loopwise", ["re-fuse blew twice", ""]) == ("re-fuse blew twice",)
    turn = Turn(first, (_final(first, tuple(readings)),), 1.0, 100.0)
    assert turn.alternatives == ("How often are the grounding set tested",)


def test_other_readings_are_scored_by_the_model_their_bar_was_measured_on(assistant: Assistant) -> None:
    """HEARD_AS_MIN was chosen on the first answerability model's scores; a question bank's model (here one that
    never answers) scores the first reading, not the others."""
    from linecrew.agent.answerability import BANK_FEATURES, AnswerabilityModel, Asked, QuestionBank
    from linecrew.agent.answering import digests

    units = assistant.kb.units()
    never = QuestionBank(AnswerabilityModel((0.0,) * len(BANK_FEATURES), -30.0, 0.5, BANK_FEATURES),
                         (Asked("what PPE for a meter", ("meter-replacement.md#before-you-start:item-3",), True),),
                         digests(units))
    assistant.answerer.use_bank(never)
    assert assistant.ask(HEARD).abstained  # the bank's model scored the first reading
    assistant.store.put("pending_action", None)
    r = assistant.ask(MISHEARD, alternatives=[HEARD])
    assert not r.abstained and r.heard_as == HEARD and "arc-rated" in r.answer
    assert assistant.answerer.bank is never  # the first model's view is a twin: the assistant keeps its bank


def test_other_readings_are_scored_by_the_model_kept_for_them(assistant: Assistant) -> None:
    """The first reading is judged by the first model, the others by the one their bar was chosen on
    (``answerability.HEARD``): a first model that never answers and one for the other readings that always does
    answer from the beam; the other way round, nothing."""
    from linecrew.agent.answerability import HEARD_FEATURES, AnswerabilityModel
    from linecrew.agent.answering import Answerer
    from linecrew.agent.grounding import FEATURES

    encoder = assistant.answerer.encoder
    for first, heard, taken in ((-30.0, 30.0, True), (30.0, -30.0, False), (-30.0, -30.0, False)):
        assistant.answerer = Answerer(
            assistant.kb, AnswerabilityModel((0.0,) * len(FEATURES), first, 0.5, FEATURES), encoder=encoder,
            bank=None, heard=AnswerabilityModel((0.0,) * len(HEARD_FEATURES), heard, 0.5, HEARD_FEATURES))
        assistant.store.put("pending_action", None)
        r = assistant.ask(MISHEARD, alternatives=[HEARD])
        assert (r.heard_as == HEARD) is taken and r.abstained is (first < 0 and not taken), (first, heard, r)

    shipped = Answerer(assistant.kb, encoder=encoder)
    assert shipped.for_other_readings().model.features == HEARD_FEATURES and shipped.model.features == FEATURES
