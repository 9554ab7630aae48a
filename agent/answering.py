"""The grounded answerer: a question in, the procedure's own words (or an honest "no procedure") out.

Per part of the question: widen with the trade lexicon, rank sections (FTS5 bm25) and units
(``grounding.select``: idf coverage plus the sentence encoder's cosine, ``agent.embedding``), score
answerability (``answerability``); answer the parts that pass with their units,
name the parts that do not. Nothing here generates text: what is said is what the procedure says, with the
citation of exactly the units used. The conversation's last procedure and step come in as ``Focus`` so a
follow-up ("and after that?", "what if it's still low?") resolves against them.
"""

from __future__ import annotations

import copy
import hashlib
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from linecrew.agent import embedding, grounding, spelling
from linecrew.agent.answerability import HEARD, AnswerabilityModel, QuestionBank
from linecrew.agent.knowledge import _FILLER, _STOP, KnowledgeBase, UnitRef

ABSTAIN = "I have no procedure for that. Shall I ask an expert?"
# a word the quoted text does not have counts as said by the text's nearest word in the encoder's space, from not at
# all (cosine SOFT_FROM or less: "splice" by "reattach") to fully (SOFT_TO or more: "kept" by "store"); chosen by
# leave-one-batch-out on the tune part (0.4-0.8, 0.5-0.8, 0.3-0.7 and 0.5-0.7 all did better than no soft coverage)
SOFT_FROM, SOFT_TO = 0.4, 0.8
# how much of a "after/before <clause>" clause's weight one step's own words must hold to be the step it names
# (chosen on the tune part: 0.6 and 0.8 select the same; the question's own best stands otherwise)
ANCHOR_COVERAGE = 0.6
# The questions asked before (the bank) also rank: a unit gains BANK_VOTE x the cosine of the nearest of the question's
# BANK_VOTE_K closest bank questions (at BANK_VOTE_MIN or more) whose answer that unit alone holds. A technician's
# paraphrase is often nearer another's question than any procedure text. Chosen on the tune part, each question
# voted on without its own batch (599 single-part answerable; right text, base 568): 0.1 / 0.7 / 3 573, 0.2 571,
# 0.05 569, 0.15 572, 0.3 570, 0.4 565; min 0.6 570 (0.2), 0.65 572, 0.8 568 (0.2), 0.85 / k 1 568; k 5 573 (0.1),
# k 1 570 (0.2). A check batch written apart and never in the bank (127): 119 -> 123 (0.2: 124). They vote only when
# the near ones agree on the section: the encoder hears "taking grounds down, which phase is first"
# 0.71 from "which end of the grounds goes on first?", and the removal steps outranked the installing ones; with the
# rule 572 and 123. Figures are matched as the bank's features match them; a follow-up (read with the question it
# follows) is not voted on.
BANK_VOTE, BANK_VOTE_MIN, BANK_VOTE_K = 0.1, 0.7, 3
# a question that says something before it asks, and reads below REREAD_BELOW as a whole, is read again without its
# first clauses (``Answerer.select``); a shorter reading needs REREAD_TERMS of its own terms or more. Chosen on the tune
# part (599 answerable, 212 uncovered single-part questions) with a remark put before each: "ok I'm up the pole now,"
# accuracy 0.760 -> 0.865 (uncovered abstained 0.835 -> 0.816: 4 more answered, each as the question alone answers
# it); checked after on remarks never tuned on: "we got here about ten minutes ago and set up." 0.070 -> 0.798 (436
# more right, none lost). The questions as written: none read differently. 2 terms lost one and answered one more
# uncovered; always reading again (no REREAD_BELOW) lost one.
REREAD_BELOW, REREAD_TERMS = 0.8, 3
# the step after the one just said, as a technician asks for it hands-free: "and after that?", "now what", "ok done,
# what's next", "what do I do after that", "what's the next step"
_NEXT = re.compile(r"^\s*(?:(?:and|ok(?:ay)?|alright|right|so|done|got it|yeah|yep|then)\b[\s,.!]*)*"
                   r"(after that|after this|and after|then what|what'?s next|what(?: i|')s after (?:that|this)|"
                   r"what now|now what|what next|next( step| one| thing)?|and then|then|what comes (?:next|after(?: "
                   r"that)?)|what'?s the next (?:step|one|thing)|what do (?:i|we) do (?:next|now|after that|then))"
                   r"\s*[?.!]*\s*$", re.I)
