"""The assistant: text in, intent, route, action and answer out. Every request is recorded.

Pipeline per request: retrieve passages → classify intent → decide the route (pure policy) → run the
local action (note, job status, parts request go to the durable outbox) → answer: from the local
model with retrieved procedures and citations, or — when the circuit breaker is open or the model
fails or runs over budget — from the retrieved text alone, saying so. Deferred tasks and escalations
are committed to the outbox; the answer tells the technician what happens next, online or not.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass, field
from typing import Any

from linecrew.agent.breaker import CircuitBreaker
from linecrew.agent.confirm import ACTION_INTENTS, PendingAction, answer_to_prompt, read_back
from linecrew.agent.intents import GRAMMAR, LLM_INSTRUCTIONS, Intent, classify_rules, parse_llm_intent
from linecrew.agent.knowledge import KnowledgeBase, Passage
from linecrew.agent.router import Route, RoutingPolicy, decide
from linecrew.agent.store import SERVER_PEER, AgentStore
from linecrew.shared.errors import ModelError
from linecrew.shared.llm import Completion, LocalLLM, chat_prompt
from linecrew.shared.logs import log_context
from linecrew.shared.metrics import percentiles
from linecrew.shared.protocol import Stream, new_id

log = logging.getLogger(__name__)

SYSTEM_PROMPT = (
    "You are Linecrew, a field assistant for electric utility line technicians. Answer in at most four "
    "short sentences or numbered steps, using only the procedures given. Safety first: never tell anyone "
    "to work on equipment that has not been locked out, tagged and tested dead. Cite procedures as [1], [2]."
)
SAFETY_NOTICE = (
    "STOP WORK. Keep everyone clear (at least 10 m from any downed wire) and call emergency services "
    "and the control center now. Do not touch a person in contact with a live conductor."
)


@dataclass(frozen=True)
class JobContext:
    job_id: str
    title: str = ""
    location: str = ""
    details: str = ""

    def describe(self) -> str:
        parts = [f"Job {self.job_id}", self.title, f"at {self.location}" if self.location else "", self.details]
        return " ".join(p for p in parts if p)


@dataclass
class Reply:
    request_id: str
    answer: str
    intent: str
    confidence: float
    route: str
    route_reason: str
    citations: list[str]
    actions: list[str]
    ttft_ms: float | None
    tokens_per_s: float
    prompt_tokens: int
    completion_tokens: int
    reused_prompt_tokens: int
    latency_ms: float
    model_version: str | None
    degraded: bool
    online: bool
    slots: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # why the model failed, when it did (the answer then came from retrieval)
    needs_confirmation: bool = False  # an action was read back and waits for a yes (voice or key)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AssistantConfig:
    intent_mode: str = "rules"  # "rules" (default, measured better) or "llm"
    retrieval_k: int = 3
    recent_utterances: int = 3
    answer_budget_ms: float = 15_000.0


class Assistant:
    def __init__(self, store: AgentStore, llm: LocalLLM, kb: KnowledgeBase, *,
                 policy: RoutingPolicy | None = None, breaker: CircuitBreaker | None = None,
                 config: AssistantConfig | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.llm = llm
        self.kb = kb
        self.policy = policy or RoutingPolicy()
        self.config = config or AssistantConfig()
        self.breaker = breaker or CircuitBreaker(latency_budget_ms=self.config.answer_budget_ms)
        self.clock = clock

    # ------------------------------------------------------------------ context
    def job(self) -> JobContext | None:
        raw = self.store.get("current_job")
        return JobContext(**raw) if isinstance(raw, dict) else None

    def set_job(self, job: JobContext) -> None:
        self.store.put("current_job", asdict(job))

    def online(self) -> bool:
        state = self.store.get("link")
        return isinstance(state, dict) and bool(state.get("online"))

    # ------------------------------------------------------------------ the request
    def ask(self, text: str, *, on_token: Callable[[str], None] | None = None) -> Reply:
        rid = new_id()
        with log_context(request_id=rid):  # every log line of this request carries its id (never its words)
            reply = self._ask(rid, text, on_token)
        log.info("request %s: intent %s -> %s in %.0f ms%s", rid, reply.intent, reply.route, reply.latency_ms,
                 f" (model error {reply.error})" if reply.error else "", extra={"request_id": rid})
        return reply

    def confirm(self, yes: bool) -> Reply:
        """The technician's yes or no by key (a rugged handheld's button), for the pending action."""
        return self.ask("yes" if yes else "no")

    def _pending(self) -> PendingAction | None:
        raw = self.store.get("pending_action")
        if not isinstance(raw, dict):
            return None
        pending = PendingAction(**raw)
        return None if pending.expired(time.time()) else pending

    def _resolve(self, rid: str, started: float, pending: PendingAction, yes: bool) -> Reply:
        self.store.put("pending_action", None)
        reply = Reply(rid, "", "confirm" if yes else "cancel", 1.0, "local", "answer to a read-back", [], [], None,
                      0.0, 0, 0, 0, 0.0, None, False, self.online())
        if yes:
            self._execute(pending, reply)
        else:
            reply.answer = "Cancelled; nothing was sent."
        reply.latency_ms = round((time.perf_counter() - started) * 1000, 1)
        self._record(reply, None)
        return reply

    def _execute(self, pending: PendingAction, reply: Reply) -> None:
        """Do what the technician confirmed: queue it in the durable outbox."""
        p = pending.payload
        when = "now" if reply.online else "when the link returns (queued on this device)"
        if pending.intent == "log_note":
            note_id = self.store.add_note(str(p["text"]), job_id=p.get("job_id"))
            reply.actions.append(f"note {note_id} stored")
            reply.answer = f"Saved. It syncs to the server {when}."
        elif pending.intent == "job_status":
            self.store.outbox.put("job_status", p, peer=SERVER_PEER, stream=Stream.JOBS)
            reply.actions.append(f"job status {p['status']} queued")
            reply.answer = f"Done: job {p.get('job_id') or '(none set)'} is {p['status']}; dispatch is told {when}."
        else:
            self.store.outbox.put("parts_request", p, peer=SERVER_PEER, stream=Stream.JOBS)
            reply.actions.append("parts request queued")
            reply.answer = f"Requested; sent {when}."

    def _ask(self, rid: str, text: str, on_token: Callable[[str], None] | None) -> Reply:
        started = time.perf_counter()
        text = text.strip()
        pending = self._pending()
        answer = answer_to_prompt(text) if pending is not None else None
        if pending is not None and answer is not None:
            return self._resolve(rid, started, pending, answer)
        passages = self.kb.search(text, limit=self.config.retrieval_k)
        intent = self._classify(text, passages)
        route = decide(intent, text, self.policy)
        job = self.job()
        reply = Reply(rid, "", intent.name, intent.confidence, route.kind, route.reason, [], [], None, 0.0, 0, 0, 0,
                      0.0, None, False, self.online(), dict(intent.slots))
        ref = self._act(text, intent, route, job, passages, reply, on_token)
        reply.latency_ms = round((time.perf_counter() - started) * 1000, 1)
        self._record(reply, ref)
        return reply

    def _classify(self, text: str, passages: list[Passage]) -> Intent:
        if self.config.intent_mode == "llm" and self.breaker.allow(self.clock()):
            try:
                prompt = chat_prompt(text, system=LLM_INSTRUCTIONS)
                return parse_llm_intent(self.llm.complete(prompt, grammar=GRAMMAR, max_tokens=24).text)
            except ModelError:
                log.warning("LLM intent classification failed; using rules")
        return classify_rules(text, retrieval_strength(passages))

    def _act(self, text: str, intent: Intent, route: Route, job: JobContext | None, passages: list[Passage],
             reply: Reply, on_token: Callable[[str], None] | None) -> str | None:
        job_id = job.job_id if job else None
        when = "now" if reply.online else "when the link returns (queued on this device)"
        if route.kind == "escalated":
            esc_id = new_id()
            context = [str(u["text"]) for u in self.store.utterances(limit=self.config.recent_utterances)]
            self.store.outbox.put("escalation", {
                "escalation_id": esc_id, "question": text, "reason": route.reason, "intent": intent.name,
                "job_id": job_id, "context": context[::-1]}, peer=SERVER_PEER, stream=Stream.ESCALATIONS)
            reply.actions.append(f"escalation {esc_id} queued")
            lead = SAFETY_NOTICE + " " if intent.name == "safety_emergency" else ""
            reply.answer = (f"{lead}I have asked a human expert; your question goes to them {when}, and the "
                            "answer will appear on this device.")
            reply.citations = [p.citation for p in passages[:1]] if intent.name == "safety_emergency" else []
            return esc_id
        if route.kind == "deferred":
            task_id = new_id()
            self.store.outbox.put("deferred_task", {"task_id": task_id, "kind": route.task or "unknown",
                                                    "job_id": job_id, "args": {"request": text}},
                                  peer=SERVER_PEER, stream=Stream.TASKS)
            reply.actions.append(f"deferred task {route.task} {task_id} queued")
            reply.answer = (f"That is heavy work for this device: the server will do it ({route.task}). "
                            f"It is sent {when}; the result will appear on this device.")
            return task_id
        if intent.name in ACTION_INTENTS:  # read back, wait for a yes: nothing is queued on a guess
            pending = read_back(intent.name, dict(intent.slots), text, job_id, time.time())
            self.store.put("pending_action", pending.as_dict())
            reply.needs_confirmation = True
            reply.actions.append(f"waiting for a yes: {intent.name}")
            reply.answer = f"{pending.readback} Say yes to confirm, or no to cancel."
            return None
        self._answer(text, job, passages, reply, on_token)
        return None

    def _answer(self, text: str, job: JobContext | None, passages: list[Passage], reply: Reply,
                on_token: Callable[[str], None] | None) -> None:
        reply.citations = [p.citation for p in passages]
        now = self.clock()
        if not self.breaker.allow(now):
            reply.answer = _retrieval_only(passages, "the local model is paused after repeated failures")
            reply.degraded = True
            return
        prompt = chat_prompt(self._user_prompt(text, job, passages), system=SYSTEM_PROMPT)
        fut = self.llm.submit(prompt, on_token=on_token)
        try:
            c: Completion = fut.result(timeout=self.config.answer_budget_ms / 1000)
        except (ModelError, FutureTimeout) as e:
            self.breaker.record(ok=False, latency_ms=self.config.answer_budget_ms + 1, now=self.clock())
            reply.error = type(e).__name__
            reply.model_version = getattr(self.llm, "version", None)
            reply.answer = _retrieval_only(passages, f"the local model did not answer ({type(e).__name__})")
            reply.degraded = True
            return
        self.breaker.record(ok=True, latency_ms=c.total_ms, now=self.clock())
        reply.answer = _without_repeats(c.text) or _retrieval_only(passages, "the local model gave an empty answer")
        reply.ttft_ms = round(c.ttft_ms, 1)
        reply.tokens_per_s = round(c.tokens_per_s, 1)
        reply.prompt_tokens, reply.completion_tokens = c.prompt_tokens, c.completion_tokens
        reply.reused_prompt_tokens = c.reused_prompt_tokens
        reply.model_version = c.model_version

    def _user_prompt(self, text: str, job: JobContext | None, passages: list[Passage]) -> str:
        lines = []
        if job:
            lines.append(f"Current job: {job.describe()}")
        recent = [str(u["text"]) for u in self.store.utterances(limit=self.config.recent_utterances)][::-1]
        if recent:
            lines.append("Recently said: " + " | ".join(recent))
        for i, p in enumerate(passages, 1):
            lines.append(f"[{i}] {p.title} - {p.heading}: {p.text[:700]}")
        lines.append(f"Question: {text}")
        return "\n".join(lines)

    def _record(self, r: Reply, ref: str | None) -> None:
        with self.store.db.transaction() as conn:
            conn.execute(
                "INSERT INTO requests (id, at, intent, confidence, route, latency_ms, ttft_ms, prompt_tokens,"
                " completion_tokens, reused_prompt_tokens, model_version, degraded, error, ref, resolved_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (r.request_id, time.time(), r.intent, r.confidence, r.route, r.latency_ms, r.ttft_ms, r.prompt_tokens,
                 r.completion_tokens, r.reused_prompt_tokens, r.model_version, int(r.degraded), r.error, ref,
                 None if r.route != "local" else time.time()),
            )


def retrieval_strength(passages: list[Passage]) -> float:
    """bm25 (negative, lower is better) mapped to [0, 1]: how well the knowledge base covers the text."""
    if not passages:
        return 0.0
    return min(1.0, -passages[0].score / 8.0)


def _without_repeats(text: str) -> str:
    """Drop lines the model already said (ignoring list numbering): small models sometimes loop."""
    seen: set[str] = set()
    out = []
    for line in text.strip().splitlines():
        key = re.sub(r"^\s*\d+[.)]\s*", "", line).strip().lower()
        if key and key in seen:
            continue
        seen.add(key)
        out.append(line)
    return "\n".join(out).strip()


def _retrieval_only(passages: list[Passage], why: str) -> str:
    if not passages:
        return f"Answering without the model: {why}, and no procedure matches. Ask an expert if unsure."
    p = passages[0]
    return f"Answering from the procedures only ({why}). {p.title} - {p.heading}: {p.text[:600]} [1]"


def request_stats(store: AgentStore) -> dict[str, Any]:
    """p50/p95/p99 latency and TTFT per model, route mix, manual-intervention rate (escalated share)."""
    rows = store.db.query("SELECT route, latency_ms, ttft_ms, model_version, completion_tokens, degraded,"
                          " resolved_at FROM requests")
    out: dict[str, Any] = {"requests": len(rows)}
    if not rows:
        return out
    lat = sorted(float(r["latency_ms"]) for r in rows)  # type: ignore[arg-type]
    ttft = sorted(float(r["ttft_ms"]) for r in rows if r["ttft_ms"] is not None)  # type: ignore[arg-type]
    out.update({
        "latency_ms": _percentiles(lat),
        "ttft_ms": _percentiles(ttft) if ttft else None,
        "routes": {k: sum(1 for r in rows if r["route"] == k) for k in ("local", "deferred", "escalated")},
        "manual_intervention_rate": round(sum(1 for r in rows if r["route"] == "escalated") / len(rows), 4),
        "degraded": sum(int(r["degraded"]) for r in rows),  # type: ignore[call-overload]
        "resolved": sum(1 for r in rows if r["resolved_at"] is not None),
        "models": sorted({str(r["model_version"]) for r in rows if r["model_version"]}),
    })
    return out


def _percentiles(values: list[float]) -> dict[str, float]:
    return {f"p{round(q * 100)}": round(v, 1) for q, v in percentiles(values).items()}
