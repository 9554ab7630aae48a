"""The trade language model: the trade's way of saying things scores above what tiny.en mishears."""

from __future__ import annotations

import json
from pathlib import Path

from linecrew.agent.domain_lm import DomainLanguageModel, domain_sentences, folder_texts
from linecrew.agent.intents import LABELLED
from linecrew.agent.knowledge import SAMPLE_KB
from linecrew.agent.lexicon import Lexicon


def _model() -> DomainLanguageModel:
    return DomainLanguageModel(domain_sentences(folder_texts(SAMPLE_KB), Lexicon.load(), LABELLED))


def test_trade_words_in_place_score_above_everyday_mishearings() -> None:
    lm = _model()
    for said, heard in [("grab the hot stick from the bucket", "grab the hot stick from the market"),
                        ("the bushing on the pad mount is cracked", "the washing on the pad mount is cracked"),
                        ("set the outriggers before you raise the boom",
                         "set the outriggers before you rain the boom")]:
        assert lm.log_prob(said) > lm.log_prob(heard), (said, heard)


def test_scores_are_finite_for_words_never_seen() -> None:
    lm = _model()
    assert lm.log_prob("zorblax quuxified the flibber") > -200
    assert lm.log_prob("") < 0  # even nothing has a probability below one (start and end)


def test_procedures_lexicon_and_only_the_tune_split_of_labelled_utterances_are_used(tmp_path: Path) -> None:
    labelled = tmp_path / "intents.jsonl"
    labelled.write_text("\n".join(json.dumps(r) for r in [
        {"text": "tune sentence about the recloser", "intent": "log_note", "split": "tune"},
        {"text": "heldout sentence about the cutout", "intent": "log_note", "split": "heldout"}]) + "\n")
    lexicon = Lexicon(terms=(("pole pig", "pole-mounted transformer"),), words=("recloser",))
    found = domain_sentences(["Open the cutout. Test for voltage."], lexicon, labelled)
    assert "tune sentence about the recloser" in found
    assert not any("heldout" in s for s in found)
    assert {"pole pig", "pole-mounted transformer", "recloser", "Open the cutout.", "Test for voltage."} <= set(found)


class _WordsCost:
    """A language model where every word costs the same: it always prefers fewer words."""

    def log_prob(self, text: str) -> float:
        return -6.0 * len(text.split())


def test_the_language_model_never_chooses_a_reading_whisper_finds_far_less_likely() -> None:
    from linecrew.agent.speech import Hypothesis, rank_readings

    whole, cut = Hypothesis("I need two fuse cutouts and one insulator.", -0.25, 0.01), Hypothesis("I need", -1.1, 0.01)
    near = Hypothesis("I need to fuse cutouts and one insulator.", -0.3, 0.01)
    ranked = rank_readings([(whole, -0.25), (near, -0.3), (cut, -1.12)], _WordsCost(), 0.05, 0.5)
    assert ranked[-1] is cut, "a reading cut short is never lifted over Whisper's far better ones"
    assert ranked[:2] == [whole, near]
    # within the gap the language model still chooses: here it favours the reading with fewer words
    lean = Hypothesis("I need two fuse cutouts.", -0.4, 0.01)
    assert rank_readings([(whole, -0.25), (lean, -0.4)], _WordsCost(), 0.05, 0.5)[0] is lean
