"""Provisioning a fresh device from a verified image bundle (the device side of ``shared.image``)."""

from __future__ import annotations

import json
import tarfile
import time
import tomllib
from pathlib import Path
from typing import Any

from linecrew.agent.updates import Updater
from linecrew.shared.fsutil import atomic_write_text
from linecrew.shared.image import read_member, toml_dump, verify_image
from linecrew.shared.release import load_trusted_root


def provision(bundle: Path, device_dir: Path, trust_root: bytes) -> dict[str, Any]:
    """Verify, then set up a fresh device folder: pinned root, agent.toml, model in slot a."""
    image = verify_image(bundle, trust_root)
    device_dir.mkdir(parents=True, exist_ok=True)
    staged = device_dir / "models" / ".provision-model.gguf"
    staged.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(bundle, "r") as tar:
        (device_dir / "root.json").write_bytes(read_member(tar, "root.json"))
        settings = tomllib.loads(read_member(tar, "agent.toml").decode())
        settings["data_dir"] = str(device_dir.resolve())  # so `--config DIR/agent.toml` works on its own
        atomic_write_text(device_dir / "agent.toml", toml_dump(settings))
        manifest = json.loads(read_member(tar, "release.json"))
        src = tar.extractfile("model.gguf")
        assert src is not None
        with open(staged, "wb") as f:
            while chunk := src.read(1 << 20):
                f.write(chunk)
    root = load_trusted_root(trust_root, now=time.time())
    Updater(device_dir / "models", root=root, device_class=image["device_class"],
            health=lambda _m: None).install_factory(staged, manifest)
    staged.unlink()
    return image
