"""Benchmark: the hands-free loop, spoken in real time — end of the technician's speech to the first sample
of the spoken answer — against today's `agent talk` before spoken answers (free generation, text only).

Same run, 2 threads, default models (faster-whisper tiny.en int8, SmolLM2-135M for the reference):

* ``eos_to_first_audio_p50_ms`` / ``_p95_ms``: questions synthesized with espeak-ng and fed at real-time pace
  through VAD, streaming recognition, turn-taking, the grounded assistant and the speaker (a WAV sink that keeps
  a sound card's clock); idle, then again with one core busy in another process;
* the reference: the former pipeline (one final per utterance, the model writing a free answer, no speech):
  end of speech to the whole answer text;
* ``barge_in_p95_ms``: talking over an answer to the last sample written;
* ``asr_wer_trade_terms``: trade-heavy utterances (none used for tuning) as the agent recognises them (lexicon
  prompt, corrections, the trade language model choosing among the beam's hypotheses), beside the same without
  the language model, without any biasing, and the former greedy final;
* footprint of a resident agent process: RSS without models and with them, cold start to ready.

Last stdout line: one JSON object. With too few samples it says so.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from linecrew.agent.assistant import Assistant, AssistantConfig  # noqa: E402
from linecrew.agent.audio import file_chunks  # noqa: E402
from linecrew.agent.config import AgentConfig  # noqa: E402
from linecrew.agent.knowledge import SAMPLE_KB, KnowledgeBase  # noqa: E402
from linecrew.agent.speech import SAMPLE_RATE, Final, SpeechConfig, StreamingRecognizer, WhisperDecoder  # noqa: E402
from linecrew.agent.store import AgentStore  # noqa: E402
from linecrew.agent.tts import Speaker, WavSink, espeak_synth  # noqa: E402
from linecrew.agent.voice import Turn, VoiceSession, speech_config  # noqa: E402
from linecrew.shared.llm import LlmConfig, LocalLLM  # noqa: E402
from tests.helpers.speech import load16k, synth, wer, write_wav  # noqa: E402
from tests.helpers.stats import pct  # noqa: E402

QUESTIONS = [
    "What fuse link goes in a twenty five K V A transformer?",
    "How long do I wait after I switch off the capacitor bank?",
    "Can I use someone else's lock on the switch?",
    "Which clamp goes on first when I hang the grounds?",
    "How do I check the recloser trip coil?",
    "What is the maximum use voltage for class two gloves?",
    "How far do I stay back from a downed wire?",
    "Where do I hook my lanyard in the bucket?",
]
# trade words in sentences written for this benchmark only: nothing (vocabulary, decoding, correction) was tuned on
# them; tuning used tests/data/speech/trade_dev.txt
TRADE = [line.strip() for line in (REPO / "tests" / "data" / "speech" / "trade_heldout.txt").read_text().splitlines()
         if line.strip() and not line.startswith("#")]


def _clip(folder: Path, text: str, i: int) -> tuple[Path, float]:
    speech = load16k(synth(text, folder / f"q{i}.wav"))
    lead, tail = np.zeros(SAMPLE_RATE, np.float32), np.zeros(int(2.5 * SAMPLE_RATE), np.float32)
    nz = np.nonzero(np.abs(speech) > 0.01)[0]
    end_s = 1.0 + (nz[-1] + 1 if len(nz) else len(speech)) / SAMPLE_RATE
    return write_wav(folder / f"clip{i}.wav", np.concatenate([lead, speech, tail])), end_s


def _grounded_loop(folder: Path, clips: list[tuple[Path, float]], decoder: WhisperDecoder) -> list[float]:
    store = AgentStore(folder / "dev", device_id="bench")
    kb = KnowledgeBase(store.db)
    kb.ensure_indexed(SAMPLE_KB)
    assistant = Assistant(store, None, kb)  # type: ignore[arg-type]
    assistant.warm_up()
    out = []
    for i, (path, end_s) in enumerate(clips):
        assistant.forget_conversation()
        store.put("pending_action", None)
        session = VoiceSession(StreamingRecognizer(SpeechConfig(), decoder=decoder))
        sink = WavSink(folder / f"said{i}.wav", realtime=True)
        speaker = Speaker(sink, synth=espeak_synth)
        first: list[float] = []
        t0 = time.monotonic()
        for ev in session.turns(file_chunks(path, realtime=True)):
            if isinstance(ev, Turn):
                reply = assistant.ask(ev.text)

                def heard_first(first: list[float] = first, speaker: Speaker = speaker) -> None:
                    first.append(time.monotonic())
                    speaker.stop()  # measured: the rest of the answer would only take the clock's time

                speaker.say(reply.answer, on_first_audio=heard_first)
                break
        sink.close()
        if first:
            out.append((first[0] - (t0 + end_s)) * 1000)
    store.close()
    return out


def _reference_talk(folder: Path, clips: list[tuple[Path, float]], decoder: WhisperDecoder) -> list[float]:
    """Today's `agent talk` before this change: a final per utterance, free generation, text only."""
    store = AgentStore(folder / "ref", device_id="bench-ref")
    kb = KnowledgeBase(store.db)
    kb.ensure_indexed(SAMPLE_KB)
    llm = LocalLLM(LlmConfig(max_tokens=64))
    assistant = Assistant(store, llm, kb, config=AssistantConfig(intent_mode="rules", answer_mode="generate"))
    assistant.ask("warm up the model")
    out = []
    for path, end_s in clips:
        session = VoiceSession(StreamingRecognizer(SpeechConfig(), decoder=decoder))
        t0 = time.monotonic()
        for ev in session.events(file_chunks(path, realtime=True)):
            if isinstance(ev, Final):
                assistant.ask(ev.text)
                out.append((time.monotonic() - (t0 + end_s)) * 1000)
                break
    llm.close()
    store.close()
    return out


