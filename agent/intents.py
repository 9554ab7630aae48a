"""Intent recognition: a small classifier trained from the labelled set, with rules kept only as guards.

The intents, with exactly these names: ``procedure_question``, ``log_note``, ``job_status``,
``parts_request``, ``safety_emergency``, ``escalate_to_expert``, ``other``.

The classifier (scikit-learn: word and character n-gram TF-IDF into a logistic regression) is trained on
first use from the tune part of ``agent/data/intents.jsonl`` — the held-out part is never seen by it, and
the benchmark reports on that part. Guards, in order of the cost of a miss:

1. a person hurt, a fire or an explosion is an emergency whatever the phrasing ("he got a shock, what do I
   do?" escalates at once);
2. a question is never an action: "work's finished, what do we do before we re-energize?" and "the jaws look
   burnt — what do I check?" are questions, even when the classifier leans to a status or an emergency; and
   an emergency names a hazard (fire, smoke, a shock, a wire down...), so a stray word never raises one;
3. an action needs its slots (a status word, a part with a quantity), or it is not taken as one.

The former regex classifier stays as ``classify_rules``, measured beside it by the benchmark.
"""

from __future__ import annotations

import importlib.resources
import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from linecrew.agent import grounding

INTENTS = ("procedure_question", "log_note", "job_status", "parts_request", "safety_emergency",
           "escalate_to_expert", "other")
ACTIONS = frozenset({"log_note", "job_status", "parts_request"})
WEAK = 0.4  # below this the classifier's pick for a question is a guess ('is there a note about the dog': 0.06;
#            'read me step 7': 'other' at 0.30, the procedure at 0.26)
LABELLED = Path(str(importlib.resources.files("linecrew.agent").joinpath("data", "intents.jsonl")))

_NUM = {"a couple of": 2, "a pair of": 2, "a dozen": 12, "a couple": 2, "a pair": 2,
        "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
        "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "fifteen": 15, "twenty": 20, "thirty": 30, "forty": 40,
        "fifty": 50, "hundred": 100, "dozen": 12, "couple": 2, "pair": 2}
_NUM_RE = (r"(a couple of|a pair of|a couple(?= more\b)|a pair(?= more\b)|a dozen|\d+|an|a|one|two|three|four|five|"
           r"six|seven|eight|nine|ten|eleven|twelve|"
           r"fifteen|twenty|thirty|forty|fifty|hundred)")

# "arc flash" names an event, except where it names what protects from one: "arc flash PPE for meters", "what arc
# flash rating do I need" ask about gear
_GEAR = (r"\s+(?:ppe|gear|clothing|clothes|suits?|hoods?|rated|ratings?|protection|protective|boundary|category|cal|"
         r"shield|jacket|coveralls|labels?|study|training)\b")
_NOT_GEAR = rf"(?!{_GEAR})"
_ARC_FLASH_GEAR = re.compile(rf"\barc flash(?={_GEAR})", re.I)  # the gear's name, not the event
_HARD_EMERGENCY = re.compile(
    r"\b(unconscious|not breathing|isn'?t breathing|can'?t breathe|collapsed|electrocut\w*|got (a )?shock(ed)?|"
    r"been shocked|got shocked|man down|(fell|fallen) (from|off|out)|is hurt|are hurt|got hurt|injured|bleeding|"
    r"ambulance|911|on fire|caught fire|exploded|explosion|fire at|arc flash" + _NOT_GEAR + r"|is burned|got burned|"
    r"not moving|"
    r"(pinned|trapped|crushed) (under|by|between|in)|"
    # the technician hurt: "I'm hurt", "I am injured", "I cut my hand", "I burned my arm", "hurt bad"
    r"(i'm|i am|i've been|i was) (hurt|burned|burnt|shocked|cut)|i (cut|burned|burnt|broke|hurt|injured) my "
    r"(hand|arm|finger|leg|foot|head|face|eye|back|wrist|ankle|knee|shoulder|neck|thumb|chest)s?|"
    r"hurt (bad|badly))\b",
    re.I)
_SAFETY = re.compile(
    r"\b(fire|smok\w*|injur\w*|hurt|bleed\w*|unconscious|not breathing|can'?t breathe|collapsed|electrocut\w*|"
    r"shocked|got a shock|arc flash|burn(ed|t|s|ing)?|emergency|911|man down|live (wire|line|conductor)s?|"
    r"(wire|line|conductor|primary|neutral|drop)s?('s| is| are)? down(?! for\b)|downed (live )?(wire|line|conductor)s?|"
    r"explosion|exploded|(hit|struck) by|crushed|"
    r"pinned|trapped|fell|fallen)\b", re.I)
