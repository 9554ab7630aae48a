"""Grounded answers: parsers keep structure, answers quote the procedure, and every unsafe pattern the
technicians found is a regression case (contradicted negation or figure, invented figures, a question turned
into an action, a hazard inside a question). The assistant runs on the sample base with a model that fails
if it is ever asked: a grounded answer needs none."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from linecrew.agent import grounding
from linecrew.agent.assistant import Assistant, JobContext, request_stats
from linecrew.agent.documents import load
from linecrew.agent.errors import DocumentError, KnowledgeError
from linecrew.agent.evaluation import Case, evaluate, judge, load_cases
from linecrew.agent.intents import classify
from linecrew.agent.knowledge import UnitRef
from linecrew.agent.lexicon import Lexicon
from tests.helpers.grounded import sample_assistant
from tests.helpers.manuals import STEPS, WRITERS


@pytest.fixture
def assistant(tmp_path: Path) -> Assistant:
    return sample_assistant(tmp_path / "dev")


def _units(a: Assistant, doc: str) -> list[str]:
    return [u.text for u in a.kb.units() if u.doc == doc]


def _queued(a: Assistant) -> int:
    return int(a.store.db.scalar("SELECT COUNT(*) FROM outbox") or 0)


# ------------------------------------------------------------------------------------------ parsers
@pytest.mark.parametrize("ext", sorted(WRITERS))
def test_every_format_keeps_sections_numbered_steps_warnings_and_table_rows(ext: str, tmp_path: Path) -> None:
    doc = load(WRITERS[ext](tmp_path / f"vault.{ext}"))
    assert doc.title == "Vault pump-out procedure"
    steps = doc.sections[0]
    assert steps.heading == "Pump-out steps"
    assert steps.units[0].kind == "warning" and "never enter a vault" in steps.units[0].text
    assert [(u.number, u.text) for u in steps.units[1:]] == list(enumerate(STEPS, 1))
    assert [u.text for u in doc.sections[1].units] == ["small: Pump: 2 inch pump", "large: Pump: 4 inch pump"]


@pytest.mark.parametrize(("name", "content"), [("x.txt", b"plain"), ("x.pdf", b"not a pdf"),
                                               ("x.docx", b"PK not a zip"), ("x.md", b"\xff\xfe\x00bad")])
def test_a_file_that_cannot_be_read_is_one_clear_error(name: str, content: bytes, tmp_path: Path) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DocumentError, match=name.split(".")[0]):
        load(tmp_path / name)


def test_user_manuals_are_added_listed_answered_from_and_removed(assistant: Assistant, tmp_path: Path) -> None:
    added = assistant.kb.add_paths([WRITERS["pdf"](tmp_path / "vault.pdf")])
    assert added == [("vault.pdf", 6)]
    assert any(d["name"] == "vault.pdf" and d["origin"] == "user" for d in assistant.kb.documents())
    r = assistant.ask("how far from the vault opening does the pump hose go?")
    assert r.grounded and "at least 3 meters" in r.answer and "vault.pdf#pump-out-steps:step-2" in r.citations
    assert all(c.startswith("vault.pdf#pump-out-steps:") for c in r.citations)  # the step and its warning
    assistant.kb.remove("vault.pdf")
    assert assistant.ask("how far from the vault opening does the pump hose go?").abstained
    with pytest.raises(KnowledgeError):
        assistant.kb.remove("vault.pdf")


def test_the_lexicon_widens_field_words_and_a_user_file_extends_it(tmp_path: Path) -> None:
    lex = Lexicon.load()
    assert "pole-mounted transformer" in lex.expand("the pole pig is leaking")
    (tmp_path / "lexicon.toml").write_text('[terms]\n"widowmaker" = "dead tree leaning on the line"\n')
    assert "dead tree" in Lexicon.for_device(tmp_path).expand("watch the widowmaker")
    (tmp_path / "lexicon.toml").write_text('[vocabulary]\nwords = ["widowmaker"]\n')
    assert Lexicon.for_device(tmp_path).vocabulary()[-1] == "widowmaker"  # speech recognition hears it too
    (tmp_path / "lexicon.toml").write_text("[terms\n")
    with pytest.raises(KnowledgeError, match="lexicon"):
        Lexicon.for_device(tmp_path)


@pytest.mark.parametrize(("said", "widened"), [
    ("what do I hook up first", "connect"),
    ("hooking up the neutral", "connect"),
    ("he jotted down the counter", "record"),
    ("putting on the grounds", "install"),
    ("two meter bases were pulled", "meter socket"),
    ("who takes my lock off if I go home sick", "worker is missing"),  # "went home" was there, "go home" was not
    ("a guy goes home with his lock on", "worker is missing"),
])
def test_a_lexicon_phrase_matches_its_verb_inflected_and_its_noun_plural(said: str, widened: str) -> None:
    assert widened in Lexicon.load().expand(said)


@pytest.mark.parametrize("said", ["the boom is sticking", "the lower controls", "the fuse dropped"])
def test_a_single_lexicon_word_matches_only_as_written(said: str) -> None:
    lex = Lexicon(terms=(("stick", "boom"), ("control", "control center"), ("drop", "service drop")))
    assert lex.expand(said) == said


# ------------------------------------------------------------------------------------------ checks
@pytest.mark.parametrize(("sentence", "supported"), [
    ("Every worker applies their own lock; never lock for someone else.", True),
    ("Never use your own lock.", False),  # the reported contradiction: a negation turned round
    ("Yes, you can lock out at the meter base before you pull it.", False),
    ("Use a 15T fuse link for a 50 kVA transformer.", False),  # a figure not in the procedure
    ("Use class 2 gloves rated 20,000 V.", False),  # an invented rating
])
def test_a_sentence_is_kept_only_when_the_procedure_supports_it(sentence: str, supported: bool,
                                                               assistant: Assistant) -> None:
    source = _units(assistant, "lockout-tagout.md") if "lock for" in sentence else \
        [u.text for u in assistant.kb.units() if u.doc in ("meter-replacement.md", "fuse-cutout-replacement.md",
                                                           "rubber-gloves.md")]
    assert grounding.check(sentence, source).supported is supported


def test_the_judge_finds_a_contradiction_in_a_free_answer_and_none_in_the_quote(assistant: Assistant) -> None:
    case = Case("can I lock for someone else?", answerable=True, facts=("never lock for someone else",),
                source="lockout-tagout.md")
    bad = judge(assistant.kb, case, "You can lock for someone else if they ask.", False, [])
    good = judge(assistant.kb, case, assistant.ask(case.question).answer, False, [])
    assert bad["contradiction"] and not bad["correct"]
    assert good["correct"] and not good["contradiction"]


def test_a_labelled_set_reads_a_single_fact_whole_and_refuses_an_answerable_flag_it_cannot_read(
        tmp_path: Path) -> None:
    good = tmp_path / "qa.jsonl"
    good.write_text('{"question": "tag?", "facts": "your name, date", "answerable": true}\n'
                    '{"text": "job done", "expected_intent": "job_status"}\n', encoding="utf-8")
    tag, done = load_cases(good)
    assert tag.facts == ("your name, date",) and tag.answerable is True  # one fact, not 15 letters
    assert done.intent == "job_status" and done.answerable is None
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "tag?", "answerable": "no"}\n', encoding="utf-8")
    with pytest.raises(KnowledgeError, match=r"bad\.jsonl:1"):
        load_cases(bad)


def test_a_follow_up_case_is_asked_after_its_earlier_turns_in_one_conversation(assistant: Assistant,
                                                                               tmp_path: Path) -> None:
    cases = tmp_path / "followups.jsonl"
    cases.write_text('{"after": ["how do I inspect my gloves"], "question": "what if one fails?", '
                     '"facts": ["taken out of service at once"], "source": "rubber-gloves.md", "answerable": true}\n',
                     encoding="utf-8")
    (case,) = load_cases(cases)
    assert case.after == ("how do I inspect my gloves",)
    assert evaluate(assistant, [case])["answer_accuracy"] == 1.0
    assert evaluate(assistant, [replace(case, after=())])["answer_accuracy"] == 0.0  # alone it follows nothing
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "what if one fails?", "after": "how do I inspect my gloves"}\n', encoding="utf-8")
    with pytest.raises(KnowledgeError, match="after must be a list"):
        load_cases(bad)


# ------------------------------------------------------------------------------------------ answers
def test_a_negation_in_the_procedure_is_said_as_written(assistant: Assistant) -> None:
    r = assistant.ask("Can I use someone else's lock on the switch?")
    assert r.grounded and not r.abstained and "never lock for someone else" in r.answer
    # only what the answer used: the step with the rule, and any step said beside it, each one said word for word
    units = {u.citation: u for u in assistant.kb.units()}
    assert "lockout-tagout.md#steps:step-4" in r.citations and len(r.citations) <= 3
    assert all(units[c].text in r.answer for c in r.citations)
    assert not r.answer.lower().startswith("yes")


def test_the_meter_base_question_never_gets_a_yes(assistant: Assistant) -> None:
    r = assistant.ask("can I lock out at the meter base before I pull it?")
    assert "yes" not in r.answer.lower().split()
    assert not any(grounding.contradicts(s, _units(assistant, "meter-replacement.md"))
                   for s in grounding.sentences_of(r.answer))


def test_a_figure_comes_from_the_table_row_that_holds_it(assistant: Assistant) -> None:
    r = assistant.ask("what fuse link goes in a 50 kva pole pig?")
    assert "8T" in r.answer and "15T" not in r.answer and "3T" not in r.answer
    assert r.citations == ["fuse-cutout-replacement.md#fuse-link-sizes-for-7-2-kv-single-phase-transformers:row-3"]


@pytest.mark.parametrize("question", ["what's the torque spec for the meter socket lugs?",
                                      "what's the overtime rate for storm work?",
                                      "how do I splice underground primary cable?"])
def test_no_procedure_means_no_figures_and_an_offer_to_ask_an_expert(question: str, assistant: Assistant) -> None:
    r = assistant.ask(question)
    assert r.abstained and not r.grounded and r.citations == []
    assert not grounding.numbers(r.answer) and "no procedure" in r.answer
    assert r.needs_confirmation and _queued(assistant) == 0  # nothing goes out on the device's own guess
    yes = assistant.confirm(True)
    assert yes.route == "escalated" and _queued(assistant) == 1


@pytest.mark.parametrize("question", ["how many gallons of oil are in a 25 kVA pole pig?",
                                      "what's the weight of a 50 kVA transformer?",
                                      "what's the breaking strength of the rescue rope?"])
def test_an_attribute_no_procedure_states_about_named_equipment_is_not_answered(question: str,
                                                                                 assistant: Assistant) -> None:
    """The base names the equipment (fuse table rows for 25/50 kVA, the rescue rope) but never the thing asked
    for: quoting the nearest row would put a wrong figure in the technician's ear."""
    r = assistant.ask(question)
    assert r.abstained and not grounding.numbers(r.answer)


