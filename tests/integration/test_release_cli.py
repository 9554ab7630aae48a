"""The release workflow by hand, through the CLI: keys, root, manifest, delta, verify, image, provision,
update, rollback — with the real default model."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from linecrew.shared.gguf_edit import perturb, rewrite
from linecrew.shared.models import default_llm_path
from tests.conftest import REPO

# the update's smoke-prompt budget is the device's (20 s); a loaded two-core CI machine once took 28 s to load the
# model beside other tests, so the device these commands set up is given a machine's budget, set as an operator would
SLOW_MACHINE = {**os.environ, "LINECREW_AGENT_UPDATE_HEALTH_BUDGET_S": "600"}


def cli(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([sys.executable, "-m", "linecrew.cli", *args], cwd=REPO, capture_output=True, text=True,
                         timeout=300, env=SLOW_MACHINE)
    if ok:
        assert out.returncode == 0, out.stderr
    return out


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("authority")
    for k in ("root", "rel1", "rel2"):
        cli("release", "keygen", "--out", str(d / f"{k}.key"))
    cli("release", "root", "--root-key", str(d / "root.key"), "--release-pub", str(d / "rel1.pub"),
        "--release-pub", str(d / "rel2.pub"), "--release-threshold", "2", "--out", str(d / "root.json"))
    v2 = rewrite(default_llm_path(), d / "v2.gguf", transform=perturb(0.005, only=lambda n: n.startswith("blk.5.")))
    cli("release", "delta", str(default_llm_path()), str(v2), "--out", str(d / "v1-v2.delta"))
    signers = ["--key", str(d / "rel1.key"), "--key", str(d / "rel2.key")]
    cli("release", "create", str(default_llm_path()), "--name", "smollm2-field", "--version", "1",
        "--device-class", "x86-dev", "--device-class", "rpi5", *signers, "--out", str(d / "v1.json"))
    cli("release", "create", str(v2), "--name", "smollm2-field", "--version", "2", "--device-class", "x86-dev",
        "--delta", str(d / "v1-v2.delta"), *signers, "--base-model", "SmolLM2-135M-Instruct",
        "--training-data", "storm-season-2026", "--out", str(d / "v2.json"))
    return d


def test_verify_accepts_signed_and_refuses_under_threshold(authority: Path) -> None:
    out = cli("release", "verify", str(authority / "v2.json"), "--trust-root", str(authority / "root.json"),
              "--model", str(authority / "v2.gguf"))
    assert "OK: smollm2-field v2" in out.stdout and "model matches" in out.stdout
    one = authority / "v2-one-signer.json"
    cli("release", "create", str(authority / "v2.gguf"), "--name", "smollm2-field", "--version", "2",
        "--device-class", "x86-dev", "--key", str(authority / "rel1.key"), "--out", str(one))
    bad = cli("release", "verify", str(one), "--trust-root", str(authority / "root.json"), ok=False)
    assert bad.returncode == 1 and "1 valid release signature(s), 2 required" in bad.stderr


def test_image_provisions_a_device_that_then_updates_by_delta_and_rolls_back(authority: Path, tmp_path: Path
                                                                              ) -> None:
    bundle = tmp_path / "x86-dev.tar"
    cli("image", "build", str(REPO / "firmware-images" / "x86-dev.toml"), "--trust-root",
        str(authority / "root.json"), "--manifest", str(authority / "v1.json"), "--key", str(authority / "rel1.key"),
        "--key", str(authority / "rel2.key"), "--out", str(bundle))
    dev = tmp_path / "dev"
    cli("agent", "provision", str(bundle), "--dir", str(dev), "--trust-root", str(authority / "root.json"))
    assert 'device_class = "x86-dev"' in (dev / "agent.toml").read_text()
    status = json.loads(cli("agent", "update", "status", "--json", "--dir", str(dev)).stdout)
    assert status["active_version"] == 1 and status["active_slot"] == "a"
    out = cli("agent", "update", "apply", "--dir", str(dev), str(authority / "v2.json"), str(authority / "v1-v2.delta"))
    assert out.stdout.startswith("committed")
    assert json.loads(cli("agent", "update", "status", "--json", "--dir", str(dev)).stdout)["active_version"] == 2
    # the provisioned config works on its own (it names its data folder), and the assistant runs the active slot
    alone = json.loads(cli("agent", "update", "status", "--json", "--config", str(dev / "agent.toml")).stdout)
    assert alone["active_version"] == 2
    from linecrew.agent.config import AgentConfig
    from linecrew.agent.daemon import model_in_force

    assert model_in_force(AgentConfig.load(dev / "agent.toml")) == dev / "models" / "slot-b" / "model.gguf"
    cli("agent", "update", "rollback", "--dir", str(dev))
    assert json.loads(cli("agent", "update", "status", "--json", "--dir", str(dev)).stdout)["active_version"] == 1


def _tamper(src: Path, dst: Path, member: str, data: bytes) -> None:
    with tarfile.open(src) as tin, tarfile.open(dst, "w") as tout:
        for m in tin.getmembers():
            f = tin.extractfile(m)
            assert f is not None
            content = data if m.name == member else f.read()
            info = tarfile.TarInfo(m.name)
            info.size = len(content)
            tout.addfile(info, io.BytesIO(content))


@pytest.mark.parametrize("member", ["agent.toml", "image.json", "root.json"])
def test_tampered_bundles_are_refused(authority: Path, tmp_path: Path, member: str) -> None:
    bundle = tmp_path / "good.tar"
    cli("image", "build", str(REPO / "firmware-images" / "rpi5.toml"), "--trust-root", str(authority / "root.json"),
        "--manifest", str(authority / "v1.json"), "--key", str(authority / "rel1.key"), "--key",
        str(authority / "rel2.key"), "--out", str(bundle))
    with tarfile.open(bundle) as t:
        f = t.extractfile(member)
        assert f is not None
        original = f.read()
    evil = tmp_path / "evil.tar"
    _tamper(bundle, evil, member, original.replace(b"4", b"8", 1) if member != "root.json" else b"{}")
    out = cli("agent", "provision", str(evil), "--dir", str(tmp_path / "dev"), "--trust-root",
              str(authority / "root.json"), ok=False)
    assert out.returncode == 1 and "Error:" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "dev" / "models").exists(), "nothing was installed"
