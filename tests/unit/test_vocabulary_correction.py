"""Trade words put back into a transcript, and everyday text left alone."""

from __future__ import annotations

import json
from pathlib import Path

from linecrew.agent.lexicon import Lexicon
from linecrew.agent.vocabulary import VocabularyCorrector

REPO = Path(__file__).resolve().parents[2]
VOCAB = tuple(Lexicon.load().vocabulary())
EVERYDAY = {"reuse", "rounding", "washing", "pushing", "locked", "refuse", "energize"}


def _corrector() -> VocabularyCorrector:
    return VocabularyCorrector(VOCAB, common=lambda w: w.lower() in EVERYDAY)


def test_near_misses_of_trade_words_are_put_back() -> None:
    c = _corrector()
    assert c.correct("Hang the rounding clamps on the neutral.") == "Hang the grounding clamps on the neutral."
    assert c.correct("The re-closer went to lockout.") == "The recloser went to lockout."
    assert c.correct("Open the fuse cut out with the hot stick.") == "Open the fuse cutout with the hot stick."
    assert c.correct("the lightning arestor is blown") == "the lightning arrester is blown"


def test_right_inflected_and_everyday_words_are_left_alone() -> None:
    c = _corrector()
    for text in ("Send me 3 crossarms and two lightning arresters.", "do I reuse the old connectors",
                 "breaker is locked out", "the recloser locks out", "can I energize the transformer?",
                 "pushing the button", ""):
        assert c.correct(text) == text


def test_no_labelled_question_or_utterance_is_changed_by_more_than_spelling() -> None:
    """Text typed by people (the tune part of the labelled sets) must come back as it was."""
    rows = [json.loads(x)["text"] for x in (REPO / "agent" / "data" / "intents.jsonl").read_text().splitlines() if x]
    rows += [json.loads(x)["question"] for x in (REPO / "tests" / "data" / "assistant" / "qa.jsonl").read_text()
             .splitlines() if x]
    c = _corrector()
    changed = [(r, c.correct(r)) for r in rows if c.correct(r).lower().replace("-", " ") != r.lower().replace("-", " ")]
    assert not changed, changed[:5]
