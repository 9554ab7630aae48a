"""Speech test material without a microphone: espeak-ng utterances mixed with silence."""

from __future__ import annotations

import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np

from linecrew.agent.audio import SAMPLE_RATE, file_chunks

SENTENCES = [
    "The lock and tag are in place on feeder twelve.",
    "The transformer oil level is low.",
    "I need two fuse cutouts and one insulator.",
    "Breaker four tripped again after the storm.",
    "Replace the meter at the blue house.",
    "The crew is on site and starting work now.",
]


def have_espeak() -> bool:
    return shutil.which("espeak-ng") is not None


def synth(text: str, path: Path, *, speed: int = 150) -> Path:
    """espeak-ng writes 22.05 kHz mono WAV: a rate the pipeline must resample."""
    subprocess.run(["espeak-ng", "-s", str(speed), "-w", str(path), text], check=True, capture_output=True)
    return path


def load16k(path: Path) -> np.ndarray:
    return np.concatenate([c.samples for c in file_chunks(path)])


def write_wav(path: Path, audio: np.ndarray, rate: int = SAMPLE_RATE) -> Path:
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


def mixed(folder: Path, sentences: list[str], *, gap_s: float = 1.5, lead_s: float = 1.0) -> tuple[Path, list[float]]:
    """One 16 kHz WAV: silence, utterance, silence, ...; returns it and each utterance's end time (s)."""
    parts = [np.zeros(int(lead_s * SAMPLE_RATE), np.float32)]
    ends: list[float] = []
    t = lead_s
    for i, s in enumerate(sentences):
        a = load16k(synth(s, folder / f"u{i}.wav"))
        parts.append(a)
        t += len(a) / SAMPLE_RATE
        ends.append(t)
        parts.append(np.zeros(int(gap_s * SAMPLE_RATE), np.float32))
        t += gap_s
    return write_wav(folder / "mixed.wav", np.concatenate(parts)), ends


_NUMBER_WORDS = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty",
]
_NUMBERS = {str(i): w for i, w in enumerate(_NUMBER_WORDS)}


def normalize(text: str) -> str:
    """Lowercase, no punctuation, small numbers as words (espeak says 'twelve', Whisper may write 12)."""
    import re

    words = re.sub(r"[^\w\s']", " ", text.lower().replace("-", " ")).split()
    return " ".join(_NUMBERS.get(w, w) for w in words)


def wer(reference: str, hypothesis: str) -> float:
    import jiwer

    ref, hyp = normalize(reference), normalize(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    return float(jiwer.wer(ref, hyp))
