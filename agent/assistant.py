"""The assistant: text in, intent, route, action and answer out. Every request is recorded.

Pipeline per request: a pending read-back answered ("yes"/"no") is resolved first; a question about the
current job is answered from the job; otherwise classify the intent (``agent.intents``: a trained classifier
with guards), route it (``agent.router``), and then:

* a procedure question is answered from the procedures' own words (``agent.answering``), cited exactly; when
  no procedure covers it, the device says so and offers to ask an expert (a hazard with no procedure goes to
  one at once);
* an action (note, job status, parts request) is read back and waits for a yes (``agent.confirm``);
* an emergency escalates at once, with the safety notice and the rescue procedure when one applies.

The local model is not on the answer path by default (``answer_mode = "grounded"``). ``"checked"`` lets it
write a one-sentence lead-in that is kept only if ``grounding.check`` finds it supported by the cited text;
``"generate"`` is the former free generation, kept as the benchmark's reference. The conversation (last
procedure and step) lives in the device store, so typed and spoken turns share it.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass, field
from typing import Any

from linecrew.agent import grounding, walkthrough
from linecrew.agent.answering import ABSTAIN, Answerer, Focus, Grounded
from linecrew.agent.breaker import CircuitBreaker
from linecrew.agent.commands import REPEAT, match
from linecrew.agent.confirm import ACTION_INTENTS, PendingAction, answer_to_prompt, bare_answer, read_back
from linecrew.agent.intents import (
    _SAFETY,
    GRAMMAR,
    LLM_INSTRUCTIONS,
    Intent,
    classify,
    classify_rules,
    parse_llm_intent,
)
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
LEAD_IN_PROMPT = (
    "Rewrite the procedure text below as one short sentence answering the technician's question. Use only "
    "words and figures from the procedure text."
)
SAFETY_NOTICE = (
    "STOP WORK. Keep everyone clear (at least 10 m from any downed wire) and call emergency services "
    "and the control center now. Do not touch a person in contact with a live conductor."
)
# a question about "this job" is answered in the job's procedure with the job's title said for "this job"; the
# question's own words must still make that procedure plausible (probability without the title at least this):
# "how do I lock out for this job" in the fuse procedure is 0.05 on its own words, "what size link for this job" 0.52
JOB_OWN_FLOOR = 0.25
# a spoken question no procedure answers as first recognised is answered as the recogniser also heard it when a
# procedure answers that reading with this confidence or more (the answerability threshold is lower). Chosen on the
# tune part spoken (espeak-ng, every third question: 201 answerable, 71 uncovered; the beam's five). Accuracy /
# uncovered abstained, first reading only: 0.701 / 0.887; every other reading tried: at 0.6 0.756 / 0.817, at 0.8
# 0.736 / 0.873, at 0.9 0.711 / 0.887; at 0.8 with a question read again only as a question
# (``voice.other_readings``): 0.736 / 0.887. A wrong reading answered is what the bar guards against. Another voice
# (espeak-ng en-us), not tuned on: 0.672 / 0.859 -> 0.701 / 0.859. Measured on the scores of the first answerability
# model before it read the chosen text apart, kept for the other readings (``Answerer.for_other_readings``,
# ``answerability.HEARD``: why); the question bank's tune questions would make a bar chosen on the tune part with the
# bank in-sample.
HEARD_AS_MIN = 0.8
HEARD_AS = 'I heard "{}".'
MAX_ALTERNATIVES = 8
MAX_ASK_CHARS = 1_000  # about three times the longest question a technician says in one breath
CONVERSATION_TTL_S = 900.0  # a follow-up after a quarter of an hour starts a new conversation
# "say that again", typed or said to the screen: the last reply again (the voice loop's speaker repeats what it said)
_AGAIN = {"repeat": re.compile(rf"^((sorry|pardon|what) )?((can|could|would) you )?{REPEAT}$|"
                               r"^(sorry )?(i )?(didn't|did not|couldn't) (catch|get|hear) (that|it|you)$")}
NOT_COUNTED = ("confirm", "cancel", "repeat")  # replies to the device's own words, not requests of their own
_JOB_QUESTION = re.compile(
    r"\b(this|the|my|current|our) (job|work order|ticket)\b|\bwhat job\b|\bwhere (is|am i|are we)\b.*\b(job|going|"
    r"headed)\b|\bwhat('s| is) the address\b|\bjob (address|details|number)\b", re.I)
_WHOLE = re.compile(r"^\s*(what are |what're |read me |tell me |give me )?(the )?(steps|procedure)\b|"
                    r"\bhow (do|should|can) (i|we) do\b|\bwhat('s| is) the (procedure|process)\b", re.I)
# what a question about the job asks of the job itself (where, what, which); anything else ("the steps for this
# job", "what PPE for this job") is asked of the procedure for it
_JOB_DETAILS = re.compile(
    r"\b(where|address|location|located|directions|what job|which job|job (number|id|details)|details|customer)\b|"
    r"^\s*what('s| is) (this|the|my|our|current) (job|work order|ticket)( about)?\s*\??\s*$", re.I)
# a question about the job's status ("is this job done?", "what's the status of the job"): what this device has
# told dispatch, not a procedure's steps (which "is this job done" was answered with)
_JOB_STATUS = re.compile(r"^\s*(is|was|has|have|did)\b.*\b(job|work order|ticket)\b.*\b(done|finished|complete|"
                         r"completed|closed|marked)\b|\bstatus of\b|\b(job|work order|ticket)('s)? status\b", re.I)


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
    error: str | None = None  # why the model failed, when it did
    needs_confirmation: bool = False  # a read-back waits for a yes (voice or key)
    grounded: bool = False  # the answer is the cited procedure's (or job's) own words
    abstained: bool = False  # no procedure covers the question, and the device said so
    heard_as: str | None = None  # the recogniser's other reading that was answered (``Assistant.ask(alternatives=)``)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AssistantConfig:
    intent_mode: str = "classifier"  # "classifier" (default, measured best), "rules" (former) or "llm"
    answer_mode: str = "grounded"  # "grounded" (default), "checked" (checked LLM lead-in) or "generate"
    retrieval_k: int = 3
    recent_utterances: int = 3
    answer_budget_ms: float = 15_000.0


class Assistant:
    def __init__(self, store: AgentStore, llm: LocalLLM, kb: KnowledgeBase, *,
                 policy: RoutingPolicy | None = None, breaker: CircuitBreaker | None = None,
                 config: AssistantConfig | None = None, clock: Callable[[], float] = time.monotonic,
                 answerer: Answerer | None = None) -> None:
        self.store = store
        self.llm = llm
        self.kb = kb
        self.policy = policy or RoutingPolicy()
        self.config = config or AssistantConfig()
        self.breaker = breaker or CircuitBreaker(latency_budget_ms=self.config.answer_budget_ms)
        self.clock = clock
        self.answerer = answerer or Answerer(kb)

    # ------------------------------------------------------------------ context
    def job(self) -> JobContext | None:
        raw = self.store.get("current_job")
        return JobContext(**raw) if isinstance(raw, dict) else None

    def set_job(self, job: JobContext) -> None:
        self.store.put("current_job", asdict(job))

    def online(self) -> bool:
        state = self.store.get("link")
        return isinstance(state, dict) and bool(state.get("online"))

    def focus(self) -> Focus | None:
        raw = self.store.get("conversation")
        if not isinstance(raw, dict) or time.time() - float(raw.get("at", 0)) > CONVERSATION_TTL_S:
            return None
        f = raw.get("focus")
        return (Focus(f["doc"], int(f["section"]), int(f["position"]), dict(f.get("weights") or {}),
                      str(f.get("question") or "")) if f else None)

    def forget_conversation(self) -> None:
        self.store.put("conversation", None)

    def _remember(self, focus: Focus | None) -> None:
        if focus is not None:
            self.store.put("conversation", {"at": time.time(), "focus": asdict(focus)})

    # ------------------------------------------------------------------ the request
    def ask(self, text: str, *, on_token: Callable[[str], None] | None = None,
            alternatives: Sequence[str] = ()) -> Reply:
        """``alternatives``: for a spoken question, the recogniser's other readings of it, best first. Only when
        ``text`` is a procedure question no procedure answers is one of them answered instead: the first that a
        procedure answers with confidence ``HEARD_AS_MIN`` or more, the answer opening with what was heard."""
        rid = new_id()
        with log_context(request_id=rid):  # every log line of this request carries its id (never its words)
            reply = self._ask(rid, text, on_token, tuple(alternatives)[:MAX_ALTERNATIVES])
        log.info("request %s: intent %s -> %s in %.0f ms%s", rid, reply.intent, reply.route, reply.latency_ms,
                 f" (model error {reply.error})" if reply.error else "", extra={"request_id": rid})
        return reply

    def warm_up(self) -> None:
        """Load what the first question would otherwise wait for: the classifier, the procedures' index and the
        question bank's vectors."""
        if self.config.intent_mode == "classifier":
            classify("warm up")
        self.answerer.warm_up()

    def confirm(self, yes: bool) -> Reply:
        """The technician's yes or no by key (a rugged handheld's button), for the pending action."""
        return self.ask("yes" if yes else "no")

    def pending(self) -> PendingAction | None:
        """The read-back waiting for a yes, unless it expired."""
        raw = self.store.get("pending_action")
        if not isinstance(raw, dict):
            return None
        pending = PendingAction(**raw)
        return None if pending.expired(time.time()) else pending

    def _new_reply(self, rid: str, intent: Intent, route: Route) -> Reply:
        return Reply(rid, "", intent.name, intent.confidence, route.kind, route.reason, [], [], None, 0.0, 0, 0, 0,
                     0.0, None, False, self.online(), dict(intent.slots))

    def _resolve(self, rid: str, started: float, pending: PendingAction, yes: bool) -> Reply:
        self.store.put("pending_action", None)
        if yes and pending.intent == "escalate_to_expert":  # the technician accepted the offer to ask an expert
            intent = Intent("escalate_to_expert", 1.0, source="confirmed")
            reply = self._new_reply(rid, intent, Route("escalated", "the technician asked for an expert"))
            ref = self._escalate(str(pending.payload["question"]), intent, reply.route_reason, reply)
            return self._finish(reply, started, ref)
        reply = Reply(rid, "", "confirm" if yes else "cancel", 1.0, "local", "answer to a read-back", [], [], None,
                      0.0, 0, 0, 0, 0.0, None, False, self.online())
        if yes:
            self._execute(pending, reply)
        else:
            reply.answer = "Cancelled; nothing was sent."
        return self._finish(reply, started, None)

    def _finish(self, reply: Reply, started: float, ref: str | None) -> Reply:
        reply.latency_ms = round((time.perf_counter() - started) * 1000, 1)
        self._record(reply, ref)
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
            if p.get("job_id"):  # what "is this job done?" is answered with
                self.store.put(f"job_status:{p['job_id']}", {"status": p["status"], "at": time.time()})
            reply.actions.append(f"job status {p['status']} queued")
            reply.answer = f"Done: job {p.get('job_id') or '(none set)'} is {p['status']}; dispatch is told {when}."
        else:
            self.store.outbox.put("parts_request", p, peer=SERVER_PEER, stream=Stream.JOBS)
            reply.actions.append("parts request queued")
            reply.answer = f"Requested; sent {when}."

    def _ask(self, rid: str, text: str, on_token: Callable[[str], None] | None,
             alternatives: tuple[str, ...] = ()) -> Reply:
        started = time.perf_counter()
        text = text.strip()
        if len(text) > MAX_ASK_CHARS:  # a question is a sentence or two; 64 KB held the assistant for 11 s
            reply = self._new_reply(rid, Intent("other", 1.0, source="guard"),
                                    Route("local", "too long to be one request"))
            reply.answer = (f"That is too long for one request ({len(text):,} characters; at most {MAX_ASK_CHARS:,}). "
                            "Ask it in a sentence or two.")
            self._say(reply, reply.answer, started, on_token)
            return self._finish(reply, started, None)
        pending = self.pending()
        answer = answer_to_prompt(text) if pending is not None else None
        if pending is not None and answer is not None:
            return self._resolve(rid, started, pending, answer)
        job = self.job()
        walked = self._walk(rid, started, text, job, on_token)
        if walked is not None:
            return walked
        if match(text, _AGAIN, max_words=7):
            return self._again(rid, started, on_token)
        bare = bare_answer(text) if pending is None else None
        if bare is not None:  # a yes or a no with nothing read back: not a question, not a note "no"
            reply = self._new_reply(rid, Intent("other", 1.0, source="guard"), Route("local", "nothing to answer"))
            reply.answer = "Nothing is waiting for a yes." if bare else "Nothing to cancel."
            self._say(reply, reply.answer, started, on_token)
            return self._finish(reply, started, None)
        intent = self._classify(text)
        # the job's own details, or a job without a procedure title; with no job set, "why do we ground both sides
        # of the job" is still a procedure question
        status = bool(_JOB_STATUS.search(text))
        if intent.name == "procedure_question" and _JOB_QUESTION.search(text) and (
                _JOB_DETAILS.search(text) or status or (job is not None and not job.title)):
            reply = self._new_reply(rid, intent, Route("local", "answered from the current job"))
            self._answer_job(job, reply, started, on_token, status=status)
            return self._finish(reply, started, None)
        about = None
        if intent.name == "procedure_question" and job is not None and job.title and _JOB_QUESTION.search(text):
            about = self.answerer.about(job.title)  # "what PPE for this job": asked in the procedure for the job
        route = decide(intent, text, self.policy)
        reply = self._new_reply(rid, intent, route)
        ref = self._act(text, intent, route, job, reply, on_token, started, about, alternatives)
        return self._finish(reply, started, ref)

    def _again(self, rid: str, started: float, on_token: Callable[[str], None] | None) -> Reply:
        """The last reply again, word for word with its citations (a read-back stays pending)."""
        reply = self._new_reply(rid, Intent("repeat", 1.0, source="command"), Route("local", "the last reply again"))
        last = self.store.get("last_reply")
        if isinstance(last, dict) and time.time() - float(last["at"]) <= CONVERSATION_TTL_S:
            reply.answer, reply.citations = str(last["answer"]), list(last["citations"])
            reply.grounded, reply.abstained = bool(last["grounded"]), bool(last["abstained"])
            reply.needs_confirmation = self.pending() is not None and bool(last["needs_confirmation"])
        else:
            reply.answer = "There is nothing to repeat yet."
        self._say(reply, reply.answer, started, on_token)
        return self._finish(reply, started, None)

    # ------------------------------------------------------------------ walk-through
    def walk_state(self) -> walkthrough.WalkState | None:
        raw = self.store.get("walkthrough")
        return walkthrough.WalkState(**raw) if isinstance(raw, dict) else None

    def _walk(self, rid: str, started: float, text: str, job: JobContext | None,
              on_token: Callable[[str], None] | None) -> Reply | None:
        """Start a walk-through ("walk me through lockout/tagout"), or move the one in progress."""
        state = self.walk_state()
        command = walkthrough.move(text) if state is not None else None
        if state is not None and command is not None:
            stops = walkthrough.plan(self.kb.section_units(state.doc, state.section))
            if not stops:  # the procedure was removed from the base meanwhile
                self.store.put("walkthrough", None)
                return None
            return self._walk_reply(rid, started, walkthrough.advance(state, stops, command), on_token)
        if not walkthrough.START.search(text):
            return None
        named = walkthrough.START.sub(" ", text)
        if job is not None and job.title and _JOB_QUESTION.search(named):  # "walk me through this job"
            about = self.answerer.about(job.title)
            found = (about.doc, about.section) if about else None
        else:
            found = self.answerer.procedure(named)
        if found is None:
            return None  # no procedure with steps by that name: answer it as a question
        units = self.kb.section_units(*found)
        stops = walkthrough.plan(units)
        first = walkthrough.start(found[0], found[1], f"{units[0].title} - {units[0].heading}", stops,
                                  job.job_id if job else None)
        return self._walk_reply(rid, started, first, on_token)

    def _walk_reply(self, rid: str, started: float, step: walkthrough.Step,
                    on_token: Callable[[str], None] | None) -> Reply:
        reply = self._new_reply(rid, Intent("walkthrough", 1.0, source="walkthrough"),
                                Route("local", "walk-through of a procedure"))
        reply.grounded = True
        previous = self.walk_state()
        if step.completed is not None:
            u, job_id = step.completed, (previous.job_id if previous else None)
            note_id = self.store.add_note(f"{u.title} - {u.heading}: step {u.number} done: {u.text}", job_id=job_id)
            reply.actions.append(f"note {note_id} stored: step {u.number} done")
        self.store.put("walkthrough", step.state.as_dict() if step.state else None)
        if step.state is None:
            reply.answer = ("That was the last step: the procedure is complete." if step.finished
                            else "Walk-through stopped.")
        else:
            n = step.state.index + 1
            lead = f"{step.state.title}, step {n} of {step.state.total}. " if step.state.index == 0 or \
                previous is None else f"Step {n} of {step.state.total}. "
            said = " ".join(u.text for u in step.say)
            reply.answer = f"{lead}{said} Say done when it is done, or back, or repeat."
            reply.citations = [u.citation for u in step.say]
        self._say(reply, reply.answer, started, on_token)
        return self._finish(reply, started, None)

    def _classify(self, text: str) -> Intent:
        if self.config.intent_mode == "llm" and self.breaker.allow(self.clock()):
            try:
                prompt = chat_prompt(text, system=LLM_INSTRUCTIONS)
                return parse_llm_intent(self.llm.complete(prompt, grammar=GRAMMAR, max_tokens=24).text)
            except ModelError:
                log.warning("LLM intent classification failed; using the classifier")
        if self.config.intent_mode == "rules":
            return classify_rules(text, 0.5)
        return classify(text)

    def _answer_job(self, job: JobContext | None, reply: Reply, started: float,
                    on_token: Callable[[str], None] | None, *, status: bool = False) -> None:
        """The job's details; ``status``: and the status this device last gave it (a confirmed job status)."""
        reply.grounded = True
        if job is None:
            reply.answer = "No job is set on this device. Dispatch sends it, or set it with: linecrew agent job set."
        else:
            reply.answer = job.describe() + "."
            reply.citations = [f"job:{job.job_id}"]
            if status:
                said = self.store.get(f"job_status:{job.job_id}")
                if isinstance(said, dict):
                    at = time.strftime("%H:%M", time.localtime(float(said["at"])))
                    reply.answer += f" Marked {str(said['status']).replace('_', ' ')} on this device at {at}."
                else:
                    reply.answer += " It has not been marked done on this device."
        self._say(reply, reply.answer, started, on_token)

    def _say(self, reply: Reply, piece: str, started: float, on_token: Callable[[str], None] | None) -> None:
        if reply.ttft_ms is None:
            reply.ttft_ms = round((time.perf_counter() - started) * 1000, 1)
        if on_token is not None:
            on_token(piece)

    def _escalate(self, text: str, intent: Intent, reason: str, reply: Reply) -> str:
        when = "now" if reply.online else "when the link returns (queued on this device)"
        job = self.job()
        esc_id = new_id()
        context = [str(u["text"]) for u in self.store.utterances(limit=self.config.recent_utterances)]
        self.store.outbox.put("escalation", {
            "escalation_id": esc_id, "question": text, "reason": reason, "intent": intent.name,
            "job_id": job.job_id if job else None, "context": context[::-1]}, peer=SERVER_PEER,
            stream=Stream.ESCALATIONS)
        reply.actions.append(f"escalation {esc_id} queued")
        reply.answer = (f"I have asked a human expert; your question goes to them {when}, and the answer will "
                        "appear on this device.")
        return esc_id

    def _act(self, text: str, intent: Intent, route: Route, job: JobContext | None, reply: Reply,
             on_token: Callable[[str], None] | None, started: float, about: Focus | None = None,
             alternatives: tuple[str, ...] = ()) -> str | None:
        job_id = job.job_id if job else None
        when = "now" if reply.online else "when the link returns (queued on this device)"
        if route.kind == "escalated":
            esc_id = self._escalate(text, intent, route.reason, reply)
            if intent.name == "safety_emergency":  # the notice first, then the rescue steps if a procedure has them
                g = self.answerer.answer(text)
                procedure = "" if g.abstained else " " + g.answer
                reply.answer = f"{SAFETY_NOTICE} {reply.answer}{procedure}"
                reply.citations = [] if g.abstained else g.citations
                reply.grounded = not g.abstained
            self._say(reply, reply.answer, started, on_token)
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
            self._ask_first(pending, reply)
            return None
        if intent.name == "other":
            reply.answer = "I'm listening. Ask about a procedure, or tell me a note, a job status or parts you need."
            return None
        if self.config.answer_mode == "generate":
            self._generate(text, job, self.kb.search(text, limit=self.config.retrieval_k), reply, on_token)
            return None
        return self._grounded(text, intent, reply, on_token, started, about, job, alternatives)

    def _heard_as(self, first: Grounded, alternatives: tuple[str, ...],
                  focus: Focus | None) -> tuple[str | None, Grounded]:
        """The first other reading that is a procedure question answered with ``HEARD_AS_MIN`` or more, and its
        answer; else none, and the first reading's abstention."""
        plain = self.answerer.for_other_readings()  # the model the bar was chosen on
        for alt in alternatives:
            if not alt.strip() or len(alt) > MAX_ASK_CHARS or self._classify(alt).name != "procedure_question":
                continue
            g = plain.answer(alt, focus=focus)
            if not g.abstained and g.confidence >= HEARD_AS_MIN:
                return alt, g
        return None, first

    def _ask_first(self, pending: PendingAction, reply: Reply) -> None:
        self.store.put("pending_action", pending.as_dict())
        reply.needs_confirmation = True
        reply.actions.append(f"waiting for a yes: {pending.intent}")
        reply.answer = (pending.readback if pending.intent == "escalate_to_expert"
                        else f"{pending.readback} Say yes to confirm, or no to cancel.")

    def _grounded(self, text: str, intent: Intent, reply: Reply, on_token: Callable[[str], None] | None,
                  started: float, about: Focus | None = None, job: JobContext | None = None,
                  alternatives: tuple[str, ...] = ()) -> str | None:
        """``about``: the procedure a question about the current ``job`` is asked in: the whole of it when the
        whole is asked for, else the answer within its document (the job's title said for "this job"), else the
        answer from any procedure to the question without it ("how do I lock out for this job")."""
        g = None
        if about is not None and job is not None:
            own, whole = _JOB_QUESTION.sub(" ", text, count=1), bool(_WHOLE.search(text))
            g = (self.answerer.steps_of(about) if whole else
                 self.answerer.answer(_JOB_QUESTION.sub(f"the {job.title}", text, count=1), focus=about,
                                      follow=True, within=about.doc))
            if not g.abstained and not whole and self.answerer.select(
                    own, focus=about, follow=True, within=about.doc).probability < JOB_OWN_FLOOR:
                g = None  # only the title's words made the job's procedure look right ("how do I lock out for it")
            text = own if g is None or g.abstained else text
        focus = self.focus()
        if g is None or g.abstained:
            g = self.answerer.answer(text, focus=focus)
        heard = None
        if g.abstained and alternatives:
            heard, g = self._heard_as(g, alternatives, focus)
        reply.confidence = round(g.confidence, 3)
        if g.abstained:
            reply.abstained = True
            if _SAFETY.search(text):  # a hazard no procedure covers goes to a person at once
                reply.route, reply.route_reason = "escalated", "a hazard with no procedure"
                esc = self._escalate(text, intent, reply.route_reason, reply)
                reply.answer = "I have no procedure for that. " + reply.answer
                self._say(reply, reply.answer, started, on_token)
                return esc
            self._ask_first(PendingAction("escalate_to_expert", {"question": text}, ABSTAIN, time.time()), reply)
            self._say(reply, reply.answer, started, on_token)
            return None
        reply.grounded = True
        reply.citations = g.citations
        lead = self._lead_in(text, g, reply) if self.config.answer_mode == "checked" else ""
        reply.answer = f"{lead} {g.answer}".strip()
        if heard is not None:  # the technician hears which question is answered, not the one first recognised
            reply.heard_as = heard
            reply.answer = f'{HEARD_AS.format(heard.strip().rstrip("?.!"))} {reply.answer}'
        self._say(reply, reply.answer, started, on_token)
        self._remember(g.focus)
        return None

    def _lead_in(self, text: str, g: Grounded, reply: Reply) -> str:
        """One sentence from the local model, kept only if the cited text supports every part of it."""
        if not self.breaker.allow(self.clock()):
            return ""
        source = [u.text for u in g.units]
        prompt = chat_prompt(f"Procedure text: {' '.join(source)}\nQuestion: {text}", system=LEAD_IN_PROMPT)
        fut = self.llm.submit(prompt, max_tokens=40)
        try:
            c = fut.result(timeout=self.config.answer_budget_ms / 1000)
        except (ModelError, FutureTimeout) as e:
            self.llm.cancel(fut)  # a given-up generation is stopped, not left running
            self.breaker.record(ok=False, latency_ms=self.config.answer_budget_ms + 1, now=self.clock())
            reply.error, reply.degraded = type(e).__name__, True
            reply.model_version = getattr(self.llm, "version", None)
            return ""
        self.breaker.record(ok=True, latency_ms=c.total_ms, now=self.clock())
        self._usage(c, reply)
        first = next(iter(grounding.sentences_of(c.text)), "")
        return first if first and grounding.check(first, source).supported else ""

    def _usage(self, c: Completion, reply: Reply) -> None:
        reply.tokens_per_s = round(c.tokens_per_s, 1)
        reply.prompt_tokens, reply.completion_tokens = c.prompt_tokens, c.completion_tokens
        reply.reused_prompt_tokens = c.reused_prompt_tokens
        reply.model_version = c.model_version

    def _generate(self, text: str, job: JobContext | None, passages: list[Passage], reply: Reply,
                  on_token: Callable[[str], None] | None) -> None:
        """The former free generation (the benchmark's reference): the model writes, citing the top passages."""
        reply.citations = [p.citation for p in passages]
        if not self.breaker.allow(self.clock()):
            reply.answer = _retrieval_only(passages, "the local model is paused after repeated failures")
            reply.degraded = True
            return
        prompt = chat_prompt(self._user_prompt(text, job, passages), system=SYSTEM_PROMPT)
        fut = self.llm.submit(prompt, on_token=on_token)
        try:
            c: Completion = fut.result(timeout=self.config.answer_budget_ms / 1000)
        except (ModelError, FutureTimeout) as e:
            self.llm.cancel(fut)  # a given-up generation is stopped, not left running
            self.breaker.record(ok=False, latency_ms=self.config.answer_budget_ms + 1, now=self.clock())
            reply.error = type(e).__name__
            reply.model_version = getattr(self.llm, "version", None)
            reply.answer = _retrieval_only(passages, f"the local model did not answer ({type(e).__name__})")
            reply.degraded = True
            return
        self.breaker.record(ok=True, latency_ms=c.total_ms, now=self.clock())
        reply.answer = _without_repeats(c.text) or _retrieval_only(passages, "the local model gave an empty answer")
        reply.ttft_ms = round(c.ttft_ms, 1)
        self._usage(c, reply)

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
        resolved = r.grounded and not r.abstained and r.route == "local" and r.intent not in NOT_COUNTED
        with self.store.db.transaction() as conn:
            if r.intent != "repeat" and r.answer:
                self.store.put("last_reply", {"at": time.time(), "answer": r.answer, "citations": r.citations,
                                              "grounded": r.grounded, "abstained": r.abstained,
                                              "needs_confirmation": r.needs_confirmation}, conn=conn)
            conn.execute(
                "INSERT INTO requests (id, at, intent, confidence, route, latency_ms, ttft_ms, prompt_tokens,"
                " completion_tokens, reused_prompt_tokens, model_version, degraded, error, ref, resolved_at,"
                " grounded, abstained) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (r.request_id, time.time(), r.intent, r.confidence, r.route, r.latency_ms, r.ttft_ms, r.prompt_tokens,
                 r.completion_tokens, r.reused_prompt_tokens, r.model_version, int(r.degraded), r.error, ref,
                 time.time() if resolved else None, int(r.grounded), int(r.abstained)),
            )


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
    """Latency and TTFT percentiles, route mix, resolved (answered from a procedure, not escalated or
    abstained), abstentions, and the manual-intervention rate (requests that went to a person)."""
    marks = ", ".join("?" * len(NOT_COUNTED))
    rows = store.db.query("SELECT intent, route, latency_ms, ttft_ms, model_version, completion_tokens, degraded,"
                          f" resolved_at, abstained FROM requests WHERE intent NOT IN ({marks})", NOT_COUNTED)
    out: dict[str, Any] = {"requests": len(rows)}
    if not rows:
        return out
    lat = sorted(float(r["latency_ms"]) for r in rows)  # type: ignore[arg-type]
    ttft = sorted(float(r["ttft_ms"]) for r in rows if r["ttft_ms"] is not None)  # type: ignore[arg-type]
    escalated = sum(1 for r in rows if r["route"] == "escalated")
    out.update({
        "latency_ms": _percentiles(lat),
        "ttft_ms": _percentiles(ttft) if ttft else None,
        "routes": {k: sum(1 for r in rows if r["route"] == k) for k in ("local", "deferred", "escalated")},
        "manual_intervention_rate": round(escalated / len(rows), 4),
        "degraded": sum(int(r["degraded"]) for r in rows),  # type: ignore[call-overload]
        "resolved": sum(1 for r in rows if r["resolved_at"] is not None),
        "abstained": sum(int(r["abstained"]) for r in rows),  # type: ignore[call-overload]
        "models": sorted({str(r["model_version"]) for r in rows if r["model_version"]}),
    })
    return out


def _percentiles(values: list[float]) -> dict[str, float]:
    return {f"p{round(q * 100)}": round(v, 1) for q, v in percentiles(values).items()}
