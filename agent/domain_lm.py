"""A language model of the trade's own sentences, to choose among the recogniser's best guesses.

Whisper tiny hears "bucket" as "market" and "phase B" as "phase, speed": words an English model finds likely
and a lineworker never says. Beam search already keeps the right sentence among its five best for most of
those (on ``tests/data/speech/trade_dev.txt`` the best of five has half the word errors of the first); what
picks it is a model of how the trade talks. This one is a word trigram model with interpolated Kneser-Ney
smoothing (NLTK's ``KneserNeyInterpolated``) fitted on the device's procedures, the trade lexicon (field
phrases, procedure phrases, vocabulary) and the shipped labelled utterances (tune part). The recogniser adds
``weight`` x its log-probability to each hypothesis's own score (``agent.speech``). Fitting takes about 0.1 s;
scores are memoised per n-gram, so the five hypotheses of one utterance (mostly the same words) cost about
25 ms together.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from linecrew.agent.lexicon import Lexicon

ORDER = 3
_WORD = re.compile(r"[a-z0-9']+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n")
_FLOOR = 1e-6  # the smallest probability a word gets (an unseen word in an unseen context)


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


class DomainLanguageModel:
    def __init__(self, sentences: Iterable[str], *, order: int = ORDER) -> None:
        from nltk.lm import KneserNeyInterpolated
        from nltk.lm.preprocessing import padded_everygram_pipeline

        tokenised = [w for w in (words(s) for s in sentences) if w]
        self.order = order
        self._lm: Any = KneserNeyInterpolated(order)
        train, vocab = padded_everygram_pipeline(order, tokenised)
        self._lm.fit(train, vocab)
        self._score = functools.lru_cache(maxsize=65536)(self._ngram)

    def _ngram(self, word: str, context: tuple[str, ...]) -> float:
        return math.log(max(float(self._lm.score(word, list(context))), _FLOOR))

    def log_prob(self, text: str) -> float:
        """Natural-log probability of the sentence, its start and end included (not length-normalised)."""
        from nltk.lm.preprocessing import pad_both_ends
        from nltk.util import ngrams

        padded = list(pad_both_ends(words(text), n=self.order))
        return sum(self._score(g[-1], tuple(g[:-1])) for g in ngrams(padded, self.order))


def folder_texts(knowledge_dir: Path) -> list[str]:
    """The procedures of a Markdown folder (the bundled sample base), for a recogniser with no device store."""
    return [f.read_text(encoding="utf-8") for f in sorted(knowledge_dir.glob("*.md"))]


def domain_sentences(procedures: Iterable[str], lexicon: Lexicon, labelled: Path | None = None) -> list[str]:
    """What the trade says: every sentence of the procedures (the device's units, the user's manuals among
    them), the lexicon's phrases and words, and the labelled utterances of the tune split (the held-out split
    stays out of everything)."""
    out = [s for text in procedures for s in _SENTENCE.split(text) if s.strip()]
    for field, proc in lexicon.terms:
        out += [field, proc]
    out += list(lexicon.words)
    if labelled is not None and labelled.is_file():
        for line in labelled.read_text(encoding="utf-8").splitlines():
            row = json.loads(line) if line.strip() else {}
            if row.get("split") == "tune" and isinstance(row.get("text"), str):
                out.append(row["text"])
    return out
