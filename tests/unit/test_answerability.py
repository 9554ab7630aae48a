"""The answer-or-abstain threshold: what a wrong answer and a needless abstention cost."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from linecrew.agent.answerability import SHIPPED, WRONG_ANSWER_COST, cost, fit


def test_a_wrong_answer_costs_twice_a_needless_abstention() -> None:
    assert cost([0.9], [0], [False], 0.5) == WRONG_ANSWER_COST == 2.0  # said something for an uncovered question
    assert cost([0.9], [0], [True], 0.5) == WRONG_ANSWER_COST  # said the wrong text for a covered one
    assert cost([0.9], [1], [True], 0.5) == 0.0
    assert cost([0.1], [0], [False], 0.5) == 0.0  # abstained where no procedure covers it: right


def test_abstaining_on_a_covered_question_is_needless_even_when_the_selected_text_was_wrong() -> None:
    # the technician asked what a procedure answers and heard "no procedure": that costs, whatever was selected
    assert cost([0.1], [1], [True], 0.5) == 1.0
    assert cost([0.1], [0], [True], 0.5) == 1.0


def test_fit_picks_a_threshold_between_the_classes_and_reports_its_curve() -> None:
    rnd = random.Random(7)
    rows = [{"coverage": rnd.uniform(0.6, 1.0)} for _ in range(40)] + [{"coverage": rnd.uniform(0.0, 0.4)}
                                                                         for _ in range(40)]
    labels = [1] * 40 + [0] * 40
    model = fit(rows, labels, answerable=[True] * 40 + [False] * 40)
    assert all(model.answers(r) for r in rows[:40]) and not any(model.answers(r) for r in rows[40:])
    assert sum(b["n"] for b in model.curve) == 80


def test_the_labelled_sets_held_out_part_shares_no_question_with_the_part_that_tunes() -> None:
    """A held-out question said word for word in the tune part would report tuning as generalisation."""
    def read(path: Path) -> list[dict[str, str]]:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    rows = read(Path(__file__).resolve().parents[1] / "data" / "assistant" / "qa.jsonl")
    rows += [{"question": r["text"], "split": r["split"]} for r in read(SHIPPED.parent / "intents.jsonl")]

    def said(r: dict[str, str]) -> str:
        return " ".join(re.findall(r"[a-z0-9]+", r["question"].lower()))

    tune = {said(r) for r in rows if r["split"] == "tune"}
    assert not {said(r) for r in rows if r["split"] == "heldout"} & tune
    ids = [r["id"] for r in rows if "id" in r]
    assert len(set(ids)) == len(ids)


def test_the_shipped_trees_score_as_the_fitted_boosting_does_and_survive_a_save(tmp_path: Path) -> None:
    import numpy as np
    from sklearn.ensemble import GradientBoostingClassifier

    from linecrew.agent.answerability import BOOSTING, AnswerabilityModel, from_boosting

    rnd = random.Random(3)
    names = ("coverage", "soft_missed", "form_statement")
    rows = [{n: round(rnd.random(), 4) if n != "form_statement" else float(rnd.random() < 0.5) for n in names}
            for _ in range(300)]
    # an interaction one weight per feature cannot say: a told situation is answerable only when it is covered
    labels = [int(r["coverage"] > 0.5 and (r["form_statement"] == 0.0 or r["soft_missed"] < 0.5)) for r in rows]
    x = np.array([[r[n] for n in names] for r in rows])
    est = GradientBoostingClassifier(**BOOSTING).fit(x, labels)
    model = from_boosting(est, names)
    assert [round(model.probability(r), 9) for r in rows] == [round(float(p), 9)
                                                              for p in est.predict_proba(x)[:, 1]]
    model.save(tmp_path / "m.json")
    again = AnswerabilityModel.load(tmp_path / "m.json")
    assert [again.probability(r) for r in rows] == [model.probability(r) for r in rows]


def test_a_weights_only_model_file_still_loads_and_scores(tmp_path: Path) -> None:
    from linecrew.agent.answerability import AnswerabilityModel

    (tmp_path / "lr.json").write_text(json.dumps({"coef": [2.0], "intercept": -1.0, "threshold": 0.5,
                                                  "features": ["coverage"]}), encoding="utf-8")
    model = AnswerabilityModel.load(tmp_path / "lr.json")
    assert model.answers({"coverage": 0.9}) and not model.answers({"coverage": 0.1})
