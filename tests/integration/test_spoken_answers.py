"""Spoken answers through the real parts: espeak-ng (pyttsx3) speaks, faster-whisper listens back; a two-sentence
question spoken with a short pause is answered once; talking over an answer stops it within 200 ms."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from linecrew.agent.grounding import terms
from linecrew.agent.speech import SpeechConfig, WhisperDecoder
from linecrew.agent.tts import Speaker, WavSink, espeak_synth, spoken_form
from tests.conftest import REPO
from tests.helpers.speech import have_espeak, load16k, mixed, write_wav

pytestmark = pytest.mark.skipif(not have_espeak(), reason="espeak-ng missing: run `make test`")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "linecrew.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


def test_an_answer_is_spoken_into_a_wav_and_heard_back(tmp_path: Path) -> None:
    out = tmp_path / "answer.wav"
    r = _cli("agent", "ask", "--data-dir", str(tmp_path / "dev"), "--json", "--say", str(out),
             "Can I use someone else's lock on the switch?")
    assert r.returncode == 0, r.stderr
    reply = json.loads(r.stdout)
    assert "never lock for someone else" in reply["answer"]
    heard = WhisperDecoder(SpeechConfig()).decode(load16k(out), final=True).continuation  # as a final result is heard
    said, got = set(terms(spoken_form(reply["answer"]))), set(terms(heard))
    assert len(said & got) / len(said) >= 0.6, heard  # most of what was said is heard back
    assert "someone else" in heard.lower()


def test_two_sentences_with_a_short_pause_are_one_question_answered_once(tmp_path: Path) -> None:
    wav, _ = mixed(tmp_path, ["The can is leaking oil.", "Can I put it back in service?"], gap_s=0.45)
    said = tmp_path / "said.wav"
    r = _cli("agent", "talk", "--data-dir", str(tmp_path / "dev"), "--file", str(wav), "--json", "--say", str(said))
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.strip().splitlines()]
    assert len(lines) == 1, lines  # one turn, one answer
    assert lines[0]["sentences"] == 2 and lines[0]["intent"] == "procedure_question"
    assert "leak" in lines[0]["transcript"].lower() and "service" in lines[0]["transcript"].lower()
    assert said.stat().st_size > 10_000  # the answer was spoken


def test_talking_over_the_answer_stops_it_within_200_ms(tmp_path: Path) -> None:
    sink = WavSink(tmp_path / "cut.wav", realtime=True)
    speaker = Speaker(sink, synth=espeak_synth)
    first = threading.Event()
    done: list[object] = []
    long_answer = ("Lockout/tagout - Steps: Step 1: Notify the control center and everyone affected. Step 2: "
                   "Identify every energy source. Step 3: Open the switch, breaker or cutout for each source.")
    t = threading.Thread(target=lambda: done.append(speaker.say(long_answer, on_first_audio=first.set)))
    t.start()
    assert first.wait(30)
    time.sleep(0.3)  # the technician starts talking a moment into the answer
    barge = time.monotonic()
    speaker.stop()
    t.join(30)
    sink.close()
    assert done and done[0].stopped and done[0].sentences < done[0].of  # type: ignore[attr-defined]
    assert sink.last_write is not None and sink.last_write - barge < 0.2


def test_a_whole_procedure_walked_through_by_voice(tmp_path: Path) -> None:
    spoken = ["Walk me through the capacitor bank work.", *["Next step."] * 4]
    wav, _ = mixed(tmp_path, spoken, gap_s=1.6)
    said = tmp_path / "said.wav"
    r = _cli("agent", "talk", "--data-dir", str(tmp_path / "dev"), "--file", str(wav), "--json", "--say", str(said))
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.strip().splitlines()]
    assert [x["intent"] for x in lines] == ["walkthrough"] * 5, [x["transcript"] for x in lines]
    assert "step 1 of 4" in lines[0]["answer"] and "Warning" in lines[0]["answer"]  # read before the step
    assert "Step 4 of 4" in lines[3]["answer"] and "procedure is complete" in lines[4]["answer"]
    assert sum(len(x["actions"]) for x in lines) == 4  # each completed step logged to the job's notes
    assert said.stat().st_size > 50_000


def test_an_expert_reply_is_read_aloud_the_moment_it_arrives(server: object, tmp_path: Path) -> None:
    from linecrew.agent.announce import Announcer
    from linecrew.agent.assistant import Assistant
    from linecrew.agent.knowledge import SAMPLE_KB, KnowledgeBase
    from linecrew.agent.sync import DeviceSync, open_device
    from linecrew.shared.mqtt import wait_for
    from tests.conftest import enroll_device

    store, address = open_device(enroll_device(server, tmp_path / "dev", "truck-5"))
    kb = KnowledgeBase(store.db)
    kb.ensure_indexed(SAMPLE_KB)
    a = Assistant(store, None, kb)  # type: ignore[arg-type]
    a.ask("what's the torque spec for the meter socket lugs?")
    assert a.confirm(True).route == "escalated"  # the technician asked an expert, then went back to work
    spoken = tmp_path / "spoken.wav"
    announcer = Announcer(store, Speaker(WavSink(spoken)))
    sync = DeviceSync(store, address)
    sync.on_applied = announcer.notify
    announcer.start()
    sync.start()
    try:
        assert wait_for(lambda: len(server.store.escalations.list()) == 1, 30)  # type: ignore[attr-defined]
        esc = server.store.escalations.list()[0]  # type: ignore[attr-defined]
        server.store.escalations.answer(esc["id"], "Torque the lugs to the value on the socket label.",  # type: ignore[attr-defined]
                                        expert="Dana")
        assert wait_for(lambda: announcer.spoken >= 1, 60)
    finally:
        sync.stop()
        announcer.stop()
        announcer.speaker.sink.close()
    assert store.answers(unseen_only=True) == []  # said aloud, so seen
    heard = WhisperDecoder(SpeechConfig()).decode(load16k(spoken)).continuation.lower()
    assert "answer from" in heard and "socket label" in heard, heard


def test_push_to_talk_hears_only_what_is_said_with_the_key_held(tmp_path: Path) -> None:
    wav, ends = mixed(tmp_path, ["We are on site now.", "How do I check the trip coil?"], gap_s=1.5)
    start_second = ends[0] + 1.2  # the key goes down just before the question
    r = _cli("agent", "talk", "--data-dir", str(tmp_path / "dev"), "--file", str(wav), "--json",
             "--keys", f"{start_second:.2f}-{ends[1] + 0.6:.2f}")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.strip().splitlines()]
    assert len(lines) == 1 and "coil" in lines[0]["transcript"].lower(), lines
    assert lines[0]["intent"] == "procedure_question"  # the remark before the key became nothing


def test_a_wake_phrase_opens_a_turn_and_remarks_to_the_crew_stay_remarks(tmp_path: Path) -> None:
    wav, _ = mixed(tmp_path, ["Pass me the hot stick.", "Hey Linecrew, how do I open the cutout?"], gap_s=1.5)
    r = _cli("agent", "talk", "--data-dir", str(tmp_path / "dev"), "--file", str(wav), "--json", "--listen", "wake")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.strip().splitlines()]
    assert len(lines) == 1 and "cutout" in lines[0]["transcript"].lower(), lines
    assert "hey" not in lines[0]["transcript"].lower()


def test_a_question_misheard_first_is_answered_as_the_recogniser_also_heard_it(tmp_path: Path) -> None:
    """Through the real parts (espeak-ng, the agent's recogniser with its beam, the voice loop, the assistant):
    tiny.en's first reading of these has no procedure ("how do I learn a victim", "refuse, loopwise"); another
    reading of the beam has one, and the spoken answer says which question it answers."""
    for text, doc in (("how do I lower the victim", "pole-top-rescue.md"),
                      ("re-fuse blew twice", "fuse-cutout-replacement.md")):
        wav, _ = mixed(tmp_path, [text])
        r = _cli("agent", "talk", "--data-dir", str(tmp_path / "dev"), "--file", str(wav), "--json")
        assert r.returncode == 0, r.stderr
        reply = json.loads(r.stdout.strip().splitlines()[-1])
        assert not reply["abstained"] and reply["citations"] and reply["citations"][0].startswith(doc), reply
        if reply["heard_as"] is not None:  # (a recogniser that hears it right the first time needs no other reading)
            assert reply["heard_as"] != reply["transcript"]
            assert reply["answer"].startswith(f'I heard "{reply["heard_as"].rstrip("?.!")}".')


def test_a_sentence_the_tts_driver_drops_is_still_spoken(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """pyttsx3's espeak driver sometimes ends its loop without writing the file (seen once in CI under load, and
    upstream as its issue #219): the sentence is then synthesized by the espeak-ng program, not lost."""
    import types

    from linecrew.agent.tts import VoiceSettings

    class _Dropping:
        def setProperty(self, *a: object) -> None: ...
        def save_to_file(self, text: str, path: str) -> None: ...
        def runAndWait(self) -> None: ...

    monkeypatch.setitem(sys.modules, "pyttsx3", types.SimpleNamespace(init=lambda driver: _Dropping()))
    samples, rate = espeak_synth("Open the cutout with the hot stick.", VoiceSettings(rate_wpm=160))
    assert rate == 22050 and len(samples) > rate  # over a second of speech
    said = load16k(write_wav(tmp_path / "said.wav", samples, rate))  # resampled as any audio the agent hears
    heard = WhisperDecoder(SpeechConfig()).decode(said).continuation.lower()
    assert "hot stick" in heard, heard


def test_the_tts_drivers_late_message_never_reaches_standard_output(capsys: pytest.CaptureFixture[str]) -> None:
    """The driver prints "Audio saved to ..." from espeak's callback, now and then after the call has returned (make
    test once got it as a line of ``agent talk --json``): whenever it comes, it is not on standard output."""
    from linecrew.agent.tts import VoiceSettings

    samples, _ = espeak_synth("Close the cutout.", VoiceSettings())
    assert len(samples)
    driver = sys.modules["pyttsx3.drivers.espeak"]
    driver.print("Audio saved to /tmp/late.wav")  # what the callback does when it comes late
    assert capsys.readouterr().out == ""