@pytest.mark.parametrize("question", ["what's the max use voltage for class 5 gloves?",
                                      "which fuse link goes in a 75 kva transformer?",
                                      "what's the minimum approach distance for a 500 kv line?"])
def test_a_figure_the_procedure_does_not_have_is_never_answered_with_a_neighbouring_row(question: str,
                                                                                       assistant: Assistant) -> None:
    """The tables hold classes 00-4, 10-100 kVA and up to 350 kV: the nearest rows are not the answer."""
    r = assistant.ask(question)
    assert r.abstained and not grounding.numbers(r.answer)


@pytest.mark.parametrize(("question", "figure"), [("how close can the boom get to a 115 kv line?", "4.6 meters"),
                                                  ("what's the approach distance for a 25 kv line?", "3 meters")])
def test_a_figure_inside_a_tables_range_is_answered_from_that_row(question: str, figure: str,
                                                                  assistant: Assistant) -> None:
    r = assistant.ask(question)
    assert r.grounded and figure in r.answer


def test_figures_unsaid_reads_ranges_and_rows() -> None:
    def unit(text: str) -> UnitRef:
        return UnitRef("d.md", "T", "H", 1, 1, "row", None, 1, text)

    assert grounding.figures_unsaid("what for 115 kv?", [unit("50 kV to 200 kV: 4.6 meters (15 feet)")]) == []
    assert grounding.figures_unsaid("what for 25 kv?", [unit("up to 50 kV: 3 meters (10 feet)")]) == []
    assert grounding.figures_unsaid("what for 500 kv?", [unit("200 kV to 350 kV: 6.1 meters")]) == ["500"]
    assert grounding.figures_unsaid("class 5 gloves?", [unit("Class 4: Maximum use voltage: 36,000 V")]) == ["5"]
    assert grounding.figures_unsaid("one lock for the crew?", [unit("Apply your own lock.")]) == []
    # an address or a pole number is not a figure of a specification
    assert grounding.figures_unsaid("check the oil at 12 Birch Lane", [unit("Read the sight gauge.")]) == []
    assert grounding.figures_unsaid("pole 1234 leans, can I climb?", [unit("Do not climb a leaning pole.")]) == []
    assert grounding.figures_unsaid("what form for a 2S meter", [unit("form 2S for standard 120/240 V")]) == []
    # a 120/240 V service is the 240 V socket a technician names; a 120 V or a 480 V one is not said
    service = [unit("Check the meter's form (form 2S for standard 120/240 V).")]
    assert grounding.figures_unsaid("what form meter goes in a 240 volt socket", service) == []
    assert grounding.figures_unsaid("what form meter goes in a 480 volt socket", service) == ["480"]
    assert grounding.figures_unsaid("what form meter for 120 volts", service) == ["120"]
    assert grounding.figures_unsaid("what size cable for 240 volts", [unit("The minimum size is 2/0 copper.")]) == [
        "240"]


def test_a_figure_the_heading_states_the_text_for_is_said() -> None:
    """"Fuse link sizes for 7.2 kV ...": a question naming 7.2 kV (or 7200 volts) names what the rows are for; a
    question for 12.47 kV names a table the base does not have."""
    row = UnitRef("f.md", "Fuses", "Fuse link sizes for 7.2 kV single-phase transformers", 1, 1, "row", None, 1,
                  "25 kVA: Fuse link: 3T")
    assert grounding.figures_unsaid("what link for a 25 kva pot at 7.2 kV", [row]) == []
    assert grounding.figures_unsaid("what link for a 25 kva pot at 7200 volts", [row]) == []
    assert grounding.figures_unsaid("what link for a 25 kva pot at 12.47 kV", [row]) == ["12.47"]


@pytest.mark.parametrize(("question", "answered"), [
    ("what link for a twenty five kva pot at seventy two hundred volts", "3T"),
    ("how far do I stay from a 13,800 volt line", "3 meters"),
])
def test_a_figure_said_in_another_unit_or_in_words_is_answered(question: str, answered: str,
                                                               assistant: Assistant) -> None:
    r = assistant.ask(question)
    assert r.grounded and not r.abstained and answered in r.answer and len(r.citations) == 1


@pytest.mark.parametrize(("question", "row"), [("what class glove for 12 kv?", "Class 2:"),
                                               ("glove class for a 7.2 kV line", "Class 1:"),
                                               ("what class glove for 480 volts?", "Class 00:"),
                                               ("can I wear class 0 gloves on 480 V?", "Class 0:"),
                                               ("how far do I keep the boom from a 69 kV line?", "50 kV to 200 kV:")])
def test_a_figure_in_a_tables_span_is_answered_with_that_one_row(question: str, row: str,
                                                                 assistant: Assistant) -> None:
    """A row that gives a maximum holds every figure up to it: the least class that suffices is the answer (12 kV
    is 12,000 V: Class 2, 17,000 V), one the question names is checked against its own maximum."""
    r = assistant.ask(question)
    assert r.grounded and row in r.answer
    assert len(r.citations) == 1 and ":row-" in r.citations[0]


@pytest.mark.parametrize(("said", "written"), [
    ("glove class for seven thousand two hundred volts", "glove class for 7200 volts"),
    ("clearance at one hundred thirty eight kilovolts", "clearance at 138 kV"),
    ("fuse for a fifty kilovolt amp can", "fuse for a 50 kVA can"),
    ("wat fuse link for a 50kva", "wat fuse link for a 50 kva"),
    ("what transformer takes an eight T link", "what transformer takes an 8T link"),
    ("max voltage for class two gloves", "max voltage for class 2 gloves"),
    ("class double oh gloves", "class 00 gloves"),
    ("seven point two k v line", "7.2 kV line"),
    ("one twenty volts on each leg, two forty V leg to leg", "120 volts on each leg, 240 V leg to leg"),
    ("is two aught big enough for the ground", "is 2/0 big enough for the ground"),
    # small numbers alone, orders and names stay as they are
    ("connect the hot legs one at a time", "connect the hot legs one at a time"),
    ("second link blew too, do I try a third", "second link blew too, do I try a third"),
    ("form 2S meter on a 2/0 service", "form 2S meter on a 2/0 service"),
])
def test_spoken_figures_are_written_as_the_procedures_write_them(said: str, written: str) -> None:
    assert grounding.spoken_figures(said) == written


@pytest.mark.parametrize(("question", "row"), [("glove class for seven thousand two hundred volts", "Class 1:"),
                                               ("how close can the boom get at one hundred thirty eight kilovolts",
                                                "50 kV to 200 kV:"),
                                               ("what fuse link goes in a 50kva pole pig", "50 kVA:")])
def test_a_figure_said_in_words_or_glued_to_its_unit_is_answered_from_the_row_that_holds_it(
        question: str, row: str, assistant: Assistant) -> None:
    """Without the figure as digits "seven thousand two hundred volts" was answered with Class 2 and "138
    kilovolts" with the up-to-50 kV row; "50kva" was one word and got three rows."""
    part = assistant.answerer.select(question)
    assert [u.text.split(" Fuse")[0].split(" Maximum")[0].split(" Minimum")[0] for u in part.units] == [row]


