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

Speech recognition splits what the base writes as one word ("re closer", "out riggers", "p p e"): two words join
where the base says the joined word more often than the pair, letters said one by one where they spell a word of
the base or the lexicon, and a verb with its particle ("can I lock out", "before I set up") only after a
determiner ("the cut out"), since "lock out" said is as often the act as the base's noun "lockout".
"""

from __future__ import annotations

import functools
import importlib.resources
import itertools
import re
from collections import Counter
from collections.abc import Callable, Iterable

from symspellpy import SymSpell, Verbosity

_TOKEN = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")
_SPELT = re.compile(r"(?<![\w'])[A-Za-z](?: [A-Za-z]){1,4}(?![\w'])")  # "p p e", "a e d": letters said one by one
_WORD_AT = re.compile(r"(?<![\w'-])[A-Za-z]{2,}(?![\w'-])")  # a whole word of letters (not part of "back-feed")
# "lock out", "set up", "cut out" are verbs as often as the base's nouns "lockout", "setup", "cutout": with a
# particle second they join only as a thing named ("the cut out", "a cut out"), never as what someone does
# ("can I lock out at the meter base" stays a verb)
_PARTICLES = frozenset("out up off in on down over back away".split())
_DETERMINERS = frozenset("the a an that this each every my our your his their its which what".split())
_JOINED_MIN = 5  # "any one" -> "anyone" and the like say nothing the two words did not
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
        said = [w.lower() for w in vocabulary]
        self._bigrams = Counter(itertools.pairwise(said))
        counts = Counter(w for w in said if w.isalpha() and len(w) >= MIN_LENGTH)
        self._counts = counts
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

    def joined(self, text: str) -> str:
        """One word the base uses that speech recognition wrote as two, or letter by letter: "cut out" ->
        "cutout", "re closer" -> "recloser", "p p e" -> "ppe". Two words join only where the base says the joined
        word more often than the two ("set up" stays where the base writes "set up")."""
        def letters(m: re.Match[str]) -> str:
            word = m.group(0).replace(" ", "").lower()
            return word if self._counts.get(word, 0) else m.group(0)

        def joins(a: str, b: str) -> bool:
            word = (a + b).lower()
            return (len(word) >= _JOINED_MIN and word not in self._keep
                    and self._counts.get(word, 0) > self._bigrams.get((a.lower(), b.lower()), 0))

        text = _SPELT.sub(letters, text)
        out, last = [], 0
        tokens = list(_WORD_AT.finditer(text))
        i = 0
        while i < len(tokens):
            m = tokens[i]
            n = tokens[i + 1] if i + 1 < len(tokens) else None
            named = i > 0 and tokens[i - 1].group(0).lower() in _DETERMINERS
            if (n is not None and text[m.end():n.start()] == " " and joins(m.group(0), n.group(0))
                    and (named or n.group(0).lower() not in _PARTICLES)):
                out += [text[last:m.start()], (m.group(0) + n.group(0)).lower()]
                last, i = n.end(), i + 2
                continue
            i += 1
        return "".join([*out, text[last:]])

    def correct(self, text: str) -> str:
        text = self.joined(text)
        return _TOKEN.sub(lambda m: self.word(m.group(0)) if "'" not in m.group(0) else m.group(0), text)
