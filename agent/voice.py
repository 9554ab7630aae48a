"""Voice pipeline glue: audio source → streaming recognizer → context cache.

Finals are stored in the device's context cache (sealed) as they arrive; a source that fails midway
(truncated file, unplugged microphone) ends the stream cleanly, the utterance in progress is still
finalised, and the error is reported after the results it did produce.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from linecrew.agent.audio import AudioChunk
from linecrew.agent.config import AgentConfig
from linecrew.agent.domain_lm import domain_sentences, folder_texts
from linecrew.agent.errors import AudioError
from linecrew.agent.intents import LABELLED
from linecrew.agent.knowledge import SAMPLE_KB, KnowledgeBase
from linecrew.agent.lexicon import Lexicon
from linecrew.agent.speech import Final, Idle, Partial, SpeechConfig, StreamingRecognizer
from linecrew.agent.store import AgentStore
from linecrew.agent.tts import voice_command
from linecrew.shared.protocol import new_id


def speech_config(cfg: AgentConfig, *, kb: KnowledgeBase | None = None) -> SpeechConfig:
    """Recognition as configured; with ``asr_vocabulary`` the lexicon biases the decoder and the trade's own
    sentences (procedures, lexicon, labelled utterances) choose among its best hypotheses. ``kb``: the device's
    knowledge base (its units, the user's manuals among them); without one, the procedures folder."""
    lexicon = Lexicon.for_device(cfg.data_dir)
    biased = cfg.asr_vocabulary
    procedures = [u.text for u in kb.units()] if kb is not None else folder_texts(cfg.knowledge_dir or SAMPLE_KB)
    return SpeechConfig(model_path=cfg.asr_model, compute_type=cfg.asr_compute_type, threads=cfg.threads,
                        language=cfg.asr_language, vad_threshold=cfg.vad_threshold,
                        end_silence_ms=cfg.end_silence_ms, partial_every_s=cfg.partial_every_s,
                        vocabulary=tuple(lexicon.vocabulary()) if biased else (),
                        domain_text=tuple(domain_sentences(procedures, lexicon, LABELLED)) if biased else ())


@dataclass(frozen=True)
class Turn:
    """What the technician said in one go: one or more finals, answered once."""

    text: str
    finals: tuple[Final, ...]
    end_s: float
    latency_ms: float  # end of the last final's speech -> its text (the turn may have waited longer)
    kind: str = "turn"

    @property
    def alternatives(self) -> tuple[str, ...]:
        """Other readings of the whole turn, best first: the sentences before as heard, the last one as the
        recogniser also heard it (the question is what a turn ends with; ``other_readings``)."""
        if not self.finals:
            return ()
        before = " ".join(f.text.strip() for f in self.finals[:-1])
        last = self.finals[-1]
        return tuple(" ".join(x for x in (before, a.strip()) if x) for a in other_readings(last.text,
                                                                                           last.alternatives))


_PRONOUN = r"(?:i|we|you|he|she|it|they|my|your|our|his|her|their|its)"
_AUX = r"(?:is|are|was|were|do|does|did|can|could|should|would|will|shall|may|must|has|have|goes|go|comes|come)"
_ASKED = re.compile(
    rf"^(?:{_AUX}\s+(?:i|we|you|he|she|it|they|this|that|these|those|there|the|a|an|my|our|your)\b"
    rf"|(?:what|how|where|when|why|who|which)(?:'s|'re)?(?:\s+(?!{_PRONOUN}\b)[\w'-]+){{0,2}}\s+{_AUX}\b"
    rf"|how (?:long|far|many|much|often|close|big|high|low)\b|(?:what|who|which|how)'s\b)", re.I)


def asked(text: str) -> bool:
    """The last sentence is a question: it ends with "?" or has a question's form ("which clamp goes on
    first", "what is the rating for class 2"; Whisper tiny often drops the mark, and the trade language model
    may choose a hypothesis without it). "ask not what your country can do" is not: a pronoun right after the
    question word makes it a clause inside a statement."""
    t = text.strip()
    if t.endswith("?"):
        return True
    last = re.split(r"(?<=[.!?,;])\s+", t)[-1].strip(" ,")  # the last sentence or clause
    return bool(_ASKED.match(last))


def other_readings(first: str, readings: Sequence[str]) -> tuple[str, ...]:
    """The recogniser's other readings of an utterance worth answering in place of ``first``: when ``first`` is a
    question (``asked``), only those that are questions too ("how often are the grounding sets tested?" is not
    "however not the grounding sets tested": on the tune part spoken, that kept an uncovered question's abstention
    and lost no right answer)."""
    question = asked(first)
    return tuple(r for r in readings if r.strip() and (asked(r) or not question))


class TurnTaker:
    """Finals into turns. A turn ends at once on a question (``asked``) or a short voice command; after a
    statement it waits ``gap_s`` of silence for more, so "The can's leaking. Can I put it back in service?"
    is one question, not a remark and a question."""

    def __init__(self, gap_s: float = 1.2) -> None:
        self.gap_s = gap_s
        self._pending: list[Final] = []

    def feed(self, ev: Partial | Final | Idle) -> Turn | None:
        if isinstance(ev, Final):
            self._pending.append(ev)
            t = ev.text.strip()
            if asked(t) or voice_command(t) is not None:
                return self.flush()
        elif isinstance(ev, Idle) and self._pending and ev.audio_s - self._pending[-1].end_s >= self.gap_s:
            return self.flush()
        return None

    def flush(self) -> Turn | None:
        if not self._pending:
            return None
        finals, self._pending = tuple(self._pending), []
        return Turn(" ".join(f.text.strip() for f in finals), finals, finals[-1].end_s, finals[-1].latency_ms)


@dataclass
class _Guard:
    error: AudioError | None = None
    chunks: list[int] = field(default_factory=list)

    def wrap(self, chunks: Iterable[AudioChunk]) -> Iterator[AudioChunk]:
        try:
            yield from chunks
        except AudioError as e:
            self.error = e


class VoiceSession:
    """One listening session; ``events`` yields partials and finals, ``error`` tells why a source ended."""

    def __init__(self, recognizer: StreamingRecognizer, *, store: AgentStore | None = None) -> None:
        self.recognizer = recognizer
        self.store = store
        self.session_id = new_id()
        self.finals: list[Final] = []
        self._guard = _Guard()

    @property
    def error(self) -> AudioError | None:
        return self._guard.error

    def events(self, chunks: Iterable[AudioChunk]) -> Iterator[Partial | Final]:
        self.recognizer.decoder.warm_up()  # load the model before the clock starts
        for ev in self.recognizer.process(self._guard.wrap(chunks)):
            if isinstance(ev, Final):
                self._record(ev)
            yield ev  # type: ignore[misc]

    def turns(self, chunks: Iterable[AudioChunk], *, gap_s: float = 1.2) -> Iterator[Partial | Turn]:
        """Partials as they come, and one ``Turn`` per thing the technician said."""
        taker = TurnTaker(gap_s)
        self.recognizer.decoder.warm_up()
        for ev in self.recognizer.process(self._guard.wrap(chunks), idle_every_s=0.2):
            if isinstance(ev, Final):
                self._record(ev)
            if isinstance(ev, Partial):
                yield ev
            turn = taker.feed(ev)
            if turn is not None:
                yield turn
        last = taker.flush()
        if last is not None:
            yield last

    def _record(self, ev: Final) -> None:
        self.finals.append(ev)
        if self.store is not None:
            self.store.add_utterance(session=self.session_id, start_s=ev.start_s, end_s=ev.end_s, text=ev.text,
                                     avg_logprob=ev.avg_logprob, no_speech_prob=ev.no_speech_prob,
                                     model_version=ev.model_version)

    def summary(self) -> dict[str, object]:
        st = self.recognizer.stats
        out: dict[str, object] = {
            "kind": "summary",
            "text": " ".join(f.text for f in self.finals),
            "utterances": len(self.finals),
            "audio_s": round(st.audio_s, 3),
            "processing_s": round(st.processing_s, 3),
            "rtf": round(st.rtf, 4),
            "final_latency_ms": [round(x, 1) for x in st.final_latency_ms],
            "first_partial_ms": [round(x, 1) for x in st.first_partial_ms],
            "model_version": self.recognizer.decoder.version,
        }
        if self.error is not None:
            out["error"] = str(self.error)
        return out