@pytest.mark.parametrize(("question", "cited"), [
    ("who do i notifiy before lockout", "lockout-tagout.md#steps:step-1"),
    ("outrigers go on what", "bucket-truck-setup.md#setting-up:step-3")])
def test_a_typed_slip_is_read_as_the_procedures_word(question: str, cited: str, assistant: Assistant) -> None:
    """Unknown to the base, "notifiy" weighed nothing and "before lockout" chose the release steps; "outrigers"
    left "go on what" to choose, which chose lockout's first steps."""
    r = assistant.ask(question)
    assert r.grounded and r.citations == [cited]


@pytest.mark.parametrize(("typed", "read"), [
    ("the lower controls dont work", "the lower controls don't work"),
    ("bucket wont come down, whats next", "bucket won't come down, what's next"),
    ("Im up, cant reach", "I'm up, can't reach"),
    ("its cracked, were done, well", "its cracked, were done, well"),
])
def test_contractions_typed_without_the_apostrophe_are_read_with_it(typed: str, read: str) -> None:
    assert grounding.apostrophes(typed) == read


@pytest.mark.parametrize(("said", "plain"), [
    ("um, hey linecrew, can you tell me what the clearance is", "what the clearance is"),
    ("what do I, um, check first", "what do I check first"),
    ("so like what's the glove class you know for 7200", "what's the glove class for 7200"),
    ("do you know what the clearance is", "what the clearance is"),
    ("ok to hook the line end first?", "ok to hook the line end first?"),  # asks permission: no greeting
    ("I wanted to know if I can reuse a fuse link", "I wanted to know if I can reuse a fuse link"),
    ("umbrella rules", "umbrella rules"), ("hmm", "hmm"),
    ("what's the clearance, thanks", "what's the clearance"),
    ("glove class for 7.2 kV please?", "glove class for 7.2 kV?"),
    ("how far do I stay back, over.", "how far do I stay back"),
    ("is it safe to climb over", "is it safe to climb over"),
    ("what's the what's the clearance", "what's the clearance"), ("that that's it", "that that's it"),
    ("quick one, what's the clearance", "what's the clearance"), ("thanks", "thanks"),
])
def test_hesitations_and_the_frame_a_question_is_said_in_are_dropped(said: str, plain: str) -> None:
    assert grounding.without_fillers(said) == plain


@pytest.mark.parametrize("frame", ["um {q}", "hey linecrew, {q}", "can you tell me {q}", "uh so {q} you know",
                                   "{q}, thanks", "quick one, {q} please", "{q}, over"])
def test_a_question_said_with_hesitations_is_judged_as_the_plain_question(frame: str, assistant: Assistant) -> None:
    """With one "um" inserted the tune part's uncovered questions were answered a quarter of the time."""
    assert not assistant.answerer.select(frame.format(q="how do I test ground rod resistance")).answered
    plain = assistant.answerer.select("which customers come first after public hazards")
    framed = assistant.answerer.select(frame.format(q="which customers come first after public hazards"))
    assert framed.answered and [u.citation for u in framed.said] == [u.citation for u in plain.said]


def test_hesitations_do_not_hide_an_action() -> None:
    assert classify("um we're on um scene").slots == {"status": "on_site"}
    assert classify("um um I'm out of 3T links, bring five").slots == {"items": [{"part": "3t links", "quantity": 5}]}


@pytest.mark.parametrize("question", ["how do I ground the line", "how do I put grounds on", "how do I ground"])
def test_grounding_said_as_a_verb_is_installing_grounds_not_removing_them(question: str, assistant: Assistant) -> None:
    """"how do I put grounds on" was answered with the removal steps (conductor-end clamp first)."""
    said = assistant.answerer.select(question)
    assert said.answered and said.said[0].citation.startswith("protective-grounding.md#installing-grounds:")


def test_the_donts_are_what_the_never_lists_say(assistant: Assistant) -> None:
    """"don'ts" was read as "don" and "ts", two words no procedure has: the lockout "Never" list was held back.
    (Whether it is then said is the answerability model's call: with the question bank it is not, as the nearest
    question asked before, "lockout lock brand", was one no procedure covers.)"""
    said = assistant.answerer.select("any don'ts for lockout")
    assert said.said[0].citation.startswith("lockout-tagout.md#never:") and said.features["unknown_mass"] == 0.0


def test_earthing_is_grounding(assistant: Assistant) -> None:
    """Crews trained on IEC / British practice say earth for ground."""
    said = assistant.answerer.select("which earth clamp goes on first")
    assert said.answered and [u.citation for u in said.units] == [
        u.citation for u in assistant.answerer.select("which ground clamp goes on first").units]


@pytest.mark.parametrize(("heard", "typed"), [
    ("can i close the re closer without calling anyone", "can I close the recloser without calling anyone"),
    ("what p p e to refuse a cut out", "what PPE to re-fuse a cutout"),
])
def test_words_speech_recognition_split_are_read_as_the_base_writes_them(heard: str, typed: str,
                                                                         assistant: Assistant) -> None:
    """"re closer" chose the rescue steps (held back, 0.48); "p p e ... cut out" the re-fusing steps, not the PPE."""
    said = assistant.answerer.select(heard)
    assert said.answered and [u.citation for u in said.said] == [
        u.citation for u in assistant.answerer.select(typed).said]


def test_a_negation_typed_without_the_apostrophe_still_counts(assistant: Assistant) -> None:
    # "isnt" was an unknown word the question's weight leaned on: the CPR step was held back (0.3)
    part = assistant.answerer.select("guy isnt breathing")
    assert part.answered and [u.citation for u in part.said] == ["pole-top-rescue.md#steps:step-5"]


@pytest.mark.parametrize("question", ["what are the glove classes", "tell me the glove classes"])
def test_a_question_for_a_table_itself_gets_every_row(question: str, assistant: Assistant) -> None:
    """Three rows of six left out the class a crew might need; a figure asked for still gets its one row."""
    r = assistant.ask(question)
    assert r.grounded and len(r.citations) == 6 and all(f"Class {k}:" in r.answer for k in ("00", "0", "1", "4"))
    assert len(assistant.ask("glove class for 12 kv").citations) == 1


def test_the_row_a_figure_falls_in_is_chosen_even_where_the_answer_is_held_back(assistant: Assistant) -> None:
    # "gloves for a 7.2 kV line" also names the fuse table's heading ("... for 7.2 kV single-phase transformers");
    # the answerability model may hold it back, but the text it judges is the Class 1 row alone
    part = assistant.answerer.select("gloves for a 7.2 kV line")
    assert [u.text.split(":")[0] for u in part.units] == ["Class 1"]


def test_a_users_table_with_the_unit_in_its_header_answers_a_figure_from_the_row_that_holds_it(
        assistant: Assistant, tmp_path: Path) -> None:
    page = tmp_path / "blankets.html"
    page.write_text("<html><body><h1>Insulating blankets</h1><h2>Blanket classes</h2><table>"
                    "<tr><th>Blanket class</th><th>Maximum use voltage (kV)</th></tr>"
                    + "".join(f"<tr><td>Class {c}</td><td>{v}</td></tr>" for c, v in (("A", "5"), ("B", "17"),
                                                                                      ("C", "26.5")))
                    + "</table></body></html>", encoding="utf-8")
    assistant.kb.add_paths([page])
    r = assistant.ask("which blanket class do I need for a 12 kV line?")
    assert r.grounded and "Class B" in r.answer and "Class A" not in r.answer and "Class C" not in r.answer
    assert assistant.ask("which blanket class do I need for a 69 kV line?").abstained


@pytest.mark.parametrize(("question", "said"), [("the transformer reads 110 volts, is that ok?", "114\u2013126 V"),
                                                ("can I touch the caps after 2 minutes?", "at least 5 minutes"),
                                                ("can I stand 5 meters from a downed wire?", "at least 10 meters")])
def test_a_rule_that_states_a_span_answers_a_value_outside_it(question: str, said: str, assistant: Assistant) -> None:
    """The rule's span is the answer to a value below or above it; a rule for one value is not ("form 2S for
    120/240 V" says nothing of a 480 V service)."""
    r = assistant.ask(question)
    assert r.grounded and said in r.answer
    assert assistant.ask("what form meter goes on a 480 V three-phase service?").abstained


