"""Evaluation as a product feature: run a labelled set through the assistant and say how it did.

A case (one JSON line): ``question`` (or ``text``), ``intent`` (expected), and for procedure questions
``answerable``, ``facts`` (phrases a right answer must contain) and ``source`` (the document); a follow-up has
``after``, the questions asked before it in the same conversation ("how do I inspect my gloves" before "what if
one fails?"). The report:
answer accuracy, contradictions (an answer sentence that differs from the source procedure in a figure or a
negation), invented figures (a figure said for a question no procedure covers), abstention on uncovered
questions, false abstention, intent accuracy with per-intent precision and recall, retrieval hit@1/@3, and
latency. A library call (``evaluate``) with a thin CLI (``linecrew eval assistant``); releases can gate on it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from linecrew.agent import grounding
from linecrew.agent.answerability import BANK_FEATURES, AnswerabilityModel, Asked, QuestionBank, fit
from linecrew.agent.answering import Answerer, digests
from linecrew.agent.errors import KnowledgeError
from linecrew.agent.knowledge import KnowledgeBase
from linecrew.shared.metrics import percentiles


@dataclass(frozen=True)
class Case:
    question: str
    intent: str = "procedure_question"
    answerable: bool | None = None  # None: an intent-only case
    facts: tuple[str, ...] = ()
    source: str | None = None
    split: str = ""
    id: str = ""
    alternatives: tuple[str, ...] = ()  # a spoken question's other readings, best first (``Assistant.ask``)
    after: tuple[str, ...] = ()  # a follow-up's earlier turns, asked first in the same conversation (not judged)


@dataclass
class Outcome:
    case: Case
    answer: str
    intent: str
    abstained: bool
    grounded: bool
    latency_ms: float
    correct: bool = False
    contradiction: bool = False
    invented: bool = False
    hit1: bool = False
    hit3: bool = False
    citations: list[str] = field(default_factory=list)


def load_cases(path: Path, *, split: str | None = None) -> list[Case]:
    cases = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
            facts = r.get("facts", r.get("must_contain")) or ()
            answerable = r.get("answerable")
            if answerable is not None and not isinstance(answerable, bool):
                raise TypeError(f"answerable must be true, false or absent, not {answerable!r}")
            alternatives, after = r.get("alternatives") or (), r.get("after") or ()
            for name, value in (("alternatives", alternatives), ("after", after)):
                if not isinstance(value, list | tuple) or not all(isinstance(a, str) for a in value):
                    raise TypeError(f"{name} must be a list of strings, not {value!r}")
            c = Case(str(r.get("question") or r["text"]),
                     str(r.get("intent") or r.get("expected_intent") or "procedure_question"), answerable,
                     (facts,) if isinstance(facts, str) else tuple(map(str, facts)), r.get("source"),
                     str(r.get("split", "")), str(r.get("id", n)), tuple(alternatives), tuple(after))
        except (ValueError, KeyError, TypeError) as e:
            raise KnowledgeError(f"{path}:{n}: not a case ({e})") from e
        if split is None or c.split == split:
            cases.append(c)
    return cases


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w/,.%-]+", " ", text.lower()).split())


def has_facts(answer: str, facts: Sequence[str]) -> bool:
    a = _norm(answer)
    return all(_norm(f) in a for f in facts)


def _source_texts(kb: KnowledgeBase, doc: str | None) -> list[str]:
    return [u.text for u in kb.units() if u.doc == doc]


def _claims(answer: str) -> list[str]:
    """The answer's claims: its sentences without the "Title - Heading:" lead, step labels, the fixed safety
    notice and the device's own words about what it did or could not answer."""
    from linecrew.agent.assistant import HEARD_AS, SAFETY_NOTICE

    out = []
    text = re.sub(r"\bStep \d+:\s*", "", answer.replace(SAFETY_NOTICE, ""))
    text = re.sub(re.escape(HEARD_AS).replace(r"\{\}", ".*?"), "", text, count=1)  # what was heard, not a claim
    text = re.sub(r'I have no procedure for "[^"]*"\.|I have asked a human expert[^.]*\.', "", text)
    for s in grounding.sentences_of(text):
        s = s.split(":", 1)[1] if re.match(r"^[^:]{0,120} - [^:]{0,120}:", s) else s
        if s.strip():
            out.append(s.strip())
    return out


