"""Typing slips corrected to the words the procedures and the trade lexicon use.

A technician types with gloves on: "who do I notifiy before lockout" ranked the release steps first (the
misspelt word is unknown, so "before lockout" alone chose), "can I use a groudning set that took a falt" was
held back. A word is corrected only when it is no English word (symspellpy's English frequency list) and not
one the base or the lexicon knows, and one word of the base or the lexicon is within one edit of it (two for a
word of eight letters or more), and no English word as near is a hundred times as common: a real word the
procedures never use ("splice", "torque", "bill") stays as it is, so a question about something no procedure covers
still reads as one. Capitalised acronyms ("OCR"), other forms of a known word, words with digits and contractions
are left alone. symspellpy (symmetric-delete lookups) finds the candidates; nothing here is hand-made
edit-distance code.
"""

from __future__ import annotations

import functools
import importlib.resources
import re
from collections import Counter
from collections.abc import Callable, Iterable

from symspellpy import SymSpell, Verbosity

_TOKEN = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")
MIN_LENGTH = 3  # shorter tokens ("ok", "im") are too ambiguous to correct


_ENGLISH_LIST = "frequency_dictionary_en_82_765.txt"  # 82,765 words seen at least 12,714 times in Google Books
_RAREST = 12_714
RIVAL_RATIO = 100  # an English word this many times as common as the base's nearest word blocks the correction


@functools.cache
def _english() -> dict[str, int]:
    """The English words and their counts."""
    path = importlib.resources.files("symspellpy").joinpath(_ENGLISH_LIST)
    pairs = (line.split(" ") for line in path.read_text(encoding="utf-8").splitlines() if line)
    return {word: int(count) for word, count in pairs}


@functools.cache
def _english_near() -> SymSpell:
    """English words one edit from a token: loaded (0.6 s) the first time a token needs correcting."""
    index = SymSpell(max_dictionary_edit_distance=1, prefix_length=7)
    index.load_dictionary(str(importlib.resources.files("symspellpy").joinpath(_ENGLISH_LIST)), 0, 1)
    return index


class Speller:
    def __init__(self, vocabulary: Iterable[str], *, keep: Iterable[str] = (),
                 stem: Callable[[str], str] = str) -> None:
        """``vocabulary``: the words a slip may be corrected to (the base's and the lexicon's, repeated as often
        as they occur); ``keep``: words never corrected and never suggested (stop words); ``stem``: the ranker's
        stemmer, so another form of a known word ("reclose" beside "recloser") is left as the ranker reads it."""
        self._keep = frozenset(w.lower() for w in keep)
        counts = Counter(w.lower() for w in vocabulary if w.isalpha() and len(w) >= MIN_LENGTH)
        self._stem = stem
        self._stems = frozenset(stem(w) for w in counts)
        self._known = frozenset(counts) | self._keep
        self._sym = SymSpell(max_dictionary_edit_distance=2, prefix_length=7)
        for word, n in counts.items():
            if word not in self._keep:
                self._sym.create_dictionary_entry(word, n)

    def word(self, token: str) -> str:
        """The base's word a slip stands for, or the token as it is."""
        low = token.lower()
        if (len(low) < MIN_LENGTH or not low.isalpha() or low in self._known or low in _english()
                or (token.isupper() and len(token) > 1) or self._stem(low) in self._stems):
            return token
        distance = 1 if len(low) < 8 else 2
        found = self._sym.lookup(low, Verbosity.CLOSEST, max_edit_distance=distance)
        best = [s.term for s in found if s.distance == found[0].distance] if found else []
        if len(best) != 1:  # none, or a tie ("falt": "fall"? "fault"?): not a guess to act on
            return token
        # the base's word is the likelier one where a crew talks about its procedures, unless an English word as
        # near is far more common ("wiat": "wait", though "what" is 22 times as common; "breakr": "breaker")
        english = _english()
        floor = RIVAL_RATIO * english.get(best[0], _RAREST)
        rivals = [s.term for s in _english_near().lookup(low, Verbosity.CLOSEST, max_edit_distance=1)
                  if s.distance <= found[0].distance and s.term != best[0] and english.get(s.term, 0) >= floor]
        return token if rivals else best[0]

    def correct(self, text: str) -> str:
        return _TOKEN.sub(lambda m: self.word(m.group(0)) if "'" not in m.group(0) else m.group(0), text)