def test_units_are_compared_in_one_base_and_a_maximum_holds_what_lies_below_it() -> None:
    def row(text: str, heading: str = "H") -> UnitRef:
        return UnitRef("d.md", "T", heading, 1, 1, "row", None, 1, text)

    assert grounding.quantities("a 12 kV line, 6 inches deep") == [("12", "V", 12000.0), ("6", "m", 6 * 0.0254)]
    assert grounding.quantities("a 600 kvar bank") == [("600", "var", 600000.0)]  # not a kVA row's figure
    assert grounding.figures_unsaid("fuse for a 600 kvar bank?", [row("50 kVA: Fuse link: 8T")]) == ["600"]
    assert grounding.spans(row("Class 2: Maximum use voltage: 17,000 V")) == [("V", 0.0, 17000.0)]
    assert grounding.spans(row("Class 2: 17,000 V", heading="Glove classes (maximum use voltage)")) == [
        ("V", 0.0, 17000.0)]
    assert grounding.spans(row("50 kV to 200 kV: 4.6 meters")) == [("V", 50000.0, 200000.0)]
    assert grounding.spans(row("10 kVA: Fuse link: 2T")) == []  # a value, not a span: only that figure matches
    table = [row(f"Class {c}: Maximum use voltage: {v}") for c, v in (("0", "1,000 V"), ("1", "7,500 V"),
                                                                     ("2", "17,000 V"))]
    assert grounding.covering_rows("gloves for 12 kV", table) == [table[2]]
    assert grounding.covering_rows("gloves for 900 V", table) == [table[0]]
    assert grounding.covering_rows("class 1 gloves on 480 V", table) == [table[1]]
    assert grounding.covering_rows("gloves for 40 kV", table) == []
    # a figure in another unit first ("a 167 kVA pot on a 4 kV tap"): the rows' own unit picks the row, no crash
    assert grounding.covering_rows("what link for a 167 kva pot on a 4 kV tap", table) == [table[1]]
    # the unit in the column's header, as a user's own table may have it
    kv = [row(f"Class {c}: Max use voltage (kV): {v}") for c, v in (("1", "7.5"), ("2", "17"))]
    assert grounding.quantities(kv[1].text) == [("17", "V", 17000.0)]
    assert grounding.covering_rows("gloves for 12000 volts", kv) == [kv[1]]
    assert grounding.figures_unsaid("gloves for 12 kv?", [table[2]]) == []
    assert grounding.figures_unsaid("gloves for 40 kv?", [table[2]]) == ["40"]
    # a figure in another unit is not held by a span of volts ("25 V" is not "up to 50 kV"'s 25)
    assert grounding.figures_unsaid("what for 25 kv?", [row("up to 50 kV: 3 meters")]) == []
    assert grounding.figures_unsaid("what for 60000 kv?", [row("up to 50 kV: 3 meters")]) == ["60000"]


def test_a_figure_inside_the_chosen_rows_range_counts_as_said_not_as_an_unknown_word() -> None:
    rows = [UnitRef("b.md", "Bucket truck", "Minimum approach distance", 1, k, "row", None, k, text) for k, text in
            enumerate(["up to 50 kV: 3 meters (10 feet)", "50 kV to 200 kV: 4.6 meters (15 feet)"], 1)]
    corpus = grounding.Corpus(rows)

    def features(question: str) -> dict[str, float]:
        return grounding.select(grounding.analyse(question, question, corpus), corpus).features

    inside, outside = features("minimum approach distance at 138 kv"), features("minimum approach distance at 765 kv")
    assert inside["question_figures_missing"] == 0 and inside["missed_mass"] == 0 and inside["unknown_mass"] == 0
    assert outside["question_figures_missing"] == 1 and outside["missed_mass"] > 0 and outside["unknown_mass"] > 0


def test_spoken_contractions_leave_no_fragments_among_a_questions_terms() -> None:
    said = grounding.terms("I've waited, the lower controls don't work and it won't come down, we're stuck")
    assert not {"ve", "don", "won", "re"} & set(said)
    assert said.count("not") == 2  # "don't" and "won't" say "not" as the procedures do ("Do not ...")
    assert grounding.terms("we\u2019re done") == grounding.terms("we're done") == grounding.terms("we are done")


def test_the_question_as_said_ranks_and_the_widened_question_is_what_answerability_compares() -> None:
    units = [UnitRef("t.md", "Transformer", "Oil", 1, k, "step", k, k, text) for k, text in
             enumerate(["Read the sight gauge.", "Report the leak size."], 1)]
    corpus = grounding.Corpus(units)
    q = grounding.analyse("is the pig leaking", "is the pig leaking transformer leak oil", corpus)
    sel = grounding.select(q, corpus, semantic=[0.2, 0.6], judged=[0.3, 0.9])
    assert sel.best == units[1]  # ranked by the cosines of the question as said ...
    assert sel.features["semantic_best"] == 0.9 and sel.features["semantic_max"] == 0.9  # ... judged by the widened
    assert grounding.select(q, corpus, semantic=[0.2, 0.6]).features["semantic_best"] == 0.6


def test_the_asked_for_thing_may_be_named_in_the_procedures_words() -> None:
    lexicon = Lexicon.load()
    names = grounding.focus_of("what PPE do I wear to swap a meter", lexicon.expand)
    assert names and grounding.terms("arc-rated clothing")[0] in names[0]
    assert grounding.focus_of("what order do the phase clamps come off in") == ()  # the answer's shape, not subject
    assert grounding.focus_of("what's the first thing on a tripped recloser") == ()  # where in the order, not what
    assert grounding.focus_of("how do I bleed off what's left in the capacitors") == ()
    assert [set(n) for n in grounding.focus_of("how much oil does a transformer hold")] == [{"oil"}]


@pytest.mark.parametrize(("question", "text", "missing"), [
    ("how much does a class 2 glove cost?", "Class 2: Maximum use voltage: 17,000 V", 1.0),
    ("how deep should a ground rod be driven?", "Connect the ground-end clamp to a driven ground rod.", 1.0),
    ("how deep do I dig to check for rot?", "Probe or excavate about 15 centimeters (6 inches).", 0.0),
    ("how long do I wait after switching off the bank?", "Wait at least 5 minutes after disconnecting.", 0.0),
    ("how long can a meter stay out of the socket?", "Inspect the socket jaws before a new meter goes in.", 1.0),
    ("how many volts should a bank read after 5 minutes?", "Wait at least 5 minutes after disconnecting.", 1.0),
    ("how many volts should I read leg to leg?", "Measure 240 V leg to leg.", 0.0),
    ("what voltage should the trip battery show?", "At least 90 percent of rated voltage.", 0.0),
    ("what size connectors go on the hot legs?", "Connect the two hot legs, one at a time, with new connectors.", 1.0),
    ("what size copper for the grounds?", "The minimum grounding cable size is 2/0 copper.", 0.0),
    ("what size link goes back in?", "Replace the fuse link with one of the same size and type.", 0.0),
])
def test_a_question_asking_for_a_kind_of_answer_needs_text_of_that_kind(question: str, text: str,
                                                                        missing: float) -> None:
    assert grounding.type_missing_of(question, [UnitRef("d.md", "T", "H", 1, 1, "step", 1, 1, text)]) == missing


@pytest.mark.parametrize("question", ["work's finished on the pad mount, what do we do before we re-energize?",
                                      "recloser locked out, can I close it back in?",
                                      "we're on site, what's the first step for lockout?",
                                      "we need to re-fuse the cutout, what size link for a 50?",
                                      # asked without a question mark, as speech recognition may write it
                                      "is there a note about the dog at this address",
                                      "has anyone logged the blown cutout on pole 12"])
def test_a_question_is_never_turned_into_an_action(question: str, assistant: Assistant) -> None:
    r = assistant.ask(question)
    pending = assistant.store.get("pending_action")
    assert r.intent == "procedure_question" and _queued(assistant) == 0
    assert pending is None or pending["intent"] == "escalate_to_expert"  # at most the offer to ask an expert


def test_the_recloser_question_gets_the_control_center_step(assistant: Assistant) -> None:
    r = assistant.ask("recloser locked out, can I close it back in?")
    assert "check with the control center before you close a breaker that locked out" in r.answer.lower()


@pytest.mark.parametrize("question", ["the jaws look burnt, what do I check?",
                                      "there's smoke marks on the bushing, what does that mean?",
                                      "the pole is scorched at the base, is it safe to climb?"])
def test_a_hazard_inside_a_question_is_a_question(question: str, assistant: Assistant) -> None:
    r = assistant.ask(question)
    assert r.intent == "procedure_question"  # not an emergency, not an action
    assert r.route != "escalated" or r.abstained  # only a hazard no procedure covers goes to a person at once


@pytest.mark.parametrize("said", ["there's a live line lying on the sidewalk",
                                  "a tree fell on the line and it's burning", "Dave got hit by the boom",
                                  "the groundman is pinned under the outrigger"])
def test_a_hazard_told_in_other_words_is_still_an_emergency(said: str) -> None:
    """The emergency guard asks only that a hazard be named; "burning", "a live line", "hit by" name one."""
    assert classify(said).name == "safety_emergency"


@pytest.mark.parametrize("said", ["smoke's coming out of the cutout", "there's a primary down across the driveway",
                                  "transformer is spitting oil and smoking", "the neutral is down on the sidewalk"])
