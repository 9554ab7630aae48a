"""Trade words put back into a transcript: "re closer" → "recloser", "rounding clamps" → "grounding clamps".

Whisper tiny hears trade words it rarely saw as near-misses. Biasing the decoder (its previous-text prompt,
:func:`linecrew.agent.speech.vocabulary_prompt`) fixes some; this pass fixes more: every run of one to
``len(phrase) + 1`` words whose letters are close to a vocabulary phrase's letters (RapidFuzz's normalised
Indel similarity, spaces and hyphens ignored) is replaced by the phrase, best matches first, never two
overlapping; a phrase already there (or inflected: "re-closers", "locks out") claims its words, and a single
everyday word (one token of Whisper's vocabulary, "reuse") must be closer still. The threshold (90) was chosen on
``tests/data/speech/trade_dev.txt`` (audio) and on the tune part of the labelled questions and intent
utterances (text that must come back unchanged: none changes at 90).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

_TOKEN = re.compile(r"\S+")
_LETTERS = re.compile(r"[^a-z0-9]")


def _key(text: str) -> str:
    return _LETTERS.sub("", text.lower())


_INFLECTION = re.compile(r"(?<=\w{3})(es|s|ed|ing)$")


def _uninflected_key(text: str) -> str:
    """The key with each word's inflection taken off: "locks out" -> "lockout", a verb form of "lockout"."""
    return _key(" ".join(_INFLECTION.sub("", w) for w in text.lower().split()))


@dataclass(frozen=True)
class _Phrase:
    text: str
    key: str
    words: int


class VocabularyCorrector:
    def __init__(self, phrases: Iterable[str], *, threshold: float = 90.0, min_chars: int = 5,
                 common: Callable[[str], bool] | None = None, common_threshold: float = 95.0) -> None:
        """``common(word)``: whether a word is everyday English (for Whisper: one token of its vocabulary); a
        single common word is only replaced when it is closer still (``common_threshold``)."""
        self.threshold, self.min_chars = threshold, min_chars
        self.common, self.common_threshold = common, common_threshold
        self.phrases = [_Phrase(p, _key(p), len(p.split())) for p in dict.fromkeys(phrases) if len(_key(p)) >= 3]
        self._max_words = max((p.words for p in self.phrases), default=0) + 1

    def correct(self, text: str) -> str:
        if not self.phrases or not text.strip():
            return text
        from rapidfuzz import fuzz

        tokens = [(m.start(), m.end(), m.group()) for m in _TOKEN.finditer(text)]
        found: list[tuple[float, int, int, _Phrase]] = []
        for i in range(len(tokens)):
            for n in range(1, self._max_words + 1):
                if i + n > len(tokens):
                    break
                window = " ".join(t[2] for t in tokens[i:i + n])
                key = _key(window)
                if len(key) < self.min_chars:
                    continue
                for p in self.phrases:
                    if abs(len(key) - len(p.key)) > max(2, len(p.key) // 3) or n > p.words + 1:
                        continue
                    near = (key.startswith(p.key) or p.key.startswith(key)) and abs(len(key) - len(p.key)) <= 2
                    inflected = near or _uninflected_key(window) == p.key
                    resplit = ("-" in window and "-" not in p.text) or n > p.words >= 2
                    if key == p.key and window.strip(".,;:!?").lower() != p.text.lower() and resplit:
                        found.append((100.0, i, n, p))  # the phrase split or joined differently: "re-closer"
                        continue
                    if key == p.key or inflected:
                        found.append((101.0, i, n, p))  # already right (or inflected: plural, -ed): claims it
                        continue
                    score = fuzz.ratio(key, p.key)
                    everyday = n == 1 and self.common is not None and self.common(window.strip(".,;:!?"))
                    if score >= (self.common_threshold if everyday else self.threshold):
                        found.append((score, i, n, p))
        taken: set[int] = set()
        chosen: list[tuple[int, int, _Phrase]] = []
        for score, i, n, p in sorted(found, key=lambda f: (-f[0], f[2])):
            span = set(range(i, i + n))
            if span & taken:
                continue
            taken |= span
            if score <= 100.0:
                chosen.append((i, n, p))
        out, at = [], 0
        for i, n, p in sorted(chosen, key=lambda c: c[0]):
            start, end = tokens[i][0], tokens[i + n - 1][1]
            trail = re.search(r"[^\w'-]+$", tokens[i + n - 1][2])
            out.append(text[at:start] + p.text + (trail.group() if trail else ""))
            at = end
        out.append(text[at:])
        return "".join(out)