_BACK = re.compile(r"^\s*(go back|back|previous( step)?|what was (the step )?before that|before that)\s*\??\s*$",
                   re.I)
_BARE = frozenset(grounding.terms("again repeat say read tell me once more what was is the step"))  # no topic
_HOW_TO = re.compile(r"^\s*(how (do|should|can|would) (i|we|you)|walk me through|what('s| is| are) the "
                     r"(steps|procedure|process) (for|to|of))\b", re.I)
# a question that leans on the one before it: it starts with a conjunction ("and taking them off?", "but when the job's
# done?") or names its subject by a pronoun ("what do I wear for IT", "where do I send IT")
_LEANS = re.compile(r"^\s*(and|but|so|then|or|also)\b|\b(it|its|it's|them|they|they're|he|him|his|she|her)\b", re.I)
_FOLLOW = re.compile(r"^\s*(and\s+)?(what if|what about|and if|if it'?s|if so|how about|and how|and what|"
                     r"is that|does that|what does that)\b", re.I)


def digests(units: Sequence[UnitRef]) -> dict[str, str]:
    """Per document, a digest of its units as the answerer reads them (headings, kinds, numbers, text)."""
    found: dict[str, hashlib._Hash] = {}
    for u in units:
        found.setdefault(u.doc, hashlib.sha256()).update(
            f"{u.section}\0{u.heading}\0{u.kind}\0{u.number}\0{u.text}\n".encode())
    return {doc: h.hexdigest()[:16] for doc, h in found.items()}


@dataclass(frozen=True)
class Focus:
    """Where the conversation is: the last unit said and the last question's weighted terms."""

    doc: str
    section: int
    position: int
    weights: dict[str, float] = field(default_factory=dict)
    question: str = ""  # the last question answered, as it was read (a follow-up with the question it follows)


@dataclass(frozen=True)
class PartAnswer:
    question: str
    units: tuple[UnitRef, ...]
    probability: float
    answered: bool
    features: dict[str, float]
    also: tuple[UnitRef, ...] = ()  # said after the chosen text (``grounding.Selection.also``)
    reading: str = ""  # the text its meaning was read from: a follow-up's with the question it follows

    @property
    def said(self) -> tuple[UnitRef, ...]:
        return self.units + self.also


@dataclass(frozen=True)
class Grounded:
    answer: str
    units: tuple[UnitRef, ...]
    confidence: float
    abstained: bool
    parts: tuple[PartAnswer, ...]
    focus: Focus | None

    @property
    def citations(self) -> list[str]:
        return list(dict.fromkeys(u.citation for u in self.units))


