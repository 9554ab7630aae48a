"""The assistant through the real GGUF model, the real broker and server, workers and experts."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from linecrew.agent.assistant import Assistant, AssistantConfig, JobContext, request_stats
from linecrew.agent.breaker import CircuitBreaker
from linecrew.agent.knowledge import SAMPLE_KB, KnowledgeBase
from linecrew.agent.store import AgentStore
from linecrew.agent.sync import DeviceSync, open_device
from linecrew.server.workers import TaskWorker
from linecrew.shared.llm import LlmConfig, LocalLLM
from linecrew.shared.mqtt import wait_for
from tests.conftest import REPO, enroll_device


@pytest.fixture(scope="module")
def llm() -> object:
    m = LocalLLM(LlmConfig(max_tokens=48))
    yield m
    m.close()


def _assistant(store: AgentStore, llm: object, **kw: object) -> Assistant:
    kb = KnowledgeBase(store.db)
    kb.ensure_indexed(SAMPLE_KB)
    return Assistant(store, llm, kb, **kw)  # type: ignore[arg-type]


def test_local_answer_streams_cites_and_is_recorded(llm: LocalLLM, tmp_path: Path) -> None:
    store = AgentStore(tmp_path / "dev", device_id="dev-1")
    # the model writes a checked lead-in; a generous budget: a loaded CI machine is slow, this is not about time
    a = _assistant(store, llm, config=AssistantConfig(answer_mode="checked", answer_budget_ms=600_000))
    a.set_job(JobContext("JOB-9", "Transformer check", "Elm St 4"))
    tokens: list[str] = []
    r = a.ask("How do I check the oil level on a pole-mounted transformer?", on_token=tokens.append)
    assert r.intent == "procedure_question" and r.route == "local" and not r.degraded
    streamed = "".join(tokens)
    assert r.answer and all(line in streamed for line in r.answer.splitlines()), "the answer was streamed"
    assert any(c.startswith("transformer-inspection.md#") for c in r.citations)
    assert r.ttft_ms and r.ttft_ms > 0 and r.tokens_per_s > 0 and r.prompt_tokens > 50 and r.completion_tokens > 0
    r2 = a.ask("How do I test a recloser trip coil?")
    assert r2.reused_prompt_tokens >= len(llm.tokenize("<|im_start|>system\n")), "the fixed prefix is reused"
    stats = request_stats(store)
    assert stats["requests"] == 2 and stats["routes"]["local"] == 2 and stats["latency_ms"]["p99"] > 0
    assert stats["models"] == [llm.version]


def test_requests_from_many_threads_queue_and_none_is_lost(llm: LocalLLM, tmp_path: Path) -> None:
    store = AgentStore(tmp_path / "dev", device_id="dev-1")
    a = _assistant(store, llm)
    replies: list[object] = []
    threads = [threading.Thread(target=lambda q=q: replies.append(a.ask(q))) for q in
               ("How do I replace a meter?", "What do I do after a breaker trips?", "How do I ground the line?")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(replies) == 3 and all(r.answer and not r.degraded for r in replies)  # type: ignore[attr-defined]


def test_broken_model_degrades_to_retrieval_and_breaker_opens(tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 64)
    store = AgentStore(tmp_path / "dev", device_id="dev-1")
    a = _assistant(store, LocalLLM(LlmConfig(model_path=bad)), config=AssistantConfig(answer_mode="checked"),
                   breaker=CircuitBreaker(failure_threshold=2, reset_after_s=3600))
    replies = [a.ask("How do I apply lockout tagout?") for _ in range(3)]
    assert all(r.grounded and "Apply your personal lock" in r.answer for r in replies)  # the procedure stands
    assert replies[0].degraded and replies[0].error == "ModelError"
    assert a.breaker.state == "open" and not replies[2].degraded  # the open breaker no longer asks the model
    assert replies[0].citations[0].startswith("lockout-tagout.md")


def test_offline_escalation_is_queued_then_answered_by_an_expert(llm: LocalLLM, server: object, tmp_path: Path
                                                                 ) -> None:
    dev = enroll_device(server, tmp_path / "dev", "truck-3")
    store, address = open_device(dev)
    a = _assistant(store, llm)
    r = a.ask("A live wire is down and my partner got a shock")
    assert r.intent == "safety_emergency" and r.route == "escalated" and not r.online
    assert r.answer.startswith("STOP WORK") and "when the link returns" in r.answer
    assert store.outbox.depth() == 1
    sync = DeviceSync(store, address)
    sync.start()
    try:
        assert wait_for(lambda: len(server.store.escalations.list()) == 1, 30)  # type: ignore[attr-defined]
        esc = server.store.escalations.list()[0]  # type: ignore[attr-defined]
        assert esc["question"] == "A live wire is down and my partner got a shock" and esc["device_id"] == "truck-3"
        out = subprocess.run([sys.executable, "-m", "linecrew.cli", "server", "escalations", "answer", "--dir",
                              str(server.config.data_dir), "--expert", "Dana (protection eng.)", esc["id"],  # type: ignore[attr-defined]
                              "Ambulance dispatched. Keep clear, do not touch him until the line is opened."],
                             cwd=REPO, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert wait_for(lambda: len(store.answers()) == 1, 30)
    finally:
        sync.stop()
    ans = store.answers()[0]
    assert ans["kind"] == "expert" and ans["source"] == "Dana (protection eng.)" and "Ambulance" in ans["text"]
    stats = request_stats(store)  # an expert's answer is a manual intervention, not a resolved request
    assert stats["resolved"] == 0 and stats["manual_intervention_rate"] == 1.0
    assert store.db.scalar("SELECT COUNT(*) FROM requests WHERE expert_answered_at IS NOT NULL") == 1


def test_deferred_summary_runs_on_a_server_worker_and_returns(llm: LocalLLM, server: object, tmp_path: Path
                                                              ) -> None:
    dev = enroll_device(server, tmp_path / "dev", "truck-4")
    store, address = open_device(dev)
    a = _assistant(store, llm)
    a.set_job(JobContext("JOB-77"))
    for note in ("note: transformer T12 oil stain on the pole", "note: replaced the blown arrester on T12"):
        assert a.ask(note).needs_confirmation
        assert a.ask("yes").actions[0].startswith("note ")
    r = a.ask("Please summarize the job log for today")
    assert r.route == "deferred"
    sync = DeviceSync(store, address)
    sync.start()
    try:
        assert wait_for(lambda: len(store.answers()) == 1, 90)
    finally:
        sync.stop()
    ans = store.answers()[0]
    assert ans["kind"] == "task" and ans["source"] == "server:summarize_job_log"
    assert "2 note(s) for job JOB-77" in str(ans["text"])
    task = server.store.tasks.all()[0]  # type: ignore[attr-defined]
    assert task["status"] == "done" and task["worker"].startswith("linecrew-server-1-w")


def test_workers_share_the_load_through_a_shared_subscription(server: object, tmp_path: Path) -> None:
    address = server.broker.server_address()  # type: ignore[attr-defined]
    handler = {"summarize_job_log": lambda t: f"done {t.task_id}"}
    extra = [TaskWorker(address, worker_id=f"extra-{i}", handlers=handler) for i in range(2)]
    for w in extra:
        w.start()
    for w in server.workers:  # type: ignore[attr-defined]
        w.handlers = handler
    try:
        assert all(w.link.wait_connected(10) for w in extra)
        dev = enroll_device(server, tmp_path / "dev", "truck-5")
        store, address_dev = open_device(dev)
        for i in range(12):
            store.outbox.put("deferred_task", {"task_id": f"task-{i:04d}-xxxx", "kind": "summarize_job_log"},
                             peer="server", stream="tasks")
        sync = DeviceSync(store, address_dev)
        sync.start()
        try:
            assert wait_for(lambda: len(store.answers()) == 12, 60)
        finally:
            sync.stop()
    finally:
        for w in extra:
            w.stop()
    workers = {t["worker"] for t in server.store.tasks.all()}  # type: ignore[attr-defined]
    assert len(workers) >= 2, f"tasks were spread over workers: {workers}"
    assert sum(w.done for w in extra) > 0


def test_talk_hears_a_spoken_request_and_acts_on_it(tmp_path: Path) -> None:
    from tests.helpers.speech import have_espeak, synth

    if not have_espeak():
        pytest.skip("espeak-ng missing: run `make test`")
    wav = synth("I need two fuse cutouts and one insulator.", tmp_path / "ask.wav")
    out = subprocess.run([sys.executable, "-m", "linecrew.cli", "agent", "talk", "--dir", str(tmp_path / "dev"),
                          "--file", str(wav), "--json"], cwd=REPO, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    reply = json.loads(out.stdout.strip().splitlines()[-1])
    assert "fuse cutouts" in reply["transcript"].lower()
    assert reply["intent"] == "parts_request" and reply["route"] == "local"
    assert reply["slots"]["items"][0] == {"part": "fuse cutouts", "quantity": 2}
    assert reply["needs_confirmation"] and "2 x fuse cutouts" in reply["answer"], "read back, nothing sent yet"
    status = json.loads(subprocess.run([sys.executable, "-m", "linecrew.cli", "agent", "confirm", "--dir",
                                        str(tmp_path / "dev"), "--json"], cwd=REPO, capture_output=True, text=True,
                                       timeout=180).stdout)
    assert status["intent"] == "confirm" and status["actions"] == ["parts request queued"]
    assert {"answer", "citations", "ttft_ms", "tokens_per_s", "prompt_tokens", "completion_tokens"} <= set(reply)


def test_a_given_up_generation_is_stopped_not_left_running(llm: LocalLLM) -> None:
    started = threading.Event()
    fut = llm.submit("<|im_start|>user\nCount from one to five hundred, one number per line.<|im_end|>\n"
                     "<|im_start|>assistant\n", max_tokens=400, on_token=lambda _t: started.set())
    assert started.wait(120)
    queued = llm.submit("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", max_tokens=4)
    llm.cancel(queued)  # given up while the first still runs: it never runs
    llm.cancel(fut)
    c = fut.result(timeout=120)
    assert c.cancelled and c.completion_tokens < 400
    assert queued.cancelled()
    assert llm.complete("<|im_start|>user\nSay OK.<|im_end|>\n<|im_start|>assistant\n", max_tokens=4).text
