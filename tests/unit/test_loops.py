"""Background loops survive a failing iteration, log it once, and go on."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from linecrew.agent.errors import UpdateError
from linecrew.agent.store import AgentStore
from linecrew.agent.transfer import UpdateAgent
from linecrew.shared.loops import IterationGuard
from linecrew.shared.mqtt import wait_for


class _FlakyUpdater:
    """An A/B updater whose slot manifest is unreadable for the first ``failures`` reads."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.rolled_back = threading.Event()

    def resume(self) -> None: ...

    def status(self) -> dict[str, Any]:
        if self.failures > 0:
            self.failures -= 1
            raise UpdateError("slot manifest unreadable")
        return {"active_version": 2, "active_sha256": "ab" * 32, "slots": {"a": 1, "b": 2}, "health": "ok",
                "update_state": "committed", "error": None}

    def rollback(self) -> None:
        self.rolled_back.set()


class _Link:
    connected = threading.Event()


def test_an_update_error_does_not_end_the_transfer_loop(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = AgentStore(tmp_path, device_id="truck-1")
    with store.db.transaction() as conn:
        conn.execute("INSERT INTO rollback_requests (id, offer_id, version, received) VALUES (?,?,?,?)",
                     ("rb-1", "offer-1", 2, time.time()))
    updater = _FlakyUpdater(failures=4)
    agent = UpdateAgent(store, updater, _Link(), retry_s=0.1)  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR, logger="linecrew.agent.transfer"):
        agent.start()
        try:
            assert updater.rolled_back.wait(60), "the loop went on after the failures and did the rollback"
            assert wait_for(lambda: store.db.scalar("SELECT done FROM rollback_requests") is not None, 60)
            assert agent._thread.is_alive()
        finally:
            agent.stop()
    failures = [r for r in caplog.records if "update transfer iteration failed" in r.getMessage()]
    assert len(failures) == 1, "the same error is logged once, not once per iteration"
    store.close()


def test_the_guard_logs_a_new_error_again_and_reports_recovery(caplog: pytest.LogCaptureFixture) -> None:
    guard = IterationGuard("pump", logging.getLogger("test.loops"), pause_s=0.0)
    errors = iter([ValueError("a"), ValueError("a"), KeyError("b"), None])

    def step() -> None:
        e = next(errors)
        if e is not None:
            raise e

    with caplog.at_level(logging.INFO, logger="test.loops"):
        assert [guard.run(step) for _ in range(4)] == [False, False, False, True]
    messages = [r.getMessage() for r in caplog.records]
    assert sum("pump iteration failed" in m for m in messages) == 2
    assert any("recovered after 3 failed" in m for m in messages)