def judge(kb: KnowledgeBase, case: Case, answer: str, abstained: bool, citations: Sequence[str]) -> dict[str, bool]:
    """Right, contradicting, invented: the same test for any answer, grounded or generated."""
    if case.answerable is None:
        return {"correct": False, "contradiction": False, "invented": False}
    if not case.answerable:
        cited = [u.text for u in kb.units() if any(c.startswith(u.doc) for c in citations)]
        invented = not abstained and any(grounding.numbers(s) - grounding.numbers(" ".join(cited))
                                         for s in _claims(answer))
        return {"correct": abstained, "contradiction": False, "invented": invented or (not abstained and
                                                                                       bool(grounding.numbers(answer))
                                                                                       and not cited)}
    source = _source_texts(kb, case.source)
    contradiction = not abstained and any(grounding.contradicts(s, source) for s in _claims(answer))
    return {"correct": not abstained and not contradiction and has_facts(answer, case.facts),
            "contradiction": contradiction, "invented": False}


def run(ask: Callable[..., Any], kb: KnowledgeBase, cases: Sequence[Case],
        reset: Callable[[], None] | None = None) -> list[Outcome]:
    """Ask every case (a fresh conversation each, its ``after`` turns first) and judge the replies."""
    out = []
    for case in cases:
        if reset is not None:
            reset()
        for turn in case.after:
            ask(turn)
        r = ask(case.question, alternatives=case.alternatives) if case.alternatives else ask(case.question)
        o = Outcome(case, r.answer, r.intent, bool(r.abstained), bool(r.grounded), float(r.latency_ms),
                    citations=list(r.citations))
        verdict = judge(kb, case, r.answer, bool(r.abstained), r.citations)
        o.correct, o.contradiction, o.invented = verdict["correct"], verdict["contradiction"], verdict["invented"]
        if case.source:
            docs = list(dict.fromkeys(p.doc for p in kb.search(case.question, limit=10)))
            o.hit1, o.hit3 = case.source in docs[:1], case.source in docs[:3]
        out.append(o)
    return out


