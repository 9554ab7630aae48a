"""Audio sources behind one interface: an iterator of :class:`AudioChunk` (16 kHz mono float32).

Sources: an audio file (WAV, FLAC, MP3, anything FFmpeg reads, via PyAV; paced in real time or as
fast as possible), raw PCM on a byte stream (stdin), and a microphone through ``sounddevice`` at its
native rate. Every source resamples to 16 kHz mono and decodes incrementally, so an hour of audio
never sits in memory. Each chunk carries the monotonic time its last sample was captured: that is
what end-of-speech latency is measured from.
"""

from __future__ import annotations

import logging
import queue
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import av
import numpy as np

from linecrew.agent.errors import AudioError, NoMicrophoneError

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
CHUNK_SAMPLES = 512  # 32 ms: one VAD window, so end of speech is seen within 32 ms


@dataclass(frozen=True)
class AudioChunk:
    samples: np.ndarray  # float32, mono, 16 kHz, in [-1, 1]
    captured_at: float  # time.monotonic() when the last sample was captured


class _Rechunker:
    """Turns arbitrary-size float32 blocks into fixed ``CHUNK_SAMPLES`` chunks."""

    def __init__(self) -> None:
        self._buf = np.zeros(0, dtype=np.float32)

    def push(self, block: np.ndarray) -> Iterator[np.ndarray]:
        self._buf = np.concatenate([self._buf, block.astype(np.float32, copy=False)])
        while len(self._buf) >= CHUNK_SAMPLES:
            out, self._buf = self._buf[:CHUNK_SAMPLES], self._buf[CHUNK_SAMPLES:]
            yield out

    def flush(self) -> Iterator[np.ndarray]:
        if len(self._buf):
            out, self._buf = self._buf, np.zeros(0, dtype=np.float32)
            yield out


class _Pacer:
    """Real-time pacing: chunk ``n`` is released when its last sample would have been spoken."""

    def __init__(self, realtime: bool) -> None:
        self.realtime = realtime
        self.origin = time.monotonic()
        self.samples = 0

    def stamp(self, n: int) -> float:
        self.samples += n
        if not self.realtime:
            return time.monotonic()
        due = self.origin + self.samples / SAMPLE_RATE
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        return due


def _resampler() -> av.AudioResampler:
    return av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)


def _frames_to_float(frames: list[Any]) -> np.ndarray:
    if not frames:
        return np.zeros(0, dtype=np.float32)
    arr = np.concatenate([f.to_ndarray().reshape(-1) for f in frames])
    return arr.astype(np.float32) / 32768.0


def file_chunks(path: Path | str, *, realtime: bool = False) -> Iterator[AudioChunk]:
    """Decode a file incrementally. A corrupt file raises :class:`AudioError` before any chunk; a
    truncated one yields what decodes, then raises :class:`AudioError` saying where it stopped."""
    path = Path(path)
    if not path.exists():
        raise AudioError(f"audio file {path} not found")
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise AudioError(f"cannot read audio file {path}: {e}") from e
    with container:
        if not container.streams.audio:
            raise AudioError(f"{path} has no audio stream")
        stream = container.streams.audio[0]
        resampler, chunker, pacer = _resampler(), _Rechunker(), _Pacer(realtime)
        try:
            for frame in container.decode(stream):
                frame.pts = None
                for c in chunker.push(_frames_to_float(resampler.resample(frame))):
                    yield AudioChunk(c, pacer.stamp(len(c)))
        except (av.error.FFmpegError, ValueError) as e:
            done = pacer.samples / SAMPLE_RATE
            yield from _tail(chunker, resampler, pacer)
            raise AudioError(f"{path} is corrupt or truncated after {done:.1f} s of audio: {e}") from e
        yield from _tail(chunker, resampler, pacer)


def _tail(chunker: _Rechunker, resampler: av.AudioResampler, pacer: _Pacer) -> Iterator[AudioChunk]:
    try:
        rest = _frames_to_float(resampler.resample(None))
    except (av.error.FFmpegError, ValueError):
        rest = np.zeros(0, dtype=np.float32)
    for c in [*chunker.push(rest), *chunker.flush()]:
        yield AudioChunk(c, pacer.stamp(len(c)))


_PCM_FORMATS: dict[str, tuple[Any, float]] = {
    "s16le": (np.dtype("<i2"), 32768.0),
    "s32le": (np.dtype("<i4"), 2147483648.0),
    "f32le": (np.dtype("<f4"), 1.0),
}


