"""The streaming recognizer's rules, with a fake VAD and a fake decoder (no model needed)."""

from __future__ import annotations

import itertools

import numpy as np

from linecrew.agent.audio import CHUNK_SAMPLES, SAMPLE_RATE, AudioChunk
from linecrew.agent.speech import (
    Final,
    Hypothesis,
    LocalAgreement,
    Partial,
    SpeechConfig,
    StreamingRecognizer,
    agreed_prefix,
    vocabulary_prompt,
)

WORDS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"]


class EnergyVad:
    def probs(self, windows: np.ndarray) -> np.ndarray:
        return (np.abs(windows).mean(axis=1) > 0.01).astype(np.float32)

    def reset(self) -> None: ...


class CountingDecoder:
    """One word per 0.25 s of audio; counts calls."""

    version = "fake@1"

    def __init__(self) -> None:
        self.calls = 0

    def decode(self, audio: np.ndarray, prefix: str = "", *, final: bool = False) -> Hypothesis:
        self.calls += 1
        n = int(len(audio) / SAMPLE_RATE / 0.25)
        words = WORDS[:n]
        skip = len(prefix.split())
        return Hypothesis(" ".join(words[skip:]), -0.1, 0.01)

    def warm_up(self) -> None: ...


def _chunks(pattern: list[tuple[float, bool]]) -> list[AudioChunk]:
    out = []
    t = 0.0
    for seconds, voiced in pattern:
        for _ in range(int(seconds * SAMPLE_RATE / CHUNK_SAMPLES)):
            t += CHUNK_SAMPLES / SAMPLE_RATE
            out.append(AudioChunk(np.full(CHUNK_SAMPLES, 0.1 if voiced else 0.0, np.float32), t))
    return out


def _run(pattern: list[tuple[float, bool]], **cfg: object) -> tuple[list[Partial | Final], CountingDecoder]:
    dec = CountingDecoder()
    rec = StreamingRecognizer(SpeechConfig(**cfg), decoder=dec, vad=EnergyVad())  # type: ignore[arg-type]
    return list(rec.process(_chunks(pattern))), dec


def test_each_voiced_stretch_becomes_one_final() -> None:
    events, _ = _run([(0.5, False), (1.0, True), (1.0, False), (2.0, True), (1.0, False)])
    finals = [e for e in events if isinstance(e, Final)]
    assert [f.utterance for f in finals] == [1, 2]
    assert finals[0].start_s < 0.5 < finals[0].end_s < 1.8


def test_short_blips_are_ignored_and_silence_gives_nothing() -> None:
    events, dec = _run([(1.0, False), (0.1, True), (2.0, False)])
    assert events == [] and dec.calls == 0


def test_long_monologue_is_cut_at_the_limit() -> None:
    events, _ = _run([(7.0, True), (1.0, False)], max_utterance_s=3.0)
    assert len([e for e in events if isinstance(e, Final)]) == 3


def test_speculative_final_is_reused_when_silence_holds() -> None:
    _, dec_spec = _run([(1.0, True), (1.0, False)], partial_every_s=100.0)
    assert dec_spec.calls == 1, "the final reused the speculative decode"


def test_trailing_utterance_is_finalised_at_end_of_stream() -> None:
    events, _ = _run([(0.3, False), (1.5, True)])
    assert [type(e) for e in events][-1] is Final


def test_partials_commit_monotonically() -> None:
    events, _ = _run([(3.0, True), (1.0, False)])
    partials = [e for e in events if isinstance(e, Partial)]
    assert len(partials) >= 3
    for a, b in itertools.pairwise(partials):
        assert b.committed.startswith(a.committed)


def test_local_agreement_commits_only_what_two_hypotheses_share() -> None:
    la = LocalAgreement()
    assert la.update("ask not what") == "ask not what" and la.text == ""
    assert la.update("ask not what your") == "your" and la.text == "ask not what"
    la.update("your country")
    assert la.text == "ask not what your"
    assert agreed_prefix(["Ask,", "not"], ["ask", "Not!"]) == 2


class _SlowToAgreeDecoder(CountingDecoder):
    """Greedy partials hear "won two"; the final's beam hears the whole utterance right."""

    def decode(self, audio: np.ndarray, prefix: str = "", *, final: bool = False) -> Hypothesis:
        self.calls += 1
        if final and not prefix:
            return Hypothesis("one two three four", -0.1, 0.01, ("won two three four",))
        heard = ["won", "two", "three", "four"][: max(1, int(len(audio) / SAMPLE_RATE / 0.5))]
        return Hypothesis(" ".join(heard[len(prefix.split()):]), -0.1, 0.01)


def test_a_final_is_the_whole_utterances_reading_not_the_partials_continued() -> None:
    """The partials committed "won"; the final's whole reading says "one" and stands, from one decode (forced to
    continue the partials, it read "won two three four" and cost a second decode)."""
    dec = _SlowToAgreeDecoder()
    rec = StreamingRecognizer(SpeechConfig(), decoder=dec, vad=EnergyVad())  # type: ignore[arg-type]
    events = list(rec.process(_chunks([(2.5, True), (1.0, False)])))
    partials = [e for e in events if isinstance(e, Partial)]
    assert partials and partials[-1].committed.startswith("won")
    finals = [e for e in events if isinstance(e, Final)]
    assert [f.text for f in finals] == ["one two three four"]
    assert finals[0].alternatives == ("won two three four",)
    assert dec.calls == len(partials) + 1, "one decode for the final"


def test_a_final_whose_whole_reading_is_empty_keeps_the_committed_words() -> None:
    class EmptyFinal(CountingDecoder):
        def decode(self, audio: np.ndarray, prefix: str = "", *, final: bool = False) -> Hypothesis:
            if final and not prefix:
                self.calls += 1
                return Hypothesis("", -0.1, 0.01)
            return super().decode(audio, prefix, final=final)

    dec = EmptyFinal()
    rec = StreamingRecognizer(SpeechConfig(), decoder=dec, vad=EnergyVad())  # type: ignore[arg-type]
    events = list(rec.process(_chunks([(3.0, True), (1.0, False)])))
    committed = [e for e in events if isinstance(e, Partial)][-1].committed
    final = next(e for e in events if isinstance(e, Final))
    assert committed and final.text.startswith(committed)


class WordTokenizer:
    """Whisper's tokenizer as the prompt uses it: a token per word, and the previous-text marker."""

    sot_prev = -1

    def encode(self, text: str) -> list[str]:
        return text.split()


def test_the_recognition_prompt_leaves_hyphenated_phrases_to_the_correction_pass() -> None:
    """Whisper copies the prompt's style: with "live-dead-live" in it, it wrote whole utterances as hyphen chains."""
    prompt = vocabulary_prompt(WordTokenizer(), ("recloser", "live-dead-live", "pole pig", "re-fuse"))
    assert prompt[0] == WordTokenizer.sot_prev
    assert " ".join(map(str, prompt[1:])) == "recloser, pole pig."
    assert vocabulary_prompt(WordTokenizer(), ("re-fuse",)) == []
    assert vocabulary_prompt(WordTokenizer(), ()) == []
