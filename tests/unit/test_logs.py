"""Structured logs: ids from context, JSON lines, no words of the technician; a model failure counts as
a model error in the request stats."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest

from linecrew.agent.assistant import Assistant, AssistantConfig
from linecrew.agent.knowledge import SAMPLE_KB, KnowledgeBase
from linecrew.agent.metrics import request_summary
from linecrew.agent.store import AgentStore
from linecrew.shared.errors import ModelError
from linecrew.shared.logs import bind_log_context, configure_logging, log_context


@pytest.fixture
def out() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    buf = io.StringIO()
    configure_logging(fmt="json", stream=buf)
    try:
        yield buf
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def _lines(buf: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(x) for x in buf.getvalue().splitlines()]


def test_context_is_per_thread_nested_and_restored(out: io.StringIO) -> None:
    log = logging.getLogger("t")
    bind_log_context(device_id="truck-1")
    try:
        with log_context(request_id="r1"):
            log.info("outer")
            with log_context(request_id="r2"):
                log.info("inner")
            t = threading.Thread(target=lambda: log.info("other thread"))
            t.start()
            t.join()
        log.info("after")
    finally:
        bind_log_context(device_id="")
    got = [(x["message"], x["device_id"], x["request_id"]) for x in _lines(out)]
    assert got == [("outer", "truck-1", "r1"), ("inner", "truck-1", "r2"), ("other thread", "truck-1", None),
                   ("after", "truck-1", None)]


class _BrokenLLM:
    version = "broken@000000000000"

    def submit(self, prompt: str, **kw: object) -> Future[object]:
        f: Future[object] = Future()
        f.set_exception(ModelError("weights unreadable"))
        return f

    def cancel(self, fut: Future[object]) -> None:
        pass


def test_a_request_logs_its_id_not_its_words_and_a_model_failure_is_a_model_error(out: io.StringIO,
                                                                                  tmp_path: Path) -> None:
    store = AgentStore(tmp_path, device_id="truck-2")
    kb = KnowledgeBase(store.db)
    kb.ensure_indexed(SAMPLE_KB)
    question = "How do I check the oil level on the transformer at 12 Birch Lane?"
    checked = AssistantConfig(answer_mode="checked")  # the model writes a lead-in, and fails
    reply = Assistant(store, _BrokenLLM(), kb, config=checked).ask(question)  # type: ignore[arg-type]
    assert reply.degraded and reply.error == "ModelError"
    assert reply.grounded and "sight gauge" in reply.answer  # the procedure's words still stand
    lines = _lines(out)
    mine = [x for x in lines if x["request_id"] == reply.request_id]
    assert mine and "model error ModelError" in str(mine[-1]["message"])
    assert "Birch" not in out.getvalue() and "oil level" not in out.getvalue()
    stats = request_summary(store)["broken@000000000000"]
    assert (stats.count, stats.errors, stats.generation_s) == (1, 1, 0.0)
    store.close()
