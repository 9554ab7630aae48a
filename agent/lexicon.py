"""The trade lexicon: field words mapped to the procedures' words, for retrieval and speech recognition.

Shipped as data (``agent/data/lexicon.toml``) and extended by the user with ``lexicon.toml`` in the device's
data folder. Expansion only adds words — the technician's own words still count — so a wrong mapping costs
a little ranking, never a missed match.
"""

from __future__ import annotations

import functools
import importlib.resources
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from linecrew.agent.errors import KnowledgeError

SHIPPED = Path(str(importlib.resources.files("linecrew.agent").joinpath("data", "lexicon.toml")))
USER_FILE = "lexicon.toml"


@dataclass(frozen=True)
class Lexicon:
    terms: tuple[tuple[str, str], ...]  # (field phrase, procedure phrase), longest field phrase first
    words: tuple[str, ...] = ()  # trade words speech recognition should prefer

    @classmethod
    def load(cls, *paths: Path) -> Lexicon:
        merged: dict[str, str] = {}
        words: list[str] = []
        for p in (SHIPPED, *paths):
            if not p.is_file():
                continue
            try:
                data = tomllib.loads(p.read_text(encoding="utf-8"))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
                raise KnowledgeError(f"{p}: not a valid lexicon ({e})") from e
            terms = data.get("terms", {})
            if not isinstance(terms, dict) or not all(isinstance(v, str) for v in terms.values()):
                raise KnowledgeError(f"{p}: [terms] must map phrases to phrases")
            merged.update({k.lower().strip(): v for k, v in terms.items() if k.strip()})
            vocab = data.get("vocabulary", {}).get("words", [])
            if not isinstance(vocab, list) or not all(isinstance(w, str) for w in vocab):
                raise KnowledgeError(f"{p}: [vocabulary] words must be a list of strings")
            words += [w for w in vocab if w not in words]
        return cls(tuple(sorted(merged.items(), key=lambda kv: (-len(kv[0]), kv[0]))), tuple(words))

    @classmethod
    def for_device(cls, data_dir: Path | None) -> Lexicon:
        return cls.load(data_dir / USER_FILE) if data_dir else cls.load()

    def expand(self, text: str, mappings: list[tuple[str, str]] | None = None) -> str:
        """The text with the procedure phrase appended for every field phrase it contains; a phrase of several
        words matches with its first word inflected ("comes off", "hooked up", "writing down") and its last made
        plural ("meter bases"). ``mappings``: ``self.mappings(text)`` when the caller has them already."""
        extra = [proc for _, proc in (self.mappings(text) if mappings is None else mappings)]
        return f"{text} {' '.join(extra)}" if extra else text

    def mappings(self, text: str) -> list[tuple[str, str]]:
        """Per field phrase ``expand`` maps in ``text``: the words only that phrase says, and the procedure phrase
        it adds ("how do I hang grounds" -> ("hang", "install"), ("grounds", "protective grounds"))."""
        low, found = text.lower(), []
        for field, proc in self.terms:
            pattern = _pattern(field)
            if pattern.search(low):
                rest = pattern.sub(" ", low)
                kept = set(re.findall(r"[\w'-]+", rest))
                gone = [w for w in dict.fromkeys(re.findall(r"[\w'-]+", low)) if w not in kept]
                found.append((" ".join(gone), proc))
                low = rest
        return found

    def vocabulary(self, limit: int = 40) -> list[str]:
        """Trade words for speech recognition's prompt (``[vocabulary] words``; the user's file adds to them)."""
        return list(self.words[:limit])


_SHORT_CVC = re.compile(r"[^aeiou]*[aeiou][^aeiouwxy]")  # one vowel before a final consonant: put, jot, stop


def _forms(word: str) -> list[str]:
    """A word and its regular inflections: -s/-es, -ed, -ing (a final e dropped, a short word's consonant doubled)."""
    if not word.isalpha() or len(word) < 2:
        return [word]
    stem = word[:-1] if word.endswith("e") else word
    forms = [word, word + "s", word + "es", stem + "ed", stem + "ing"]
    if len(word) <= 4 and _SHORT_CVC.fullmatch(word):  # put -> putting, jot -> jotted
        forms += [word + word[-1] + "ed", word + word[-1] + "ing"]
    return list(dict.fromkeys(forms))


@functools.lru_cache(maxsize=4096)
def _pattern(field: str) -> re.Pattern[str]:
    words = field.split(" ")
    if len(words) < 2:
        body = re.escape(field)
    else:
        first = "|".join(re.escape(f) for f in _forms(words[0]))
        last = f"{re.escape(words[-1])}(?:s|es)?" if words[-1].isalpha() else re.escape(words[-1])
        body = " ".join([f"(?:{first})", *(re.escape(w) for w in words[1:-1]), last])
    return re.compile(rf"(?<![\w-]){body}(?![\w-])")
