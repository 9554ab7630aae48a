"""Benchmark: the held-out questions spoken instead of typed, against the same questions typed, in the same run.

Each held-out QA question of ``tests/data/assistant/qa.jsonl`` is synthesized with espeak-ng (22.05 kHz, resampled
by the pipeline), recognised as the resident agent recognises a final utterance by default (faster-whisper tiny.en
int8, 2 threads, lexicon prompt, trade-word corrections, the trade language model over the base choosing among the
beam's hypotheses: ``agent.voice.speech_config``), and the transcript is asked of the grounded assistant (no LLM
needed) with the recogniser's other readings (``agent.voice.other_readings``), as the voice loop asks it
(``spoken``: a reading a procedure answers with confidence ``HEARD_AS_MIN`` is answered when the first has no
procedure). References in the same run: the first reading alone (``spoken_first_reading``, the former behaviour)
and the same question typed. Judged by the same code as ``assistant.py``: answer accuracy, contradictions,
invented figures, abstention on uncovered questions, false abstention; plus the recogniser's word error rate on
the questions: the mean of each question's WER (normalised as ``asr.py`` normalises), not ``asr.py``'s
corpus-level WER.

The held-out questions are never used to tune recognition or answering. espeak-ng is a synthetic voice: this says
how much a plain recogniser error costs the answer, not how a crew in the wind sounds.

Last stdout line: one JSON object. With fewer than 40 questions (``--limit``) it says so.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from linecrew.agent.assistant import Assistant, AssistantConfig  # noqa: E402
from linecrew.agent.config import AgentConfig  # noqa: E402
from linecrew.agent.evaluation import Case, evaluate, load_cases  # noqa: E402
from linecrew.agent.knowledge import SAMPLE_KB, KnowledgeBase  # noqa: E402
from linecrew.agent.speech import WhisperDecoder  # noqa: E402
from linecrew.agent.store import AgentStore  # noqa: E402
from linecrew.agent.voice import other_readings, speech_config  # noqa: E402
from tests.helpers.speech import have_espeak, load16k, synth, wer  # noqa: E402

QA = REPO / "tests" / "data" / "assistant" / "qa.jsonl"
KEYS = ("answer_accuracy", "contradictions", "invented_figures", "abstain_rate_uncovered", "false_abstain_rate")


def _measure(a: Assistant, cases: list[Case]) -> dict[str, object]:
    r = evaluate(a, cases)  # each case alone: pending read-back and conversation cleared between them
    return {k: r[k] for k in KEYS}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=0, help="at most this many held-out questions (0: all)")
    args = ap.parse_args()
    if not have_espeak():
        print(json.dumps({"benchmark": "assistant_spoken", "error": "espeak-ng is not installed"}))
        return
    tmp = Path(tempfile.mkdtemp(prefix="linecrew-bench-spoken-"))
    qa = load_cases(QA, split="heldout")
    qa = [c for c in qa if c.answerable is not None][: args.limit or None]
    store = AgentStore(tmp / "dev", device_id="bench-spoken")
    kb = KnowledgeBase(store.db)
    kb.ensure_indexed(SAMPLE_KB)
    assistant = Assistant(store, None, kb, config=AssistantConfig())
    assistant.ask("warm up")
    decoder = WhisperDecoder(speech_config(AgentConfig(data_dir=tmp), kb=kb))
    decoder.warm_up()

    heard: list[Case] = []
    errors, decode_ms = [], []
    for i, c in enumerate(qa):
        audio = load16k(synth(c.question, tmp / f"q{i}.wav"))
        t0 = time.perf_counter()
        hyp = decoder.decode(audio, final=True)
        decode_ms.append((time.perf_counter() - t0) * 1000)
        text = hyp.continuation.strip()
        errors.append(wer(c.question, text))
        heard.append(replace(c, question=text, alternatives=other_readings(text, hyp.alternatives)))
    typed = _measure(assistant, qa)
    spoken = _measure(assistant, heard)
    first_only = _measure(assistant, [replace(c, alternatives=()) for c in heard])
    print(json.dumps({
        "benchmark": "assistant_spoken", "split": "heldout", "qa_cases": len(qa), "too_few_samples": len(qa) < 40,
        "voice": "espeak-ng default (en), 150 words/min",
        "recogniser": decoder.version, "asr_wer_questions": round(statistics.mean(errors), 3) if errors else None,
        "asr_final_decode_p50_ms": round(statistics.median(decode_ms), 1) if decode_ms else None,
        "alternatives_per_question": round(statistics.mean(len(c.alternatives) for c in heard), 2) if heard else None,
        "spoken": spoken, "spoken_first_reading": first_only, "reference_typed": typed,
    }))


if __name__ == "__main__":
    main()
