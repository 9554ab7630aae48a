"""The broker supervisor backs off while Mosquitto keeps dying, and forgets its failures after a stable run."""

from __future__ import annotations

from pathlib import Path

import pytest

from linecrew.server import broker as broker_mod
from linecrew.server.broker import BrokerConfig, ManagedBroker


class _Dead:
    returncode = 1

    def poll(self) -> int:
        return 1


class _Alive:
    returncode = None

    def poll(self) -> None:
        return None


def test_restarts_back_off_and_reset_after_a_stable_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    b = ManagedBroker(BrokerConfig(folder=tmp_path))
    waits: list[float] = []
    monkeypatch.setattr(b._stop, "wait", lambda t=None: waits.append(float(t or 0)) or False)
    spawned: list[int] = []

    def spawn() -> None:
        spawned.append(1)
        b._proc = _Dead()  # type: ignore[assignment]
        b._spawned_at = now[0]

    now = [1000.0]
    monkeypatch.setattr(b, "_spawn", spawn)
    monkeypatch.setattr(broker_mod.time, "monotonic", lambda: now[0])
    b._proc = _Dead()  # type: ignore[assignment]
    for _ in range(8):
        b._restart_if_exited()
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0], "no delay first, then doubling, capped at 30 s"
    assert len(spawned) == 8
    b._proc = _Alive()  # type: ignore[assignment]
    now[0] += broker_mod.STABLE_AFTER_S + 1
    b._restart_if_exited()
    assert b._failures == 0, "a stable run forgets earlier failures"
