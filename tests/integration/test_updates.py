"""Signed releases, deltas and A/B updates with the real default model, real Ed25519, real bsdiff4."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from linecrew.agent.updates import Slots, Updater, llm_health_check
from linecrew.shared.delta import sha256_file
from linecrew.shared.errors import (
    BadSignatureError,
    DeltaBaseMismatchError,
    DeviceClassError,
    ExpiredError,
    HashMismatchError,
    LengthExceededError,
    RollbackError,
    ThresholdError,
    UnsignedError,
)
from linecrew.shared.protocol import UpdateState as State
from linecrew.shared.release import load_trusted_root, make_root, public_b64, update_root
from linecrew.tools.rehearsal import Authority
from tests.conftest import REPO

RUNNER = REPO / "tests" / "integration" / "update_runner.py"
DAY = 86400.0


Fleet = Authority  # the release authority the update tests sign with


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    return Fleet(tmp_path_factory.mktemp("fleet"))


def _device(fleet: Fleet, folder: Path, health: Any = None) -> Updater:
    root = load_trusted_root(json.dumps(fleet.root_doc).encode(), now=time.time())
    up = Updater(folder, root=root, device_class="x86-dev", health=health or (lambda _m: None))
    up.install_factory(fleet.models["A"], fleet.manifest("A", 1))
    return up


def test_delta_update_commits_after_health_check(fleet: Fleet, tmp_path: Path) -> None:
    # the latency budget is the device's (AgentConfig.update_health_budget_s); a loaded CI machine is not a device
    up = _device(fleet, tmp_path / "dev", llm_health_check(budget_s=600))
    rec = up.apply(fleet.manifest("B", 2), fleet.deltas[("A", "B")])
    assert rec.state == State.COMMITTED
    assert rec.history.index("activating") < rec.history.index("health") < rec.history.index("committed")
    assert sha256_file(up.slots.active_model()) == fleet.sha["B"]
    assert up.status()["active_version"] == 2
    assert fleet.deltas[("A", "B")].stat().st_size < fleet.models["B"].stat().st_size / 100


def test_unhealthy_signed_model_rolls_back_automatically(fleet: Fleet, tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(fleet.models["B"].read_bytes()[:5_000_000])  # loads no model
    fleet.models["broken"], fleet.sha["broken"] = broken, sha256_file(broken)
    up = _device(fleet, tmp_path / "dev", llm_health_check())
    rec = up.apply(fleet.manifest("broken", 2), broken)
    assert rec.state == State.ROLLED_BACK and "health check failed" in (rec.error or "")
    assert sha256_file(up.slots.active_model()) == fleet.sha["A"]


def test_a_model_slower_than_the_devices_budget_rolls_back(fleet: Fleet, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from linecrew.agent.config import AgentConfig

    monkeypatch.setenv("LINECREW_AGENT_UPDATE_HEALTH_BUDGET_S", "0.001")  # as an operator sets it for a device
    budget = AgentConfig().update_health_budget_s
    assert budget == 0.001
    up = _device(fleet, tmp_path / "dev", llm_health_check(budget))
    rec = up.apply(fleet.manifest("B", 2), fleet.deltas[("A", "B")])
    assert rec.state == State.ROLLED_BACK and "budget 0.0 s" in (rec.error or "")
    assert sha256_file(up.slots.active_model()) == fleet.sha["A"]


def _refused(fleet: Fleet, tmp_path: Path, error: type[Exception], manifest: dict[str, Any], payload: Path) -> None:
    up = _device(fleet, tmp_path / "dev")
    before = (up.slots.active(), sha256_file(up.slots.active_model()))
    with pytest.raises(error):
        up.apply(manifest, payload)
    assert (up.slots.active(), sha256_file(up.slots.active_model())) == before
    assert up.load() is None, "nothing was started"


def test_missing_signatures_are_refused(fleet: Fleet, tmp_path: Path) -> None:
    _refused(fleet, tmp_path, UnsignedError, fleet.manifest("B", 2, keys=[]), fleet.models["B"])


def test_bad_signatures_are_refused(fleet: Fleet, tmp_path: Path) -> None:
    m = fleet.manifest("B", 2)
    m["signed"]["device_classes"] = ["x86-dev", "rpi5"]  # tampered after signing
    _refused(fleet, tmp_path, BadSignatureError, m, fleet.models["B"])


def test_fewer_signatures_than_the_threshold_are_refused(fleet: Fleet, tmp_path: Path) -> None:
    _refused(fleet, tmp_path, ThresholdError, fleet.manifest("B", 2, keys=fleet.release_keys[:1]),
             fleet.models["B"])


def test_signatures_by_unknown_keys_do_not_count(fleet: Fleet, tmp_path: Path) -> None:
    _refused(fleet, tmp_path, UnsignedError, fleet.manifest("B", 2, keys=[Ed25519PrivateKey.generate()]),
             fleet.models["B"])


def test_rollback_to_an_older_version_is_refused(fleet: Fleet, tmp_path: Path) -> None:
    _refused(fleet, tmp_path, RollbackError, fleet.manifest("B", 1), fleet.models["B"])


def test_expired_metadata_is_refused(fleet: Fleet, tmp_path: Path) -> None:
    _refused(fleet, tmp_path, ExpiredError, fleet.manifest("B", 2, expires=time.time() - 1), fleet.models["B"])


def test_endless_data_stops_at_the_signed_length(fleet: Fleet, tmp_path: Path) -> None:
    longer = tmp_path / "longer.gguf"
    with open(longer, "wb") as f:
        f.write(fleet.models["B"].read_bytes())
        f.write(b"\x00" * 4096)
    _refused(fleet, tmp_path, LengthExceededError, fleet.manifest("B", 2), longer)


def test_hash_mismatch_is_refused(fleet: Fleet, tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    data = bytearray(fleet.models["B"].read_bytes())
    data[-1] ^= 0xFF
    bad.write_bytes(bytes(data))
    _refused(fleet, tmp_path, HashMismatchError, fleet.manifest("B", 2), bad)


def test_delta_for_another_base_is_refused(fleet: Fleet, tmp_path: Path) -> None:
    up = _device(fleet, tmp_path / "dev")
    assert up.apply(fleet.manifest("B", 2), fleet.models["B"]).state == State.COMMITTED
    with pytest.raises(DeltaBaseMismatchError):  # the A→B delta again, but B is installed now
        up.apply(fleet.manifest("B", 3), fleet.deltas[("A", "B")])
    assert sha256_file(up.slots.active_model()) == fleet.sha["B"]


def test_release_for_another_device_class_is_refused(fleet: Fleet, tmp_path: Path) -> None:
    _refused(fleet, tmp_path, DeviceClassError, fleet.manifest("B", 2, device_classes=["jetson-orin-nano"]),
             fleet.models["B"])


def test_root_key_rotation_needs_old_and_new_root_keys(fleet: Fleet) -> None:
    trusted = load_trusted_root(json.dumps(fleet.root_doc).encode(), now=time.time())
    new_root = Ed25519PrivateKey.generate()
    args = dict(version=2, expires=time.time() + DAY, root_keys=[new_root], root_threshold=1,
                release_public=[public_b64(k) for k in fleet.release_keys], release_threshold=2)
    rotated = update_root(trusted, make_root(**args, signers=[fleet.root_key, new_root]), now=time.time())
    assert rotated.version == 2
    with pytest.raises(UnsignedError):  # an attacker with only the new key cannot rotate
        update_root(trusted, make_root(**args, signers=[new_root]), now=time.time())


def test_manual_rollback_returns_to_the_previous_slot(fleet: Fleet, tmp_path: Path) -> None:
    up = _device(fleet, tmp_path / "dev")
    up.apply(fleet.manifest("B", 2), fleet.models["B"])
    assert up.rollback().state == State.ROLLED_BACK
    assert sha256_file(up.slots.active_model()) == fleet.sha["A"]


def test_sigkill_at_60_random_points_always_leaves_a_signed_model_and_finishes(fleet: Fleet, tmp_path: Path
                                                                              ) -> None:
    dev = tmp_path / "dev"
    _device(fleet, dev)
    rng = random.Random(2026)
    env = {**__import__("os").environ, "LINECREW_TEST_STEP_DELAY": "0.004"}
    signed = {fleet.sha["A"], fleet.sha["B"]}
    outcomes: dict[str, int] = {}
    stages: set[str] = set()
    version = 1
    for i in range(60):
        version += 1
        active_sha = sha256_file(Slots(dev).active_model())
        current = "A" if active_sha == fleet.sha["A"] else "B"
        target = "B" if current == "A" else "A"
        man = tmp_path / f"m{version}.json"
        man.write_text(json.dumps(fleet.manifest(target, version)))
        payload = fleet.deltas[(current, target)] if i % 2 else fleet.models[target]
        cmd = [sys.executable, str(RUNNER), "--dir", str(dev), "--root", str(fleet.folder / "root.json")]
        p = subprocess.Popen([*cmd, "--manifest", str(man), "--payload", str(payload)], stdout=subprocess.PIPE,
                             env=env, text=True)
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 1.6))
        p.send_signal(signal.SIGKILL)
        p.wait()
        record = dev / "update.json"
        if record.exists():
            stages.add(json.loads(record.read_text())["state"])
        assert sha256_file(Slots(dev).active_model()) in signed, f"kill {i}: active model is not a signed one"
        out = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=120, env=env)
        assert out.returncode == 0, out.stderr
        state = json.loads(out.stdout.strip().splitlines()[-1])["state"]
        outcomes[state] = outcomes.get(state, 0) + 1
        assert state in ("committed", "rolled_back", "idle")
        active = Slots(dev).active()
        manifest = Slots(dev).manifest(active)
        assert manifest is not None and sha256_file(Slots(dev).model(active)) == manifest["signed"]["sha256"]
        if state == "rolled_back":  # the next release must still be newer than what is installed
            version = max(version, int(manifest["signed"]["version"]))
    assert {"installing", "health", "committed"} <= stages, f"kills landed in {sorted(stages)}"
    assert outcomes.get("committed", 0) > 0
