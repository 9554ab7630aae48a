"""Benchmark: the assistant on the held-out part of the labelled set, grounded vs. free generation.

Same run, same default model (SmolLM2-135M-Instruct Q4_1, 2 threads), same questions (``tests/data/assistant/
qa.jsonl`` and the intent set shipped in ``agent/data/intents.jsonl``, split "heldout": never used to train the
intent classifier, fit the answerability model or choose a threshold):

* the grounded assistant (default): answer accuracy, contradictions, invented figures, abstention on uncovered
  questions, false abstention, intent accuracy, retrieval hit@1/@3, latency p50/p95;
* the reference: the former free-generation answer (the model writes from the top three passages) with the
  former regex intent rules, judged by the same code;
* the answerability model's reliability curve on the held-out questions;
* typed slips: the same questions with one typing slip each (seeded), answered with the correction of slips to the
  base's words (``agent/spelling.py``) and without it;
* said with a remark first: the same questions after a remark (seeded, one of six never used in tuning: "sorry
  it's loud here," ...), answered with a weak reading read again without its first clauses and without;
* follow-ups in a conversation (``tests/data/assistant/followups.jsonl``, split "heldout": "how do I inspect my
  gloves" then "what if one fails?"), read with the question they follow and read alone (the former reading);
* kept from before: bare llama-cpp-python tokens/s and TTFT on the reference's prompts, in its own process,
  and TTFT with the prompt prefix reused vs. evaluated cold.

Last stdout line: one JSON object. With fewer samples than asked (``--limit``) it reports what it has.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from linecrew.agent import grounding  # noqa: E402
from linecrew.agent.answerability import reliability  # noqa: E402
from linecrew.agent.answering import Answerer  # noqa: E402
from linecrew.agent.assistant import SYSTEM_PROMPT, Assistant, AssistantConfig  # noqa: E402
from linecrew.agent.evaluation import Case, has_facts, load_cases, report, run  # noqa: E402
from linecrew.agent.intents import default_classifier, load_labelled  # noqa: E402
from linecrew.agent.knowledge import SAMPLE_KB, KnowledgeBase  # noqa: E402
from linecrew.agent.store import AgentStore  # noqa: E402
from linecrew.shared.llm import LlmConfig, LocalLLM, chat_prompt  # noqa: E402
from tests.helpers.stats import pct  # noqa: E402

QA = REPO / "tests" / "data" / "assistant" / "qa.jsonl"
FOLLOWUPS = QA.with_name("followups.jsonl")


def _assistant(tmp: Path, name: str, llm: LocalLLM, config: AssistantConfig) -> Assistant:
    store = AgentStore(tmp / name, device_id=f"bench-{name}")
    kb = KnowledgeBase(store.db)
    kb.ensure_indexed(SAMPLE_KB)
    return Assistant(store, llm, kb, config=config)


def _measure(a: Assistant, cases: list[Case]) -> dict[str, object]:
    def reset() -> None:
        a.store.put("pending_action", None)
        a.forget_conversation()

    r = report(run(a.ask, a.kb, cases, reset))
    r.pop("per_intent")
    return r


_SLIP_KEYS = ("answer_accuracy", "contradictions", "invented_figures", "abstain_rate_uncovered", "false_abstain_rate")


def _slipped(cases: list[Case], seed: int = 7) -> list[Case]:
    """Each case with one typing slip (a letter dropped, swapped, replaced or added inside its longest word of
    five letters or more); cases without such a word are left out."""
    rng = random.Random(seed)
    out = []
    for c in cases:
        longest = max((w for w in c.question.split() if w.isalpha() and len(w) >= 5), key=len, default=None)
        if longest is None:
            continue
        i, kind, letter = rng.randrange(1, len(longest) - 1), rng.randrange(4), rng.choice("aeiourstnl")
        slip = (longest[:i] + longest[i + 1:], longest[:i] + longest[i + 1] + longest[i] + longest[i + 2:],
                longest[:i] + letter + longest[i + 1:], longest[:i] + letter + longest[i:])[kind]
        out.append(replace(c, question=c.question.replace(longest, slip, 1)))
    return out


# remarks a technician makes before asking; none was used to choose how a question is read again
_REMARKS = ("sorry it's loud here, ", "give me a second, the wind is picking up. ",
            "alright, we're set up at the pole, ", "so the crew's all here now, ", "just got back from lunch. ",
            "we've got the bucket in the air, ")


def _remarked(cases: list[Case], seed: int = 11) -> list[Case]:
    """Each case with a remark said before it; its facts and intent stay (a remark changes neither)."""
    rng = random.Random(seed)
    out = []
    for c in cases:
        remark = rng.choice(_REMARKS)
        first = c.question[:1].upper() if remark.rstrip().endswith(".") else c.question[:1].lower()
        out.append(replace(c, question=remark + first + c.question[1:]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=0, help="at most this many QA cases per side (0: all)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="linecrew-bench-assistant-"))
    qa = load_cases(QA, split="heldout")
    if args.limit:
        qa = qa[: args.limit]
    intents = [Case(t, i, split="heldout") for t, i in load_labelled(split="heldout")]
    t0 = time.perf_counter()
    default_classifier()
    train_s = time.perf_counter() - t0
    llm = LocalLLM(LlmConfig(max_tokens=64))
    grounded = _assistant(tmp, "grounded", llm, AssistantConfig())
    grounded.ask("warm up")  # the classifier and the corpus index, once
    ours = _measure(grounded, qa + intents)

    # typed with gloves on: one slip in each question's longest word, answered with and without correction
    slipped = _slipped(qa)
    typed = _measure(grounded, slipped)
    grounded.answerer.spelling = False
    typed_raw = _measure(grounded, slipped)
    grounded.answerer.spelling = True

    # a remark first ("sorry it's loud here, what goes on the tag"), read again without it and not
    remarked = _remarked(qa)
    said = _measure(grounded, remarked)
    grounded.answerer.reread = False
    said_whole = _measure(grounded, remarked)
    grounded.answerer.reread = True

    # follow-ups asked after the question they lean on, read with it and alone
    follow = load_cases(FOLLOWUPS, split="heldout")
    conversed = _measure(grounded, follow)
    grounded.answerer.converse = False
    alone = _measure(grounded, follow)
    grounded.answerer.converse = True

    reference = _assistant(tmp, "generate", llm, AssistantConfig(intent_mode="rules", answer_mode="generate"))
    ref = _measure(reference, qa + intents)

    # calibration on the held-out questions: predicted answerability vs. whether the text said (the chosen units and
    # the runner-ups said after them, as the model is fitted) holds the facts
    answerer = Answerer(grounded.kb)
    probs, labels = [], []
    for c in qa:
        if len(grounding.split_parts(c.question)) == 1:
            part = answerer.select(c.question)
            probs.append(part.probability)
            labels.append(int(bool(c.answerable) and has_facts(grounding.compose(part.said), c.facts)))

    # raw llama-cpp-python on the reference's prompts, in its own process (two llama.cpp instances in one
    # process slow each other down)
    qs = [c.question for c in qa if c.answerable][:20]
    prompts = [chat_prompt(reference._user_prompt(q, None, reference.kb.search(q, limit=3)), system=SYSTEM_PROMPT)
               for q in qs]
    ref_in = tmp / "ref_prompts.json"
    ref_in.write_text(json.dumps({"model": str(llm.path), "prompts": prompts}))
    out = subprocess.run([sys.executable, __file__, "--reference", str(ref_in)], capture_output=True, text=True,
                         check=True, timeout=900)
    raw = json.loads(out.stdout.strip().splitlines()[-1])

    # prefix reuse: the same request after a reset (cold) vs. right after itself (warm)
    cold, warm, tps = [], [], []
    for q in qs[:4]:
        llm._llm.reset()  # type: ignore[union-attr]
        c1 = reference.ask(q)
        cold.append(c1.ttft_ms or 0.0)
        tps.append(c1.tokens_per_s)
        warm.append(reference.ask(q + " ").ttft_ms or 0.0)
    llm.close()

    result = {
        "benchmark": "assistant",
        "model": llm.version,
        "split": "heldout",
        "qa_cases": len(qa),
        "intent_cases": len(intents) + len(qa),
        "too_few_samples": len(qa) < 40,
        **{k: ours[k] for k in ("answer_accuracy", "contradictions", "invented_figures", "abstain_rate_uncovered",
                                "false_abstain_rate", "intent_accuracy", "retrieval_hit_at_1", "retrieval_hit_at_3",
                                "latency_p50_ms", "latency_p95_ms")},
        "goals": {"answer_accuracy": ">=0.9", "contradictions": 0, "abstain_rate_uncovered": ">=0.9",
                  "false_abstain_rate": "<=0.1", "intent_accuracy": ">=0.95", "latency_p95_ms": "<=1500"},
        "reference_free_generation": ref,
        "typed_slips": {"cases": len(slipped), **{k: typed[k] for k in _SLIP_KEYS},
                        "without_correction": {k: typed_raw[k] for k in _SLIP_KEYS}},
        "said_with_a_remark": {"cases": len(remarked), **{k: said[k] for k in (*_SLIP_KEYS, "intent_accuracy")},
                               "read_whole_only": {k: said_whole[k] for k in (*_SLIP_KEYS, "intent_accuracy")}},
        "follow_ups": {"cases": len(follow), **{k: conversed[k] for k in _SLIP_KEYS},
                       "read_alone": {k: alone[k] for k in _SLIP_KEYS}},
        "answerability_curve_heldout": reliability(probs, labels),
        "intent_classifier_train_s": round(train_s, 2),
        "tokens_per_s_through_assistant": round(statistics.median(tps), 1) if tps else None,
        "reference_llama_cpp_tokens_per_s": round(statistics.median(raw["tps"]), 1) if raw["tps"] else None,
        "reference_llama_cpp_ttft_p50_ms": pct(raw["ttft"], 50),
        "ttft_cold_prefix_p50_ms": round(statistics.median(cold), 1) if cold else None,
        "ttft_warm_prefix_p50_ms": round(statistics.median(warm), 1) if warm else None,
    }
    print(json.dumps(result))


def reference(spec_path: str) -> None:
    from llama_cpp import Llama

    spec = json.loads(Path(spec_path).read_text())
    model = Llama(model_path=spec["model"], n_ctx=2048, n_threads=2, verbose=False)
    tps, ttft = [], []
    for p in spec["prompts"]:
        t0 = time.perf_counter()
        first, n = None, 0
        for _ in model.create_completion(p, max_tokens=64, temperature=0.0, stream=True, stop=["<|im_end|>"]):
            first = first or time.perf_counter()
            n += 1
        end = time.perf_counter()
        ttft.append(((first or end) - t0) * 1000)
        if n > 1 and first:
            tps.append((n - 1) / (end - first))
    print(json.dumps({"tps": tps, "ttft": ttft}))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--reference":
        reference(sys.argv[2])
    else:
        main()