def test_a_smoking_unit_or_a_line_down_is_an_emergency(said: str) -> None:
    """ "there's smoke coming off the transformer" was answered from the re-fusing procedure and "the line's down
    across the road" read back as a note; none of these is in the labelled set."""
    assert classify(said).name == "safety_emergency"


@pytest.mark.parametrize("said", ["we took the line down for the splice", "the line is down for maintenance until 3"])
def test_a_line_taken_down_for_work_is_no_emergency(said: str) -> None:
    assert classify(said).name != "safety_emergency"


@pytest.mark.parametrize("said", ["im hurt", "I'm hurt bad", "i am injured", "I cut my hand on the crossarm",
                                  "I burned my arm on the tank"])
def test_the_technician_hurt_is_an_emergency_however_typed(said: str) -> None:
    # "I'm hurt" had no guard (only "is hurt" / "got hurt") and the classifier read it as a question
    assert classify(said).name == "safety_emergency"


@pytest.mark.parametrize("said", ["I cut my glove, can I tape it", "how do I avoid getting hurt on the pole"])
def test_a_glove_cut_or_a_question_about_harm_is_no_emergency(said: str) -> None:
    assert classify(said).name == "procedure_question"


def test_a_person_hurt_still_escalates_at_once_even_asked_as_a_question(assistant: Assistant) -> None:
    r = assistant.ask("my partner got a shock and he's not breathing, what do I do?")
    assert r.intent == "safety_emergency" and r.route == "escalated" and _queued(assistant) == 1
    assert r.answer.startswith("STOP WORK")  # the notice first, whatever else is said


def test_a_remark_is_read_back_and_queued_only_after_a_yes(assistant: Assistant) -> None:
    assistant.set_job(JobContext("J-7", "Replace blown fuse", "pole 4471", ""))
    r = assistant.ask("we're on site")
    assert r.intent == "job_status" and r.needs_confirmation and _queued(assistant) == 0
    assert assistant.confirm(True).actions == ["job status on_site queued"] and _queued(assistant) == 1


def test_a_follow_up_resolves_against_the_last_step(assistant: Assistant) -> None:
    first = assistant.ask("which end of the grounds goes on first?")
    assert "ground-end clamp first" in first.answer
    last = max(int(c.rsplit("step-", 1)[1]) for c in first.citations if "step-" in c)
    after = assistant.ask("and after that?")
    assert after.grounded and after.citations == [f"protective-grounding.md#installing-grounds:step-{last + 1}"]
    back = assistant.ask("go back")
    assert back.citations == [f"protective-grounding.md#installing-grounds:step-{last}"]
    assistant.forget_conversation()
    assert assistant.ask("and after that?").abstained  # nothing to follow once the conversation is over


@pytest.mark.parametrize("follow", ["what's after that", "what do I do after that", "now what", "what next",
                                    "what's the next step", "ok done, whats next", "and after?", "done. next step?"])
def test_a_follow_up_said_any_usual_way_gets_the_next_step(follow: str, assistant: Assistant) -> None:
    """Hands-free, "and after that?" is said many ways; each was "no procedure" but for three."""
    assistant.ask("how long do I wait after switching off the capacitor bank")
    r = assistant.ask(follow)
    assert r.grounded and r.citations == ["capacitor-bank.md#before-work-on-a-capacitor-bank:step-3"]


@pytest.mark.parametrize(("previous", "follow", "asked"), [
    ("what class gloves for 14.4 kV", "and what about 35 kV?", "what class gloves for 35 kV"),
    ("what fuse goes in a 25 kVA", "and a 100?", "what fuse goes in a 100 kVA"),
    ("what's the approach distance for a 25 kV line", "and for a 138 kV line?",
     "what's the approach distance for a 138 kV line"),
    ("what fuse goes in a 25 kVA", "and for 7.2 kV?", None),  # another quantity
    ("what class gloves for 14.4 kV", "and class 2?", None),  # a class is not a voltage
    ("what fuse goes in a 25 kVA", "what about 2 of them?", None),  # says more than a figure
    ("what fuse goes in a 25 kVA", "and if it blows again?", None),
])
def test_a_follow_up_that_names_only_a_figure_asks_the_question_before_with_it(previous: str, follow: str,
                                                                                asked: str | None) -> None:
    assert grounding.with_figure(previous, follow) == asked


def test_and_what_about_another_figure_is_answered_from_its_row(assistant: Assistant) -> None:
    """"and what about 35 kV?" after the glove class for 14.4 kV was "no procedure" (0.51): read with the question
    before it, two figures weighed against one row. A figure no row holds is still not answered."""
    assert "Class 2" in assistant.ask("what class gloves for 14.4 kv").answer
    assert "Class 4" in assistant.ask("and what about 35 kv?").answer
    assert assistant.ask("and what about 40 kv?").abstained


@pytest.mark.parametrize(("first", "follow", "said"), [
    ("how do I inspect my gloves", "what if one fails?", "taken out of service at once"),
    ("how do I re-fuse a cutout", "what do I wear for it?", "rubber gloves and sleeves"),
    ("how do I hang grounds", "which phase first?", "nearest phase first"),
])
def test_a_follow_up_is_read_with_the_question_it_follows(first: str, follow: str, said: str,
                                                          assistant: Assistant) -> None:
    """Read alone, "what if one fails?" is close in meaning to nothing and was "no procedure"; "what do I wear for
    it?" (no "what if" or "and" before it) was not taken for a follow-up at all and answered from another
    procedure."""
    assert not assistant.ask(first).abstained
    r = assistant.ask(follow)
    assert not r.abstained and said in r.answer.lower()


def test_a_follow_up_no_procedure_covers_is_still_no_procedure(assistant: Assistant) -> None:
    assistant.ask("how do I inspect my gloves")
    assert assistant.ask("and what brand should I buy?").abstained


def test_the_conversation_keeps_the_question_a_follow_up_is_read_with(assistant: Assistant) -> None:
    """The focus is stored between turns (typed and spoken turns share it): the question goes with it."""
    assistant.ask("how do I inspect my gloves")
    focus = assistant.focus()
    assert focus is not None and focus.question == "how do I inspect my gloves"


def test_a_follow_up_naming_only_the_step_gets_the_step_after_it(assistant: Assistant) -> None:
    assert grounding.sequence_of("and after the critical customers?") == ("the critical customers", False)
    assistant.ask("what's the storm restoration order")
    r = assistant.ask("and after the critical customers?")
    assert "Feeder backbones" in r.answer


@pytest.mark.parametrize(("question", "section"), [
    ("how do I reconnect a service drop", "service-drop-reconnection.md#"),
    ("how do I hang grounds", "protective-grounding.md#installing-grounds"),
])
def test_a_how_to_naming_a_procedure_gets_its_steps(question: str, section: str, assistant: Assistant) -> None:
    """The procedure's title says every word ("reconnect a service drop") or the lexicon's word for one ("HANG
    grounds": install): its steps, not its "Never" list, and not "no procedure"."""
    r = assistant.ask(question)
    assert not r.abstained and len(r.citations) >= 2
    assert all(c.startswith(section) and ":step-" in c for c in r.citations if ":warning-" not in c)


@pytest.mark.parametrize("asked", ["what's next after the tester", "now what do I check on the meter"])
def test_a_follow_up_with_a_subject_of_its_own_is_a_question(asked: str) -> None:
    from linecrew.agent.answering import _NEXT
    assert not _NEXT.match(asked)


def test_a_step_named_then_a_thing_asked_of_its_own_is_answered_by_the_step_that_says_it(
        assistant: Assistant) -> None:
    """The step before "re-energize" says nothing of the crew; the release's first step does."""
    assert grounding.sequence_ask("before re-energizing what do I confirm about the crew") == {"confirm", "crew"}
    assert grounding.sequence_ask("before the locks come off, what do we do?") == set()
    r = assistant.ask("before re-energizing what do I confirm about the crew")
    assert "confirm everyone is clear" in r.answer and "lockout-tagout.md#release:step-1" in r.citations


@pytest.mark.parametrize(("question", "expected"), [
    ("after critical customers what gets restored?", ("critical customers", False)),
    ("once I've waited on the caps, is it safe to touch?", ("I've waited on the caps", False)),
    ("which customers come first after public hazards", ("public hazards", False)),
    ("before the locks come off, what do we do?", ("the locks come off", True)),
    ("after the new meter is in what do I check", ("the new meter is in", False)),  # "is" is not the question
    ("what am I looking for on the patrol", None),
    ("how long after switching does a bank recharge?", None),
])
def test_a_question_naming_a_step_and_asking_for_its_neighbour_is_read(question: str,
                                                                        expected: tuple[str, bool] | None) -> None:
    assert grounding.sequence_of(question) == expected


@pytest.mark.parametrize(("question", "steps", "said"), [
    ("after critical customers, what gets restored?", (2, 3), "Feeder backbones"),
    ("which customers come first after public hazards?", (1, 2), "Critical customers"),
])
def test_after_a_named_step_comes_that_step_and_the_next(question: str, steps: tuple[int, int], said: str,
                                                          assistant: Assistant) -> None:
    r = assistant.ask(question)
    assert r.grounded and said in r.answer
    assert r.citations == [f"storm-damage-assessment.md#restoration-priority:step-{n}" for n in steps]


