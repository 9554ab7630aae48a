"""Questions asked before (``answerability.QuestionBank``): what they tell the answer-or-abstain model, and where."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from linecrew.agent.answerability import BANK, BANK_FEATURES, AnswerabilityModel, Asked, QuestionBank
from linecrew.agent.answering import Answerer, digests
from linecrew.agent.evaluation import Case, calibrate_bank, group_of
from linecrew.agent.knowledge import SAMPLE_KB, KnowledgeBase
from linecrew.agent.store import AgentStore

ASKED = (Asked("how long do I wait on a capacitor", ("capacitor-bank.md#a:step-2",), True, "a"),
         Asked("what class of glove for 7.2 kV", ("rubber-gloves.md#b:row-2",), True, "b"),
         Asked("how often is the boom tested", (), False, "c"),
         Asked("what goes on the tag", (), True, "a"))  # a procedure covers it, no unit alone holds the answer


def _model(intercept: float, features: tuple[str, ...] = BANK_FEATURES) -> AnswerabilityModel:
    return AnswerabilityModel((0.0,) * len(features), intercept, 0.5, features)


def test_the_features_are_the_best_cosine_with_questions_the_chosen_text_answered_and_with_uncovered_ones() -> None:
    bank = QuestionBank(_model(0.0), ASKED)
    cosines = [0.9, 0.8, 0.7, 0.95]
    assert bank.features(cosines, ["capacitor-bank.md#a:step-2"]) == {"bank_answered": 0.9, "bank_uncovered": 0.7}
    # another unit of the same section: the glove question counts; another section's text: the capacitor question
    # says nothing for it, nor does a covered question no unit alone answers
    assert bank.features(cosines, ["rubber-gloves.md#b:row-1"]) == {"bank_answered": 0.8, "bank_uncovered": 0.7}
    assert bank.features(cosines, ["capacitor-bank.md#c:step-1"]) == {"bank_answered": 0.0, "bank_uncovered": 0.7}
    # an uncovered question counts only with the question's figures: "500 kV" is not covered, "25 kV" may be
    figured = QuestionBank(_model(0.0), (Asked("approach distance for a 500 kV line", (), False, "c", ("500",)),))
    assert figured.features([0.9], ["x.md#a:row-1"], ["25"])["bank_uncovered"] == 0.0
    assert figured.features([0.9], ["x.md#a:row-1"], ["500"])["bank_uncovered"] == 0.9
    # fitting: a question's own batch is left out, so it never finds itself or its batch's paraphrases
    assert bank.features(cosines, ["capacitor-bank.md#a:step-2"], without="a")["bank_answered"] == 0.0
    assert bank.features(cosines, ["capacitor-bank.md#a:step-2"], without="c")["bank_uncovered"] == 0.0
    assert bank.docs == {"capacitor-bank.md", "rubber-gloves.md"}


def test_a_bank_survives_a_save_and_none_is_none(tmp_path: Path) -> None:
    bank = QuestionBank(_model(-1.5), ASKED, {"capacitor-bank.md": "0123456789abcdef"})
    bank.save(tmp_path / "bank.json")
    again = QuestionBank.load(tmp_path / "bank.json")
    assert again == bank and again is not None and again.model.probability({}) == bank.model.probability({})
    assert QuestionBank.load(tmp_path / "absent.json") is None


def test_a_case_s_group_is_the_batch_its_id_names() -> None:
    assert group_of(Case("q", id="ku03")) == "ku" and group_of(Case("q", id="a012")) == "a"
    assert group_of(Case("what now")) == "what now"


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory) -> KnowledgeBase:
    store = AgentStore(tmp_path_factory.mktemp("bank") / "d", device_id="bank")
    base = KnowledgeBase(store.db)
    base.ensure_indexed(SAMPLE_KB)
    return base


def test_the_bank_s_model_scores_only_questions_answered_from_a_document_it_has_questions_about(
        kb: KnowledgeBase) -> None:
    asked = (Asked("how long do I wait on a capacitor", ("capacitor-bank.md#x",), True),)
    now = digests(kb.units())
    never = QuestionBank(_model(-30.0), asked, {"capacitor-bank.md": now["capacitor-bank.md"]})
    plain = Answerer(kb, bank=None)
    banked = Answerer(kb, bank=never, encoder=plain.encoder)
    capacitor = "how long do I wait after switching a capacitor bank off before I touch it"
    gloves = "what class of rubber gloves do I need for a 7.2 kV line"
    assert plain.answer(capacitor).units[0].doc == "capacitor-bank.md" and not plain.answer(capacitor).abstained
    assert banked.answer(capacitor).abstained  # the bank's model (here: never answer) scored it
    assert banked.answer(gloves).units == plain.answer(gloves).units and not banked.answer(gloves).abstained
    # the document changed since its questions were asked: they no longer say how it answers
    changed = QuestionBank(never.model, asked, {"capacitor-bank.md": "0" * 16})
    assert not Answerer(kb, bank=changed, encoder=plain.encoder).answer(capacitor).abstained
    # a model handed in decides alone: the shipped bank is not loaded beside it
    assert Answerer(kb, plain.model, encoder=plain.encoder).bank is None


def test_calibrating_a_bank_keeps_each_question_s_own_batch_out_of_its_features(kb: KnowledgeBase) -> None:
    cases = [Case("how long do I wait after switching a capacitor bank off", answerable=True,
                  facts=("5 minutes",), source="capacitor-bank.md", id="a1"),
             Case("how long before I can touch a switched-off capacitor bank", answerable=True,
                  facts=("5 minutes",), source="capacitor-bank.md", id="b1"),
             Case("what class of rubber gloves for a 7.2 kV line", answerable=True, facts=("class 1",),
                  source="rubber-gloves.md", id="a2"),
             Case("which glove class do I wear on 7.2 kV", answerable=True, facts=("class 1",),
                  source="rubber-gloves.md", id="b2"),
             Case("how often is the insulated boom dielectric tested", answerable=False, id="au1"),
             Case("what is the dielectric test interval for a bucket boom", answerable=False, id="bu1"),
             Case("how do I splice a broken neutral messenger", answerable=False, id="au2"),
             Case("how do I repair a broken neutral messenger", answerable=False, id="bu2"),
             Case("lock it out", intent="job_status")]  # an intent case: not a question the bank holds
    plain = Answerer(kb, bank=None)
    bank = calibrate_bank(plain, cases)
    assert [a.group for a in bank.asked] == ["a", "b", "a", "b", "au", "bu", "au", "bu"]
    assert all(a.cites for a in bank.asked[:4]) and not any(a.cites or a.covered for a in bank.asked[4:])
    assert set(bank.model.features) == set(BANK_FEATURES) and bank.model.fitted_on["asked"] == 8
    assert bank.digests == digests(kb.units())
    # read as the fit read it: never with a cosine of 1 from finding itself
    part = plain.select(cases[0].question, unseen="a")
    assert 0.0 < part.features["bank_answered"] < 0.99


@pytest.mark.skipif(not BANK.is_file(), reason="no question bank shipped")
def test_the_shipped_bank_holds_tune_questions_only() -> None:
    """A held-out question in the bank would be answered from memory and report memory as generalisation."""
    rows = [json.loads(line) for line in (Path(__file__).resolve().parents[1] / "data" / "assistant" / "qa.jsonl")
            .read_text(encoding="utf-8").splitlines() if line.strip()]
    split = {r["question"]: r["split"] for r in rows}
    bank = QuestionBank.load()
    assert bank is not None and bank.asked
    assert {split.get(a.question) for a in bank.asked} == {"tune"}


def test_a_question_asked_before_votes_for_the_text_that_answered_it(kb: KnowledgeBase) -> None:
    """A question near one asked before (``BANK_VOTE``) leans to the unit that alone answered that one; not when
    the asked question's batch is left out (fitting), nor when its document has changed since."""
    question = "what kills the stored charge in a capacitor"
    resistors = "capacitor-bank.md#before-work-on-a-capacitor-bank:step-2"  # "internal resistors ... 5 minutes"
    asked = (Asked("what kills the stored charge in a capacitor then", (resistors,), True, "a"),)
    now = digests(kb.units())
    plain = Answerer(kb, bank=None)
    banked = Answerer(kb, bank=QuestionBank(_model(30.0), asked, {"capacitor-bank.md": now["capacitor-bank.md"]}),
                      encoder=plain.encoder)
    before = [u.citation for u in plain.select(question).units]
    assert resistors not in before
    assert resistors in [u.citation for u in banked.select(question).units]
    assert [u.citation for u in banked.select(question, unseen="a").units] == before
    changed = Answerer(kb, bank=QuestionBank(_model(30.0), asked, {"capacitor-bank.md": "0" * 16}),
                       encoder=plain.encoder)
    assert [u.citation for u in changed.select(question).units] == before
