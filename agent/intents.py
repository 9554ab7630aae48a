"""Intent recognition: field-language rules plus retrieval strength, or the local LLM constrained to JSON.

The intents, with exactly these names: ``procedure_question``, ``log_note``, ``job_status``,
``parts_request``, ``safety_emergency``, ``escalate_to_expert``, ``other``. The rule classifier is the
default because it measured better than the 135M model under a JSON grammar on our labelled set
(``tests/benchmarks/assistant.py`` reports both); the LLM classifier stays available by configuration.
Rules are ordered by the cost of a miss: safety first.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

INTENTS = ("procedure_question", "log_note", "job_status", "parts_request", "safety_emergency",
           "escalate_to_expert", "other")

_NUM = {"a couple of": 2, "a pair of": 2, "a dozen": 12,
        "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
        "nine": 9, "ten": 10, "twelve": 12, "dozen": 12, "couple": 2, "pair": 2}
_NUM_RE = r"(a couple of|a pair of|a dozen|\d+|an|a|one|two|three|four|five|six|seven|eight|nine|ten|twelve)"

_SAFETY = re.compile(
    r"\b(fire|smoke|injur\w*|hurt|bleed\w*|unconscious|not breathing|can'?t breathe|collapsed|electrocut\w*|"
    r"shocked|got a shock|arc flash|burn(ed|t|s)?|emergency|911|man down|live wire|wire(s)? (is |are )?down|"
    r"downed (live )?(wire|line|conductor)s?|explosion|exploded)\b", re.I)
_ESCALATE = re.compile(
    r"\b(talk|speak) (to|with) (an? )?(expert|engineer|supervisor|specialist|human|person)|"
    r"\b(connect|put) me (through )?(to|with)|\bescalate\b|\bsecond opinion\b|"
    r"\b(need|get|want) (an? )?(expert|engineer|specialist|supervisor)\b|\bnot sure what to do\b", re.I)
_NOTE = re.compile(
    r"^\s*(please\s+)?(note|log|record|add (a )?note|make a note|write down|remember)\b[:,]?\s*(that\s+)?", re.I)
_ON_SITE = re.compile(r"\b(on site|onsite|arrived|i'?m here|we'?re here|at the (job )?site|on location)\b", re.I)
_DONE = re.compile(r"\b((job|work|it|repair|replacement|everything)\s*('s| is| has been)?\s*"
                   r"(done|complete|completed|finished|restored)|wrapped up|all done|power is restored|"
                   r"mark (the )?job (as )?(done|complete))\b", re.I)
_BLOCKED = re.compile(r"\b(blocked|can'?t (proceed|continue|access|get (to|in)|reach)|cannot (proceed|continue|"
                      r"access|reach)|unable to|waiting (for|on)|stuck|no access)\b", re.I)
_PARTS = re.compile(r"\b(need|needs|order|request|send( me)?|bring( me)?|short of|out of|requesting)\b", re.I)
_ITEM = re.compile(rf"\b{_NUM_RE}\s+((?:[a-z][a-z-]*\s?){{1,4}}?)(?=\s*(?:,|\band\b|\bplus\b|\.|$|\bfor\b|\bto\b))",
                   re.I)
_QUESTION = re.compile(r"^\s*(how|what|where|when|why|which|should|can|could|do|does|is|are|tell me|explain|"
                       r"walk me through|what's)\b|\?\s*$", re.I)
_PROCEDURE = re.compile(r"\b(procedure|steps?|check|inspect\w*|test\w*|replac\w*|lockout|tagout|loto|"
                        r"ground\w*|verify|measure)\b", re.I)


@dataclass(frozen=True)
class Intent:
    name: str
    confidence: float
    slots: dict[str, Any] = field(default_factory=dict)
    source: str = "rules"


def parse_items(text: str) -> list[dict[str, Any]]:
    items = []
    for m in _ITEM.finditer(text):
        qty_word, part = m.group(1).lower(), m.group(2).strip(" -").lower()
        qty = int(qty_word) if qty_word.isdigit() else _NUM.get(qty_word, 1)
        if part and part not in {"minute", "minutes", "hour", "hours", "more"}:
            items.append({"part": part, "quantity": qty})
    return items


def _reason(text: str) -> str:
    m = re.search(r"\b(because|due to|since|as)\b\s*(.*)", text, re.I)
    return (m.group(2) if m else text).strip().rstrip(".")


def classify_rules(text: str, retrieval_strength: float = 0.0) -> Intent:
    """``retrieval_strength`` in [0, 1]: how well the knowledge base matches (raises question confidence)."""
    t = text.strip()
    if _SAFETY.search(t):
        return Intent("safety_emergency", 0.95)
    if _ESCALATE.search(t):
        return Intent("escalate_to_expert", 0.9)
    m = _NOTE.match(t)
    if m:
        return Intent("log_note", 0.9, {"text": t[m.end():].strip() or t})
    if _BLOCKED.search(t):
        return Intent("job_status", 0.85, {"status": "blocked", "reason": _reason(t)})
    if _DONE.search(t):
        return Intent("job_status", 0.85, {"status": "done"})
    if _ON_SITE.search(t):
        return Intent("job_status", 0.85, {"status": "on_site"})
    if _PARTS.search(t):
        items = parse_items(t)
        if items:
            return Intent("parts_request", 0.85, {"items": items})
    if _QUESTION.search(t) or _PROCEDURE.search(t):
        return Intent("procedure_question", round(0.5 + 0.45 * min(1.0, retrieval_strength), 3))
    return Intent("other", 0.5)


# --------------------------------------------------------------------------------- LLM alternative
GRAMMAR = (
    'root ::= "{\\"intent\\": \\"" intent "\\"}"\n'
    "intent ::= " + " | ".join(f'"{i}"' for i in INTENTS) + "\n"
)

LLM_INSTRUCTIONS = (
    "Classify the technician's message into one intent: procedure_question (asks how to do something), "
    "log_note (wants something written down), job_status (on site, done, or blocked), parts_request "
    "(needs parts or material), safety_emergency (injury, fire, shock, downed live wire), escalate_to_expert "
    "(wants a human expert), other. Reply with JSON."
)


def parse_llm_intent(raw: str) -> Intent:
    try:
        name = json.loads(raw)["intent"]
    except (ValueError, KeyError, TypeError):
        return Intent("other", 0.0, source="llm")
    return Intent(name if name in INTENTS else "other", 0.6, source="llm")
