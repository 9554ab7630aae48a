"""Benchmark: the assistant on the default model, and the intent classifier chosen by measurement.

Side by side in one run, same model (SmolLM2-135M-Instruct Q4_1, 2 threads):
* intent accuracy on a labelled set of field utterances: rules + retrieval (default) vs. the local LLM
  constrained to JSON by a llama.cpp grammar;
* end-to-end request latency p50/p95/p99, time to first token, tokens/s through the assistant (queue,
  retrieval, prompt building, prefix reuse), vs. a bare llama-cpp-python ``create_completion`` loop on
  the same prompts (the reference);
* time to first token with the fixed prompt prefix reused vs. evaluated from scratch.

Last stdout line: one JSON object.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from linecrew.agent.assistant import SYSTEM_PROMPT, Assistant, _chatml  # noqa: E402
from linecrew.agent.intents import GRAMMAR, LLM_INSTRUCTIONS, classify_rules, parse_llm_intent  # noqa: E402
from linecrew.agent.knowledge import SAMPLE_KB, KnowledgeBase  # noqa: E402
from linecrew.agent.store import AgentStore  # noqa: E402
from linecrew.shared.llm import LlmConfig, LocalLLM  # noqa: E402

LABELLED = [
    ("How do I verify zero voltage before I touch the transformer?", "procedure_question"),
    ("What are the steps for lockout tagout?", "procedure_question"),
    ("How should I read the oil sight gauge", "procedure_question"),
    ("What size fuse link goes back in after it blows?", "procedure_question"),
    ("Walk me through replacing a residential meter", "procedure_question"),
    ("Which customers get restored first after a storm?", "procedure_question"),
    ("How do I check the trip coil on the recloser?", "procedure_question"),
    ("Note: pole 14 crossarm is cracked", "log_note"),
    ("Log that the customer was not home", "log_note"),
    ("Make a note the meter seal number is 448812", "log_note"),
    ("Record that we replaced the arrester on T12", "log_note"),
    ("We're on site", "job_status"),
    ("Arrived at the substation", "job_status"),
    ("The job is done and power is restored", "job_status"),
    ("We are blocked, the road is flooded", "job_status"),
    ("I can't access the pole because of a locked gate", "job_status"),
    ("I need two fuse cutouts and one insulator", "parts_request"),
    ("Send me 3 crossarms and a dozen fuse links", "parts_request"),
    ("We're out of ground clamps, need four more", "parts_request"),
    ("Bring a 50 kVA transformer to the site", "parts_request"),
    ("My partner got a shock and he's unconscious", "safety_emergency"),
    ("There's a live wire down across the road", "safety_emergency"),
    ("The transformer is on fire", "safety_emergency"),
    ("Someone is hurt, call 911", "safety_emergency"),
    ("I want to talk to an engineer about this relay", "escalate_to_expert"),
    ("Connect me to a supervisor", "escalate_to_expert"),
    ("I'm not sure what to do here, get me an expert", "escalate_to_expert"),
    ("I need a second opinion on this breaker setting", "escalate_to_expert"),
    ("The weather is nice today", "other"),
    ("Thanks, that's all", "other"),
    ("Play some music", "other"),
    ("Good morning", "other"),
]

QUESTIONS = [q for q, i in LABELLED if i == "procedure_question"]


def pct(values: list[float], q: int) -> float:
    return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1], 1)


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="linecrew-bench-assistant-"))
    store = AgentStore(tmp / "dev", device_id="bench")
    kb = KnowledgeBase(store.db)
    kb.ensure_indexed(SAMPLE_KB)
    llm = LocalLLM(LlmConfig(max_tokens=64))
    assistant = Assistant(store, llm, kb)

    from linecrew.agent.assistant import retrieval_strength

    rules_ok = sum(classify_rules(t, retrieval_strength(kb.search(t))).name == want for t, want in LABELLED)
    llm_ok, llm_ms = 0, []
    for t, want in LABELLED:
        c = llm.complete(_chatml(LLM_INSTRUCTIONS, t), grammar=GRAMMAR, max_tokens=24)
        llm_ms.append(c.total_ms)
        llm_ok += parse_llm_intent(c.text).name == want

    # the assistant end to end, three rounds over the questions (first round warms nothing but the model)
    lat, ttft, tps, reused = [], [], [], []
    for _ in range(3):
        for q in QUESTIONS:
            r = assistant.ask(q)
            lat.append(r.latency_ms)
            if r.ttft_ms is not None:
                ttft.append(r.ttft_ms)
                tps.append(r.tokens_per_s)
                reused.append(r.reused_prompt_tokens)

    # reference: bare llama-cpp-python on the same prompts and model, in its own process (two llama.cpp
    # instances in one process slow each other down), no queue, no retrieval
    prompts = [_chatml(SYSTEM_PROMPT, assistant._user_prompt(q, None, kb.search(q, limit=3))) for q in QUESTIONS]
    ref_in = tmp / "ref_prompts.json"
    ref_in.write_text(json.dumps({"model": str(llm.path), "prompts": prompts * 3}))
    out = subprocess.run([sys.executable, __file__, "--reference", str(ref_in)], capture_output=True, text=True,
                         check=True, timeout=600)
    ref = json.loads(out.stdout.strip().splitlines()[-1])
    ref_tps, ref_ttft = ref["tps"], ref["ttft"]

    # prefix reuse: the same request after an unrelated prompt (cold) vs. right after a request (warm)
    cold, warm = [], []
    for q in QUESTIONS[:4]:
        llm._llm.reset()
        cold.append(assistant.ask(q).ttft_ms or 0.0)
        warm.append(assistant.ask(q + " ").ttft_ms or 0.0)
    llm.close()

    result = {
        "benchmark": "assistant",
        "model": llm.version,
        "intent_examples": len(LABELLED),
        "intent_accuracy_rules": round(rules_ok / len(LABELLED), 3),
        "intent_accuracy_llm_json_grammar": round(llm_ok / len(LABELLED), 3),
        "intent_llm_p50_ms": pct(llm_ms, 50),
        "requests": len(lat),
        "latency_p50_ms": pct(lat, 50),
        "latency_p95_ms": pct(lat, 95),
        "latency_p99_ms": pct(lat, 99),
        "ttft_p50_ms": pct(ttft, 50),
        "tokens_per_s": round(statistics.median(tps), 1),
        "reference_llama_cpp_tokens_per_s": round(statistics.median(ref_tps), 1),
        "reference_llama_cpp_ttft_p50_ms": pct(ref_ttft, 50),
        "ttft_cold_prefix_p50_ms": round(statistics.median(cold), 1),
        "ttft_warm_prefix_p50_ms": round(statistics.median(warm), 1),
        "reused_prompt_tokens_p50": statistics.median(reused),
    }
    print(json.dumps(result))


def reference(spec_path: str) -> None:
    from llama_cpp import Llama

    spec = json.loads(Path(spec_path).read_text())
    raw = Llama(model_path=spec["model"], n_ctx=2048, n_threads=2, verbose=False)
    tps, ttft = [], []
    for p in spec["prompts"]:
        t0 = time.perf_counter()
        first, n = None, 0
        for _ in raw.create_completion(p, max_tokens=64, temperature=0.0, stream=True, stop=["<|im_end|>"]):
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