def _barge_in(folder: Path, runs: int = 10) -> list[float]:
    out = []
    text = ("Lockout/tagout - Steps: Step 1: Notify the control center and everyone affected that the equipment "
            "will be shut down. Step 2: Identify every energy source.")
    for i in range(runs):
        sink = WavSink(folder / f"barge{i}.wav", realtime=True)
        speaker = Speaker(sink, synth=espeak_synth)
        started = threading.Event()
        t = threading.Thread(target=speaker.say, args=(text,), kwargs={"on_first_audio": started.set})
        t.start()
        started.wait(30)
        time.sleep(0.2 + 0.05 * i)  # the technician cuts in at different moments
        barge = time.monotonic()
        speaker.stop()
        t.join(30)
        end = time.monotonic()
        out.append((end - barge) * 1000)
        sink.close()
    return out


def _product_speech() -> SpeechConfig:
    """Recognition as the resident agent configures it by default (lexicon prompt, corrections, the trade
    language model over its knowledge base's units)."""
    folder = Path(tempfile.mkdtemp())
    store = AgentStore(folder / "dev", device_id="bench-speech")
    kb = KnowledgeBase(store.db)
    kb.ensure_indexed(SAMPLE_KB)
    config = speech_config(AgentConfig(data_dir=folder), kb=kb)
    store.close()
    return config


def _asr(folder: Path) -> dict[str, float]:
    """A final result as the recogniser makes it (beam search, trade words put back, the trade language model
    choosing among the beam's hypotheses) with the lexicon and without it; the final before the language model
    (beam search and corrections only); and the former greedy final, for comparison."""
    product = _product_speech()
    plain = WhisperDecoder(SpeechConfig())
    biased = WhisperDecoder(product)
    without_lm = WhisperDecoder(replace(product, domain_text=()))
    errs: dict[str, list[float]] = {"plain": [], "biased": [], "without_lm": [], "greedy_biased": []}
    for i, text in enumerate(TRADE):
        audio = load16k(synth(text, folder / f"t{i}.wav"))
        errs["plain"].append(wer(text, plain.decode(audio, final=True).continuation))
        errs["biased"].append(wer(text, biased.decode(audio, final=True).continuation))
        errs["without_lm"].append(wer(text, without_lm.decode(audio, final=True).continuation))
        errs["greedy_biased"].append(wer(text, biased.decode(audio).continuation))
    return {k: round(statistics.mean(v), 3) for k, v in errs.items()} | {"utterances": len(TRADE)}


