"""Grounded answers: the procedure's own words, chosen unit by unit, and a check for any other sentence.

Pure code on values (units in, selections and checks out), tested with tables.

* ``Corpus`` holds every unit's content terms (stemmed, stop words out) and their idf.
* ``analyse`` turns a question (widened by the trade lexicon) into weighted terms and what it asks for
  (a figure, the steps, a single fact); ``split_parts`` cuts a multi-part question into its questions.
* ``select`` scores every unit by how much of the question's idf mass it (and its section heading) covers,
  adds the section's lexical rank, and returns the best unit, the section's steps when the steps were asked
  for, or the best unit with its close neighbours — plus the features ``answerability`` scores.
* ``check`` decides whether a sentence someone else wrote (the local model, an old answer) is supported by
  the cited text: every number with its unit, the negation, the named equipment and most content words must
  be there. Anything unsupported is dropped by the caller; the quoted text stands.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from text_to_num import alpha2digit

from linecrew.agent.knowledge import _FILLER, _STOP, UnitRef

_WORD = re.compile(r"[a-z0-9]+(?:[.,/][0-9]+)*")
_COMPOUND = re.compile(r"\b[a-z]+(?:-[a-z]+)+\b")
_CANON = {"lockout": "lock", "tagout": "tag", "voltag": "volt", "energis": "energ"}
_NUMBER_WORDS = {"one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7",
                 "eight": "8", "nine": "9", "ten": "10", "twelve": "12", "fifteen": "15", "twenty": "20",
                 "thirty": "30", "fifty": "50", "hundred": "100"}
_NEG = re.compile(r"\b(not|never|no|cannot|can't|don't|do not|doesn't|must not|mustn't|isn't|aren't|won't|"
                  r"shouldn't|without|nothing|none|stays? off|only)\b", re.I)
_WANTS_NUMBER = re.compile(
    r"\b(how (many|much|long|far|close|often|big|high|low|old)|what (size|rating|class|voltage|distance|percent|"
    r"reading|number|torque|temperature|current|weight|gauge|length)|minimum|maximum|\bmin\b|\bmax\b|what (is|'s) "
    r"the (size|rating|limit|spec|voltage|distance|class)|which (size|class|fuse|glove)|rated (for|at)|percent|"
    r"size of|rating of|spec\b|specs\b|value)\b", re.I)
_WANTS_STEPS = re.compile(
    r"\b(steps?|procedure|walk me through|walk through|go through|how (do|should|would|can) (i|we|you)|"
    r"what do (i|we) do|what('s| is) the process|process for|in what order|order of|sequence|checklist|"
    r"what should (i|we) (do|check)|run me through)\b", re.I)
_AFTER = re.compile(r"\b(what|which)( step)? (comes|goes|is) (after|next after)\b|\bafter (that|the|this) .* what\b",
                    re.I)
# a question for the first (or last) thing to do in a situation: "what do I do first", "what's the first thing",
# "what am I writing down first", "first steps", "where do I start"; the situation names the procedure, the question
# its first step, which shares few of its words ("which clamp goes on first" compares two things: not this)
_WHAT_DO_I = r"\bwhat (?:do|should|am|are) (?:i|we) (?:\w+ ){0,2}"  # "what do I", "what am I writing down"
_FIRST = re.compile(rf"\bwhat(?:'?s| is)? (?:the )?first (?:thing|step)s?\b|{_WHAT_DO_I}first\b|\bfirst steps?\b|"
                    r"\bwhere do (?:i|we) (?:start|begin)\b", re.I)
_LAST = re.compile(rf"\bwhat(?:'?s| is)? (?:the )?(?:last|final) (?:thing|step)\b|{_WHAT_DO_I}last\b", re.I)
# (``_AFTER`` stays for the step after the question's own best match when the named step is not plain enough to
# anchor on: without it the tune part loses a selection)
# a question that names one step and asks for the one after it (or before it): "after critical customers what gets
# restored", "once I've waited on the caps is it safe", "which customers come first after public hazards", "before
# the locks come off what do we do"
_SEQ_LEAD_PART = r"^(?:so |and |ok,? |we'?re done,? )?(?P<rel>after|once|before) (?P<clause>.+?),? (?P<ask>(?:now )?(?:"
_SEQ_LEAD = re.compile(_SEQ_LEAD_PART + r"what|who|where|which|how|do|does|should|is|are|can)\b.*)$", re.I)
# the same, where a question word starts the ask: "after the new meter IS in WHAT do I check" names the step by
# "the new meter is in", not by "the new meter"
_SEQ_LEAD_WH = re.compile(_SEQ_LEAD_PART + r"what|who|where|which|how)\b.*)$", re.I)
_SEQ_TRAIL = re.compile(r"^(?P<ask>(?:what|who|which)\b.*?) (?P<rel>after|once) (?P<clause>.+)$", re.I)
# a follow-up that names the step and nothing else: "and after the critical customers?"
_SEQ_BARE = re.compile(r"^(?:and |so |ok,? )?(?P<rel>after|once) (?P<clause>(?:(?!\b(?:what|how|who|where|which|"
                       r"when|why|do|does|can|should|is|are)\b).)+?)(?P<ask>)$", re.I)
_CONDITION = re.compile(r"^(if|when)\b|[,:;] (if|when)\b", re.I)  # a rule for a situation: "If X, do Y"
_PART_SPLIT = re.compile(
    r"\?\s+|;\s+|\s+(?:and also|also|plus)\s+|,?\s+and\s+(?=(?:what|how|when|where|which|who|why|do|does|is|are|"
    r"should|can|could|must|then|after)\b)", re.I)
EQUIPMENT = frozenset(
    "transformer recloser breaker fuse cutout meter socket jaw arrester bushing insulator capacitor conductor "
    "neutral ground grounds grounding clamp glove gloves sleeve protector boom bucket outrigger pole crossarm guy "
    "anchor generator relay coil battery detector hot stick lock tag ring seal hammer harness lanyard rope aed "
    "cpr switch gauge tank oil pcb service drop mast weatherhead leg legs pad cone".split())


_local = threading.local()


def _stemmer() -> Any:
    """One Snowball stemmer per thread: a stemmer keeps its state while it works and is not thread-safe."""
    stemmer = getattr(_local, "stemmer", None)
    if stemmer is None:
        import snowballstemmer

        stemmer = _local.stemmer = snowballstemmer.stemmer("english")
    return stemmer


def _norm_number(w: str) -> str:
    return w.replace(",", "") if re.fullmatch(r"\d[\d,]*(\.\d+)?", w) else w


# spoken contractions said in full: split at the apostrophe they leave fragments ("don", "isn", "ve") that no
# procedure has, which weigh as much as the rarest word
_CONTRACTIONS = ((re.compile(r"\bdon'ts\b"), "never"),  # "any don'ts for lockout": what the "Never" lists say
                 (re.compile(r"\bwon't\b"), "will not"), (re.compile(r"\bcan't\b"), "can not"),
                 (re.compile(r"\bain't\b"), "is not"), (re.compile(r"n't\b"), " not"), (re.compile(r"'ve\b"), " have"),
                 (re.compile(r"'ll\b"), " will"), (re.compile(r"'re\b"), " are"), (re.compile(r"'d\b"), " would"),
                 (re.compile(r"\bi'm\b"), "i am"))


# figures as a technician says or types them, in the procedures' notation: "seven thousand two hundred volts" ->
# "7200 volts" (text2num: isolated small numbers stay words, "one at a time"), "138 kilovolts" -> "138 kV", "a
# 50kva can" -> "50 kva", "class two gloves" -> "class 2", "class double-oh" -> "class 00". Without it the figure
# checks see no figure ("glove class for seven thousand two hundred volts" chose Class 2) or none they know.
_UNIT_WORDS = ((re.compile(r"\bkilo[- ]?volt[- ]?amp(?:ere)?s?\b", re.I), "kVA"),
               (re.compile(r"\bkilo[- ]?volts?\b", re.I), "kV"),
               (re.compile(r"(?<=\d) ?\b(?:k\.v\.a\.|k ?v ?a\b)", re.I), " kVA"),  # "50 k v a", "7.2 K.V."
               (re.compile(r"(?<=\d) ?\b(?:k\.v\.|k ?v\b)", re.I), " kV"),
               # a service voltage said in pairs: "one twenty volts", "two forty V" (text2num: "1 20 volts")
               (re.compile(r"\b([1-9]) ([1-9]0|[1-9][1-9])(?= ?(?:volts?|v)\b)", re.I), r"\1\2"),
               # a cable size said as the trade says it: "two aught" is 2/0
               (re.compile(r"\b(?:(1|one)|(2|two)|(3|three)|(4|four))[- ](?:aught|ought)\b", re.I),
                lambda m: f"{m.lastindex}/0"),
               (re.compile(r"\bamperes?\b", re.I), "amps"),
               (re.compile(r"\b(centi|milli)metres?\b", re.I), r"\1meters"))
_GLUED = re.compile(r"\b(\d+(?:\.\d+)?)(kva|kvar|kv|mva|volts?|amps?|v|a|meters?|m|cm|mm|ft|feet)\b", re.I)
_LINK_SPEED = re.compile(r"\b(\d+)\s+([tk])\b(?=\s*(?:fuse\s+)?links?\b)", re.I)  # "an 8 T link" is an 8T link
_CLASS_WORD = re.compile(r"\b(class)\s+(zero zero|oh oh|double[- ]?(?:oh|zero|o)|zero|oh|one|two|three|four)\b", re.I)
_CLASS_NUMBER = {"zero": "0", "oh": "0", **_NUMBER_WORDS}


# contractions typed without the apostrophe ("the lower controls dont work", "bucket wont come down"): the
# negation is what tells a failure's rule from the step that failed. Words that are also other words ("its",
# "well", "were", "ill", "id", "hell", "shell") are left alone.
_BARE_CONTRACTION = re.compile(r"\b(do|does|did|is|are|was|were|has|have|had|should|could|would|must|ca|wo|ai)nt\b"
                               r"|\b(im|ive|whats|thats|theres|wheres|whos|hows|lets|youre|theyre|weve|theyve)\b",
                               re.I)
_APOSTROPHE = {"im": "I'm", "ive": "I've", "whats": "what's", "thats": "that's", "theres": "there's",
               "wheres": "where's", "whos": "who's", "hows": "how's", "lets": "let's", "youre": "you're",
               "theyre": "they're", "weve": "we've", "theyve": "they've"}


def apostrophes(text: str) -> str:
    """``text`` with its apostrophe-less contractions spelt with one: "dont" -> "don't", "whats" -> "what's"."""
    return _BARE_CONTRACTION.sub(lambda m: f"{m[1]}n't" if m[1] else _APOSTROPHE[m[2].lower()], text)


# an order, not a figure: kept as said ("do I try a third" stays; text2num would write "3rd")
_ORDINAL = re.compile(r"\b(?:first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth)\b", re.I)


def spoken_figures(text: str) -> str:
    """``text`` with its spelled-out numbers as digits and its unit words as the procedures write them."""
    kept = iter(_ORDINAL.findall(text))
    out = re.sub("zzordinalzz", lambda _: next(kept), alpha2digit(_ORDINAL.sub("zzordinalzz", text), "en"))
    for pattern, symbol in _UNIT_WORDS:
        out = pattern.sub(symbol, out)
    out = _LINK_SPEED.sub(lambda m: m[1] + m[2].upper(), _GLUED.sub(r"\1 \2", out))
    return _CLASS_WORD.sub(lambda m: f"{m[1]} {_CLASS_NUMBER.get(m[2].lower(), '00')}", out)


def words(text: str) -> list[str]:
    low = text.lower().replace("\u2013", " - ").replace("\u2019", "'")
    for pattern, full in _CONTRACTIONS:
        low = pattern.sub(full, low)
    return [_norm_number(w) for w in _WORD.findall(low)]


def terms(text: str) -> list[str]:
    """Content terms: lower-case words without stop words, stemmed; numbers normalized (1,000 -> 1000)."""
    out = []
    for w in words(text):
        w = _NUMBER_WORDS.get(w, w)
        if w in _STOP or w in _FILLER or (len(w) < 2 and not w.isdigit()):
            continue
        stem = w if w[0].isdigit() else _stemmer().stemWord(w)
        out.append(_CANON.get(stem, stem))
    # a hyphenated word also counts whole: "re-energize" matches itself better than "de-energized"
    out += [_stemmer().stemWord(c) for c in _COMPOUND.findall(text.lower())]
    return out


def numbers(text: str) -> set[str]:
    found = {w for w in words(text) if w[0].isdigit()}
    found |= {_NUMBER_WORDS[w] for w in words(text) if w in _NUMBER_WORDS}
    return found


def sentences_of(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", " ".join(text.split())) if s.strip()]


def negated(text: str) -> bool:
    return bool(_NEG.search(text))


# ------------------------------------------------------------------------------------------ corpus
class Corpus:
    def __init__(self, units: Sequence[UnitRef]) -> None:
        self.units = list(units)
        self.unit_terms = [frozenset(terms(u.text)) for u in self.units]
        self.index = {u: i for i, u in enumerate(self.units)}
        self.context: dict[tuple[str, int], frozenset[str]] = {}
        for u in self.units:
            key = (u.doc, u.section)
            if key not in self.context:
                self.context[key] = frozenset(terms(f"{u.title} {u.heading}"))
        df: dict[str, int] = {}
        for ts in [*self.unit_terms, *self.context.values()]:
            for t in ts:
                df[t] = df.get(t, 0) + 1
        self.n = len(self.unit_terms) + len(self.context)
        self.df = df
        self.tables: dict[tuple[str, int], list[UnitRef]] = {}  # each section's table rows, in order
        self.steps: dict[tuple[str, int], dict[int, UnitRef]] = {}  # each section's steps by number
        for u in self.units:
            if u.kind == "step" and u.number:
                self.steps.setdefault((u.doc, u.section), {}).setdefault(u.number, u)
        for u in sorted((u for u in self.units if u.kind == "row"), key=lambda u: u.position):
            self.tables.setdefault((u.doc, u.section), []).append(u)

    def idf(self, term: str) -> float:
        return math.log((self.n + 1) / (self.df.get(term, 0) + 0.5))

    def known(self, term: str) -> bool:
        return term in self.df


# ------------------------------------------------------------------------------------------ questions
@dataclass(frozen=True)
class Query:
    text: str
    weights: dict[str, float]
    wants_number: bool
    wants_steps: bool
    negated: bool = False
    wants_after: bool = False  # "what comes after X": the step that follows the one that matches
    # the asked-for thing ("how much OIL"): per word, the terms that name it (its own, or the lexicon's)
    focus: tuple[frozenset[str], ...] = ()
    wants_end: str = ""  # "first" / "last": the first or last step of the procedure the question is about
    step_number: int = 0  # "what's step 3 of lockout", "what comes after step 2": that numbered step (3)
    # terms only the lexicon's field phrases hold ("HANG grounds"): where a question names a whole procedure, the
    # procedure's words the lexicon added for them ("install") stand in for them (``said_by_lexicon``)
    mapped: tuple[tuple[frozenset[str], frozenset[str]], ...] = ()  # (field terms, procedure terms) per phrase

    @property
    def mass(self) -> float:
        return sum(self.weights.values()) or 1.0


def analyse(text: str, expanded: str, corpus: Corpus, *, carry: dict[str, float] | None = None,
            expand: Callable[[str], str] | None = None,
            mapped: Sequence[tuple[str, str]] = ()) -> Query:
    """Weighted terms of the question; words the lexicon added weigh as much as the technician's own.
    ``expand`` (the lexicon's) lets a field word in the asked-for thing ("what PPE ...") be named by the
    procedure's words for it."""
    ts = dict.fromkeys(terms(without_step_number(expanded)))  # "step two of grounding": not the "two hot legs"
    weights = {t: corpus.idf(t) for t in ts}
    for t, w in (carry or {}).items():
        weights.setdefault(t, 0.5 * w)
    return Query(text, weights, bool(_WANTS_NUMBER.search(text)), bool(_WANTS_STEPS.search(text)),
                 negated(text), bool(_AFTER.search(text)), focus_of(text, expand), wants_end=end_of(text),
                 step_number=step_number_of(text),
                 mapped=tuple((frozenset(terms(f)), frozenset(terms(p))) for f, p in mapped))


_STEP_NUMBER = re.compile(r"\b(?:(?P<rel>after|before|past|following|preceding)\s+)?step\s+(?:number\s+)?"
                          r"(?P<n>\d{1,2}|one|two|three|four|five|six|seven|eight|nine|ten)\b", re.I)


def without_step_number(text: str) -> str:
    """The text without the number of the step it names ("what's step 3 of lockout" -> "what's step of lockout")."""
    return _STEP_NUMBER.sub(" step ", text)


def step_number_of(question: str) -> int:
    """The numbered step a question names: "step 3" -> 3, "after step 2" -> 3, "before step 2" -> 1; 0: none."""
    m = _STEP_NUMBER.search(question)
    if not m:
        return 0
    n = int(_NUMBER_WORDS.get(m["n"].lower(), m["n"]))
    rel = (m["rel"] or "").lower()
    return max(0, n + (1 if rel in ("after", "past", "following") else -1 if rel else 0))


def end_of(question: str) -> str:
    """"first" when a question asks for the first thing to do ("what do I do first"), "last" for the last, else
    ""."""
    return "first" if _FIRST.search(question) else "last" if _LAST.search(question) else ""


# what an ask says when it only asks for the neighbouring step ("what do we do", "is it safe to touch")
_PLAIN_ASK = frozenset(terms("do does did happen happens come comes go goes get gets next now then first check "
                             "safe ok okay touch start need needed"))


def _sequence_match(question: str) -> re.Match[str] | None:
    q = question.strip(" ?.")
    return _SEQ_LEAD_WH.match(q) or _SEQ_LEAD.match(q) or _SEQ_TRAIL.match(q) or _SEQ_BARE.match(q)


def sequence_ask(question: str) -> frozenset[str]:
    """The terms of what a question naming a step asks of its own ("before re-energizing, what do I CONFIRM about
    the CREW"): the neighbouring step is the answer only if it says them."""
    m = _sequence_match(question)
    return frozenset(terms(m["ask"])) - _PLAIN_ASK if m else frozenset()


def sequence_of(question: str) -> tuple[str, bool] | None:
    """The words naming the step a question starts from, and whether it asks for the step before it (else the one
    after), or None when it asks no such thing."""
    m = _sequence_match(question)
    return (m["clause"], m["rel"].lower() == "before") if m else None


_ASKS = re.compile(r"(?:what|how|who|where|which|when|why)\b", re.I)


_ASKING = r"(what|how|who|where|which|when|why|can|could|should|do|does|is|are|am|will|would)"  # a question's start
# a sentence that asks: a question word, or a yes/no question's verb, first ("Can I re-fuse it?")
_ASKS_SENTENCE = re.compile(rf"^\W*{_ASKING}\b", re.I)

# what a spoken question is wrapped in and says nothing of its subject: hesitations ("um", "uh", "you know"), a
# greeting or the device's name up front ("hey", "linecrew"), a polite frame before the asking word ("can you
# tell me what ..."). Left in, they hid the question's form ("um what's the clearance" read as a told situation)
# and moved its sentence vector: with one hesitation inserted, the tune part's uncovered questions were abstained
# on 0.77 of the time instead of 0.92.
_HESITATION = re.compile(r"[\s,]*(?<![\w'])(?:u+h+|u+m+|e+r+m*|h+m+|a+h+|(?<!do )you know|i mean)(?![\w'])[,.]?",
                         re.I)
_GREETING = re.compile(r"^(?:(?:hey|hi|hello|yo|ok(?:ay)?(?! to\b)|so|like|alright|well|listen|linecrew|"
                       r"quick (?:question|one)|question|please)\b[\s,:!.]*)+", re.I)  # "ok to hook ..." asks
_FRAME = re.compile(rf"^(?:(?:can|could|would|will) you (?:please )?(?:tell|remind|show|give) me(?: again)?|"
                    rf"(?:i )?(?:want|wanna|wanted|need|needed|would like|'d like) to know|do you know|"
                    rf"i was wondering|i(?:'ve got| have) a question)\b[\s,:]*"
                    rf"(?=(?:about\b|{_ASKING}\b))(?:about\b)?\s*", re.I)


# and what it is signed off with ("..., thanks", "... please", "..., over"); trailing, they weighed as the
# question's own words: the tune part with "thanks" added lost a tenth of its accuracy (0.876 -> 0.775)
_SIGN_OFF = re.compile(r"(?:[\s,.;:!]*\b(?:thanks|thank you|thx|please|pls|cheers|for me|real quick|buddy|mate)\b|"
                       r"\s*[,.;]\s*over(?: and out)?\b)+[\s,.!?]*$", re.I)
# words said twice as speech recognition writes a restart: "what's the what's the clearance"
_RESTART = re.compile(r"(?<![\w'])([a-z']{2,}(?:\s+[a-z']+){0,2})[\s,]+\1(?![\w'])", re.I)  # not "p p e"


def without_fillers(text: str) -> str:
    """``text`` without its hesitations, restarts and the frame it is said in: "um, hey linecrew, can you tell me
    what the clearance is, thanks" -> "what the clearance is". A frame before anything but an asking word stays
    ("I wanted to know if ..."); a text that is all frame is kept as it was."""
    plain = _RESTART.sub(r"\1", _HESITATION.sub(" ", text))
    plain = _FRAME.sub("", _GREETING.sub("", plain.strip()))
    end = _SIGN_OFF.search(plain)
    if end is not None and end.start() > 0:
        plain = plain[:end.start()] + ("?" if "?" in end.group(0) else "")
    plain = " ".join(plain.split())
    return plain if plain else text



def _asked_sentences(text: str) -> list[str]:
    """The text cut where one asking sentence ends with a full stop and another begins ("What link for a 25 kVA.
    What if it blows again", as speech recognition writes it); a sentence that tells ("The lower controls won't
    work. What now?") stays with the question that follows it."""
    chunks: list[str] = []
    for sentence in re.split(r"(?<=[.!])\s+", text.strip()):
        if chunks and not (_ASKS_SENTENCE.match(chunks[-1]) and _ASKS_SENTENCE.match(sentence)):
            chunks[-1] = f"{chunks[-1]} {sentence}"
        else:
            chunks.append(sentence)
    return chunks


_CONDITION_ASKED = re.compile(r"^(?:(?:and|but|or)\s+)?(?:what\s+)?if\b", re.I)


def split_parts(text: str) -> list[str]:
    """A multi-part question as its parts; a part too short to be a question stays with its neighbour."""
    raw = [p.strip(" ,.?") for chunk in _asked_sentences(text) for p in _PART_SPLIT.split(chunk)
           if p and p.strip(" ,.?")]
    parts: list[str] = []
    for p in raw:
        # "what do I short them with": short, still a question; so is a condition asked of the part before it
        # ("what link for a 25? AND IF IT BLOWS?": the step for a link that blows, or "no procedure" for it)
        asked = (bool(_ASKS.match(p)) or bool(_CONDITION_ASKED.match(p))) and bool(terms(p))
        if parts and len(terms(p)) < 2 and not asked:
            parts[-1] = f"{parts[-1]} {p}"
        else:
            parts.append(p)
    return parts or [text.strip()]


# ------------------------------------------------------------------------------------------ selection
@dataclass(frozen=True)
class Selection:
    units: tuple[UnitRef, ...]
    features: dict[str, float] = field(default_factory=dict)
    numbered: bool = False  # the step a question names by number, found in the procedure it names
    # said after ``units``: a close runner-up from another section of the procedure, the procedure's rule for a
    # "can I" question; the answerability features judge ``units`` alone
    also: tuple[UnitRef, ...] = ()

    @property
    def best(self) -> UnitRef | None:
        return self.units[0] if self.units else None


# The question's form: how a technician asks tells how likely the procedures hold the answer ("can I ...", "what
# now", "the pole sounds hollow" ask for a rule). Fitted on the tune part's older questions and tried on its fresh
# batches, and cross-validated on all of it. A form for figures ("how many", "what size") was measured too and left
# out: it made the model abstain on answerable figure questions ("how long do I wait before touching a capacitor")
# where the figure checks (figures_unsaid, type_missing) already judge the text itself.
QUESTION_FORMS = {
    "form_permission": re.compile(r"^(can|could|may|should|shall|do i (have|need) to|is it (ok|okay|safe|alright)|"
                                  r"am i allowed|ok to)\b|\b(ok|okay|safe) to\b"),
    "form_how": re.compile(r"^how (do|should|can) (i|we|you)\b"),
    "form_what_now": re.compile(r"\bwhat (do|should) (i|we) do\b|\bwhat now\b|\bwhat next\b"),
    "form_statement": re.compile(rf"^(?!{_ASKING}\b)(?=(\S+\s+){{4}})"),  # five words or more: a situation told
    # a few words typed as for a search ("glove retest interval", "fuse link 25 kva")
    "form_keywords": re.compile(rf"^(?!{_ASKING}\b)(?!(\S+\s+){{4}})"),
}
# (the best unit's lead over other documents and its raw ranking score were features too; cross-validation on the
# tune part, 170 questions, found the model better without them)
FEATURES = ("coverage", "unit_coverage", "context_coverage", "unknown_mass", "number_missing", "fts_top",
            "terms", "missed_mass", "max_missed_idf", "rank_gap", "question_figures_missing",
            "type_missing", "semantic_best", "semantic_max", "semantic_chosen_max", "focus_missing", *QUESTION_FORMS,
            "soft_missed", "situation_missed", "situation_cos", "semantic_text_max", "semantic_heading")
# (``soft_missed`` needs the sentence encoder's word vectors, the situation features and the chosen text's words and
# heading read apart (``Answerer._read_apart``) its sentence vectors: ``answering`` adds them)


_LEAD_IN = re.compile(r"^(?:(?:and|so|but|ok|okay|well|then|alright|hey)\b[\s,]*)+")
# where a told situation ends and the ask begins: "the regulator is stuck on tap 16 raise, HOW do I ..."
_ASK_AFTER = re.compile(r"[,;:.!?]\s*(?=(?:so |and |now |then )?(?:what|how|who|where|which|when|why|can|could|"
                        r"should|do|does|is|are|am|any|anything|ok|okay|safe)\b)", re.I)


_CLAUSE_END = re.compile(r"[,;:.!?]\s+")


def situation_of(question: str) -> str:
    """The situation a question tells before it asks ("the lower controls won't bring the bucket down" of "...,
    what now"); "" when it tells none."""
    found = list(_ASK_AFTER.finditer(question))
    return question[: found[-1].start()].strip() if found else ""


def shorter_readings(question: str) -> list[str]:
    """``question`` without its first clause, then without its first two, ...: "hang on, my partner's got the
    stick, what goes on the tag" reads "my partner's got the stick, what goes on the tag", then "what goes on the
    tag"."""
    cuts = [m.end() for m in _CLAUSE_END.finditer(question)]
    return list(dict.fromkeys(r for r in (question[i:].strip(" ,;:.!?") for i in cuts) if r))


def question_form(text: str) -> dict[str, float]:
    low = _LEAD_IN.sub("", text.lower().strip())  # "and what if it blows again?" is a question, not a statement
    return {name: float(bool(form.search(low))) for name, form in QUESTION_FORMS.items()}


# How much the sentence encoder's cosine (question vs unit with its heading) adds to a unit's score: chosen on
# the tune part (selection holding the facts, single-part questions: 0 -> 76 of 89, 0.75 -> 80, 1.5 -> 79; chosen
# again on 305: 0.5 / 0.75 / 1.0 / 1.25 -> 271 / 274 / 276 / 276 on average over the other ranking weights).
# Measured and not kept (tune part, 599 single-part questions, right text 568): the cosine with a unit's own words
# alone added at 0.1 / 0.25 / 0.5 -> 568 / 562 / 559 (more best units hold the facts, 487 -> 495, but their section's
# runner-ups no longer come with them); the local LLM's likelihood of the question after each of the 5 best units
# (query likelihood) added at 0.1 / 0.2 / 0.5 of its mean log-probability -> 569 / 560 / 558, and 1.4 s a question.
SEMANTIC_WEIGHT = 1.0
FIGURE_HELD_WEIGHT = 0.3
# A unit of another section of the same procedure that scores within RUNNER_UP_GAP of the best is said after the
# chosen text, under its own heading: where the ranker cannot tell "what do I put the ground end on" (installing)
# from the removal step that also names the ground end, the technician hears both, each with where it comes from,
# rather than the wrong one alone. Chosen by leave-one-batch-out on the tune part (13 batches; cost = 2 x wrong
# answers + needless abstentions): 0 -> 137, 0.02 -> 135, 0.05 -> 133, 0.08 -> 122, 0.1 -> 121, 0.15 -> 121,
# 0.2 -> 118 (0.2 says a second section for 16 % of questions, 0.1 for about 7 %); another procedure's unit is
# never added (its claims would be checked against the wrong procedure, and a crew hears two jobs mixed). Chosen
# again with the question bank and the wider KEEP_* (24 batches): 0.05 / 0.1 / 0.15 / 0.2 / 0.25 / 0.3 -> 116 / 117 /
# 116 / 109 / 114 / 112 (0.2: accuracy 0.890 -> 0.895, uncovered abstained 0.925 -> 0.934, words said 41 -> 43).
RUNNER_UP_GAP = 0.2
# "Can I ...", "ok to climb?", "do I need to ...": the procedure's own rule is part of the answer. When the chosen text
# states no prohibition, the best-scored one of the same procedure (a "never"/"do not" unit, or one under a "Do not
# climb when" heading) within RULE_GAP of the best is said after it: "glove looks swollen, can I wear it" heard the
# inspection step that names swelling, and now also "A glove that fails inspection is taken out of service at once";
# "pole was in a brush fire, ok to climb" also hears "The pole has been struck by a vehicle or burned" under "Do not
# climb when". Leave-one-batch-out cost 117 -> 108 (0.3), 107 (0.45), 105 (0.6 and 1.0); a unit's text alone
# (without its heading) as the rule: 115.
RULE_GAP = 0.6


def unit_features(q: Query, c: Corpus, i: int, top: dict[tuple[str, int], int],
                  prefer: tuple[str, int] | None, semantic: float = 0.0,
                  held: frozenset[int] = frozenset()) -> dict[str, float]:
    """How well unit ``i`` answers ``q``: idf-weighted coverage (its own words count fully, its section heading
    and title 0.6), lexical section rank, the conversation's document, a figure asked for, density, negation, the
    rule for a failure the question describes, a scope sentence; ``heuristic`` combines them (weights chosen on the
    tune part)."""
    u = c.units[i]
    ut, ctx = c.unit_terms[i], c.context[(u.doc, u.section)]
    hit_u = sum(w for t, w in q.weights.items() if t in ut)
    hit_c = sum(w for t, w in q.weights.items() if t in ctx and t not in ut)
    ctx_cov = sum(w for t, w in q.weights.items() if t in ctx) / q.mass
    cov = (hit_u + 0.6 * hit_c) / q.mass
    key = (u.doc, u.section)
    has_num = bool(numbers(u.text))
    f = {
        "coverage": cov, "unit_coverage": hit_u / q.mass, "context_coverage": ctx_cov,
        "fts_top": float(top.get(key) == 0), "fts_in": float(key in top),
        "prefer_doc": float(bool(prefer) and u.doc == prefer[0]),  # type: ignore[index]
        "prefer_section": float(bool(prefer) and key == prefer),
        "number_ok": float(q.wants_number and has_num), "number_bad": float(q.wants_number and not has_num),
        "density": sum(1 for t in q.weights if t in ut) / max(4, len(ut)),
        "negation_match": float(q.negated == negated(u.text)), "semantic": semantic,
        # a failure the question describes ("the lower controls won't bring it down") and the procedure's rule for
        # that failure ("If the lower controls do not work, ...")
        "failure_rule": float(q.negated and negated(u.text) and bool(_CONDITION.search(u.text))),
        # the text before a procedure's first heading says what it is for ("For a worker who is unconscious ...");
        # it repeats the topic's words but tells no one what to do (tune part: 2 more selections right, none lost)
        "scope": float(u.section == 0 and u.kind == "sentence"),
        # a table row whose span holds the figure the question names ("gloves for a 7.2 kV line": Class 1)
        "figure_held": float(i in held),
    }
    f["heuristic"] = (cov + 0.08 * f["fts_top"] + 0.04 * (f["fts_in"] - f["fts_top"]) + 0.06 * f["prefer_doc"]
                      + 0.04 * f["prefer_section"] + 0.08 * f["number_ok"] - 0.1 * f["number_bad"]
                      + 0.05 * f["density"] + 0.03 * f["negation_match"] + 0.1 * f["failure_rule"]
                      - 0.2 * f["scope"] + FIGURE_HELD_WEIGHT * f["figure_held"] + SEMANTIC_WEIGHT * semantic)
    return f


def select(q: Query, c: Corpus, fts_sections: Sequence[tuple[str, int]] = (),
           prefer: tuple[str, int] | None = None, semantic: Sequence[float] | None = None,
           anchor: tuple[UnitRef, bool] | None = None, judged: Sequence[float] | None = None,
           within: str | None = None) -> Selection:
    """The units that answer ``q``; ``fts_sections`` ranks sections (bm25), ``prefer`` is the conversation's.
    ``anchor`` (a step, and whether the step before it is asked for): the answer is that step and its neighbour.
    ``judged``: the cosines the answerability features read (default ``semantic``, which ranks). ``within``: only
    that document's units (the current job's procedure)."""
    if not c.units or not q.weights:
        return Selection((), dict.fromkeys(FEATURES, 0.0))
    top = {key: rank for rank, key in enumerate(fts_sections)}
    held = frozenset(c.index[u] for rows in c.tables.values() for u in covering_rows(q.text, rows))
    scored = []
    for i in range(len(c.units)):
        if within is not None and c.units[i].doc != within:
            continue
        f = unit_features(q, c, i, top, prefer, float(semantic[i]) if semantic is not None else 0.0, held)
        scored.append((f["heuristic"], f, i))
    if not scored:
        return Selection((), dict.fromkeys(FEATURES, 0.0))
    scored.sort(key=lambda x: -x[0])
    s_best, f_best, bi = scored[0]
    if q.wants_steps:  # "how do I <what a procedure is called>": that procedure's steps
        titled = [x for x in scored if c.units[x[2]].kind == "step" and x[1]["context_coverage"] >= 0.6]
        named = next((x for x in titled if x[1]["context_coverage"] >= 0.999), None)
        if titled and titled[0][0] >= s_best - 0.1:
            s_best, f_best, bi = titled[0]
        elif named is not None:
            s_best, f_best, bi = named
    neighbour = next_unit(c.units, anchor[0], back=anchor[1]) if anchor and anchor[0] in c.index else None
    if neighbour is not None and not sequence_ask(q.text) <= (c.unit_terms[c.index[neighbour]] |
                                                              c.context[(neighbour.doc, neighbour.section)]):
        anchor = neighbour = None  # the ask names a thing the neighbouring step does not say: rank as usual
    if anchor and neighbour is not None:
        s_best, f_best, bi = next(x for x in scored if x[2] == c.index[anchor[0]])
    best = c.units[bi]
    second = next((x[0] for x in scored if x[2] != bi), 0.0)
    section = [(x[0], c.units[x[2]]) for x in scored if (c.units[x[2]].doc, c.units[x[2]].section) ==
               (best.doc, best.section)]
    numbered = _numbered_step(q, c, [i for _, _, i in scored])
    also: tuple[UnitRef, ...] = ()
    if numbered is not None:  # the step the question names by its number, in the best procedure that has it
        chosen = [numbered]
    elif neighbour is not None:
        chosen = sorted([best, neighbour], key=lambda u: u.position)
    elif best.kind == "row" and (rows := covering_rows(q.text, c.tables.get((best.doc, best.section), []))):
        chosen = rows  # the row a figure asked for falls in, not its neighbours ("69 kV": the 50-200 kV row)
    elif best.kind == "row" and _names_the_table(q, c, best):
        chosen = c.tables[(best.doc, best.section)]  # "what are the glove classes": every row, not three of six
    else:
        chosen = _choose(q, best, s_best, f_best["context_coverage"], section)
        if not (q.wants_steps and sum(u.kind == "step" for u in chosen) > 2):  # not after a whole procedure
            also = _best_within(c, scored, s_best, RUNNER_UP_GAP,  # another section of the same procedure
                                lambda u: u.doc == best.doc and u.section != best.section)
        if _MAY_I.search(q.text) and not any(_rule(u) for u in (*chosen, *also)):
            heard = {*chosen, *also}
            also = (*also, *_best_within(c, scored, s_best, RULE_GAP,  # the same procedure's rule, not yet said
                                         lambda u: u.doc == best.doc and u not in heard and _rule(u)))
        also = tuple(sorted(also, key=lambda u: u.section != best.section))  # the chosen section's first, heard on
    # a figure the chosen text covers by a range ("138 kV" in "50 kV to 200 kV") is said, though not word for word
    asked, unsaid = set(spec_figures(q.text)), set(figures_unsaid(q.text, chosen))
    in_range = asked - unsaid
    unknown = sum(w for t, w in q.weights.items() if not c.known(t) and t not in in_range) / q.mass
    said = set().union(*(c.unit_terms[c.index[u]] for u in chosen)) | c.context[(best.doc, best.section)] | in_range
    missed = [w for t, w in q.weights.items() if t not in said]
    features = {
        "coverage": round(min(1.5, f_best["coverage"]), 4), "unit_coverage": round(f_best["unit_coverage"], 4),
        "context_coverage": round(f_best["context_coverage"], 4), "unknown_mass": round(unknown, 4),
        "number_missing": float(q.wants_number and not any(numbers(u.text) for u in chosen)),
        "fts_top": f_best["fts_top"],
        "terms": float(len(q.weights)), "missed_mass": round(sum(missed) / q.mass, 4),
        "max_missed_idf": round(max(missed, default=0.0) / max(1e-9, math.log(c.n + 1)), 4),
        "rank_gap": round(s_best - second, 4),
        "question_figures_missing": round(len(unsaid) / len(asked), 4) if asked else 0.0,
        "type_missing": type_missing_of(q.text, chosen),
        **_semantic_features(judged if judged is not None else semantic, [c.index[u] for u in chosen], bi),
        "focus_missing": _focus_missing(q, c, chosen),
        **question_form(q.text),
    }
    return Selection(tuple(chosen), features, numbered=numbered is not None, also=also)


def said_by_lexicon(q: Query, said: set[str] | frozenset[str]) -> frozenset[str]:
    """The question's field terms whose procedure words (the lexicon's) ``said`` holds: "hang" where "install" is."""
    return frozenset().union(*(f for f, p in q.mapped if p and p <= said))


def _names_the_table(q: Query, c: Corpus, row: UnitRef) -> bool:
    """The question asks for a table itself ("what are the glove classes", "approach distances"): it names no figure
    and its heading (with the title) says every word the question weighs."""
    return not spec_figures(q.text) and all(t in c.context[(row.doc, row.section)] for t in q.weights)


# asking whether one may or must ("can I wear it", "ok to climb", "do I need to test it")
_MAY_I = re.compile(r"\b(can|could|may|should|shall) (i|we)\b|\b(ok|okay|safe|alright|fine) to\b|\bam i allowed\b|"
                    r"\bdo (i|we) (have|need) to\b", re.I)


# a prohibition's words: narrower than ``negated``, whose "without" / "only" / "no" read a step like "it should open
# and close cleanly without binding" as a rule (leave-one-batch-out cost 105 -> 101 with the narrower words)
_PROHIBIT = re.compile(r"\b(never|not|cannot|can't|don't|must not|mustn't|shouldn't|no one|nobody)\b", re.I)


def _rule(u: UnitRef) -> bool:
    """A prohibition: the unit says "never" / "do not", or its heading does ("Do not climb when")."""
    return bool(_PROHIBIT.search(u.text) or _PROHIBIT.search(u.heading))


def _best_within(c: Corpus, scored: Sequence[tuple[float, dict[str, float], int]], s_best: float, gap: float,
                 wanted: Callable[[UnitRef], bool]) -> tuple[UnitRef, ...]:
    """The best-scored unit ``wanted`` accepts, when it scores within ``gap`` of the best; else none."""
    s, u = next(((s, c.units[i]) for s, _, i in scored if wanted(c.units[i])), (0.0, None))
    return (u,) if u is not None and s >= s_best - gap else ()


_STEP_TERMS = frozenset(terms("step steps procedure come comes next after before"))


def _numbered_step(q: Query, c: Corpus, ranked: Sequence[int]) -> UnitRef | None:
    """The step numbered as the question asks ("step 3 of lockout"), in the procedure the rest of the question
    names: a section whose title and heading say every known word of it, else one of the three best-ranked
    sections whose text does; None when the question names no step number or no such section has that step."""
    if not q.step_number:
        return None
    topic = {t for t in q.weights if c.known(t) and t not in _STEP_TERMS}
    order = list(dict.fromkeys((c.units[i].doc, c.units[i].section) for i in ranked))
    numbered = [key for key in order if q.step_number in c.steps.get(key, {})]
    named = [key for key in numbered if topic <= c.context[key]]
    if not named:
        said = {key: set().union(c.context[key], *(c.unit_terms[c.index[u]] for u in c.steps[key].values()))
                for key in order[:3] if key in numbered}
        named = [key for key in said if topic <= said[key]]
    return c.steps[named[0]][q.step_number] if named else None


def _semantic_features(semantic: Sequence[float] | None, chosen: Sequence[int], best: int) -> dict[str, float]:
    """The encoder's view of the selection: the best unit's cosine, the best any unit reaches, the chosen max."""
    if semantic is None:
        return {"semantic_best": 0.0, "semantic_max": 0.0, "semantic_chosen_max": 0.0}
    return {"semantic_best": round(float(semantic[best]), 4), "semantic_max": round(float(max(semantic)), 4),
            "semantic_chosen_max": round(max(float(semantic[i]) for i in chosen), 4)}


_COUNT = r"(?:\d[\d.,/]*|one|two|three|four|five|six|seven|eight|nine|ten|twelve|fifteen|twenty|thirty|fifty|a few)"
_LENGTH = rf"\b{_COUNT}\s*(?:m|meters?|metres?|feet|ft|foot|centimeters?|cm|inches|in|mm)\b"
_ASKS_TYPE = (  # a kind of answer the question asks for, and what any text giving it must contain
    (re.compile(r"^\s*who\b|\bwho (do|should|needs|has|takes|gets|fixes|removes|tells)\b", re.I),
     re.compile(r"\b(control center|dispatcher|worker|crew|supervisor|customer|electrician|engineer\w*|everyone|"
                r"expert|emergency services|each|police|you)\b", re.I)),
    (re.compile(r"\bhow (far|close|deep|high|tall|wide|thick)\b|\bdistance\b|\bdepth\b|\bheight\b", re.I),
     re.compile(_LENGTH, re.I)),
    (re.compile(r"\bhow (long|often|soon)\b|\bhow many (seconds|minutes|hours|days|weeks|months|years)\b", re.I),
     re.compile(rf"\b{_COUNT}\s*(seconds?|minutes?|hours?|days?|weeks?|months?|years?)\b|\bevery\b|\bdaily\b|"
                rf"\bat once\b|\bimmediately\b|\buntil\b|{_LENGTH}", re.I)),
    (re.compile(r"\bhow much (does|do|did|will|would) .*\bcost\b|\bprice\b|\bcost of\b", re.I),
     re.compile(r"\$|\b(dollars?|cost|price)\b", re.I)),
    (re.compile(r"\bhow heavy\b|\bweigh(s|t)?\b", re.I),
     re.compile(rf"\b{_COUNT}\s*(kg|kilograms?|lbs?|pounds?|tons?)\b", re.I)),
    (re.compile(r"\bphone number\b|\bnumber (do|should) (i|we) call\b", re.I), re.compile(r"\d{3}")),
    # a size is a figure ("2/0 copper", "8T", "3 meters") or the rule to keep it ("the same size"); "new connectors,
    # one at a time" says no size
    (re.compile(r"\b(what|which) size\b|\bsize of\b|\bhow big\b", re.I),
     re.compile(r"\d|\bsame size\b", re.I)),
    (re.compile(r"\bhow many (volts|amps|kv|kva)\b|\bwhat (voltage|amperage|current) (does|do|should|will)\b", re.I),
     re.compile(r"\d[\d,.]*\s*(v|volts?|kv|a|amps?|kva|percent|%)(?![a-z])", re.I)),
)


_FOCUS = re.compile(
    r"\bhow (?:much|many)\s+(?P<a>[a-z][\w-]*(?:\s+[a-z][\w-]*)?)"
    r"|\bwhat(?:'s| is| are| was)?\s+(?:the |a |an |my |our )?(?P<b>[a-z][\w-]*(?:\s+[a-z][\w-]*){0,2}?)"
    r"\s+(?:of|for|on|in|does|do|is|are|should|at|to|when|that|we|i|you)\b", re.I)
# words that say how the answer is shaped, not what it is about ("what ORDER do the clamps come off in")
_GENERIC_FOCUS = frozenset(terms("order kind type sort way thing things part step steps procedure process "
                                 "first last next left happens happen does do is are should can will would"))


def _focus_phrase(question: str) -> str:
    m = _FOCUS.search(question)
    return (m.group("a") or m.group("b") or "") if m else ""


def focus_terms(question: str) -> list[str]:
    """The thing a question asks for ("how much OIL", "what's the DIELECTRIC TEST VOLTAGE for ..."): the words
    after the question word, up to the preposition or verb that starts the subject."""
    return [t for t in terms(_focus_phrase(question)) if t not in _GENERIC_FOCUS]


def focus_of(question: str, expand: Callable[[str], str] | None = None) -> tuple[frozenset[str], ...]:
    """Per asked-for word, the terms that name it: its own and, with the lexicon, what the lexicon maps the
    asked-for phrase to (the procedure says "arc-rated clothing" where the technician says "PPE")."""
    own = focus_terms(question)
    if not own:
        return ()
    alt: set[str] = set()
    if expand is not None:
        phrase = _focus_phrase(question)
        alt = set(terms(expand(phrase))) - set(terms(phrase))
    return tuple(frozenset({t, *alt}) for t in dict.fromkeys(own))


_HOW_TO_OBJECT = re.compile(
    r"^\s*(?:(?:and|so|ok|okay|well)\b[\s,]*)*how (?:do|can|would|should) (?:i|we|you) (?P<o>[a-z][\w' -]*?)\s*"
    r"(?:\b(?:on|in|at|to|into|onto|for|with|from|of|off|when|after|before|if|without|by|so|and|or)\b|[?,.!;]|$)",
    re.I)


def how_to_object(question: str) -> tuple[str, str] | None:
    """ "How do I <verb> <thing>": the thing's phrase and its last word ("replace a pad mount ELBOW"), or None
    when the question is not a how-to with a thing of at least two words (verb and noun)."""
    m = _HOW_TO_OBJECT.match(question)
    ws = words(m.group("o")) if m else []
    return (" ".join(ws), ws[-1]) if len(ws) >= 2 and terms(ws[-1]) else None


def _focus_missing(q: Query, c: Corpus, chosen: Sequence[UnitRef]) -> float:
    """Share (idf mass) of the asked-for thing's words the chosen text and its heading never name."""
    focus = [names for names in q.focus if any(t in q.weights for t in names)]
    if not focus:
        return 0.0
    said = set().union(*(c.unit_terms[c.index[u]] | c.context[(u.doc, u.section)] for u in chosen))
    weight = [max(q.weights.get(t, 0.0) for t in names) for names in focus]
    mass = sum(weight) or 1.0
    return round(sum(w for names, w in zip(focus, weight, strict=True) if not names & said) / mass, 4)


def type_missing_of(question: str, chosen: Sequence[UnitRef]) -> float:
    """1 when the question asks for a kind of thing (a person, a distance, a time) the chosen text has none of."""
    text = " ".join(u.text for u in chosen)
    return float(any(ask.search(question) and not has.search(text) for ask, has in _ASKS_TYPE))


_RANGE = re.compile(r"(?:(?P<lo>\d[\d,.]*)\s*[a-z]*\s*(?:to|\u2013|-)\s*(?P<hi>\d[\d,.]*))"
                    r"|(?:up to|below|under|at most)\s+(?P<max>\d[\d,.]*)"
                    r"|(?:above|over|more than|at least)\s+(?P<min>\d[\d,.]*)", re.I)


def _value(figure: str) -> float | None:
    try:
        return float(figure.replace(",", ""))
    except ValueError:
        return None


# a figure of a specification: a number with its unit ("75 kVA", "500 kV", "40 foot") or its kind ("class 5",
# "form 2S"); a bare number ("12 Birch Lane", "pole 1234") is an address or a name, not a figure asked about
_SPEC_FIGURE = re.compile(
    r"\b(?:class|form|size|type|rated)\s+(?P<a>[0-9][a-z0-9]*(?:[.,/][0-9]+)*)"
    r"|\b(?P<b>[0-9]+(?:[.,/][0-9]+)*)\s*(?:kv|kva|kvar|mvar|mva|v|volts?|amps?|a|kw|mw|hz|feet|foot|ft|m|meters?|"
    r"metres?|cm|inches|mm|"
    r"minutes?|hours?|days?|months?|years?|percent|%|t|awg|kcmil|mcm)\b", re.I)


def spec_figures(text: str) -> list[str]:
    """The figures of a specification a text names, normalised as ``numbers`` has them."""
    return sorted({_norm_number(m.group("a") or m.group("b")) for m in _SPEC_FIGURE.finditer(text.lower())})


# a figure's unit: the quantity it measures and the factor to that quantity's base unit, so "12 kV" compares with
# "17,000 V" and "6 inches" with "15 centimeters"
_UNITS: dict[str, tuple[str, float]] = {
    **dict.fromkeys(("v", "volt", "volts"), ("V", 1.0)), "kv": ("V", 1e3),
    "va": ("VA", 1.0), "kva": ("VA", 1e3), "mva": ("VA", 1e6), "var": ("var", 1.0), "kvar": ("var", 1e3),
    "mvar": ("var", 1e6), "w": ("W", 1.0), "kw": ("W", 1e3), "mw": ("W", 1e6),
    **dict.fromkeys(("a", "amp", "amps"), ("A", 1.0)),
    **dict.fromkeys(("m", "meter", "meters", "metre", "metres"), ("m", 1.0)), "cm": ("m", 0.01), "mm": ("m", 0.001),
    **dict.fromkeys(("ft", "foot", "feet"), ("m", 0.3048)), **dict.fromkeys(("inch", "inches"), ("m", 0.0254)),
    **dict.fromkeys(("minute", "minutes"), ("s", 60.0)), **dict.fromkeys(("hour", "hours"), ("s", 3600.0)),
    **dict.fromkeys(("day", "days"), ("s", 86400.0)), **dict.fromkeys(("month", "months"), ("s", 2.63e6)),
    **dict.fromkeys(("year", "years"), ("s", 3.156e7)),
}
_NUM = r"\d[\d,]*(?:\.\d+)?"
_UNIT = r"(?:" + "|".join(sorted(map(re.escape, _UNITS), key=len, reverse=True)) + r")\b"
# "17,000 V", or a table's cell under a header that names the unit ("Maximum use voltage (kV): 17")
_QUANTITY = re.compile(rf"(?P<n>{_NUM})\s*(?P<u>{_UNIT})|\((?P<hu>{_UNIT})\)\s*:\s*(?P<hn>{_NUM})(?![\w.,])", re.I)
# a span a row states: "50 kV to 200 kV", "up to 50 kV", "above 120 percent" (the first figure may leave its unit
# to the second)
_SPAN = re.compile(rf"(?P<lo>{_NUM})\s*(?P<lu>{_UNIT})?\s*(?:to|\u2013|-)\s*(?P<hi>{_NUM})\s*(?P<hu>{_UNIT})"
                   rf"|(?:up to|below|under|at most)\s+(?P<max>{_NUM})\s*(?P<mu>{_UNIT})"
                   rf"|(?:above|over|more than|at least)\s+(?P<min>{_NUM})\s*(?P<nu>{_UNIT})", re.I)
_MAXIMUM = re.compile(r"\bmaximum\b|\bmax\b", re.I)


def _base(number: str, unit: str) -> tuple[str, float] | None:
    v, (dim, factor) = _value(number), _UNITS[unit.lower()]
    return None if v is None else (dim, v * factor)


def quantities(text: str) -> list[tuple[str, str, float]]:
    """The figures with a unit a text names: (the figure as ``numbers`` has it, the quantity, its base value)."""
    out = []
    for m in _QUANTITY.finditer(text):
        number, unit = (m["n"], m["u"]) if m["n"] else (m["hn"], m["hu"])
        b = _base(number, unit)
        if b is not None:
            out.append((_norm_number(number), *b))
    return out


_NAMED_FIGURE = re.compile(r"\b(class|form|size|type|step|number|pole|phase)\s+\d", re.I)  # "and class 2?": no kV
_FIGURE_LEAD = frozenset("and or so ok okay what how about for with on at in a an the if it's its is one".split())


def with_figure(previous: str, follow_up: str) -> str | None:
    """The question ``previous`` asked again with the figure a follow-up names and nothing more ("what class gloves
    for 14.4 kV" + "and what about 35 kV?" -> "what class gloves for 35 kV"; "what fuse for a 25 kVA" + "and a
    100?" -> "... a 100 kVA"): the previous question's one figure of the same quantity (or its one figure with a
    unit, for a bare number) replaced. None when the follow-up says anything else or no figure matches."""
    said = [m for m in _QUANTITY.finditer(previous) if m["n"]]
    new = [m for m in _QUANTITY.finditer(follow_up) if m["n"]]
    bare = [w for w in words(follow_up) if w[0].isdigit()]
    units = {w for m in new for w in words(m["u"])}
    other = set(words(follow_up)) - _FIGURE_LEAD - units - set(bare) - set(words(previous))
    if len(said) != 1 or len(bare) != 1 or other or _NAMED_FIGURE.search(follow_up):
        return None
    old = said[0]
    if new:
        (_, dim, _), (_, was, _) = quantities(new[0][0])[0], quantities(old[0])[0]
        return previous[:old.start()] + new[0][0] + previous[old.end():] if dim == was else None
    return previous[:old.start("n")] + bare[0] + previous[old.end("n"):]


def spans(unit: UnitRef) -> list[tuple[str, float, float]]:
    """The values of each quantity a table row stands for, in base units: the span it states ("50 kV to 200 kV",
    "up to 50 kV"), or, where the row gives a maximum ("Class 2: Maximum use voltage: 17,000 V"), up to it."""
    out: list[tuple[str, float, float]] = []
    for m in _SPAN.finditer(unit.text):
        if m["hi"]:
            hi = _base(m["hi"], m["hu"])
            lo = _base(m["lo"], m["lu"] or m["hu"])
            if hi and lo and lo[0] == hi[0]:
                out.append((hi[0], lo[1], hi[1]))
        elif m["max"] and (b := _base(m["max"], m["mu"])):
            out.append((b[0], 0.0, b[1]))
        elif m["min"] and (b := _base(m["min"], m["nu"])):
            out.append((b[0], b[1], math.inf))
    if not out and unit.kind == "row" and _MAXIMUM.search(f"{unit.heading} {unit.text}"):
        out = [(dim, 0.0, top) for _, dim, top in quantities(unit.text)]
    return out


def _holds(held: Sequence[tuple[str, float, float]], asked: Sequence[tuple[str, float]]) -> bool:
    return any(d == dim for d, _, _ in held for dim, _ in asked) and all(
        lo <= v <= hi for dim, v in asked for d, lo, hi in held if d == dim)


def covering_rows(question: str, rows: Sequence[UnitRef]) -> list[UnitRef]:
    """The rows of one table whose spans hold every figure with a unit the question names ("the approach distance
    at 69 kV" -> the 50-200 kV row); of rows that each give a maximum, the one the question names ("class 0 gloves
    on 480 V") or else the smallest that suffices ("gloves for 12 kV" -> Class 2); [] when no row holds it."""
    with_unit = quantities(question)
    if not with_unit:
        return []
    asked = [(d, v) for _, d, v in with_unit]
    held = [r for r in rows if _holds(spans(r), asked)]
    others = set(spec_figures(question)) - {fig for fig, _, _ in with_unit}
    named = [r for r in held if others & numbers(r.text)]
    if named or len(held) < 2:
        return named or held
    if all(not _SPAN.search(r.text) for r in held):  # maxima: the least one that suffices
        dims = {d for d, _ in asked}  # "a 167 kVA pot on a 4 kV tap": the rows give kV alone
        return [min(held, key=lambda r: min((hi for d, _, hi in spans(r) if d in dims), default=math.inf))]
    return held


# a split-phase service as the trade writes it: "120/240 V" is 120 V to neutral and 240 V leg to leg; "a 240 volt
# socket" is that service (its leg-to-leg figure names it), "a 120 volt socket" may be another (a two-wire 120 V
# service): only the second figure counts as said. "2/0" alone is a cable size.
_SERVICE_PAIR = re.compile(r"\b(\d+)/(\d+)\s*(?:v|volts?)\b", re.I)


def figures_unsaid(question: str, chosen: Sequence[UnitRef]) -> list[str]:
    """The figures of a specification the question names ("a 75 kVA can", "class 5 gloves", "a 500 kV line")
    that the chosen text neither names nor falls within a span of ("50 kV to 200 kV", "up to 50 kV", a row's
    maximum; units compared: 12 kV is 12,000 V): a table row for another figure is not the answer to this one."""
    asked = spec_figures(question)
    if not asked:
        return []
    text = " ".join(u.text for u in chosen)
    # a heading states what its table or steps are for ("Fuse link sizes for 7.2 kV single-phase transformers"):
    # a question naming that figure, as written or in another unit ("at 7200 volts"), names what the text is for
    headings = " ".join(dict.fromkeys(u.heading for u in chosen))
    said = numbers(text) | numbers(headings) | {m[2] for m in _SERVICE_PAIR.finditer(text)}
    scope = [(dim, v) for _, dim, v in quantities(headings)]
    with_unit = {fig: (dim, v) for fig, dim, v in quantities(question)}
    # a table row answers only the values its span holds; a rule that states a span of the quantity ("should read
    # 114-126 V", "wait at least 5 minutes") answers any value of it ("it reads 110 volts", "after 2 minutes"); a
    # rule for one value ("form 2S for 120/240 V") states no span and answers only that value
    held = [(d, lo, hi) if u.kind == "row" else (d, -math.inf, math.inf) for u in chosen for d, lo, hi in spans(u)]
    ranges = []  # figures without a unit ("class 5") against spans as written
    for m in _RANGE.finditer(text):
        lo, hi = (m["lo"], m["hi"]) if m["lo"] else ("0", m["max"]) if m["max"] else (m["min"], None)
        ranges.append((_value(lo) or 0.0, (_value(hi) if hi else None) or math.inf))
    unsaid = []
    for figure in asked:
        if figure in said or (figure in with_unit and any(
                d == with_unit[figure][0] and math.isclose(v, with_unit[figure][1]) for d, v in scope)):
            continue
        if figure in with_unit and any(d == with_unit[figure][0] for d, _, _ in held):
            dim, base = with_unit[figure]
            if not any(d == dim and lo <= base <= hi for d, lo, hi in held):
                unsaid.append(figure)
            continue
        v = _value(figure)
        if not (v is not None and any(lo <= v <= hi for lo, hi in ranges)):
            unsaid.append(figure)
    return unsaid


# The other units of the chosen section said with the best one: up to KEEP_MAX that score at least KEEP_RATIO of the
# best and within KEEP_GAP of it. Where the ranker cannot tell two steps of one procedure apart, the technician hears
# both (each labelled with its step) rather than the wrong one alone. Chosen by leave-one-batch-out on the tune part
# (24 batches, the question bank refitted each time; cost = 2 x wrong answers + needless abstentions; ratio / gap /
# most -> cost, accuracy, uncovered abstained, mean words said): 0.8 / 0.12 / 2 (before) -> 135, 0.861, 0.939, 35;
# 0.8 / 0.2 / 2 -> 131; 0.7 / 0.2 / 2 -> 133; 0.6 / 0.3 / 3 -> 125; 0.5 / 0.4 / 3 -> 128; 0.6 / 0.25 / 4 -> 123;
# 0.7 / 0.3 / 4 -> 123; 0.6 / 0.35 / 4 -> 118; 0.5 / 0.5 / 4 -> 123 (51 words); 0.6 / 0.3 / 4 -> 117, 0.890, 0.925,
# 41 words. Keeping a wider runner-up only when it says a question word the others do not: 138. A table's rows keep
# the narrow rule (0.8 / 0.12 / 2): "max voltage for class 1 gloves" heard every class. With RUNNER_UP_GAP 0.2 and
# the models refitted: 107, accuracy 0.895, uncovered abstained 0.939, 43 words (p90 79, was 58); the selected text
# holds the facts for 568 of 599 answerable questions, was 554.
KEEP_RATIO, KEEP_GAP, KEEP_MAX = 0.6, 0.3, 4
ROW_KEEP = (0.8, 0.12, 2)


def _choose(q: Query, best: UnitRef, s_best: float, ctx_cov: float,
            section: list[tuple[float, UnitRef]]) -> list[UnitRef]:
    in_order = sorted((u for _, u in section), key=lambda u: u.position)
    steps = [u for u in in_order if u.kind == "step"]
    warnings = [u for u in in_order if u.kind == "warning" and u.position < (steps[0].position if steps else 0)]
    if q.wants_steps and len(steps) >= 2 and ctx_cov >= 0.45 and best.kind in ("step", "warning"):
        return [*warnings, *steps][:9]
    # a table's rows are alternatives ("Class 1", "Class 2"), not parts of one answer: the narrow rule
    ratio, gap, most = ROW_KEEP if best.kind == "row" else (KEEP_RATIO, KEEP_GAP, KEEP_MAX)
    keep = [u for s, u in section if u is not best and s >= max(ratio * s_best, s_best - gap)][:most]
    if best.kind == "warning":  # a warning alone answers nothing: add the best step or item it guards
        keep = keep or [u for _, u in section if u.kind in ("step", "item")][:1]
    if q.wants_after and best.kind == "step":
        keep = [u for u in steps if u.position > best.position][:1] or keep
    if q.wants_end and best.kind == "step" and steps:  # the step asked for, said with the best match
        keep = [steps[0] if q.wants_end == "first" else steps[-1], *keep]
    chosen = sorted(dict.fromkeys(u for u in (best, *keep)), key=lambda u: u.position)
    if best.kind == "step":
        chosen = [w for w in warnings if w not in chosen] + chosen
    return chosen


def compose(units: Sequence[UnitRef]) -> str:
    """Say the units as the procedure has them: where they come from, then each one's words."""
    if not units:
        return ""
    lines, where = [], None
    for u in units:
        if (u.doc, u.section) != where:
            where = (u.doc, u.section)
            lines.append(f"{u.title} - {u.heading}:")
        lines.append(f"Step {u.number}: {u.text}" if u.kind == "step" and u.number else u.text)
    return " ".join(lines)


def next_unit(units: Sequence[UnitRef], last: UnitRef, *, back: bool = False) -> UnitRef | None:
    """The step (or unit) after — or before — ``last`` in the same section."""
    same = [u for u in units if (u.doc, u.section) == (last.doc, last.section)]
    idx = next((k for k, u in enumerate(same) if u.position == last.position), None)
    if idx is None:
        return None
    k = idx - 1 if back else idx + 1
    return same[k] if 0 <= k < len(same) else None


# ------------------------------------------------------------------------------------------ checking
@dataclass(frozen=True)
class Check:
    supported: bool
    reasons: tuple[str, ...] = ()


def check(sentence: str, sources: Sequence[str]) -> Check:
    """Is ``sentence`` supported by ``sources``? Numbers, negation, named equipment and content must match."""
    reasons: list[str] = []
    source_text = " ".join(sources)
    sources = [x for src in sources for x in sentences_of(src)]
    st = terms(sentence)
    src_terms = set(terms(source_text))
    closest = max(sources, key=lambda s: len(set(terms(s)) & set(st)), default="")
    missing = sorted(numbers(sentence) - numbers(closest))  # figures must stand together as the procedure has them
    if missing:
        reasons.append(f"figures not in the procedure: {', '.join(missing)}")
    if st:
        if negated(sentence) != negated(closest):
            reasons.append("negation differs from the procedure")
        eq = {w for w in words(sentence) if w in EQUIPMENT} - set(words(source_text))
        if eq:
            reasons.append(f"equipment not in the procedure: {', '.join(sorted(eq))}")
        share = sum(t in src_terms for t in st) / len(st)
        if share < 0.6:
            reasons.append(f"only {share:.0%} of its words are in the procedure")
    return Check(not reasons, tuple(reasons))


def contradicts(sentence: str, sources: Sequence[str]) -> bool:
    """A sentence about the same thing as a source sentence that differs in a figure or a negation."""
    sources = [x for src in sources for x in sentences_of(src)]
    st = set(terms(sentence))
    if not st:
        return False
    closest = max(sources, key=lambda s: len(set(terms(s)) & st), default="")
    overlap = len(set(terms(closest)) & st) / len(st)
    if overlap < 0.4:
        return False
    differs_number = bool(numbers(sentence) - numbers(" ".join(sources)))
    return differs_number or negated(sentence) != negated(closest)
