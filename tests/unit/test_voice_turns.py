"""Turn-taking, voice commands and the speaker, without a model: finals in, turns out; a fake synthesizer."""

from __future__ import annotations

import threading
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from linecrew.agent.speech import Final, Idle, Partial
from linecrew.agent.tts import Speaker, VoiceSettings, WavSink, sentences, voice_command
from linecrew.agent.voice import TurnTaker, asked


def _final(i: int, text: str, start: float, end: float) -> Final:
    return Final(i, text, start, end, -0.2, 0.01, 120.0, "tiny@0")


def test_a_statement_then_a_question_after_a_short_pause_is_one_turn() -> None:
    t = TurnTaker(gap_s=1.0)
    assert t.feed(_final(1, "The can's leaking.", 0.0, 1.2)) is None
    assert t.feed(Idle(1.6)) is None  # 0.4 s of silence: the technician is not done
    assert t.feed(Partial(2, "Can I", "", 300.0)) is None
    turn = t.feed(_final(2, "Can I put it back in service?", 1.7, 3.4))
    assert turn is not None and turn.text == "The can's leaking. Can I put it back in service?"
    assert len(turn.finals) == 2 and t.flush() is None


def test_a_question_ends_the_turn_at_once_and_a_statement_after_the_gap() -> None:
    t = TurnTaker(gap_s=1.0)
    assert t.feed(_final(1, "How do I test the recloser?", 0.0, 1.5)).text == "How do I test the recloser?"  # type: ignore[union-attr]
    assert t.feed(_final(2, "We're on site.", 2.0, 3.0)) is None
    assert t.feed(Idle(3.6)) is None
    turn = t.feed(Idle(4.1))
    assert turn is not None and turn.text == "We're on site."


@pytest.mark.parametrize(("text", "question"), [
    ("What is the maximum use voltage for class 2", True),  # the recogniser dropped the mark
    ("Which clamp goes on first when I hang the grounds.", True),
    ("Can I put it back in service", True),
    ("How far do I stay back from a downed wire.", True),
    ("Install the grounds, what do I do first", True),
    ("The can's leaking.", False),
    ("We're on site.", False),
    ("What a mess.", False),
    ("ask not what your country can do for you", False),  # a clause inside a statement (JFK, one turn)
    ("Done.", False),
])
def test_a_question_is_known_by_its_form_as_well_as_its_mark(text: str, question: bool) -> None:
    assert asked(text) is question
    t = TurnTaker(gap_s=1.0)
    assert (t.feed(_final(1, text, 0.0, 1.5)) is not None) is question


def test_a_voice_command_is_its_own_turn() -> None:
    t = TurnTaker()
    assert t.feed(_final(1, "Stop.", 0.0, 0.5)).text == "Stop."  # type: ignore[union-attr]


@pytest.mark.parametrize(("text", "command"), [
    ("stop", "stop"), ("Stop!", "stop"), ("say that again", "repeat"), ("repeat", "repeat"), ("louder", "louder"),
    ("slow down", "slower"), ("how do I stop the bucket from drifting", None), ("stop the truck at pole 9 please",
                                                                             None)])
def test_short_voice_commands_are_known_and_questions_are_not_commands(text: str, command: str | None) -> None:
    assert voice_command(text) == command


def test_louder_and_slower_change_the_voice_within_limits() -> None:
    v = VoiceSettings(rate_wpm=100, volume=0.5)
    assert v.adjusted("louder").volume == 0.75 and v.adjusted("slower").rate_wpm == 90
    assert VoiceSettings().adjusted("louder").volume == 1.0  # never above full


def _tone(text: str, settings: VoiceSettings) -> tuple[np.ndarray, int]:
    return np.full(int(16000 * 0.05 * len(text.split())), 0.1, dtype=np.float32), 16000


