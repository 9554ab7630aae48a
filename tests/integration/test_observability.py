"""Structured logs and Prometheus endpoints through the real server, broker and device link."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from linecrew.agent.config import AgentConfig
from linecrew.agent.daemon import start_metrics
from linecrew.agent.enroll import enroll
from linecrew.agent.store import SERVER_PEER
from linecrew.agent.sync import DeviceSync, open_device
from linecrew.server.broker import free_port
from linecrew.shared.logs import configure_logging
from linecrew.shared.mqtt import wait_for
from linecrew.shared.protocol import Topics, new_id


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    out = io.StringIO()
    configure_logging(verbose=True, fmt="json", stream=out)
    try:
        yield out
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])


def test_logs_are_json_with_device_and_request_ids_and_never_carry_secrets_or_words(
        server: object, tmp_path: Path, logs: io.StringIO) -> None:
    srv = server
    url = f"http://127.0.0.1:{srv.config.http_port}"  # type: ignore[attr-defined]
    api_token = srv.store.tokens.create("ops", ["admin"])  # type: ignore[attr-defined]
    expert = srv.store.tokens.create("eve", ["expert"])  # type: ignore[attr-defined]
    r = httpx.post(f"{url}/v1/enroll-tokens", json={"count": 1}, headers={"Authorization": f"Bearer {api_token}"})
    enroll_token = r.json()["tokens"][0]
    creds = enroll(folder=tmp_path / "dev", server_url=url, token=enroll_token, device_id="truck-9",
                   device_class="x86-dev")
    store, address = open_device(tmp_path / "dev")
    note, question = "Mrs Alder at 12 Birch Lane has a dog", "Is the recloser at pole 88 safe to reset?"
    store.add_note(note, job_id="JOB-1")
    esc_id = new_id()
    store.outbox.put("escalation", {"escalation_id": esc_id, "question": question, "reason": "low confidence",
                                    "intent": "procedure_question", "context": []}, peer=SERVER_PEER,
                     stream="escalations", priority=9)
    sync = DeviceSync(store, address)
    sync.start()
    try:
        assert wait_for(lambda: len(srv.store.escalations.list()) == 1, 30)  # type: ignore[attr-defined]
        answer = "Yes, after the crew at pole 87 confirms the line is clear."
        r = httpx.post(f"{url}/v1/escalations/{esc_id}/answer", json={"answer": answer},
                       headers={"Authorization": f"Bearer {expert}", "X-Request-ID": "req-test-123"})
        assert r.status_code == 200 and r.headers["x-request-id"] == "req-test-123"
        bad_id = httpx.get(f"{url}/v1/health", headers={"X-Request-ID": "x" * 200}).headers["x-request-id"]
        assert len(bad_id) == 32, "an unusable caller id is replaced"
        assert wait_for(lambda: len(store.answers()) == 1, 30)
        sync.link.publish(Topics.d2s("truck-9"), b"{not json").wait_for_publish(5)
        assert wait_for(lambda: "rejected message" in logs.getvalue(), 10)
    finally:
        sync.stop()
    lines = [json.loads(x) for x in logs.getvalue().splitlines() if x.strip()]
    assert lines and all({"level", "logger", "message", "device_id", "request_id"} <= set(x) for x in lines)
    assert any(x["request_id"] == "req-test-123" and "/answer" in x["message"] for x in lines)
    assert any(x["device_id"] == "truck-9" and "rejected message" in x["message"] for x in lines)
    text = logs.getvalue()
    for secret in (api_token, expert, enroll_token, creds.password, note, question, answer):
        assert secret not in text
    audit = httpx.get(f"{url}/v1/audit", headers={"Authorization": f"Bearer {api_token}"}).json()
    assert [a["action"] for a in audit if a["actor"] == "eve"] == ["escalation.answer"]
    assert all(answer not in json.dumps(a) for a in audit), "the audit log records who and when, not the words"
    assert any(a["action"] == "device.enroll" and a["target"] == "device:truck-9" for a in audit)


def test_agent_serves_prometheus_metrics_from_its_store(server: object, tmp_path: Path) -> None:
    srv = server
    token = srv.store.registry.create_enroll_token(ttl_s=600)  # type: ignore[attr-defined]
    enroll(folder=tmp_path / "dev", server_url=f"http://127.0.0.1:{srv.config.http_port}", token=token,  # type: ignore[attr-defined]
           device_id="truck-4", device_class="x86-dev")
    store, _ = open_device(tmp_path / "dev")
    for i in range(3):
        store.add_note(f"note {i}")
    port = free_port()
    cfg = AgentConfig(data_dir=tmp_path / "dev", metrics_port=port)
    handle = start_metrics(cfg, store)
    assert handle is not None
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        assert 'linecrew_outbox_depth{device="truck-4"} 3.0' in text
        assert start_metrics(cfg, store) is None, "a taken port is reported, not fatal"
    finally:
        handle[0].shutdown()
    server_text = httpx.get(f"http://127.0.0.1:{srv.config.http_port}/metrics").text  # type: ignore[attr-defined]
    assert 'linecrew_device_online{device="truck-4"} 0.0' in server_text
    assert "linecrew_deferred_backlog_oldest_seconds 0.0" in server_text
