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
