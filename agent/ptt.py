"""Push-to-talk and a wake phrase: nothing said outside a turn the technician opened becomes a request.

* Push-to-talk (the default for the microphone): audio counts only while the key is held — a rugged
  handheld's side key read from its Linux input device (python-evdev, ``ptt_device``/``ptt_key``), or the
  terminal's Enter key (press to talk, press again to stop) where there is none. Outside, the audio is
  replaced by silence, so the recognizer's clock and the turn-taking stay the same.
* Key presses can be injected (files, tests): ``--keys 1.0-3.5,6-8`` holds the key over those seconds.
* Wake phrase (``listen = "wake"``): a turn counts only when it begins with the phrase ("hey linecrew, ...");
  the phrase is matched on the transcript, word by word, forgiving what recognizers do to names.
"""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from linecrew.agent.audio import AudioChunk
from linecrew.agent.errors import AudioError
from linecrew.agent.speech import SAMPLE_RATE


@dataclass(frozen=True)
class Window:
    start_s: float
    end_s: float


def parse_windows(spec: str) -> list[Window]:
    """``"1.0-3.5,6-8"`` -> key held from 1.0 to 3.5 s and from 6 to 8 s of audio."""
    out = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*-\s*(\d+(?:\.\d+)?)", part)
        if not m or float(m.group(1)) >= float(m.group(2)):
            raise AudioError(f"key window {part!r}: write START-END in seconds, e.g. 1.0-3.5")
        out.append(Window(float(m.group(1)), float(m.group(2))))
    return out


def gate_windows(chunks: Iterable[AudioChunk], windows: list[Window]) -> Iterator[AudioChunk]:
    """Audio inside the windows passes; outside it is silence (same length, same clock)."""
    t = 0.0
    for c in chunks:
        n = len(c.samples)
        mid = t + n / SAMPLE_RATE / 2
        held = any(w.start_s <= mid < w.end_s for w in windows)
        yield c if held else replace(c, samples=np.zeros_like(c.samples))
        t += n / SAMPLE_RATE


class Key:
    """A push-to-talk key's state, set from any thread (evdev reader, terminal, a test)."""

    def __init__(self) -> None:
        self.held = threading.Event()

    def press(self) -> None:
        self.held.set()

    def release(self) -> None:
        self.held.clear()


def gate_key(chunks: Iterable[AudioChunk], key: Key) -> Iterator[AudioChunk]:
    """Live audio passes while the key is held."""
    for c in chunks:
        yield c if key.held.is_set() else replace(c, samples=np.zeros_like(c.samples))


def evdev_key(device: str, key_name: str, key: Key) -> threading.Thread:
    """Follow a Linux input device's key (e.g. /dev/input/event3, KEY_VOLUMEUP) into ``key``."""
    try:
        import evdev  # optional: pip install evdev (needs the kernel headers to build)
    except ImportError as e:
        raise AudioError("push-to-talk on an input device needs python-evdev: pip install evdev") from e
    try:
        dev: Any = evdev.InputDevice(device)
        code = evdev.ecodes.ecodes[key_name]
    except (OSError, KeyError) as e:
        raise AudioError(f"push-to-talk key {key_name} on {device}: {e}") from e

    def follow() -> None:
        for ev in dev.read_loop():
            if ev.type == evdev.ecodes.EV_KEY and ev.code == code:
                key.press() if ev.value else key.release()  # 1 down, 2 repeat, 0 up

    t = threading.Thread(target=follow, name="ptt-evdev", daemon=True)
    t.start()
    return t


def terminal_key(key: Key) -> threading.Thread:
    """Enter toggles talking (where there is no side key): press to talk, press again to stop."""
    def follow() -> None:
        for _ in sys.stdin:
            key.release() if key.held.is_set() else key.press()
            print("[talking]" if key.held.is_set() else "[not listening]", file=sys.stderr, flush=True)

    t = threading.Thread(target=follow, name="ptt-terminal", daemon=True)
    t.start()
    return t


# ------------------------------------------------------------------------------------------ wake phrase
def _norm(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]", " ", text.lower()).split()


def strip_wake(text: str, phrase: str) -> str | None:
    """The request after the wake phrase, or None when the turn does not open with it. Each phrase word
    matches a heard word that starts the same (recognizers spell names their own way: "line crew")."""
    words, want = _norm(text), _norm(phrase)
    joined = "".join(want)
    n = next((k for k in (len(want), len(want) + 1) if "".join(words[:k]) == joined), None)  # "line crew"
    if n is None and len(words) >= len(want) and all(h[:3] == w[:3] for h, w in zip(words, want, strict=False)):
        n = len(want)  # "hey lincrew": close enough, word by word
    if n is not None:
        rest = text.split(None, n)
        return rest[n].lstrip(" ,.") if len(rest) > n else ""
    return None