# a line the crew took down on purpose is work, not a hazard
_TAKEN_DOWN = re.compile(r"\b(took|take|taking|taken|bring|brought|put|pull(ed)?|lower(ed)?) (the |that |our |a )?"
                         r"(wire|line|conductor|primary|neutral|drop)s? down\b", re.I)
_ESCALATE = re.compile(
    r"\b(talk|speak) (to|with) (an? )?(expert|engineer|supervisor|specialist|human|person)|"
    r"\b(connect|put) me (through )?(to|with)|\bescalate\b|\bsecond opinion\b|"
    r"\b(need|get|want) (an? )?(expert|engineer|specialist|supervisor)\b|\bnot sure what to do\b", re.I)
_ASKS_FOR_A_PERSON = re.compile(
    r"\b(expert|engineer\w*|supervisor|foreman|boss|human|person|people|someone|somebody|anyone|specialist|help|"
    r"escalat\w*|on-?call|protection|talk|speak|call me|transfer|second opinion|review)\b", re.I)
_NOTE = re.compile(
    r"^\s*((can|could|would|will) you\s+)?(please\s+)?"
    r"(note|log|record|(add|send|leave|drop|make) (a )?note|write down|jot down|remember|remind me( to)?|"
    r"put in the notes|(?:tell|let|inform|notify) (?:the )?(?:office|dispatch(?:er)?|control(?: cent(?:er|re))?|"
    r"supervisor|foreman|ops|operations)(?: know)?)"
    r"\b( it| for dispatch| to dispatch| for the office| to the office| it down| down)?[:,]?\s*"
    r"((that|saying)\s+)?", re.I)
_ON_SITE = re.compile(r"\b(on site|onsite|arrived|i'?m here|we'?re here|at the (job )?site|on location|pulled up|"
                      r"got here|at the site|on scene|made it to|we'?re at the|crew (is|has) (here|arrived))\b", re.I)
_DONE = re.compile(r"\b((job|work|it|repair|replacement|everything)\s*('s| is| has been)?\s*"
                   r"(done|complete|completed|finished|restored)|wrapped up|all done|power('s| is) (back|restored)|"
                   r"mark (the )?job (as )?(done|complete)|(set|mark) (this|the) job (to|as) (done|complete)|"
                   r"closing out|job complete|finished|fixed|closing the ticket|(been|is|are) restored|back on)\b",
                   re.I)
_BLOCKED = re.compile(r"\b(blocked|can'?t (proceed|continue|access|get (to|in|through)|reach)|cannot (proceed|continue|"
                      r"access|reach)|unable to|waiting (for|on)|stuck|no access|road'?s? closed|held up|washed out|"
                      r"is out)\b", re.I)
_PARTS = re.compile(r"\b(need|needs|order|request|send( me)?( out)?|bring( me)?|short of|out of|requesting)\b", re.I)
_ITEM = re.compile(rf"(?<![/.,])\b{_NUM_RE}\s+((?:[a-z0-9][a-z0-9/-]*\s?){{1,4}}?)"
                   rf"(?=\s*(?:,|\band\b|\bplus\b|\.|$|\bfor\b|\bto\b|\bout\b|\bplease\b|\bon\b))", re.I)
_SHORT = re.compile(rf"\b(?:out of|short of|short on|low on)\s+((?:[a-z0-9][a-z0-9-]*\s?){{1,4}}?)\s*,?\s*"
                    rf"(?:need|bring|send|want)\s+(?:me\s+)?{_NUM_RE}\b", re.I)
