"""What reaches the device is said aloud the moment it arrives: a chime, then the text.

An expert's answer, a deferred task's result or a new assignment is applied in the inbox transaction;
``DeviceSync`` then calls ``notify`` (after the commit), and the announcer's own thread speaks every unseen
answer and the new job, marks them seen, and goes back to waiting. Nothing polls: no arrival, no work. A
missing sound device is logged once; the answers stay unseen for the screen and ``agent inbox``.
"""

from __future__ import annotations

import logging
import math
import threading
from typing import Any

import numpy as np

from linecrew.agent.errors import AudioError
from linecrew.agent.store import AgentStore
from linecrew.agent.tts import Speaker

log = logging.getLogger(__name__)


def chime(rate: int = 22050) -> np.ndarray:
    """Two short rising tones (0.3 s): "something arrived", distinct from speech."""
    out = []
    for freq in (880.0, 1320.0):
        t = np.arange(int(rate * 0.12)) / rate
        env = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01)
        out += [0.3 * env * np.sin(2 * math.pi * freq * t), np.zeros(int(rate * 0.03))]
    return np.concatenate(out).astype(np.float32)


def _words(answer: dict[str, Any]) -> str:
    if answer["kind"] == "expert":
        return f"An answer from {answer['source'] or 'an expert'}: {answer['text']}"
    return f"A result from the server: {answer['text']}"


class Announcer:
    def __init__(self, store: AgentStore, speaker: Speaker) -> None:
        self.store = store
        self.speaker = speaker
        self.spoken = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._job: str | None = self._job_id()
        self._warned = False

    def _job_id(self) -> str | None:
        job = self.store.get("current_job")
        return str(job["job_id"]) if isinstance(job, dict) and job.get("job_id") else None

    def notify(self) -> None:
        """Something was applied from the server (called after the commit)."""
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="announcer", daemon=True)
        self._thread.start()
        self.notify()  # what arrived while the agent was off

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.announce()
            except AudioError as e:
                if not self._warned:
                    log.warning("cannot speak arrivals: %s (they stay on the screen and in agent inbox)", e)
                    self._warned = True
            except Exception:  # one failed announcement never stops the next
                log.exception("announcement failed")

    def announce(self) -> int:
        """Speak every unseen answer and a changed job; returns how many were said."""
        said = 0
        for a in self.store.answers(unseen_only=True):
            self._say(_words(a))
            self.store.mark_seen([str(a["id"])])
            said += 1
        job = self.store.get("current_job")
        job_id = self._job_id()
        if job_id and job_id != self._job and isinstance(job, dict):
            where = f" at {job['location']}" if job.get("location") else ""
            self._say(f"New job {job_id}: {job.get('title') or ''}{where}.")
            said += 1
        self._job = job_id
        self.spoken += said
        return said

    def _say(self, text: str) -> None:
        self.speaker.stop()  # an arrival interrupts a long answer; it can be repeated
        self.speaker.sink.write(chime(), 22050)
        self.speaker.say(text)
