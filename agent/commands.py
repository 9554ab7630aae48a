"""Short spoken commands ("yes", "next step", "say that again"): one way to hear them everywhere.

A command is a short utterance (a few words) that starts with one of a table's patterns; anything longer is
a request for the assistant, never a command — "stop the truck at pole 9" is not "stop".
"""

from __future__ import annotations

import re
from collections.abc import Mapping

REPEAT = r"(repeat( that| the step)?|say (that|it) again|again|come again|what was that)"


# Words around a command that do not change it: recognition adds "the" to "next step", people say "okay, next".
_FILLER = re.compile(r"^(?:(?:the|uh|um|er|okay|ok|alright|so|please)\s+)+|\s+please$")


def short(text: str, max_words: int) -> str | None:
    """The utterance lower-cased, letters only, without filler around it, or None when it is empty or longer
    than ``max_words``."""
    t = " ".join(re.sub(r"[^a-z' ]", " ", text.lower()).split())
    t = _FILLER.sub("", t).strip()
    return t if t and len(t.split()) <= max_words else None


def match(text: str, table: Mapping[str, re.Pattern[str]], *, max_words: int) -> str | None:
    """The name of the first pattern a short utterance starts with, or None."""
    t = short(text, max_words)
    if t is None:
        return None
    return next((name for name, rx in table.items() if rx.match(t)), None)
