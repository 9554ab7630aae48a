"""Answerability: the calibrated chance that the selected procedure text answers the question.

Gradient-boosted depth-2 trees (scikit-learn ``GradientBoostingClassifier``), mixed in log-odds with a logistic
regression, over the selection's features (``grounding.FEATURES``: how much of the question's idf mass the unit and
its section cover, and how much they leave unsaid even in other words (the encoder's nearest word), words the base
has never seen, a figure asked for but absent, the asked-for thing or kind of answer missing from the text, the
sentence encoder's cosines, the lead over the next unit, the question's form). Depth 2 lets two features meet: a
situation told ("the regulator is stuck on tap 16, how do I ...") is answerable when its words are the procedure's,
not because it is told, which one weight per feature could not say (a logistic regression learned "a told situation
is answerable" from a tune part where nearly every one was). Fitted on the tune part of the labelled set (label:
the selected text holds every fact the answer must contain); the threshold minimises, over probabilities each
judged by a model fitted without it (5 folds), a cost where a wrong answer costs twice a needless abstention (any
abstention on a question a procedure covers). The trees, threshold and reliability curve ship as data
(``agent/data/answerability.json``); ``linecrew eval calibrate`` refits them. Scoring is pure arithmetic; a file
with weights (``coef``) alone, as a logistic regression writes it, still loads and scores.
"""

from __future__ import annotations

import importlib.resources
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from linecrew.agent.grounding import FEATURES

SHIPPED = Path(str(importlib.resources.files("linecrew.agent").joinpath("data", "answerability.json")))
WRONG_ANSWER_COST = 2.0


# The score is the mean, in log-odds, of the boosted trees and a logistic regression (C 0.3) on the same features:
# the trees say where two features meet, the regression keeps the score smooth between the questions it saw.
# Chosen by leave-one-batch-out on the tune part (16 batches; cost = 2 x wrong answers + needless abstentions):
# regression alone 179 (accuracy 0.860, uncovered abstention 0.854); trees alone 158 (0.861, 0.901); mean 161
# (0.870, 0.887), trees 0.7 163. Trees: depth 2, 200, 10 questions a leaf 163 (alone, before the out-of-fold
# threshold); depth 3, 200, 5 -> 178; depth 3, 100, 10 -> 170. With the told-situation features
# (``Answerer._situation``) the mean: 156 (0.881, 0.882).
TREE_SHARE = 0.5
BOOSTING = {"max_depth": 2, "n_estimators": 200, "learning_rate": 0.05, "min_samples_leaf": 10, "random_state": 0}


@dataclass(frozen=True)
class AnswerabilityModel:
    coef: tuple[float, ...]
    intercept: float
    threshold: float
    features: tuple[str, ...] = FEATURES
    fitted_on: dict[str, Any] = field(default_factory=dict)
    curve: tuple[dict[str, Any], ...] = ()
    rate: float = 0.0  # each tree's share (the boosting's learning rate)
    trees: tuple[dict[str, list[Any]], ...] = ()  # feature, threshold, left, right, value per node (left -1: a leaf)

    def probability(self, features: dict[str, float]) -> float:
        x = [float(features.get(f, 0.0)) for f in self.features]
        z = self.intercept + sum(c * v for c, v in zip(self.coef, x, strict=True))
        if self.trees:  # the trees compare features as they were grown on them: as float32, cast once here
            x32 = [float(v) for v in np.asarray(x, dtype=np.float32)]
            z += self.rate * sum(_leaf(t, x32) for t in self.trees)
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))

    def answers(self, features: dict[str, float]) -> bool:
        return self.probability(features) >= self.threshold

    @classmethod
    def load(cls, path: Path = SHIPPED) -> AnswerabilityModel:
        raw = json.loads(path.read_text(encoding="utf-8"))
        features = tuple(raw["features"])
        return cls(tuple(raw.get("coef") or [0.0] * len(features)), float(raw["intercept"]), float(raw["threshold"]),
                   features, raw.get("fitted_on", {}), tuple(raw.get("curve", ())), float(raw.get("rate", 0.0)),
                   tuple(raw.get("trees", ())))

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), separators=(",", ":")) + "\n", encoding="utf-8")


