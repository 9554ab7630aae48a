"""Spoken answers: offline text to speech, sentence by sentence, that stops the moment the technician talks.

Speech comes from the OS's espeak-ng through pyttsx3 (its espeak driver), so nothing is fetched and it
runs on any board. Rules:

* The answer is split into sentences; the first is synthesized and playing before the second is made, so
  the technician hears the start of the answer as soon as it exists.
* ``stop()`` — the technician speaks, or presses the key — silences within one audio block (20 ms) and
  drops what was left; ``repeat`` says the last answer again.
* "louder"/"quieter" and "slower"/"faster" change the voice for what follows (``VoiceSettings``).
* Audio goes to a sink: the sound device (sounddevice) or a WAV file (tests, a record of what was said); a
  WAV sink can keep the device's clock (``realtime``) so barge-in is measured as it would be heard.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from linecrew.agent.commands import REPEAT, match
from linecrew.agent.errors import AudioError

log = logging.getLogger(__name__)

BLOCK_S = 0.02
_SENTENCE = re.compile(r"(?<=[.!?:])\s+(?=[A-Z0-9\"'(])")
_COMMANDS = {
    "stop": re.compile(r"^(stop|quiet|shut up|enough|cancel that|be quiet|hold on)\b"),
    "repeat": re.compile(rf"^{REPEAT}\b"),
    "louder": re.compile(r"^(louder|speak up|volume up|turn it up)\b"),
    "quieter": re.compile(r"^(quieter|softer|volume down|turn it down)\b"),
    "slower": re.compile(r"^(slower|slow down|more slowly)\b"),
    "faster": re.compile(r"^(faster|speed up|quicker)\b"),
}


def voice_command(text: str) -> str | None:
    """"stop", "repeat", "louder", "quieter", "slower", "faster" — or None for anything longer or else."""
    return match(text, _COMMANDS, max_words=4)


_UNITS = [(r"(\d)\s*kVA\b", r"\1 K V A"), (r"(\d)\s*kV\b", r"\1 kilovolts"), (r"(\d)\s*V\b", r"\1 volts"),
          (r"(\d)\s*m\b", r"\1 meters"), (r"(\d)\s*ft\b", r"\1 feet"), (r"\b(\d+)T\b", r"\1 T"),
          (r"\b2/0\b", "two aught"), (r"\b(\d+)/(\d+)\b", r"\1 \2"), (r"\bLOTO\b", "lockout tagout"),
          (r"\bPCB\b", "P C B"), (r"\bAED\b", "A E D"), (r"\bCPR\b", "C P R"), (r"\s+-\s+", ". ")]


def spoken_form(text: str) -> str:
    """The answer as it should sound: units and trade abbreviations said in words ("50 kVA" -> "50 K V A")."""
    for pattern, repl in _UNITS:
        text = re.sub(pattern, repl, text)
    return text


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(" ".join(text.split())) if s.strip()]


@dataclass(frozen=True)
class VoiceSettings:
    rate_wpm: int = 165
    volume: float = 1.0

    def adjusted(self, command: str) -> VoiceSettings:
        if command == "louder":
            return replace(self, volume=min(1.0, self.volume + 0.25))
        if command == "quieter":
            return replace(self, volume=max(0.25, self.volume - 0.25))
        if command == "slower":
            return replace(self, rate_wpm=max(90, self.rate_wpm - 25))
        if command == "faster":
            return replace(self, rate_wpm=min(260, self.rate_wpm + 25))
        return self


# ------------------------------------------------------------------------------------------ synthesis
Synth = Callable[[str, VoiceSettings], tuple[np.ndarray, int]]
_engine_lock = threading.Lock()


def espeak_synth(text: str, settings: VoiceSettings) -> tuple[np.ndarray, int]:
    """One sentence to float32 samples with espeak-ng (pyttsx3); pyttsx3 keeps one engine per process."""
    try:
        import pyttsx3
    except ImportError as e:
        raise AudioError("speech output needs pyttsx3 and espeak-ng (pip install '.[device]'; apt install "
                         "espeak-ng)") from e
    with _engine_lock, tempfile.TemporaryDirectory(prefix="linecrew-tts-") as tmp:
        out = Path(tmp) / "s.wav"
        try:
            engine = pyttsx3.init("espeak")
            _quiet_driver()
            engine.setProperty("rate", settings.rate_wpm)
            engine.save_to_file(text, str(out))
            engine.runAndWait()
        except (RuntimeError, OSError) as e:
            raise AudioError(f"speech synthesis failed: {e}") from e
        if not out.exists():  # pyttsx3's espeak driver now and then ends its loop before it writes (its issue #219)
            log.warning("pyttsx3 wrote no audio for a sentence; synthesizing it with the espeak-ng command")
            _espeak_command(text, settings, out)
        if not out.exists():
            raise AudioError("speech synthesis wrote nothing (is espeak-ng installed?)")
        with wave.open(str(out), "rb") as w:
            rate, frames = w.getframerate(), w.readframes(w.getnframes())
    samples = np.frombuffer(frames, dtype=np.int16).astype(np.float32) / 32768.0
    return samples * settings.volume if settings.volume < 1.0 else samples, rate


def _quiet_driver() -> None:
    """pyttsx3's espeak driver prints "Audio saved to ..." to standard output from espeak's callback, and now and then
    after ``runAndWait`` has returned (its issue #219: the loop ends before the callback), so no redirect around the
    call can hold it: it landed in ``agent talk --json`` output. The driver module's own ``print`` goes to the debug
    log instead (a module's globals come before the builtins), for every call, early or late."""
    driver = sys.modules.get("pyttsx3.drivers.espeak")
    if driver is not None and getattr(driver, "print", None) is not _driver_print:
        setattr(driver, "print", _driver_print)  # noqa: B010 (the name is a builtin's)


def _driver_print(*args: object, **_: object) -> None:
    log.debug("pyttsx3: %s", " ".join(str(a) for a in args))


def _espeak_command(text: str, settings: VoiceSettings, out: Path) -> None:
    """The same voice from the espeak-ng program, into ``out`` (22.05 kHz WAV, as the driver writes); without
    the program, nothing is written."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        return
    try:
        subprocess.run([exe, "-s", str(settings.rate_wpm), "-w", str(out), "--", text], check=True,
                       capture_output=True, timeout=60)
    except (subprocess.SubprocessError, OSError) as e:
        raise AudioError(f"speech synthesis failed: {e}") from e


# ------------------------------------------------------------------------------------------ sinks
class AudioSink(Protocol):
    def write(self, samples: np.ndarray, rate: int) -> None: ...

    def close(self) -> None: ...


class WavSink:
    """16-bit mono WAV, written block by block; ``realtime`` keeps a sound card's pace (for barge-in)."""

    def __init__(self, path: Path, *, realtime: bool = False) -> None:
        self.path = Path(path)
        self.realtime = realtime
        self._wav: Any = None
        self._rate = 0
        self._clock = 0.0
        self.first_write: float | None = None
        self.last_write: float | None = None

    def write(self, samples: np.ndarray, rate: int) -> None:
        if self._wav is None:
            self._wav = wave.open(str(self.path), "wb")  # noqa: SIM115 - open across writes, closed by close()
            self._wav.setnchannels(1)
            self._wav.setsampwidth(2)
            self._wav.setframerate(rate)
            self._rate, self._clock = rate, time.monotonic()
        if rate != self._rate:
            raise AudioError(f"one WAV file holds one rate ({self._rate} Hz), got {rate} Hz")
        now = time.monotonic()
        self.first_write = self.first_write or now
        self.last_write = now
        self._wav.writeframes((np.clip(samples, -1, 1) * 32767).astype(np.int16).tobytes())
        if self.realtime:  # a sound card takes samples at its rate: wait as it would
            self._clock += len(samples) / rate
            delay = self._clock - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def close(self) -> None:
        if self._wav is not None:
            self._wav.close()
            self._wav = None


class DeviceSink:
    """The sound device (sounddevice), opened on first audio at the synthesizer's rate."""

    def __init__(self, device: int | str | None = None) -> None:
        self.device = device
        self._stream: Any = None

    def write(self, samples: np.ndarray, rate: int) -> None:
        try:
            import sounddevice as sd
        except OSError as e:  # the PortAudio library itself is missing
            raise AudioError(f"no sound output: {e}") from e
        try:
            if self._stream is None:
                self._stream = sd.OutputStream(samplerate=rate, channels=1, dtype="float32", device=self.device)
                self._stream.start()
            self._stream.write(samples.astype(np.float32).reshape(-1, 1))
        except (sd.PortAudioError, ValueError) as e:
            raise AudioError(f"no sound output: {e}") from e

    def close(self) -> None:
        if self._stream is not None:
            self._stream.stop()
            self._stream.close()
            self._stream = None


# ------------------------------------------------------------------------------------------ speaker
def speaker_for(output: str, *, realtime: bool = False) -> Speaker | None:
    """``"none"``: no speech; ``"device"``: the sound device; anything else: a WAV file at that path."""
    if output == "none":
        return None
    return Speaker(DeviceSink() if output == "device" else WavSink(Path(output), realtime=realtime))


@dataclass(frozen=True)
class Spoken:
    sentences: int  # how many were spoken (whole or in part)
    of: int
    stopped: bool
    first_audio_ms: float | None  # from say() to the first sample handed to the sink
    audio_s: float


class Speaker:
    """Says answers into a sink, sentence by sentence; ``stop()`` from any thread is barge-in."""

    def __init__(self, sink: AudioSink, *, settings: VoiceSettings | None = None, synth: Synth = espeak_synth) -> None:
        self.sink = sink
        self.settings = settings or VoiceSettings()
        self.synth = synth
        self.last_text = ""
        self._stop = threading.Event()
        self.speaking = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def command(self, name: str) -> Spoken | None:
        """Apply a voice command; "repeat" says the last answer again."""
        if name == "stop":
            self.stop()
            return None
        if name == "repeat":
            return self.say(self.last_text) if self.last_text else None
        self.settings = self.settings.adjusted(name)
        return None

    def say(self, text: str, *, on_first_audio: Callable[[], None] | None = None) -> Spoken:
        started = time.perf_counter()
        self._stop.clear()
        self.last_text = text
        parts = sentences(spoken_form(text))
        first: float | None = None
        spoken, audio_s = 0, 0.0
        self.speaking.set()
        try:
            for sentence in parts:
                if self._stop.is_set():
                    break
                samples, rate = self.synth(sentence, self.settings)
                spoken += 1
                block = max(1, int(rate * BLOCK_S))
                for i in range(0, len(samples), block):
                    if self._stop.is_set():
                        break
                    if first is None:
                        first = (time.perf_counter() - started) * 1000
                        if on_first_audio is not None:
                            on_first_audio()
                    self.sink.write(samples[i:i + block], rate)
                    audio_s += min(block, len(samples) - i) / rate
        finally:
            self.speaking.clear()
        return Spoken(spoken, len(parts), self._stop.is_set(), None if first is None else round(first, 1),
                      round(audio_s, 3))
