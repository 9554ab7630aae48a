"""Intent rules, routing policy, circuit breaker and retrieval: pure logic, tables of cases."""

from __future__ import annotations

from pathlib import Path

import pytest

from linecrew.agent.breaker import CircuitBreaker
from linecrew.agent.intents import GRAMMAR, INTENTS, Intent, classify_rules, parse_items, parse_llm_intent
from linecrew.agent.knowledge import SAMPLE_KB, KnowledgeBase, split_markdown
from linecrew.agent.router import RoutingPolicy, decide
from linecrew.shared.db import Database
from linecrew.shared.protocol import PartItem


@pytest.mark.parametrize(("text", "intent", "slots"), [
    ("How do I test for zero voltage on a transformer?", "procedure_question", {}),
    ("What are the lockout tagout steps", "procedure_question", {}),
    ("note: pole 14 crossarm is cracked", "log_note", {"text": "pole 14 crossarm is cracked"}),
    ("Log that the customer was not home", "log_note", {"text": "the customer was not home"}),
    ("We're on site", "job_status", {"status": "on_site"}),
    ("The job is done, power is restored", "job_status", {"status": "done"}),
    ("I can't access the pole because the road is flooded", "job_status",
     {"status": "blocked", "reason": "the road is flooded"}),
    ("I need two fuse cutouts and one insulator", "parts_request",
     {"items": [{"part": "fuse cutouts", "quantity": 2}, {"part": "insulator", "quantity": 1}]}),
    ("Send me 3 crossarms", "parts_request", {"items": [{"part": "crossarms", "quantity": 3}]}),
    ("Help, my partner got a shock and is unconscious", "safety_emergency", {}),
    ("There is a live wire down across the road", "safety_emergency", {}),
    ("I want to talk to an engineer about this relay", "escalate_to_expert", {}),
    ("The weather is nice today", "other", {}),
])
def test_rules_classify_field_language(text: str, intent: str, slots: dict[str, object]) -> None:
    got = classify_rules(text)
    assert got.name == intent
    for k, v in slots.items():
        assert got.slots[k] == v


def test_quantities_in_words_and_digits() -> None:
    assert parse_items("need a couple of crossarms") == [{"part": "crossarms", "quantity": 2}]
    assert parse_items("need a dozen fuse links and 2 arresters") == [
        {"part": "fuse links", "quantity": 12}, {"part": "arresters", "quantity": 2}]


@pytest.mark.parametrize(("said", "items"), [
    # "twenty five" is one number (it was 20 of "five fuse links"); "two fifty kVA" two of the 50 kVA
    ("need twenty five fuse links", [{"part": "fuse links", "quantity": 25}]),
    ("I need two fifty kva transformers", [{"part": "50 kva transformers", "quantity": 2}]),
    # a length of stock; the 0 of "2/0" is no quantity (it was 0 x copper, which the server's schema refuses)
    ("need twenty five feet of 2/0 copper", [{"part": "feet of 2/0 copper", "quantity": 25}]),
    ("need 50 feet of triplex and 4 connectors", [{"part": "feet of triplex", "quantity": 50},
                                                  {"part": "connectors", "quantity": 4}]),
    ("need 0 links", []),
    # "a couple more" is two (it was 1 x "couple more fuse links"); "more", "spare" say how many, not what
    ("we'll need a couple more fuse links", [{"part": "fuse links", "quantity": 2}]),
    ("I need 3 spare fuse links and two more insulators", [{"part": "fuse links", "quantity": 3},
                                                          {"part": "insulators", "quantity": 2}]),
])
def test_quantities_said_as_crews_say_them(said: str, items: list[dict[str, object]]) -> None:
    got = parse_items(said)
    assert got == items
    assert all(PartItem(**i) for i in got)  # every item is one the server takes


def test_question_confidence_follows_retrieval_strength() -> None:
    assert classify_rules("how do I do it", 0.0).confidence < classify_rules("how do I do it", 1.0).confidence


@pytest.mark.parametrize(("intent", "conf", "text", "route"), [
    ("safety_emergency", 0.99, "fire", "escalated"),
    ("escalate_to_expert", 0.9, "talk to an expert", "escalated"),
    ("procedure_question", 0.3, "how do I flux the capacitor", "escalated"),
    ("procedure_question", 0.8, "how do I replace a meter", "local"),
    ("other", 0.5, "summarize the job log for today", "deferred"),
    ("log_note", 0.9, "note: summarize later", "local"),
    ("parts_request", 0.2, "need 2 insulators", "local"),
])
def test_routing_policy(intent: str, conf: float, text: str, route: str) -> None:
    assert decide(Intent(intent, conf), text, RoutingPolicy(escalate_below=0.45)).kind == route


def test_by_default_an_unsure_intent_is_not_escalated_the_answerability_decides() -> None:
    assert decide(Intent("procedure_question", 0.3), "how do I flux the capacitor", RoutingPolicy()).kind == "local"


def test_policy_refuses_to_stop_escalating_emergencies() -> None:
    with pytest.raises(ValueError):
        RoutingPolicy(always_escalate=frozenset({"escalate_to_expert"}))


def test_breaker_opens_after_failures_and_half_opens_after_cooldown() -> None:
    b = CircuitBreaker(failure_threshold=2, reset_after_s=10, latency_budget_ms=1000)
    states = []
    for ok, lat, t in [(True, 10, 0), (False, 10, 1), (True, 5000, 2), (True, 10, 3)]:
        if b.allow(t):
            b.record(ok=ok, latency_ms=lat, now=t)
        states.append(b.state)
    assert states == ["closed", "closed", "open", "open"]
    assert not b.allow(5)
    assert b.allow(12) and b.state == "half_open"
    b.record(ok=False, latency_ms=1, now=12)
    assert b.state == "open" and not b.allow(13)
    assert b.allow(23)
    b.record(ok=True, latency_ms=1, now=23)
    assert b.state == "closed"


def test_llm_intent_parsing_and_grammar_cover_every_intent() -> None:
    assert all(f'"{i}"' in GRAMMAR for i in INTENTS)
    assert parse_llm_intent('{"intent": "log_note"}').name == "log_note"
    assert parse_llm_intent("garbage").name == "other"


def test_knowledge_base_ranks_the_right_procedure(tmp_path: Path) -> None:
    kb = KnowledgeBase(Database(tmp_path / "kb.db"))
    kb.ensure_indexed(SAMPLE_KB)
    for q, doc in [("how do I apply my lock and tag", "lockout-tagout.md"),
                   ("transformer oil level low", "transformer-inspection.md"),
                   ("meter socket jaws burned", "meter-replacement.md"),
                   ("downed wires after the storm", "storm-damage-assessment.md"),
                   ("recloser tripped again", "breaker-check.md")]:
        assert kb.search(q)[0].doc == doc, q
    assert kb.search("the and of") == []
    title, sections = split_markdown("# T\nintro\n## A\nx\n## B\ny")
    assert title == "T" and [h for h, _ in sections] == ["T", "A", "B"]


def test_repeated_lines_from_a_looping_model_are_dropped() -> None:
    from linecrew.agent.assistant import _without_repeats

    looped = "1. Check the gauge.\n2. Check the gauge.\n3. Report a leak.\n4. check the gauge."
    assert _without_repeats(looped) == "1. Check the gauge.\n3. Report a leak."