_QUESTION = re.compile(
    r"\?\s*$|^\s*(and\s+)?(how|what|what's|whats|where|when|why|which|who|whose|is it|is that|is this|are|should|"
    r"shall|do|does|did|must|may|tell me|read me|repeat|explain|walk me through|need to know|is there|are there|"
    r"was there|"
    r"is (the|my|our|this|that|he|she|it|everyone|anyone|anybody)|has (the|anyone|anybody|he|she|it)|"
    r"have (we|you|they|i))\b|"
    r"^\s*(can|could) (i|we|it|he|she|they|this|that|the|my)\b|"
    # asked mid-utterance as speech recognition writes it: "once we're finished do we test the meter"
    r"\b(do|should|shall|can|could|must) (i|we)\b(?! (know|think|guess|need|want|have|mean)\b)|"
    r"[,;.]\s*(and\s+|or\s+)?((how|what|where|when|why|which|should|do|does|is|are|who)\b|"
    r"(can|could)\b(?! you\b))(?!['\u2019]t)",
    re.I)  # "gate's locked, can't get in" is told, not asked; "..., can you send them" is a request
_PROCEDURE = re.compile(r"\b(procedure|steps?|check|inspect\w*|test\w*|replac\w*|lockout|tagout|loto|"
                        r"ground\w*|verify|measure)\b", re.I)


@dataclass(frozen=True)
class Intent:
    name: str
    confidence: float
    slots: dict[str, Any] = field(default_factory=dict)
    source: str = "classifier"


# asked of the device to act, as a question: "can you order a new meter seal?", "could you mark this job done?" (a
# recogniser writes the question mark): a request, read back and done only after a yes like any other
_ASKED_TO_ACT = re.compile(r"^\s*(can|could|would|will) you (please |just )?(order|send|request|bring|mark|note|log|"
                           r"save|add|let dispatch know)\b", re.I)


def is_question(text: str) -> bool:
    """Asked, not told: a question mark, a question word up front, or "…, what do I…" after a remark."""
    return bool(_QUESTION.search(text.strip()))


MAX_QUANTITY = 10_000  # shared.protocol.PartItem takes 1 to 10,000
_NAMED_BY_NUMBER = re.compile(r"\b(step|steps|class|form|pole|number|no\.?|phase|job|section|page|level|size|"
                              r"type|unit|truck|bay|feeder|circuit|row)\s*#?\s*$", re.I)


# a length of stock: "25 feet of 2/0 copper", "a hundred meters of triplex"
_LENGTH_OF = re.compile(r"(?<![/.,])\b(\d+)\s+(feet|foot|ft|meters?|metres?|yards?)\s+of\s+"
                        r"([a-z0-9][\w/-]*(?:\s+(?!and\b|plus\b|for\b|to\b|please\b)[a-z0-9][\w/-]*){0,3})", re.I)


_MORE = re.compile(r"^(more|extra|additional|spare)\s+")  # "two more insulators" asks for insulators


def parse_items(text: str) -> list[dict[str, Any]]:
    """The parts and quantities an utterance asks for. Numbers said in words are read as text2num reads them
    ("twenty five fuse links": 25, not 20 of "five fuse links"); a number inside a size ("2/0", "7.2") is no
    quantity; a quantity is 1 to 10,000, as the server's schema takes it."""
    text = grounding.spoken_figures(text)
    items: list[dict[str, Any]] = [{"part": f"{unit.lower()} of {part.lower()}", "quantity": int(n)}
                                   for n, unit, part in _LENGTH_OF.findall(text)]
    text = _LENGTH_OF.sub(" , ", text)
    for m in _ITEM.finditer(text):
        if _NAMED_BY_NUMBER.search(text[:m.start()]):
            continue  # "step two of grounding", "pole 14", "class 2": a name or a place, not a quantity
        qty_word, part = m.group(1).lower(), _MORE.sub("", m.group(2).strip(" -").lower())
        qty = int(qty_word) if qty_word.isdigit() else _NUM.get(qty_word, 1)
        if part and part not in {"minute", "minutes", "hour", "hours", "more", "more of them", "feet", "foot"}:
            items.append({"part": part, "quantity": qty})
    items = [i for i in items if 1 <= i["quantity"] <= MAX_QUANTITY]
    if not items:  # "out of ground clamps, need four more": the part first, the quantity after
        short = _SHORT.search(text)
        if short:
            qty_word = short.group(2).lower()
            qty = int(qty_word) if qty_word.isdigit() else _NUM.get(qty_word, 1)
            if 1 <= qty <= MAX_QUANTITY:
                items.append({"part": short.group(1).strip().lower(), "quantity": qty})
    return items


def _reason(text: str) -> str:
    m = re.search(r"\b(because|due to|since|as)\b\s*(.*)", text, re.I)
    return (m.group(2) if m else text).strip().rstrip(".")