def _leaf(tree: dict[str, list[Any]], x: Sequence[float]) -> float:
    """The value of the leaf ``x`` (features already cast to float32) falls in."""
    node = 0
    while tree["left"][node] != -1:
        node = tree["left"][node] if x[tree["feature"][node]] <= tree["threshold"][node] else tree["right"][node]
    return float(tree["value"][node])


def from_boosting(est: Any, features: Sequence[str], threshold: float = 0.5) -> AnswerabilityModel:
    """A fitted binary ``GradientBoostingClassifier`` as data: its regression trees and its starting log-odds."""
    trees: list[dict[str, list[Any]]] = []
    for (reg,) in est.estimators_:
        t = reg.tree_
        trees.append({"feature": [int(f) for f in t.feature], "threshold": [float(v) for v in t.threshold],
                      "left": [int(n) for n in t.children_left], "right": [int(n) for n in t.children_right],
                      "value": [float(v) for v in t.value[:, 0, 0]]})
    rate = float(est.learning_rate)
    zero = [0.0] * len(features)
    start = float(est.decision_function(np.array([zero]))[0]) - rate * sum(_leaf(t, zero) for t in trees)
    return AnswerabilityModel((0.0,) * len(features), start, threshold, tuple(features), rate=rate, trees=tuple(trees))


def fit(rows: Sequence[dict[str, float]], labels: Sequence[int], *, answerable: Sequence[bool] | None = None,
        note: dict[str, Any] | None = None) -> AnswerabilityModel:
    """Fit trees and regression and pick the cost-minimising threshold on the (tune) rows, each row's probability
    from a model fitted on the folds that left it out (in-sample, boosted trees are surer than they should be).
    ``answerable``: whether a procedure covers each row's question (default: the label); abstaining on a covered
    question costs a needless abstention even where the selected text was the wrong one, as the technician asked
    something the procedures answer and heard "no procedure"."""
    x = np.array([[float(r.get(f, 0.0)) for f in FEATURES] for r in rows])
    ys = [int(v) for v in labels]
    y = np.array(ys)
    model = _fitted(x, y)
    folds = min(5, int(y.sum()), int(len(y) - y.sum()))
    if folds >= 2:
        from sklearn.model_selection import StratifiedKFold

        oof = np.zeros(len(y))
        for train, test in StratifiedKFold(folds, shuffle=True, random_state=0).split(x, y):
            held = _fitted(x[train], y[train])
            oof[test] = [held.probability(rows[i]) for i in test]
        probs = [float(p) for p in oof]
    else:
        probs = [model.probability(r) for r in rows]
    covered = [bool(a) for a in answerable] if answerable is not None else [bool(v) for v in ys]
    best = min((cost(probs, ys, covered, t), t) for t in [i / 100 for i in range(5, 96)])[1]
    return replace(model, threshold=best, fitted_on=dict(note or {}), curve=tuple(reliability(probs, ys)))


def _fitted(x: Any, y: Any) -> AnswerabilityModel:
    """Trees and regression fitted on ``x``, ``y``, their log-odds mixed by TREE_SHARE."""
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    trees = from_boosting(GradientBoostingClassifier(**BOOSTING).fit(x, y), FEATURES)
    lr = LogisticRegression(C=0.3, max_iter=3000).fit(x, y)
    return replace(trees, coef=tuple((1 - TREE_SHARE) * float(c) for c in lr.coef_[0]),
                   intercept=TREE_SHARE * trees.intercept + (1 - TREE_SHARE) * float(lr.intercept_[0]),
                   rate=TREE_SHARE * trees.rate)


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
