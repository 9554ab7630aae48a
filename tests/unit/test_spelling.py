"""Typing slips corrected to the base's words, never to a guess (agent/spelling.py)."""

from __future__ import annotations

import pytest

from linecrew.agent.spelling import Speller

_BASE = ("notify the control center before lockout; wait at least 5 minutes for the capacitor bank to discharge; "
         "check the breaker and the recloser; reconnect the neutral first; a hollow sound means decay; internal "
         "resistors; fall protection; fault current; the tag shows your name").split()


def _speller() -> Speller:
    return Speller([w.strip(";,.") for w in _BASE], keep={"the", "a", "and", "for", "to", "your"},
                   stem=lambda w: w[:-1] if w.endswith("r") else w)


@pytest.mark.parametrize(("typed", "meant"), [
    ("who do I notifiy before lockout", "who do I notify before lockout"),
    ("how long do I wiat on the capacitr bank", "how long do I wait on the capacitor bank"),
    ("breakr tripped", "breaker tripped"),
    ("pole sounds holow", "pole sounds hollow"),
])
def test_a_slip_one_edit_from_one_word_of_the_base_is_that_word(typed: str, meant: str) -> None:
    assert _speller().correct(typed) == meant


@pytest.mark.parametrize("typed", [
    "how do I splise a neutral",  # no word of the base is near: the question stays about what it asks
    "how do I splice a neutral",  # an English word the base never uses is no slip
    "can I use a set that took a falt",  # fall? fault? a tie is not a guess to act on
    "what is the OCR showing",  # an acronym
    "reclose the recloser",  # another form of a known word: the ranker's stemmer reads it
    "form 2S meter, don't touch",  # digits and contractions
])
def test_what_is_not_a_plain_slip_stays_as_typed(typed: str) -> None:
    assert _speller().correct(typed) == typed


def test_an_english_word_as_near_and_far_more_common_blocks_the_correction() -> None:
    # "whut" is one edit from a base's "whit" and from English "what", a thousand times as common: left as typed;
    # "wiat" is one edit from "wait" and from "what" (21 times as common): the base's "wait"
    s = Speller(["whit", "wait"])
    assert s.correct("whut") == "whut"
    assert s.correct("wiat") == "wait"
    assert s.word("Wiat") == "wait" and s.word("tge") == "tge"  # any case; three letters and no near word


@pytest.mark.parametrize(("heard", "meant"), [
    ("can I close the re closer", "can I close the recloser"),  # two words the base writes as one
    ("what p p e for a meter change", "what ppe for a meter change"),  # letters said one by one
    ("which way do I face to close the cut out", "which way do I face to close the cutout"),  # a thing named
    ("can I lock out at the meter", "can I lock out at the meter"),  # a verb: "lock out" is not "lockout"
    ("set up the cones", "set up the cones"),  # the base says "set up" more often than "setup"
    ("is it a or b", "is it a or b"),
])
def test_words_speech_recognition_split_are_joined_where_the_base_writes_them_as_one(heard: str, meant: str) -> None:
    s = Speller("the recloser and the cutout wear ppe apply lockout before you set up the setup".split())
    assert s.joined(heard) == meant