def test_the_speaker_says_sentence_by_sentence_and_repeat_says_it_again(tmp_path: Path) -> None:
    made: list[str] = []

    def synth(text: str, s: VoiceSettings) -> tuple[np.ndarray, int]:
        made.append(text)
        return _tone(text, s)

    sink = WavSink(tmp_path / "out.wav")
    sp = Speaker(sink, synth=synth)
    r = sp.say("Step 1: Open the switch. Step 2: Apply your lock.")
    assert made == ["Step 1:", "Open the switch.", "Step 2:", "Apply your lock."] == sentences(sp.last_text)
    assert r.sentences == r.of == 4 and not r.stopped and r.first_audio_ms is not None
    sp.command("repeat")
    sink.close()
    with wave.open(str(tmp_path / "out.wav")) as w:
        assert w.getnframes() == 2 * int(r.audio_s * 16000)


def test_barge_in_stops_speech_within_one_block(tmp_path: Path) -> None:
    sink = WavSink(tmp_path / "out.wav", realtime=True)  # keeps a sound card's pace
    sp = Speaker(sink, synth=_tone)
    first = threading.Event()
    out: list[object] = []
    t = threading.Thread(target=lambda: out.append(sp.say("one two three four five six seven eight nine ten. " * 4,
                                                          on_first_audio=first.set)))
    t.start()
    assert first.wait(30)
    stopped_at = time.monotonic()
    sp.stop()
    t.join(30)
    assert out and out[0].stopped  # type: ignore[attr-defined]
    assert sink.last_write is not None and sink.last_write - stopped_at < 0.2
    sink.close()


def test_key_windows_pass_audio_only_while_the_key_is_held() -> None:
    from linecrew.agent.audio import AudioChunk
    from linecrew.agent.errors import AudioError
    from linecrew.agent.ptt import Key, gate_key, gate_windows, parse_windows

    assert [(w.start_s, w.end_s) for w in parse_windows("1-2.5, 4.0-6")] == [(1.0, 2.5), (4.0, 6.0)]
    for bad in ("3-1", "soon", "1-"):
        with pytest.raises(AudioError):
            parse_windows(bad)
    chunks = [AudioChunk(np.ones(1600, np.float32), 0.0) for _ in range(30)]  # 0.1 s each
    passed = [float(c.samples.max()) for c in gate_windows(chunks, parse_windows("1-2"))]
    assert passed == [0.0] * 10 + [1.0] * 10 + [0.0] * 10
    key = Key()
    live = gate_key(iter(chunks), key)
    assert float(next(live).samples.max()) == 0.0
    key.press()
    assert float(next(live).samples.max()) == 1.0


@pytest.mark.parametrize(("text", "asked"), [
    ("Hey Linecrew, how do I open the cutout?", "how do I open the cutout?"),
    ("hey line crew what's the fuse for a 50", "what's the fuse for a 50"),
    ("Hey Lincrew, next step.", "next step."),
    ("Pass me the wrench.", None), ("hey mike, grab the ladder", None)])
def test_the_wake_phrase_opens_a_turn_and_is_taken_off(text: str, asked: str | None) -> None:
    from linecrew.agent.ptt import strip_wake

    assert strip_wake(text, "hey linecrew") == asked


def test_the_voice_loop_stops_speech_when_the_technician_talks_and_obeys_commands(tmp_path: Path) -> None:
    from linecrew.agent.voice import Turn
    from linecrew.agent.voice_loop import VoiceLoop

    sink = WavSink(tmp_path / "o.wav")
    speaker = Speaker(sink, synth=_tone)
    asked: list[str] = []

    class _Reply:
        answer = "Step 1: Open it."

    def ask(text: str) -> _Reply:
        asked.append(text)
        return _Reply()

    def turn(text: str) -> Turn:
        return Turn(text, (_final(1, text, 0.0, 1.0),), 1.0, 100.0)

    class _Session:
        def turns(self, chunks: object, gap_s: float) -> object:
            yield turn("Hey Linecrew, how do I open it?")
            speaker.speaking.set()  # as if the answer were still playing
            yield Partial(2, "wait", "", 100.0)  # the technician talks over it
            yield turn("slower")
            yield turn("pass me the wrench")  # no wake phrase: a remark to the crew

    loop = VoiceLoop(_Session(), ask, speaker=speaker, wake_phrase="hey linecrew")  # type: ignore[arg-type]
    heard = list(loop.run([]))
    assert asked == ["how do I open it?"] and [h.command for h in heard] == [None, "slower"]
    assert speaker._stop.is_set() and speaker.settings.rate_wpm == 140
    sink.close()