def _status(text: str, *, said: bool = False) -> dict[str, Any] | None:
    """The status a remark gives. ``said``: the classifier already read a status, so the wider ways crews say
    one count too ("jobs done", "we're done here", "close it out", "at the pole now", "road's flooded out");
    the rules reference keeps the narrower patterns it was measured with."""
    if _BLOCKED.search(text) or (said and _BLOCKED_SAID.search(text)):
        return {"status": "blocked", "reason": _reason(text)}
    if (_DONE.search(text) or (said and _DONE_SAID.search(text))) and not (said and _NOT_DONE.search(text)):
        return {"status": "done"}
    if _ON_SITE.search(text) or (said and _ON_SITE_SAID.search(text)):
        return {"status": "on_site"}
    return None


# a done-word that says when, not that it is ("once we're finished ..."); "not done" is ``_NOT_DONE``'s
_NOT_YET = r"(?<!when )(?<!once )(?<!after )(?<!if )(?<!before )"
_DONE_SAID = re.compile(
    rf"\b({_NOT_YET}(done|finished|complete|completed|wrapped up|wrapping up|wrapping it up)\b(?! with (the|this|that) "
    r"(first|second|third|next|last|one|cutout|step|side|phase|pole))|"
    r"clos(e|ed|ing) (it|this|this one|the job|the ticket|this job|this ticket) out|clos(e|ing) out|"
    r"(ticket|job) can be closed|(is|are|'s|'re) back on|back in service|restored|(outage|fault)( is|'s) cleared|"
    r"all set here|packing up|(that's|it's|job's) a wrap|heading (back|home|out))\b", re.I)
_NOT_DONE = re.compile(r"\b(not|isn't|aren't|haven't|hasn't|never|nowhere near) (yet |quite |all |really )?"
                       r"(done|finished|complete|completed|wrapped|restored|back on)|"
                       r"\bnot yet\b|\bstill (working|at it)", re.I)
_ON_SITE_SAID = re.compile(
    r"\b((rolling|pulling|pulled) (up|in)|(got|get|made it) to the|(we're|we are|i'm|i am|now) (at|on) (the )?"
    r"(pole|address|house|site|location|job|scene|substation|yard|pad|vault|structure)|"
    r"^at the (pole|address|house|site|location|substation|yard|pad|vault|structure)\b|here now|on the job)\b",
    re.I)
_BLOCKED_SAID = re.compile(
    r"\b((gate|door|fence|yard|vault|room|it)('s| is| was| are)? (all )?locked( up)?|"
    r"locked (gate|fence|door|yard|vault)|flooded( out)?|no access|no key|"
    r"can't get (in|to|through|there|near)|cannot get (in|to|through)|"
    r"waiting (on|for)|(tree|fire|police|traffic) crew (is )?(there|blocking)|won't let us)\b", re.I)


def slots_for(name: str, text: str) -> dict[str, Any] | None:
    """The slots an action needs, or None when the text does not carry them (then it is not that action)."""
    if name == "log_note":
        m = _NOTE.match(text)
        return {"text": (text[m.end():].strip() if m else text.strip()) or text.strip()}
    if name == "job_status":
        return _status(text, said=True)
    if name == "parts_request":
        items = parse_items(text)
        return {"items": items} if items else None
    return {}


# ------------------------------------------------------------------------------------------ classifier
def _plain(text: str) -> str:
    """As the classifier reads an utterance: without hesitations or a greeting ("um, hey, we're on um scene"),
    and contractions typed without the apostrophe with one ("im hurt", "whats the class")."""
    return grounding.apostrophes(grounding.without_fillers(text.strip()))


def load_labelled(path: Path = LABELLED, *, split: str | None = None) -> list[tuple[str, str]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [(r["text"], r["intent"]) for r in rows if split is None or r.get("split") == split]


class IntentClassifier:
    """TF-IDF (words 1-2, characters 2-5) into a balanced logistic regression; trained in well under a second."""

    def __init__(self, examples: list[tuple[str, str]]) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline, make_union

        texts, labels = zip(*examples, strict=True)
        self.pipeline = make_pipeline(
            make_union(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, lowercase=True),
                       TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True)),
            LogisticRegression(C=20.0, max_iter=3000, class_weight="balanced"),
        )
        self.pipeline.fit([_plain(t) for t in texts], list(labels))  # as ``classify`` reads them
        self.classes = [str(c) for c in self.pipeline.classes_]

    def scores(self, text: str) -> dict[str, float]:
        probs = self.pipeline.predict_proba([text])[0]
        return {c: float(p) for c, p in zip(self.classes, probs, strict=True)}


