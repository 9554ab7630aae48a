"""The voice loop: turns in, answers out loud, shared by ``agent talk`` and the resident agent.

Per turn (``voice.VoiceSession.turns``): a wake phrase is checked (``listen = "wake"``), a short voice command
("stop", "repeat", "louder", "slower") goes to the speaker, anything else to the assistant, and the answer is
spoken. The recogniser's other readings of the turn go with it (``Turn.alternatives``): the assistant tries them
only when the first has no procedure. Barge-in: the moment the technician speaks again (the first partial of a new
utterance) the speaker stops. Every partial and turn is also handed to ``on_event`` (the device screen's live
transcript).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from linecrew.agent.audio import AudioChunk
from linecrew.agent.ptt import strip_wake
from linecrew.agent.speech import Partial
from linecrew.agent.tts import Speaker, voice_command
from linecrew.agent.voice import Turn, VoiceSession


@dataclass(frozen=True)
class Heard:
    """One handled turn: what was asked (without the wake phrase), and the reply or the command."""

    turn: Turn
    text: str
    reply: Any = None  # agent.assistant.Reply
    command: str | None = None


class VoiceLoop:
    def __init__(self, session: VoiceSession, ask: Callable[..., Any], *, speaker: Speaker | None = None,
                 wake_phrase: str | None = None, gap_s: float = 1.2, background_speech: bool = False,
                 on_event: Callable[[Partial | Turn], None] | None = None) -> None:
        self.session = session
        self.ask = ask
        self.speaker = speaker
        self.wake_phrase = wake_phrase
        self.gap_s = gap_s
        self.background_speech = background_speech
        self.on_event = on_event

    def run(self, chunks: Iterable[AudioChunk]) -> Iterator[Heard]:
        for ev in self.session.turns(chunks, gap_s=self.gap_s):
            if self.on_event is not None:
                self.on_event(ev)
            if not isinstance(ev, Turn):
                if self.speaker is not None and self.speaker.speaking.is_set():
                    self.speaker.stop()  # barge-in: the technician talks over the answer
                continue
            text, alternatives = ev.text, ev.alternatives
            command = voice_command(text)  # "stop", "repeat", "slower" work at any time, wake phrase or not
            if self.wake_phrase and command is None:
                request = strip_wake(text, self.wake_phrase)
                if not request:
                    continue  # not addressed to the device: a remark to the crew stays a remark
                text = request
                alternatives = tuple(a for a in (strip_wake(x, self.wake_phrase) for x in alternatives) if a)
                command = voice_command(text)
            if command is not None:
                if self.speaker is not None:
                    self.speaker.command(command)
                yield Heard(ev, text, command=command)
                continue
            reply = self.ask(text, alternatives=alternatives) if alternatives else self.ask(text)
            if self.speaker is not None:
                self._say(reply.answer)
            yield Heard(ev, text, reply=reply)

    def _say(self, text: str) -> None:
        assert self.speaker is not None
        if not self.background_speech:
            self.speaker.say(text)
            return
        self.speaker.stop()
        threading.Thread(target=self.speaker.say, args=(text,), name="speak", daemon=True).start()