def _busy() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def footprint() -> None:
    """Child mode: a resident agent's memory without models and with them, and its cold start."""
    import psutil

    t0 = time.perf_counter()
    proc = psutil.Process()
    tmp = Path(tempfile.mkdtemp())
    store = AgentStore(tmp / "dev", device_id="fp")
    kb = KnowledgeBase(store.db)
    kb.ensure_indexed(SAMPLE_KB)
    without = proc.memory_info().rss / 1e6
    llm = LocalLLM(LlmConfig())
    assistant = Assistant(store, llm, kb)
    assistant.warm_up()
    decoder = WhisperDecoder(_product_speech())
    decoder.warm_up()
    llm.complete("<|im_start|>user\nOK<|im_end|>\n<|im_start|>assistant\n", max_tokens=2)
    ready = time.perf_counter() - t0
    cpu0 = proc.cpu_times()
    time.sleep(5)  # measuring what an idle, warm agent costs: five seconds of doing nothing
    cpu1 = proc.cpu_times()
    idle_cpu = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / 5 * 100
    print(json.dumps({"rss_without": without, "rss_with": proc.memory_info().rss / 1e6, "cold_start_s": ready,
                      "idle_cpu_percent": idle_cpu}))
    llm.close()


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="linecrew-bench-voice-"))
    clips = [_clip(tmp, q, i) for i, q in enumerate(QUESTIONS)]
    decoder = WhisperDecoder(_product_speech())
    decoder.warm_up()
    idle = _grounded_loop(tmp / "idle", clips, decoder)
    busy_proc = _busy()
    try:
        busy = _grounded_loop(tmp / "busy", clips, decoder)
    finally:
        busy_proc.kill()
    reference = _reference_talk(tmp, clips, decoder)
    barge = _barge_in(tmp)
    asr = _asr(tmp)
    fp = json.loads(subprocess.run([sys.executable, __file__, "--footprint"], capture_output=True, text=True,
                                   check=True, timeout=600).stdout.strip().splitlines()[-1])
    result = {
        "benchmark": "voice_loop",
        "questions": len(clips), "answered_idle": len(idle), "answered_busy": len(busy),
        "too_few_samples": len(idle) < 5,
        "eos_to_first_audio_p50_ms": pct(idle, 50), "eos_to_first_audio_p95_ms": pct(idle, 95),
        "eos_to_first_audio_busy_core_p50_ms": pct(busy, 50), "eos_to_first_audio_busy_core_p95_ms": pct(busy, 95),
        "goals": {"eos_to_first_audio_p95_ms": "<=1000 idle, <=1500 one core busy", "barge_in_p95_ms": "<=200",
                  "asr_wer_trade_terms": "<=0.15"},
        "barge_in_p95_ms": pct(barge, 95), "barge_in_p50_ms": pct(barge, 50),
        "asr_wer_trade_terms": asr["biased"], "asr_wer_trade_terms_without_biasing": asr["plain"],
        "asr_wer_trade_terms_without_language_model": asr["without_lm"],
        "asr_wer_trade_terms_former_greedy": asr["greedy_biased"], "asr_trade_utterances": asr["utterances"],
        "agent_rss_mb_without_models": round(fp["rss_without"], 1),
        "agent_rss_mb_with_models": round(fp["rss_with"], 1),
        "cold_start_s": round(fp["cold_start_s"], 2),
        "warm_model_cost": {"rss_mb": round(fp["rss_with"] - fp["rss_without"], 1),
                            "idle_cpu_percent": round(fp["idle_cpu_percent"], 2)},
        "reference": "agent talk before spoken answers: final per utterance, free generation, no audio",
        "reference_eos_to_answer_text_p50_ms": pct(reference, 50),
        "reference_eos_to_answer_text_p95_ms": pct(reference, 95),
        "reference_eos_to_first_audio_ms": None,  # it never spoke
    }
    print(json.dumps(result))


if __name__ == "__main__":
    if len(sys.argv) == 2 and sys.argv[1] == "--footprint":
        footprint()
    elif len(sys.argv) == 2 and sys.argv[1] == "--asr-only":  # the recognition figures alone
        print(json.dumps({"benchmark": "voice_loop", "only": "asr", **_asr(Path(tempfile.mkdtemp()))}))
    else:
        main()