class Answerer:
    def __init__(self, kb: KnowledgeBase, model: AnswerabilityModel | None = None, *,
                 encoder: embedding.Encoder | None = None, encoder_dir: Path | None = None,
                 cache_dir: Path | None = None, bank: QuestionBank | bool | None = True,
                 heard: AnswerabilityModel | None = None) -> None:
        """``bank``: the questions asked before (``answerability.QuestionBank``); True: the shipped one, unless a
        ``model`` is given (then it alone decides); None or False: none. ``heard``: the model for the recogniser's
        other readings (``for_other_readings``); by default the shipped one, or ``model`` when one is given."""
        self.kb = kb
        self.model = model or AnswerabilityModel.load()
        self._heard = heard or model  # (None: the shipped one, read when first needed)
        self.bank = (QuestionBank.load() if model is None else None) if bank is True else (bank or None)
        self._bank_vectors: np.ndarray | None = None
        self._bank_docs: frozenset[str] = frozenset()  # the documents it scores: as they read when asked about
        self._voted: dict[str, int] = {}  # their units' citations, each with its place in the corpus
        self.encoder = encoder or embedding.shared(encoder_dir)
        self.cache_dir = cache_dir
        self._corpus: grounding.Corpus | None = None
        self._corpus_of: list[UnitRef] | None = None
        self._vectors: np.ndarray | None = None
        # each unit's own words, and where it lives ("Title. Heading"), each read alone: what the answerability reads
        self._text_vectors: np.ndarray | None = None
        self._heading_vectors: np.ndarray | None = None
        self._word_index: tuple[dict[str, int], np.ndarray] | None = None  # the base's words and their vectors
        self._speller: spelling.Speller | None = None
        self._building = threading.RLock()
        self.spelling = True  # typing slips corrected to the base's words (off: the question's words as typed)
        self.reread = True  # a weak reading read again without its first clauses (off: the question read whole)
        # a follow-up ("what if one fails?", "where do I send it?") found as one and read with the question it follows
        # (off: only an opening like "what if" / "and how" makes one, read alone, the former words carried)
        self.converse = True

    @property
    def corpus(self) -> grounding.Corpus:
        """The base's units scored as one corpus, with their vectors, their words' vectors and the speller; built
        once per list of units, under a lock: a request on another thread waits for the whole of it (it once saw
        the corpus and no speller yet)."""
        units = self.kb.units()
        with self._building:
            if self._corpus is None or self._corpus_of is not units:  # the base changed: a new list of units
                self._vectors = embedding.encode_units(
                    self.encoder, [embedding.unit_text(u.title, u.heading, u.text) for u in units], self.cache_dir)
                self._text_vectors = embedding.encode_units(self.encoder, [u.text for u in units], self.cache_dir,
                                                            kind="text")
                self._heading_vectors = embedding.encode_units(self.encoder, [f"{u.title}. {u.heading}" for u in units],
                                                               self.cache_dir, kind="heading")
                said = [w for u in units for w in grounding.words(f"{u.title} {u.heading} {u.text}")]
                # every word the base says, encoded once (and kept on disk): what ``_soft_missed`` compares with
                vocab = list(dict.fromkeys(w for w in said if grounding.terms(w)))
                self._word_index = ({w: i for i, w in enumerate(vocab)},
                                    embedding.encode_units(self.encoder, vocab, self.cache_dir, kind="word"))
                lex = self.kb.lexicon
                self._speller = spelling.Speller(
                    [*said, *(w for field, proc in lex.terms for w in grounding.words(f"{field} {proc}")),
                     *(w for phrase in lex.words for w in grounding.words(phrase))], keep=_STOP | _FILLER,
                    stem=lambda w: (grounding.terms(w) or [w])[0])
                if self.bank is not None:
                    now = digests(units)
                    self._bank_docs = frozenset(d for d in self.bank.docs if self.bank.digests.get(d) == now.get(d))
                    self._voted = {u.citation: i for i, u in enumerate(units) if u.doc in self._bank_docs}
                self._corpus, self._corpus_of = grounding.Corpus(units), units  # last: the rest is ready
            return self._corpus

    def use_bank(self, bank: QuestionBank | None) -> None:
        """Read with ``bank`` from now on (None: without one)."""
        with self._building:
            self.bank, self._bank_vectors, self._corpus = bank, None, None  # its documents found again

    def for_other_readings(self) -> Answerer:
        """This answerer scoring with its model for the recogniser's other readings alone (``heard``; the question
        bank unread), sharing all else: what the bar ``assistant.HEARD_AS_MIN`` was chosen on."""
        if self._heard is None:
            self._heard = AnswerabilityModel.load(HEARD)
        if self.bank is None and self._heard is self.model:
            return self
        _ = self.corpus  # built once, shared
        twin = copy.copy(self)
        twin.bank, twin.model = None, self._heard
        return twin

    def normalised(self, question: str) -> str:
        """The question as the procedures would write it: without hesitations or a polite frame
        (``grounding.without_fillers``), contractions with their apostrophe, spoken figures as digits and units
        (``grounding.spoken_figures``), typing slips as the base's words (``spelling``)."""
        _ = self.corpus
        assert self._speller is not None
        figures = grounding.spoken_figures(grounding.apostrophes(grounding.without_fillers(question)))
        return self._speller.correct(figures) if self.spelling else figures

    def semantic(self, question: str) -> list[float]:
        """The question's cosine with every unit of the corpus, in the corpus's order."""
        _ = self.corpus
        assert self._vectors is not None
        if not len(self._vectors):
            return []
        return [float(x) for x in self._vectors @ self.encoder.encode([question])[0]]

    def select(self, question: str, *, focus: Focus | None = None, follow: bool = False,
               within: str | None = None, unseen: str | None = None) -> PartAnswer:
        """The units that answer one part of a question, and whether to say them. A question that tells a
        situation first ("ok I'm up the pole now, what goes on the tag") and reads weakly as a whole (below
        ``REREAD_BELOW``) is read again without its first clauses, one more each time, down to the bare ask; a
        shorter reading of ``REREAD_TERMS`` or more terms that is answered, and scores higher than the whole,
        stands: a remark says nothing the procedures answer, and a told situation that matters ("the lower controls
        won't bring the bucket down, what now") leaves too few words without it. ``unseen``: a group of the
        question bank read as if never asked (fitting)."""
        question = self.normalised(question)
        if self.converse and focus is not None and focus.question:  # "and what about 35 kV?": the question it
            question = grounding.with_figure(focus.question, question) or question  # follows, with that figure
        best = self._read(question, focus, follow, within, unseen)
        if best.reading != question:  # a follow-up: read alone too ("how often do they get retested" needs nothing
            alone = self._read(question, focus, follow, within, unseen, alone=True)  # of the question before it)
            if alone.answered and (not best.answered or alone.probability > best.probability):
                best = alone
        weak = self.reread and best.probability < REREAD_BELOW
        for reading in grounding.shorter_readings(question) if weak else ():
            part = self._read(reading, focus, follow, within, unseen)
            if (part.answered and len(set(grounding.terms(reading))) >= REREAD_TERMS
                    and part.probability > best.probability):
                best = part
        return best

    def _read(self, question: str, focus: Focus | None, follow: bool, within: str | None,
              unseen: str | None = None, *, alone: bool = False) -> PartAnswer:
        c = self.corpus
        mapped = self.kb.lexicon.mappings(question)  # one pass over the lexicon's phrases for both
        expanded = self.kb.lexicon.expand(question, mapped)
        leans = self.converse and bool(_LEANS.search(question))
        follow = focus is not None and (follow or bool(_FOLLOW.search(question)) or leans)
        # a follow-up's meaning is read with the question it follows: "what if one fails?" alone is close to nothing
        reading = (f"{focus.question} {question}" if self.converse and follow and focus and focus.question
                   and not alone else question)
        q = grounding.analyse(question, expanded, c, carry=focus.weights if follow and focus else None,
                              expand=self.kb.lexicon.expand,
                              mapped=mapped)
        fts = self._sections(expanded)
        prefer = (focus.doc, focus.section) if focus and follow else None
        seq = grounding.sequence_of(question)
        anchor = self._anchor(seq[0]) if seq else None
        # the question's own words (a follow-up's with the question it follows) rank the units; the lexicon-widened
        # question (the procedures' words for the field's) is what the answerability features compare with the text
        widened = expanded if reading == question else self.kb.lexicon.expand(reading)
        sem = self.semantic(reading)
        # (a follow-up is read with the question it follows: the bank's questions are asked alone, so they vote only
        # for a question read alone)
        asked = self._asked_cosines(question) if self.bank is not None else []  # with each question asked before
        ranked = (self._with_votes(sem, asked, grounding.spec_figures(question), unseen)
                  if BANK_VOTE and self.bank is not None and reading == question else sem)
        sel = grounding.select(q, c, fts, prefer, ranked,
                               anchor=(anchor, seq[1]) if anchor and seq else None,
                               judged=self.semantic(widened) if widened != reading else sem, within=within)
        features = {**sel.features, "soft_missed": self._soft_missed(q, expanded, sel.units + sel.also),
                    **self._situation(question, sel.units + sel.also), **self._read_apart(reading, sel.units)}
        model = self.model
        if self.bank is not None:  # questions asked before: scored by the bank's model where they cover the document
            said = [u.citation for u in sel.units + sel.also]
            features.update(self.bank.features(asked, said, grounding.spec_figures(question),
                                               unseen))
            if sel.units and sel.units[0].doc in self._bank_docs:
                model = self.bank.model
        p = model.probability(features)
        # a guard, whatever the score: a figure the question names that the quoted text neither has nor falls
        # within a range of (``grounding.figures_unsaid``) means the text is another row ("class 5", "a 75 kVA can")
        answered = (p >= model.threshold and bool(sel.units) and not features["question_figures_missing"]
                    and not self.unknown_thing(question))
        if q.step_number:  # "step 3 of lockout": that step of the procedure named, never another's text
            answered = sel.numbered
        elif not answered and _HOW_TO.match(question) and self._whole_procedure(q, sel.units):
            answered = True  # "how do I lock out": the steps of the procedure every word of it names
        return PartAnswer(question, sel.units, round(p, 3), answered, features, sel.also, reading)

    def unknown_thing(self, question: str) -> str:
        """The thing a how-to question asks to work on, when no procedure and no lexicon entry says its last word
        ("how do I replace a pad mount ELBOW", "how do I reflash the recloser FIRMWARE"): no procedure is about
        it, whatever else the question shares with one. "" otherwise."""
        found = grounding.how_to_object(question)
        if found is None:
            return ""
        phrase, head = found
        c, lex = self.corpus, self.kb.lexicon
        if any(c.known(t) for t in grounding.terms(head)):
            return ""
        without = phrase[: len(phrase) - len(head)]
        named = set(grounding.terms(lex.expand(phrase))) - set(grounding.terms(lex.expand(without)))
        return "" if any(c.known(t) for t in named) else head

    def _whole_procedure(self, q: grounding.Query, units: Sequence[UnitRef]) -> bool:
        """The units are the steps of one section, and that section (title, heading, steps) says every word of
        the question, each one the base knows: the question names that procedure."""
        if len(units) < 2 or len({(u.doc, u.section) for u in units}) != 1 or not any(u.kind == "step" for u in units):
            return False
        c = self.corpus
        said = set(c.context[(units[0].doc, units[0].section)]).union(*(c.unit_terms[c.index[u]] for u in units))
        stood_in = grounding.said_by_lexicon(q, said)  # "how do I HANG grounds": "install" says it
        return all((c.known(t) and t in said) or t in stood_in for t in q.weights)

    def warm_up(self) -> None:
        """Build what the first question would otherwise wait for: the corpus and the question bank's vectors (the
        bank's 800 questions took the first spoken question 3 s more)."""
        _ = self.corpus
        if self.bank is not None:
            self._asked_vectors()

    def _asked_vectors(self) -> np.ndarray:
        """The bank's questions encoded, once."""
        assert self.bank is not None
        with self._building:
            if self._bank_vectors is None:
                self._bank_vectors = embedding.encode_units(self.encoder, [a.question for a in self.bank.asked],
                                                            self.cache_dir, kind="asked")
            return self._bank_vectors

    def _with_votes(self, semantic: list[float], cosines: Sequence[float], figures: Sequence[str],
                    unseen: str | None) -> list[float]:
        """``semantic`` with each unit's vote from the questions asked before (``BANK_VOTE``): the cosine of the
        nearest of the ``BANK_VOTE_K`` closest bank questions (``BANK_VOTE_MIN`` or more) naming the same
        ``figures`` ("class 1 gloves" is not asked by "class 2 gloves", 0.96 apart) whose answer it alone holds, in
        a document as it read when they were asked. ``cosines``: the question's with each bank question, in order;
        ``unseen``: a batch left out (fitting)."""
        assert self.bank is not None
        _ = self.corpus
        vote, near, named = [0.0] * len(semantic), 0, tuple(sorted(figures))
        sections: set[str] = set()
        for k in sorted(range(len(cosines)), key=lambda k: -cosines[k]):
            asked = self.bank.asked[k]
            if (unseen is not None and asked.group == unseen) or asked.figures != named:
                continue
            if cosines[k] < BANK_VOTE_MIN or near == BANK_VOTE_K:
                break
            near += 1
            for cite in asked.cites:
                i = self._voted.get(cite)
                if i is not None:
                    vote[i] = max(vote[i], cosines[k])
                    sections.add(cite.rsplit(":", 1)[0])
        if len(sections) > 1:
            return semantic
        return [s + BANK_VOTE * v for s, v in zip(semantic, vote, strict=True)]

    def _asked_cosines(self, question: str) -> list[float]:
        """The question's cosine with each question of the bank, in the bank's order."""
        vectors = self._asked_vectors()
        if not len(vectors):
            return []
        return [float(x) for x in vectors @ self.encoder.encode([question])[0]]

    def _soft_missed(self, q: grounding.Query, expanded: str, units: Sequence[UnitRef]) -> float:
        """The (idf) share of the question's words the chosen text neither says nor says in other words: each
        word it lacks counts by how far the text's nearest word is from it in the encoder's space. Fresh
        phrasings ("how should gloves be KEPT") lose less than questions about what the text does not cover
        ("how do I SPLICE a neutral")."""
        if not units:
            return 1.0
        said_text = " ".join([units[0].title, units[0].heading, *(u.text for u in units)])
        said = set(grounding.terms(said_text))
        missed: dict[str, float] = {}
        for w in grounding.words(expanded):
            t = grounding.terms(w)
            if t and t[0] in q.weights and t[0] not in said:
                missed[w] = q.weights[t[0]]
        if not missed:
            return 0.0
        index = self._word_index
        own = [index[0][w] for w in dict.fromkeys(grounding.words(said_text)) if w in index[0]] if index else []
        if not own or index is None:
            return round(sum(missed.values()) / q.mass, 4)
        near = (self.encoder.encode(list(missed)) @ index[1][own].T).max(axis=1)
        said_by = np.clip((near - SOFT_FROM) / (SOFT_TO - SOFT_FROM), 0.0, 1.0)
        return round(float(sum(w * (1.0 - c) for w, c in zip(missed.values(), said_by, strict=True)) / q.mass), 4)

    def _situation(self, question: str, units: Sequence[UnitRef]) -> dict[str, float]:
        """A situation the question tells before it asks: the (idf) share of its words the chosen text (with its
        section's title and heading) does not say, and its best cosine with that text. "The anchor rod is pulling
        out of the ground, how do I reset it" may share the ask with a procedure, not the situation; 0, 0 when no
        situation is told."""
        told = grounding.situation_of(question)
        c = self.corpus
        q = grounding.analyse(told, self.kb.lexicon.expand(told), c) if told and units else None
        if q is None or not q.weights:
            return {"situation_missed": 0.0, "situation_cos": 0.0}
        said = set(c.context[(units[0].doc, units[0].section)]).union(*(c.unit_terms[c.index[u]] for u in units))
        cosines = self.semantic(told)
        return {"situation_missed": round(sum(w for t, w in q.weights.items() if t not in said) / q.mass, 4),
                "situation_cos": round(max(cosines[c.index[u]] for u in units), 4)}

    def _read_apart(self, reading: str, units: Sequence[UnitRef]) -> dict[str, float]:
        """The chosen text's words and where it lives, each compared with the question alone: the best cosine of a
        chosen unit's own words, and that of its section's title and heading. Read together (``semantic``), a
        heading on the topic lifts a step that says nothing of the ask, and a step that answers in other words
        under another heading reads weak."""
        if not units:
            return {"semantic_text_max": 0.0, "semantic_heading": 0.0}
        assert self._text_vectors is not None and self._heading_vectors is not None
        v = self.encoder.encode([reading])[0]
        idx = [self.corpus.index[u] for u in units]
        return {"semantic_text_max": round(float((self._text_vectors[idx] @ v).max()), 4),
                "semantic_heading": round(float(self._heading_vectors[idx[0]] @ v), 4)}

    def _sections(self, expanded: str) -> list[tuple[str, int]]:
        """The three sections bm25 ranks first for a (lexicon-widened) question."""
        return [(p.doc, p.section) for p in self.kb.search(expanded, limit=3)]

    def _anchor(self, clause: str) -> UnitRef | None:
        """The step ``clause`` names ("the new meter is in", "critical customers"), when one step's own words
        hold most of its weight; None when the clause names no step that plainly."""
        c = self.corpus
        expanded = self.kb.lexicon.expand(clause)
        q = grounding.analyse(clause, expanded, c)
        if not q.weights:
            return None
        fts = self._sections(expanded)
        step = grounding.select(q, c, fts, None, self.semantic(clause)).best
        if step is None or step.kind != "step":
            return None
        own = c.unit_terms[c.index[step]]
        return step if sum(w for t, w in q.weights.items() if t in own) / q.mass >= ANCHOR_COVERAGE else None

    def steps_of(self, focus: Focus) -> Grounded:
        """The whole procedure ``focus`` is in: its section's warnings and steps, in order."""
        units = self.kb.section_units(focus.doc, focus.section)
        said = tuple(u for u in units if u.kind in ("warning", "step"))
        return Grounded(grounding.compose(said), said, 1.0, False, (), focus)

    def about(self, name: str) -> Focus | None:
        """The procedure ``name`` (a job's title: "Replace blown fuse") is, as a conversation's focus: its section
        of steps and the name's weighted words; None when no procedure is named well enough."""
        key = self.procedure(name)
        if key is None:  # not named by its title ("Replace blown fuse"): the best-ranked section of steps
            key = next(((p.doc, p.section) for p in self.kb.search(self.kb.lexicon.expand(name), limit=3)
                        if sum(1 for u in self.kb.section_units(p.doc, p.section) if u.kind == "step") >= 2), None)
        if key is None:
            return None
        q = grounding.analyse(name, self.kb.lexicon.expand(name), self.corpus)
        return Focus(key[0], key[1], 0, q.weights)

    def procedure(self, name: str) -> tuple[str, int] | None:
        """The section with steps whose title and heading best match ``name`` ("installing grounds", "lockout
        tagout"), or None when none is named well enough (at least half the words' weight). Sections named equally
        well: the best-ranked section's procedure (bm25), then its earlier section ("grounding" is the procedure's
        installing steps, not its removing steps; "removing grounds" names those)."""
        c = self.corpus
        q = grounding.analyse(name, self.kb.lexicon.expand(name), c)
        if not q.weights:
            return None
        fts = {p.doc: 0 for p in self.kb.search(name, limit=1)}  # the best-ranked section's procedure
        steps: dict[tuple[str, int], int] = {}
        for u in c.units:
            if u.kind == "step":
                steps[(u.doc, u.section)] = steps.get((u.doc, u.section), 0) + 1
        scored = []
        for key, n in steps.items():
            if n < 2:
                continue
            ctx = c.context[key]
            cov = sum(w for t, w in q.weights.items() if t in ctx) / q.mass
            scored.append((round(cov, 3), -fts.get(key[0], 9), -key[1], key))  # a tie: ranked higher, then earlier
        if not scored:
            return None
        cov, _, _, key = max(scored)
        return key if cov >= 0.5 else None

    def answer(self, question: str, *, focus: Focus | None = None, follow: bool = False,
               within: str | None = None) -> Grounded:
        """``follow``: the question is asked in ``focus``'s procedure whatever its words; ``within``: answered
        from that document alone (the current job's procedure)."""
        question = self.normalised(question)
        step = self._step(question, focus)
        if step is not None:
            return step
        parts: list[PartAnswer] = []
        for k, text in enumerate(grounding.split_parts(question)):
            if k and parts[0].units:  # a later part may lean on the first: "what link for a 25? and if it blows?"
                u = parts[0].units[0]
                w = grounding.analyse(parts[0].question, self.kb.lexicon.expand(parts[0].question), self.corpus)
                parts.append(self.select(text, focus=Focus(u.doc, u.section, u.position, w.weights,
                                                                 parts[0].reading), follow=True))
            else:
                parts.append(self.select(text, focus=focus, follow=follow, within=within))
        answered = [p for p in parts if p.answered]
        if not answered:
            return Grounded(ABSTAIN, (), max(p.probability for p in parts), True, tuple(parts), focus)
        lines, used = [], []
        for p in parts:
            if p.answered:
                fresh = [u for u in p.said if u not in used]
                used += fresh
                if fresh:
                    lines.append(grounding.compose(fresh))
            else:
                lines.append(f'I have no procedure for "{p.question}".')
        last = answered[-1].units[-1]  # the conversation goes on from the chosen text, not the runner-up
        weights = grounding.analyse(answered[-1].question, self.kb.lexicon.expand(answered[-1].question),
                                    self.corpus).weights
        return Grounded(" ".join(lines), tuple(used), min(p.probability for p in answered), False, tuple(parts),
                        Focus(last.doc, last.section, last.position, weights, answered[-1].reading))

    def _step(self, question: str, focus: Focus | None) -> Grounded | None:
        """ "And after that?" / "go back": the next or previous unit of the section in focus; "what's step 5?"
        (a step number and nothing else): that step of it."""
        number = grounding.step_number_of(question)
        if number and focus is not None and not set(grounding.terms(grounding.without_step_number(question))) - _BARE:
            units = self.kb.section_units(focus.doc, focus.section)
            step = next((u for u in units if u.kind == "step" and u.number == number), None)
            if step is None:
                steps = sum(1 for u in units if u.kind == "step")
                title = f"{units[0].title} - {units[0].heading}" if units else focus.doc
                return Grounded(f"{title} has {steps} steps; there is no step {number}.", (), 1.0, False, (), focus)
            return Grounded(grounding.compose([step]), (step,), 1.0, False, (),
                            Focus(step.doc, step.section, step.position, focus.weights, focus.question))
        if not (_NEXT.match(question) or _BACK.match(question)):
            return None
        if focus is None:  # "and after that?" with nothing before it: there is nothing to follow
            return Grounded(ABSTAIN, (), 0.0, True, (), None)
        units = self.kb.section_units(focus.doc, focus.section)
        last = next((u for u in units if u.position == focus.position), None)
        if last is None:
            return None
        nxt = grounding.next_unit(units, last, back=bool(_BACK.match(question)))
        if nxt is None:
            text = ("That was the last step of " if not _BACK.match(question) else "That was the first step of ")
            return Grounded(text + f"{last.title} - {last.heading}.", (last,), 1.0, False, (), focus)
        return Grounded(grounding.compose([nxt]), (nxt,), 1.0, False, (),
                        Focus(nxt.doc, nxt.section, nxt.position, focus.weights, focus.question))