@pytest.mark.parametrize(("question", "end"), [
    ("the breaker's open, what do I do first?", "first"),
    ("what's the first thing when a crew member is down", "first"),
    ("what are we checking first on a dropped service", "first"),
    ("storm patrol first steps", "first"),
    ("where do we start on a capacitor bank", "first"),
    ("what's the last step before we leave", "last"),
    ("which clamp goes on first", ""),  # two things compared: not the first step of anything
    ("who do I call first", ""),
])
def test_a_question_for_the_first_or_last_thing_to_do_is_read(question: str, end: str) -> None:
    assert grounding.end_of(question) == end


def test_the_first_thing_to_do_is_the_procedures_first_step(assistant: Assistant) -> None:
    r = assistant.ask("the recloser on our feeder tripped, what's the first thing I do?")
    assert r.grounded and "Read the counter and the target flags" in r.answer
    assert r.citations[0] == "breaker-check.md#when-a-breaker-or-recloser-has-tripped:step-1"


def test_a_word_the_text_says_in_other_words_is_missed_less_than_one_it_does_not_cover(assistant: Assistant) -> None:
    a = assistant.answerer
    kept = a.select("how should the gloves be kept")  # the text says "store"
    assert kept.units and "glove bag" in grounding.compose(kept.units)
    assert 0.0 < kept.features["soft_missed"] < kept.features["missed_mass"]
    splice = a.select("how do I splice a broken neutral messenger")  # no procedure says how
    assert splice.features["soft_missed"] > kept.features["soft_missed"]
    assert a.select("store gloves in a glove bag").features["soft_missed"] == 0.0  # nothing missed


def test_the_chosen_texts_own_words_and_its_heading_are_read_apart(assistant: Assistant) -> None:
    a = assistant.answerer
    assert {"semantic_text_max", "semantic_heading"} <= set(a.model.features)  # the shipped model reads them
    words = a.select("keep them in a bag, not folded, out of the sun")  # the item's words, not its heading's
    assert "glove bag" in grounding.compose(words.units)
    assert words.features["semantic_text_max"] > words.features["semantic_heading"] + 0.1
    heading = a.select("rubber gloves testing and storage")  # the heading's words, not the items'
    assert heading.features["semantic_heading"] > heading.features["semantic_text_max"] + 0.1
    assert a.select("").features.get("semantic_text_max", 0.0) == 0.0


def test_a_failure_the_question_describes_finds_the_procedures_rule_for_it(assistant: Assistant) -> None:
    r = assistant.ask("the bucket won't come down with the lower controls")
    assert r.grounded and "emergency hydraulic pump" in r.answer


@pytest.mark.parametrize(("question", "forms"), [
    ("Can I close the recloser without calling anyone?", {"form_permission"}),
    ("is it safe to touch the can now", {"form_permission"}),
    ("how many volts does the trip battery put out?", set()),
    ("how do I sound a pole", {"form_how"}),
    ("the jaws are burnt, what do I do?", {"form_what_now", "form_statement"}),
    ("the pole sounds hollow when I hit it", {"form_statement"}),
    ("and what if it blows again?", set()),
    ("glove retest interval", {"form_keywords"}),
    ("fuse link 25 kva", {"form_keywords"}),
    ("ok so can I close it now?", {"form_permission"}),
])
def test_the_form_of_a_question_is_read_for_answerability(question: str, forms: set[str]) -> None:
    form = grounding.question_form(question)
    assert {name for name, on in form.items() if on} == forms
    assert set(form) <= set(grounding.FEATURES)


def test_a_procedures_scope_sentence_is_not_given_as_what_to_do(assistant: Assistant) -> None:
    r = assistant.answerer.select("what do I hang on a pole that's no good")
    assert r.units and all(u.section > 0 for u in r.units)
    assert any('Tag the pole "Do not climb"' in u.text for u in r.units)


def test_a_question_about_this_job_is_answered_from_the_job(assistant: Assistant) -> None:
    assert "No job is set" in assistant.ask("what's the address of this job?").answer
    assistant.set_job(JobContext("J-42", "Transformer check", "12 Birch Lane"))
    r = assistant.ask("what's the address of this job?")
    assert "12 Birch Lane" in r.answer and r.citations == ["job:J-42"] and r.grounded


def test_is_this_job_done_is_answered_with_the_status_this_device_gave_it(assistant: Assistant) -> None:
    """"is this job done?" was answered with the meter procedure's steps."""
    assistant.set_job(JobContext("J-7", "Replace meter", "44 Oak Ave"))
    before = assistant.ask("is this job done?")
    assert before.citations == ["job:J-7"] and "not been marked done" in before.answer
    assert assistant.ask("I'm done with the meter, closing out the job").needs_confirmation
    assistant.ask("yes")
    after = assistant.ask("what's the status of this job?")
    assert after.citations == ["job:J-7"] and "Marked done on this device" in after.answer
    # a procedure question that says "done" is still asked of the procedure
    assert assistant.ask("what do I check before this job is done?").citations[0].startswith("meter-replacement.md#")


def test_the_word_job_in_a_procedure_question_with_no_job_set_is_answered_from_the_procedures(
        assistant: Assistant) -> None:
    r = assistant.ask("why do we ground both sides of the job")
    assert "No job is set" not in r.answer
    assert r.citations and r.citations[0].startswith("protective-grounding.md#")


def test_a_question_of_what_to_do_on_this_job_is_answered_from_the_procedure_for_it(assistant: Assistant) -> None:
    assistant.set_job(JobContext("J-7", "Replace blown fuse", "pole 14, 12 Birch Lane"))
    steps = assistant.ask("how do I do this job?")  # the procedure for what the job is, named in other words
    assert steps.citations == [f"fuse-cutout-replacement.md#re-fusing-steps:step-{n}" for n in range(1, 5)]
    ppe = assistant.ask("what PPE do I need for this job?")  # asked in the job's procedure
    assert "face shield" in ppe.answer and all(c.startswith("fuse-cutout-replacement.md#") for c in ppe.citations)
    lock = assistant.ask("how do I lock out for this job?")  # the job's procedure has none: any procedure's
    assert lock.citations[0].startswith("lockout-tagout.md#steps:")
    assert assistant.ask("where is this job?").citations == ["job:J-7"]


@pytest.mark.parametrize(("question", "cited"), [("what's step 3 of lockout?", "lockout-tagout.md#steps:step-3"),
                                                 ("what comes after step 2 in reconnection",
                                                  "service-drop-reconnection.md#reconnection-steps:step-3"),
                                                 ("step two of grounding",
                                                  "protective-grounding.md#installing-grounds:step-2")])
def test_a_step_named_by_its_number_is_that_step_alone(question: str, cited: str, assistant: Assistant) -> None:
    r = assistant.ask(question)
    assert r.intent == "procedure_question" and r.citations == [cited]  # not the whole list, not "2 x grounding"
    assert _queued(assistant) == 0 and assistant.store.get("pending_action") is None


@pytest.mark.parametrize("question", ["what is step 3 of crossarm replacement?", "what's step 9 of lockout?"])
def test_a_numbered_step_of_a_procedure_the_base_lacks_is_never_another_procedures_step(question: str,
                                                                                       assistant: Assistant) -> None:
    """No crossarm procedure (the storm assessment's steps name crossarms), no ninth lockout step."""
    assert assistant.ask(question).abstained


def test_a_bare_step_number_reads_that_step_of_the_procedure_in_the_conversation(assistant: Assistant) -> None:
    assistant.ask("how do I install grounds?")
    r = assistant.ask("and what's step 5?")
    assert r.citations == ["protective-grounding.md#installing-grounds:step-5"] and "no loops or coils" in r.answer
    assert assistant.ask("repeat step 2").citations == ["protective-grounding.md#installing-grounds:step-2"]
    none = assistant.ask("read me step 7")
    assert "there is no step 7" in none.answer and "5 steps" in none.answer and not none.citations


@pytest.mark.parametrize(("question", "section"), [("how do I lock out?", "lockout-tagout.md#steps:"),
                                                   ("how do I test the breaker?",
                                                    "breaker-check.md#testing-the-breaker:")])
def test_how_do_i_with_a_procedures_name_gets_its_steps(question: str, section: str, assistant: Assistant) -> None:
    """Every word names the procedure (its title, heading or steps): its steps, however plain the words."""
    r = assistant.ask(question)
    assert not r.abstained and len(r.citations) >= 2 and all(c.startswith(section) for c in r.citations)
    assert assistant.ask("how do I replace a pad mount elbow?").abstained  # a word no procedure says


