"""Voice pipeline glue: audio source → streaming recognizer → context cache.

Finals are stored in the device's context cache (sealed) as they arrive; a source that fails midway
(truncated file, unplugged microphone) ends the stream cleanly, the utterance in progress is still
finalised, and the error is reported after the results it did produce.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from linecrew.agent.audio import AudioChunk
from linecrew.agent.config import AgentConfig
from linecrew.agent.errors import AudioError
from linecrew.agent.lexicon import Lexicon
from linecrew.agent.speech import Final, Partial, SpeechConfig, StreamingRecognizer
from linecrew.agent.store import AgentStore
from linecrew.shared.protocol import new_id


def speech_config(cfg: AgentConfig) -> SpeechConfig:
    return SpeechConfig(model_path=cfg.asr_model, compute_type=cfg.asr_compute_type, threads=cfg.threads,
                        language=cfg.asr_language, vad_threshold=cfg.vad_threshold,
                        end_silence_ms=cfg.end_silence_ms, partial_every_s=cfg.partial_every_s,
                        vocabulary=tuple(Lexicon.for_device(cfg.data_dir).vocabulary()) if cfg.asr_vocabulary else ())


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
                self.finals.append(ev)
                if self.store is not None:
                    self.store.add_utterance(session=self.session_id, start_s=ev.start_s, end_s=ev.end_s,
                                             text=ev.text, avg_logprob=ev.avg_logprob,
                                             no_speech_prob=ev.no_speech_prob, model_version=ev.model_version)
            yield ev

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