_lock = threading.Lock()
_default: list[IntentClassifier] = []


def default_classifier() -> IntentClassifier:
    """Trained once per process, on the tune part only; concurrent first callers wait for the one training."""
    with _lock:
        if not _default:
            _default.append(IntentClassifier(load_labelled(split="tune")))
        return _default[0]


def classify(text: str, classifier: IntentClassifier | None = None) -> Intent:
    """The classifier's intent, then the guards (emergency, question-is-not-an-action, slots). Told, then said
    again: where the whole reads as an action or as nothing, a sentence that alone is an emergency makes the whole
    one ("We got here and set up. There's a fire in the vault"), and a last sentence that alone is a question or
    asks for a person makes the whole that ("We got here and set up. Glove retest interval"): answered or offered,
    never acted on; the action can be said on its own and is read back then."""
    t = _plain(text)
    found = _classify(t, classifier)
    sentences = [s for s in grounding.sentences_of(t) if s.strip(" .!?")]
    if (found.name in ACTIONS or found.name == "other") and len(sentences) > 1:
        each = [_classify(s, classifier) for s in sentences]
        alarm = next((i for i in each if i.name == "safety_emergency"), None)
        if alarm is not None:
            return alarm
        if each[-1].name in ("procedure_question", "escalate_to_expert"):
            return each[-1]
    return found


def _classify(t: str, classifier: IntentClassifier | None) -> Intent:
    if not t:
        return Intent("other", 1.0, source="guard")
    if _ASKED_TO_ACT.match(t):  # a request put as a question is read, and its slots taken, as a request
        t = t.rstrip(" ?")
    if _HARD_EMERGENCY.search(t):
        return Intent("safety_emergency", 0.99, source="guard")
    scores = (classifier or default_classifier()).scores(t)
    ranked = sorted(scores.items(), key=lambda kv: -kv[1])
    question = is_question(t)
    if _NOTE.match(t) and not question:
        return Intent("log_note", round(max(scores.get("log_note", 0.0), 0.9), 3), slots_for("log_note", t) or {},
                      "guard")
    for name, p in ranked:
        if question and name in (*ACTIONS, "safety_emergency"):
            continue  # a question is answered, never turned into an action or an alarm
        if name == "safety_emergency" and (not _SAFETY.search(_ARC_FLASH_GEAR.sub("", t)) or _TAKEN_DOWN.search(t)):
            continue  # an emergency names a hazard: "next" is not one, nor "we took the line down for the splice"
        if name == "escalate_to_expert" and not _ASKS_FOR_A_PERSON.search(t):
            continue  # an escalation asks for a person ("walk me through this job" asks for none)
        slots = slots_for(name, t)
        if slots is None:
            continue  # an action without what it needs is not that action
        if question and name != "procedure_question" and p < WEAK:
            # asked, and nothing else fits well: a question, answered from a procedure or honestly not
            return Intent("procedure_question", round(scores.get("procedure_question", 0.0), 3), {})
        return Intent(name, round(p, 3), slots)
    return Intent("other", 0.5, source="guard")


# ------------------------------------------------------------------------------------------ the old rules
def classify_rules(text: str, retrieval_strength: float = 0.0) -> Intent:
    """The regex classifier this module replaced; kept as the benchmark's reference."""
    t = text.strip()
    if _SAFETY.search(t):
        return Intent("safety_emergency", 0.95, source="rules")
    if _ESCALATE.search(t):
        return Intent("escalate_to_expert", 0.9, source="rules")
    m = _NOTE.match(t)
    if m:
        return Intent("log_note", 0.9, {"text": t[m.end():].strip() or t}, "rules")
    status = _status(t)
    if status:
        return Intent("job_status", 0.85, status, "rules")
    if _PARTS.search(t):
        items = parse_items(t)
        if items:
            return Intent("parts_request", 0.85, {"items": items}, "rules")
    if _QUESTION.search(t) or _PROCEDURE.search(t):
        return Intent("procedure_question", round(0.5 + 0.45 * min(1.0, retrieval_strength), 3), source="rules")
    return Intent("other", 0.5, source="rules")


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