def test_a_multi_part_question_answers_each_part(assistant: Assistant) -> None:
    r = assistant.ask("what's the max voltage for class 1 gloves and how often do they get retested?")
    assert "7,500 V" in r.answer and "every 6 months" in r.answer
    # a short second part is still a question of its own, and "them" leans on the first part's procedure
    assert grounding.split_parts("how long before I can touch the caps and what do I short them with") == [
        "how long before I can touch the caps", "what do I short them with"]
    r = assistant.ask("how long before I can touch the caps and what do I short them with")
    assert "at least 5 minutes" in r.answer and "grounding stick" in r.answer and not r.abstained


def test_a_condition_asked_after_a_question_is_a_part_of_its_own(assistant: Assistant) -> None:
    """ "what link for a 25? and if it blows?" read as one part said the link and dropped the second question: each
    part is answered or said to be unanswered."""
    assert grounding.split_parts("what link for a 25? and if it blows?") == ["what link for a 25", "and if it blows"]
    assert grounding.split_parts("what if the oil is low") == ["what if the oil is low"]
    r = assistant.ask("what fuse link for a 25 kva? and if it blows again?")
    assert "3T" in r.answer
    assert "do not re-fuse a second time" in r.answer or 'I have no procedure for "and if it blows again"' in r.answer


@pytest.mark.parametrize(("said", "parts"), [
    # speech recognition ends a spoken question with a full stop: two questions are two parts
    ("What link goes on a 25 kVA. What if it blows again.", ["What link goes on a 25 kVA", "What if it blows again"]),
    ("what link for a 25 kva. what if it blows again", ["what link for a 25 kva", "what if it blows again"]),
    # a sentence that tells stays with the question it leads to; a full stop inside a figure cuts nothing
    ("The lower controls won't work. What now?", ["The lower controls won't work. What now"]),
    ("What link for a 25 kVA. It blew twice already.", ["What link for a 25 kVA. It blew twice already"]),
    ("what glove class for 7.2 kV", ["what glove class for 7.2 kV"]),
])
def test_questions_ended_with_a_full_stop_are_parts_of_their_own(said: str, parts: list[str]) -> None:
    assert grounding.split_parts(grounding.spoken_figures(said)) == [grounding.spoken_figures(p) for p in parts]


def test_two_spoken_questions_are_each_answered(assistant: Assistant) -> None:
    r = assistant.ask("What's the max voltage for class 1 gloves. How often do they get retested.")
    assert "7,500 V" in r.answer and "every 6 months" in r.answer and not r.abstained


def test_resolved_means_answered_from_a_procedure_not_abstained_or_escalated(assistant: Assistant) -> None:
    assistant.ask("what fuse link goes in a 50 kva pole pig?")
    assistant.ask("what's the torque spec for the meter socket lugs?")
    assistant.confirm(True)  # the technician asks an expert: a manual intervention
    stats = request_stats(assistant.store)
    assert (stats["resolved"], stats["abstained"], stats["routes"]["escalated"]) == (1, 1, 1)
    assert stats["manual_intervention_rate"] == pytest.approx(1 / 3, abs=1e-3)


def test_the_classifier_guards_hold_whatever_it_learned() -> None:
    assert classify("he got a shock, what do I do?").name == "safety_emergency"
    assert classify("note: the gate code is 4471").name == "log_note"
    assert classify("need some stuff").name != "parts_request"  # an action needs its slots
    assert classify("").name == "other"


@pytest.mark.parametrize(("said", "status"), [
    ("jobs done", "done"), ("we're done here", "done"), ("go ahead and close out the job", "done"),
    ("the outage is cleared", "done"), ("we're rolling up to the site now", "on_site"),
    ("just got to the address", "on_site"), ("gate's locked, can't get in", "blocked"),
    ("the road is flooded out", "blocked"),
])
def test_a_status_said_the_ways_crews_say_it_is_read_back(said: str, status: str) -> None:
    """The classifier read a status; the slots must find which one, or the status was lost as a question."""
    intent = classify(said)
    assert (intent.name, intent.slots.get("status")) == ("job_status", status)


@pytest.mark.parametrize("said", ["we're not finished, need another hour", "not done yet, still pulling wire",
                                  "once we're finished do we test the meter",
                                  "when we're done should I call it in"])
def test_a_status_not_reached_or_asked_about_is_no_done(said: str) -> None:
    intent = classify(said)
    assert intent.name != "job_status" or intent.slots.get("status") != "done"


def test_a_polite_request_after_a_remark_is_a_request_not_a_question() -> None:
    assert classify("we need two more insulators, can you send them").name == "parts_request"
    assert classify("the cutout's open, can you tell me what to check").name == "procedure_question"
    note = classify("could you note the gate code is 4471")
    assert (note.name, note.slots) == ("log_note", {"text": "the gate code is 4471"})
    sent = classify("send a note to dispatch that the transformer is leaking oil")
    assert (sent.name, sent.slots) == ("log_note", {"text": "the transformer is leaking oil"})
    assert classify("remind me to check the guy wire tomorrow").slots == {"text": "check the guy wire tomorrow"}


@pytest.mark.parametrize(("said", "intent"), [("can you order a new meter seal?", "parts_request"),
                                               ("could you send out two 8T links?", "parts_request"),
                                               ("could you mark this job done?", "job_status"),
                                               ("can you note that the customer wasn't home?", "log_note")])
def test_a_request_put_as_a_question_is_read_back_and_waits_for_a_yes(said: str, intent: str,
                                                                        assistant: Assistant) -> None:
    """A recogniser writes "can you order a new meter seal?" with its question mark: it was answered with the meter
    procedure's seal step; it is a request, read back like any other and queued only after a yes."""
    assistant.set_job(JobContext("J-7", "Replace meter", "44 Oak Ave"))
    r = assistant.ask(said)
    assert (r.intent, r.needs_confirmation, _queued(assistant)) == (intent, True, 0)
    assert "?" not in str(assistant.store.get("pending_action")["payload"])  # what is queued has no question mark
    assistant.ask("no")
    assert _queued(assistant) == 0
    # asking the device to say something is still a question
    assert assistant.ask("can you tell me the steps for lockout?").intent == "procedure_question"


def test_a_close_runner_up_of_another_section_of_the_same_procedure_is_said_after_the_chosen_text() -> None:
    def unit(doc: str, heading: str, section: int, text: str) -> UnitRef:
        return UnitRef(doc, doc.upper(), heading, section, 1, "step", 1, 1, text)

    install = unit("g.md", "Installing", 1, "Connect the ground-end clamp first, to the pole ground.")
    remove = unit("g.md", "Removing", 2, "Remove the ground-end clamp last.")
    other = unit("x.md", "Elsewhere", 1, "The ground-end clamp is inspected yearly.")
    corpus = grounding.Corpus([install, remove, other])
    q = grounding.analyse("ground-end clamp", "ground-end clamp", corpus)
    close = grounding.select(q, corpus, semantic=[0.50, 0.55, 0.54])
    assert close.units == (remove,) and close.also == (install,)  # the same procedure's, not the closer other one
    text = grounding.compose([*close.units, *close.also])
    assert text.index("G.MD - Removing:") < text.index("Remove the") < text.index("G.MD - Installing:")
    far = grounding.select(q, corpus, semantic=[0.2, 0.55, 0.54])
    assert far.also == ()  # well behind the best: the best alone


def test_the_runner_up_is_heard_with_its_heading_and_the_conversation_stays_on_the_chosen_step(
        assistant: Assistant) -> None:
    r = assistant.ask("what do I put the ground end on")
    assert "pole ground, system neutral or a driven ground rod" in r.answer
    assert "protective-grounding.md#installing-grounds:step-2" in r.citations
    assert all(c.startswith("protective-grounding.md#") for c in r.citations)
    first = r.citations[0]
    after = assistant.ask("and after that?")
    assert after.citations and after.citations[0].split(":")[0] == first.split(":")[0]  # the chosen text's section


@pytest.mark.parametrize("question", ["how do I replace a pad mount elbow?",
                                      "so how do I reflash the recloser firmware",
                                      "how can we reset the capacitor controller clock"])
def test_a_how_to_for_a_thing_no_procedure_or_lexicon_names_abstains(question: str, assistant: Assistant) -> None:
    assert assistant.answerer.unknown_thing(question)
    assert assistant.ask(question).abstained


@pytest.mark.parametrize("question", ["how do I test the breaker?", "how do I inspect a pole pig",
                                      "how do I get the guy down from the pole", "how should gloves be kept"])
def test_a_how_to_for_a_thing_the_base_or_lexicon_names_is_not_held_back(question: str,
                                                                          assistant: Assistant) -> None:
    assert assistant.answerer.unknown_thing(question) == ""