def report(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    answerable = [o for o in outcomes if o.case.answerable]
    uncovered = [o for o in outcomes if o.case.answerable is False]
    qa = [o for o in outcomes if o.case.answerable is not None]
    lat = [o.latency_ms for o in qa if not o.abstained and o.intent == "procedure_question"] or \
        [o.latency_ms for o in qa]

    def rate(xs: Sequence[bool]) -> float | None:
        return round(sum(xs) / len(xs), 3) if xs else None

    names = sorted({o.case.intent for o in outcomes} | {o.intent for o in outcomes})
    per_intent = {}
    for n in names:
        tp = sum(1 for o in outcomes if o.intent == n and o.case.intent == n)
        predicted = sum(1 for o in outcomes if o.intent == n)
        actual = sum(1 for o in outcomes if o.case.intent == n)
        per_intent[n] = {"precision": round(tp / predicted, 3) if predicted else None,
                         "recall": round(tp / actual, 3) if actual else None, "n": actual}
    pct = percentiles(sorted(lat)) if lat else {}
    return {
        "cases": len(outcomes), "answerable": len(answerable), "uncovered": len(uncovered),
        "answer_accuracy": rate([o.correct for o in answerable]),
        "contradictions": sum(o.contradiction for o in answerable),
        "invented_figures": sum(o.invented for o in uncovered),
        "abstain_rate_uncovered": rate([o.abstained for o in uncovered]),
        "false_abstain_rate": rate([o.abstained for o in answerable]),
        "intent_accuracy": rate([o.intent == o.case.intent for o in outcomes]),
        "per_intent": per_intent,
        "retrieval_hit_at_1": rate([o.hit1 for o in answerable]),
        "retrieval_hit_at_3": rate([o.hit3 for o in answerable]),
        "latency_p50_ms": round(pct[0.5], 1) if pct else None,
        "latency_p95_ms": round(pct[0.95], 1) if pct else None,
    }


def evaluate(assistant: Any, cases: Sequence[Case]) -> dict[str, Any]:
    """Run ``cases`` through ``assistant`` (an ``agent.assistant.Assistant``) and report; pending read-backs and
    the conversation are cleared between cases so each is judged alone."""
    def reset() -> None:
        assistant.store.put("pending_action", None)
        assistant.forget_conversation()

    return report(run(assistant.ask, assistant.kb, cases, reset))


def calibrate(answerer: Answerer, cases: Sequence[Case],
              features: Sequence[Sequence[str]] = (grounding.FEATURES,)) -> list[AnswerabilityModel]:
    """Fit an answerability model over each set of ``features`` (the first model's, ``answerability.HEARD_FEATURES``
    for the recogniser's other readings) on single-part procedure questions, each read once: label 1 when the
    selected units hold every fact (the answer would be right), 0 otherwise (wrong text, or no procedure covers it)."""
    rows, labels, covered, _ = _read_cases(answerer, cases, by_group=False)
    if len(set(labels)) < 2:
        raise KnowledgeError("calibration needs both answerable and uncovered questions")
    return [fit(rows, labels, answerable=covered, note={"cases": len(rows), "positives": sum(labels)}, features=f)
            for f in features]


def group_of(case: Case) -> str:
    """The batch a case was written in: its id's letters ("a" of "a012", "ku" of "ku03"); the id itself, or the
    question, when it has none."""
    found = re.match(r"[a-z]+", case.id)
    return found.group(0) if found else (case.id or case.question)


def calibrate_bank(answerer: Answerer, cases: Sequence[Case]) -> QuestionBank:
    """The question bank of ``cases`` (each procedure question with the units that alone hold its facts, or none
    for one no procedure covers) and its answerability model, fitted as ``calibrate`` fits, each question's bank
    features read without its own batch (``group_of``): a question never finds itself, nor its batch's paraphrases.
    ``answerer``'s own model decides the rereading meanwhile; it reads with the new bank from then on."""
    bank, rows, labels, covered, _ = bank_rows(answerer, cases)
    if len(set(labels)) < 2:
        raise KnowledgeError("calibration needs both answerable and uncovered questions")
    model = fit(rows, labels, answerable=covered, features=BANK_FEATURES,
                note={"cases": len(rows), "positives": sum(labels), "asked": len(bank.asked)})
    return replace(bank, model=model)


def bank_rows(answerer: Answerer, cases: Sequence[Case]) -> tuple[QuestionBank, list[dict[str, float]], list[int],
                                                                  list[bool], list[str]]:
    """The bank of ``cases`` (with ``answerer``'s model) and, per single-part procedure question, its features read
    without its own batch, its label (the text chosen holds its facts), whether a procedure covers it, its batch."""
    units = answerer.kb.units()
    asked = []
    for c in cases:
        if c.answerable is None:
            continue
        cites = tuple(u.citation for u in units if c.answerable and u.doc == c.source and has_facts(u.text, c.facts))
        figures = tuple(grounding.spec_figures(answerer.normalised(c.question)))
        asked.append(Asked(c.question, cites, bool(c.answerable), group_of(c), figures))
    bank = QuestionBank(answerer.model, tuple(asked), digests(units))
    answerer.use_bank(bank)
    return (bank, *_read_cases(answerer, cases, by_group=True))


def _read_cases(answerer: Answerer, cases: Sequence[Case], *, by_group: bool) -> tuple[
        list[dict[str, float]], list[int], list[bool], list[str]]:
    """Per single-part procedure question: the features of the text ``answerer`` chooses (``by_group``: read
    without the question's own batch in the bank), its label (that text holds every fact: the answer would be
    right), whether a procedure covers it, its batch."""
    rows, labels, covered, groups = [], [], [], []
    for c in cases:
        if c.answerable is None or len(grounding.split_parts(c.question)) != 1:
            continue
        part = answerer.select(c.question, unseen=group_of(c) if by_group else None)
        rows.append(part.features)
        labels.append(int(bool(c.answerable) and has_facts(grounding.compose(part.said), c.facts)))
        covered.append(bool(c.answerable))
        groups.append(group_of(c))
    return rows, labels, covered, groups
