"""Answerability: the calibrated chance that the selected procedure text answers the question.

A logistic regression over the selection's features (``grounding.FEATURES``: how much of the question's
idf mass the unit and its section cover, and how much they leave unsaid even in other words (the encoder's
nearest word), words the base has never seen, a figure asked for but absent, the asked-for thing or kind of
answer missing from the text, the sentence encoder's cosines, the lead over the next unit). Fitted with
scikit-learn on the tune part of the labelled set
(label: the selected text holds every fact the answer must contain); the threshold minimises a cost where a
wrong answer costs twice a needless abstention (any abstention on a question a procedure covers). Weights,
threshold and the reliability curve ship as data (``agent/data/answerability.json``); ``linecrew eval
calibrate`` refits them. Scoring is pure arithmetic.
"""

from __future__ import annotations

import importlib.resources
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from linecrew.agent.grounding import FEATURES

SHIPPED = Path(str(importlib.resources.files("linecrew.agent").joinpath("data", "answerability.json")))
WRONG_ANSWER_COST = 2.0


@dataclass(frozen=True)
class AnswerabilityModel:
    coef: tuple[float, ...]
    intercept: float
    threshold: float
    features: tuple[str, ...] = FEATURES
    fitted_on: dict[str, Any] = field(default_factory=dict)
    curve: tuple[dict[str, Any], ...] = ()

    def probability(self, features: dict[str, float]) -> float:
        z = self.intercept + sum(c * float(features.get(f, 0.0)) for c, f in zip(self.coef, self.features,
                                                                                 strict=True))
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))

    def answers(self, features: dict[str, float]) -> bool:
        return self.probability(features) >= self.threshold

    @classmethod
    def load(cls, path: Path = SHIPPED) -> AnswerabilityModel:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return cls(tuple(raw["coef"]), float(raw["intercept"]), float(raw["threshold"]), tuple(raw["features"]),
                   raw.get("fitted_on", {}), tuple(raw.get("curve", ())))

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1) + "\n", encoding="utf-8")


def fit(rows: Sequence[dict[str, float]], labels: Sequence[int], *, answerable: Sequence[bool] | None = None,
        note: dict[str, Any] | None = None) -> AnswerabilityModel:
    """Fit weights and pick the cost-minimising threshold on the same (tune) rows. ``answerable``: whether a
    procedure covers each row's question (default: the label); abstaining on a covered question costs a needless
    abstention even where the selected text was the wrong one, as the technician asked something the procedures
    answer and heard "no procedure"."""
    from sklearn.linear_model import LogisticRegression

    x = [[float(r.get(f, 0.0)) for f in FEATURES] for r in rows]
    # C (regularisation) chosen by 5-fold cross-validation on the tune part
    lr = LogisticRegression(C=0.3, max_iter=3000).fit(x, list(labels))
    model = AnswerabilityModel(tuple(float(c) for c in lr.coef_[0]), float(lr.intercept_[0]), 0.5, FEATURES)
    probs = [model.probability(r) for r in rows]
    covered = [bool(a) for a in answerable] if answerable is not None else [bool(y) for y in labels]
    best = min((cost(probs, labels, covered, t), t) for t in [i / 100 for i in range(5, 96)])[1]
    return AnswerabilityModel(model.coef, model.intercept, best, FEATURES, dict(note or {}),
                              tuple(reliability(probs, labels)))


def cost(probs: Sequence[float], labels: Sequence[int], covered: Sequence[bool], t: float) -> float:
    """What answering at threshold ``t`` costs: a wrong answer (label 0) WRONG_ANSWER_COST, an abstention on a
    question a procedure covers (``covered``) 1, anything else nothing."""
    return sum(WRONG_ANSWER_COST if (p >= t and y == 0) else 1.0 if (p < t and c) else 0.0
               for p, y, c in zip(probs, labels, covered, strict=True))


def reliability(probs: Sequence[float], labels: Sequence[int], bins: int = 5) -> list[dict[str, Any]]:
    """The calibration curve: per probability bin, how many, mean predicted and observed rate."""
    out = []
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        idx = [i for i, p in enumerate(probs) if lo <= p < hi or (b == bins - 1 and p == 1.0)]
        if idx:
            out.append({"bin": f"{lo:.1f}-{hi:.1f}", "n": len(idx),
                        "predicted": round(sum(probs[i] for i in idx) / len(idx), 3),
                        "observed": round(sum(labels[i] for i in idx) / len(idx), 3)})
    return out