def test_a_may_i_question_also_hears_the_procedures_prohibition() -> None:
    def unit(heading: str, section: int, position: int, text: str) -> UnitRef:
        return UnitRef("p.md", "Pole", heading, section, position, "item", None, position, text)

    look = unit("Checks", 1, 1, "Look at the pole for fire damage or burn marks.")
    sound = unit("Checks", 1, 2, "Sound the pole with a hammer.")
    burned = unit("Do not climb when", 2, 3, "The pole has been struck by a vehicle or burned.")
    corpus = grounding.Corpus([look, sound, burned])

    def said(question: str) -> tuple[UnitRef, ...]:
        sel = grounding.select(grounding.analyse(question, question, corpus), corpus, semantic=[0.6, 0.1, 0.2])
        return sel.units + sel.also

    assert said("pole was in a brush fire, ok to climb") == (look, burned)  # the rule under its heading, after
    assert said("what do I look for after a brush fire") == (look,)  # not asked whether one may: no rule added


@pytest.mark.parametrize(("question", "rule"), [("glove looks swollen, can I wear it", "taken out of service"),
                                                ("pole was in a brush fire, ok to climb", "burned")])
def test_may_i_questions_are_answered_with_the_rule_that_decides_them(question: str, rule: str,
                                                                      assistant: Assistant) -> None:
    r = assistant.ask(question)
    assert not r.abstained and rule in r.answer


def test_a_step_that_says_without_is_no_prohibition_and_the_procedures_rule_is_still_heard() -> None:
    operate = UnitRef("b.md", "Breaker", "Testing", 1, 1, "step", 1, 1,
                      "Operate the breaker manually once; it should close cleanly without binding.")
    rule = UnitRef("b.md", "Breaker", "Tripped", 2, 2, "step", 1, 1, "Do not close into a fault: patrol first.")
    corpus = grounding.Corpus([operate, rule])
    sel = grounding.select(grounding.analyse("breaker opened, can I just close it back", "breaker opened, can I "
                                             "just close it back", corpus), corpus, semantic=[0.6, 0.3])
    assert sel.units == (operate,) and sel.also == (rule,)


@pytest.mark.parametrize(("question", "told"), [
    ("the lower controls won't bring the bucket down, what now", "the lower controls won't bring the bucket down"),
    ("regulator is stuck on tap 16 raise, how do I bring it back to neutral", "regulator is stuck on tap 16 raise"),
    ("glove looks swollen, can I wear it", "glove looks swollen"),
    ("how do I lock out?", ""), ("pole setting depth", ""),
])
def test_the_situation_a_question_tells_before_it_asks(question: str, told: str) -> None:
    assert grounding.situation_of(question) == told


def test_a_told_situation_the_chosen_text_does_not_say_is_measured(assistant: Assistant) -> None:
    said = assistant.answerer.select("the lower controls won't bring the bucket down, what now").features
    unsaid = assistant.answerer.select("the anchor rod is pulling out of the ground, how do I reset it").features
    plain = assistant.answerer.select("how do I lock out?").features
    assert said["situation_missed"] < unsaid["situation_missed"] and said["situation_cos"] > unsaid["situation_cos"]
    assert plain["situation_missed"] == plain["situation_cos"] == 0.0


def test_a_question_is_read_again_without_its_first_clauses() -> None:
    assert grounding.shorter_readings("hang on, my partner's got the stick, what goes on the tag") == [
        "my partner's got the stick, what goes on the tag", "what goes on the tag"]
    assert grounding.shorter_readings("we got here and set up. Glove retest interval") == ["Glove retest interval"]
    assert grounding.shorter_readings("a 1,000 kVA pad mount leaking oil") == []  # a thousands comma cuts nothing
    assert grounding.shorter_readings("how do I lock out?") == []


@pytest.mark.parametrize(("question", "cited"), [
    # a remark before the question pulled other procedures' words in ("pole", "set up") and held the answer back
    ("ok I'm up the pole now, can the foreman put one lock on for the whole crew", "lockout-tagout.md#steps:step-4"),
    ("we got here about ten minutes ago and set up. Glove retest interval",
     "rubber-gloves.md#testing-and-storage:item-1"),
    ("man it is cold up here, trip battery reads low, what's the minimum",
     "breaker-check.md#testing-the-breaker:step-3"),
])
def test_a_remark_before_the_question_does_not_hide_the_answer(assistant: Assistant, question: str,
                                                                 cited: str) -> None:
    g = assistant.answerer.answer(question)
    assert not g.abstained and cited in g.citations


def test_a_told_situation_that_matters_is_kept(assistant: Assistant) -> None:
    # without its situation the ask ("can it go back on the truck for next time") says too little to be answered
    g = assistant.answerer.answer("a ground set that took a fault, can it go back on the truck for next time")
    assert not g.abstained and "carried a fault" in g.answer.lower()
    # "should I pull it" alone (one term) is never a reading: the bypass jumper is what it is about
    g = assistant.answerer.answer("ok I'm up the pole now, found a bypass jumper in the socket, should I pull it")
    assert "bypass" in g.answer.lower()


@pytest.mark.parametrize(("said", "intent"), [
    ("We got here about ten minutes ago and set up. There's a fire in the vault", "safety_emergency"),
    ("Job's done. Dave got hit by the boom", "safety_emergency"),
    ("We got here about ten minutes ago and set up. Glove retest interval", "procedure_question"),
    ("We're on site. Get my supervisor on this", "escalate_to_expert"),
    ("We're on site. Thanks", "job_status"),  # nothing else said: the status stands, read back as before
])
def test_an_emergency_or_a_question_after_a_statement_is_not_lost_in_it(said: str, intent: str) -> None:
    """A status said first made the whole utterance that status: the fire in the vault was read back as "on site"."""
    assert classify(said).name == intent


def test_a_question_after_a_statement_is_answered_and_nothing_is_queued(assistant: Assistant) -> None:
    reply = assistant.ask("We got here about ten minutes ago and set up. Glove retest interval")
    assert reply.intent == "procedure_question" and not reply.needs_confirmation and _queued(assistant) == 0
    assert "rubber-gloves.md#testing-and-storage:item-1" in reply.citations


@pytest.mark.parametrize(("said", "text"), [
    ("tell the office the customer wasn't home", "the customer wasn't home"),
    ("let the control center know pole 14 is leaning", "pole 14 is leaning"),
    ("please tell dispatch that the gate is locked", "the gate is locked"),
])
def test_a_message_for_the_office_is_a_note_of_what_follows(said: str, text: str) -> None:
    """"tell the office the customer wasn't home" was taken for a procedure question."""
    got = classify(said)
    assert got.name == "log_note" and got.slots == {"text": text}


@pytest.mark.parametrize("question", ["what do I tell the customer", "do I tell dispatch before I open the switch",
                                      "who do I tell at the office", "tell me the lockout steps"])
def test_asking_whom_to_tell_is_still_a_question(question: str) -> None:
    assert classify(question).name == "procedure_question"


@pytest.mark.parametrize(("said", "intent"), [
    ("arc flash ppe for meters", "procedure_question"),
    ("what arc flash rating do I need", "procedure_question"),
    ("arc flash clothing for switching", "procedure_question"),
    ("we had an arc flash at the meter", "safety_emergency"),
    ("my partner got hit by an arc flash", "safety_emergency"),
    ("arc flash!", "safety_emergency"),
])
def test_arc_flash_gear_is_asked_about_an_arc_flash_is_an_emergency(said: str, intent: str) -> None:
    """"arc flash PPE for meters" escalated as an emergency at once."""
    assert classify(said).name == intent


def test_two_steps_the_question_weighs_against_each_other_are_both_said(assistant: Assistant) -> None:
    """"restore the hospitals or the feeder backbone first?" names two steps of the restoration order; the ranker
    scores them close, and the order is only heard with both (once the step naming the backbone alone was said)."""
    said = assistant.answerer.select("restore the hospitals or the feeder backbone first?")
    order = "storm-damage-assessment.md#restoration-priority"
    assert said.answered and [u.citation for u in said.said] == [f"{order}:step-2", f"{order}:step-3"]


def test_a_tables_neighbouring_rows_are_not_said_with_the_row_asked_for(assistant: Assistant) -> None:
    """Rows are alternatives, not parts of one answer: "class 1" is one row, however close its neighbours score."""
    said = assistant.answerer.select("what's the max voltage for class 1 gloves")
    assert said.answered and [u.text for u in said.units] == ["Class 1: Maximum use voltage: 7,500 V"]


def test_after_warm_up_the_first_question_encodes_only_itself(assistant: Assistant) -> None:
    """The question bank's questions were encoded on the first question, not at warm-up: the first spoken question
    after start waited 3 s more than the rest."""
    assistant.warm_up()
    assert assistant.answerer.bank is not None
    encoder = assistant.answerer.encoder
    batches: list[int] = []
    encode = encoder.encode

    def spy(texts: list[str], *args: object, **kwargs: object) -> object:
        batches.append(len(texts))
        return encode(texts, *args, **kwargs)

    encoder.encode = spy  # type: ignore[method-assign]
    try:
        assert not assistant.ask("what goes on the lockout tag?").abstained
    finally:
        encoder.encode = encode  # type: ignore[method-assign]
    assert batches and max(batches) < 20, batches  # the question and its words, not the bank's 800 questions