def pcm_chunks(stream: BinaryIO, *, rate: int = SAMPLE_RATE, channels: int = 1, sample_format: str = "s16le",
               realtime: bool = False, block_bytes: int = 8192) -> Iterator[AudioChunk]:
    """Raw interleaved PCM from a byte stream (e.g. ``arecord -f S16_LE -r 16000 | linecrew ...``)."""
    if sample_format not in _PCM_FORMATS:
        raise AudioError(f"unsupported PCM format {sample_format!r}; use one of {sorted(_PCM_FORMATS)}")
    if not 8000 <= rate <= 192_000 or not 1 <= channels <= 8:
        raise AudioError(f"implausible PCM layout: {rate} Hz, {channels} channel(s)")
    dtype, scale = _PCM_FORMATS[sample_format]
    frame_bytes = dtype.itemsize * channels
    to16k = _RateConverter(rate)
    chunker, pacer = _Rechunker(), _Pacer(realtime)
    pending = b""
    while True:
        data = stream.read(block_bytes)
        if not data:
            break
        pending += data
        usable = len(pending) - len(pending) % frame_bytes
        raw, pending = pending[:usable], pending[usable:]
        x = np.frombuffer(raw, dtype=dtype).astype(np.float32) / np.float32(scale)
        mono = x.reshape(-1, channels).mean(axis=1)
        for c in chunker.push(to16k.convert(mono)):
            yield AudioChunk(c, pacer.stamp(len(c)))
    for c in [*chunker.push(to16k.convert(None)), *chunker.flush()]:
        yield AudioChunk(c, pacer.stamp(len(c)))


class _RateConverter:
    """Mono float32 at any rate → 16 kHz, through FFmpeg's resampler (PyAV)."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._r = None if rate == SAMPLE_RATE else _resampler()

    def convert(self, mono: np.ndarray | None) -> np.ndarray:
        if self._r is None:
            return np.zeros(0, np.float32) if mono is None else mono
        if mono is None:
            return _frames_to_float(self._r.resample(None))
        pcm = (np.clip(mono, -1, 1) * 32767).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = self.rate
        return _frames_to_float(self._r.resample(frame))


def mic_chunks(device: int | str | None = None, *, max_backlog_s: float = 30.0) -> Iterator[AudioChunk]:
    """Capture from a microphone at its native rate; resampled to 16 kHz. If processing falls more than
    ``max_backlog_s`` behind, the oldest audio is dropped (with a warning) so memory stays bounded."""
    sd = _sounddevice()
    try:
        info = sd.query_devices(device, "input")
    except (ValueError, sd.PortAudioError) as e:
        found = [f"{i}: {d['name']}" for i, d in enumerate(sd.query_devices())]
        raise NoMicrophoneError(
            f"no microphone{'' if device is None else f' {device!r}'}: {e}. "
            f"Devices found: {', '.join(found) if found else 'none'}"
        ) from e
    rate = int(info["default_samplerate"])
    blocks: queue.Queue[tuple[np.ndarray, float]] = queue.Queue(maxsize=max(1, int(max_backlog_s * rate / 1024)))

    def callback(indata: np.ndarray, frames: int, t: Any, status: Any) -> None:
        item = (indata[:, 0].copy(), time.monotonic())
        try:
            blocks.put_nowait(item)
        except queue.Full:
            blocks.get_nowait()
            blocks.put_nowait(item)
            log.warning("audio backlog over %.0f s; dropped the oldest block", max_backlog_s)

    conv, chunker = _RateConverter(rate), _Rechunker()
    try:
        stream = sd.InputStream(device=device, channels=1, samplerate=rate, dtype="float32", blocksize=1024,
                                callback=callback)
    except sd.PortAudioError as e:
        raise NoMicrophoneError(f"cannot open microphone: {e}") from e
    with stream:
        while True:
            block, at = blocks.get()
            for c in chunker.push(conv.convert(block)):
                yield AudioChunk(c, at)


def _sounddevice() -> Any:
    try:
        import sounddevice as sd
    except OSError as e:  # PortAudio library missing
        raise NoMicrophoneError(f"audio capture unavailable (PortAudio not found: {e})") from e
    return sd


def open_source(spec: str, *, realtime: bool = False, pcm_rate: int = SAMPLE_RATE, pcm_channels: int = 1,
                pcm_format: str = "s16le") -> Iterator[AudioChunk]:
    """``-`` means raw PCM on stdin; anything else is a file path."""
    if spec == "-":
        return pcm_chunks(sys.stdin.buffer, rate=pcm_rate, channels=pcm_channels, sample_format=pcm_format,
                          realtime=realtime)
    return file_chunks(spec, realtime=realtime)
