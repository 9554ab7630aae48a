"""End of turn, not end of breath: the default turn gap is chosen from recorded pauses.

The recording is a real human speaker (``../shared/data/speech/jfk.flac``: one sentence said slowly, with long
pauses at its commas); espeak-ng two-sentence questions add the pause between sentences of one turn. The pause
that matters is the one the turn-taker sees: from the end of one recognised utterance to the moment it would
give up waiting, measured on the real recogniser's event stream. The default gap must exceed the longest of
them with a margin, and the recording must come out as one turn with the default.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from linecrew.agent.audio import file_chunks
from linecrew.agent.config import AgentConfig
from linecrew.agent.speech import Final, Idle, SpeechConfig, StreamingRecognizer
from linecrew.agent.voice import Turn, TurnTaker, VoiceSession
from tests.conftest import SHARED_DATA
from tests.helpers.speech import have_espeak, synth

JFK = SHARED_DATA / "speech" / "jfk.flac"
MARGIN = 1.2  # the default gap is at least this many times the longest pause seen inside a turn

pytestmark = pytest.mark.skipif(not JFK.exists(), reason="../shared/data/speech/jfk.flac absent")


@pytest.fixture(scope="module")
def recognizer() -> StreamingRecognizer:
    return StreamingRecognizer(SpeechConfig())


def _pauses(recognizer: StreamingRecognizer, path: Path) -> tuple[list[float], int]:
    """Longest wait the turn-taker sees between each pair of utterances of one turn, and how many utterances."""
    recognizer.decoder.warm_up()
    pauses, finals, waited = [], 0, 0.0
    last_end: float | None = None
    for ev in recognizer.process(file_chunks(path), idle_every_s=0.2):
        if isinstance(ev, Final):
            finals += 1
            if last_end is not None:
                pauses.append(waited)
            last_end, waited = ev.end_s, 0.0
        elif isinstance(ev, Idle) and last_end is not None:
            waited = max(waited, ev.audio_s - last_end)
    return pauses, finals


def test_the_default_turn_gap_exceeds_every_pause_inside_a_recorded_turn(recognizer: StreamingRecognizer,
                                                                         tmp_path: Path) -> None:
    pauses, finals = _pauses(recognizer, JFK)
    assert finals >= 3, "the recording is heard as several utterances: the pauses are real"
    if have_espeak():
        for i, text in enumerate(("The can's leaking. Can I put it back in service?",
                                  "The recloser tripped twice. It is still locked out. Should I close it back in?")):
            more, _ = _pauses(recognizer, synth(text, tmp_path / f"q{i}.wav"))
            pauses += more
    gap = AgentConfig().turn_gap_ms / 1000
    assert gap >= MARGIN * max(pauses), f"default gap {gap:.2f} s vs pauses inside turns {sorted(pauses)}"
    assert gap <= 2.0, "a statement's turn must still end quickly"


def test_the_recorded_speech_is_one_turn_with_the_default_gap(recognizer: StreamingRecognizer) -> None:
    session = VoiceSession(recognizer)
    turns = [t for t in session.turns(file_chunks(JFK), gap_s=AgentConfig().turn_gap_ms / 1000)
             if isinstance(t, Turn)]
    assert len(turns) == 1, [t.text for t in turns]
    assert "americans" in turns[0].text.lower() and "your country" in turns[0].text.lower()


def test_a_long_silence_still_ends_the_turn() -> None:
    taker = TurnTaker(AgentConfig().turn_gap_ms / 1000)
    said = Final(1, "We are on site.", 0.0, 1.5, -0.2, 0.01, 0.0, "m")
    assert taker.feed(said) is None
    assert taker.feed(Idle(1.5 + 0.5)) is None
    turn = taker.feed(Idle(1.5 + AgentConfig().turn_gap_ms / 1000))
    assert turn is not None and turn.text == "We are on site."
