"""Device image bundles: build (server side) and verify + provision (device side).

A bundle is a tar file with ``image.json`` (recipe, agent version, device class, the files with their
length and sha256), ``image.sig.json`` (``image.json`` signed by release keys, TUF-style threshold),
``root.json`` (the trust root the device will pin), ``release.json`` (the model's signed manifest),
``agent.toml`` and ``model.gguf``. Provisioning verifies the bundle against a trust root the operator
already holds (never against the root inside the bundle alone), then every file's length and hash,
then the model against its release manifest, and only then writes the device folder. Members are read
by name; nothing is extracted blindly.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import io
import json
import tarfile
import time
import tomllib
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from linecrew.shared.errors import ImageError, ReleaseError
from linecrew.shared.release import (
    BoundedHasher,
    canonical,
    load_trusted_root,
    parse_signed,
    sign,
    verify_release,
    verify_role,
)

FILES = ("root.json", "release.json", "agent.toml", "model.gguf")


def find_recipe(name_or_path: str) -> Path:
    """A recipe file as given, else the recipe of that name shipped in the package (``rpi5`` → rpi5.toml)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = Path(str(importlib.resources.files("linecrew").joinpath("_files/firmware-images"))) / f"{path.stem}.toml"
    if shipped.is_file():
        return shipped
    known = sorted(p.stem for p in shipped.parent.glob("*.toml"))
    raise ImageError(f"no recipe {name_or_path}: give a recipe file or one of {', '.join(known)}")


def toml_dump(d: dict[str, Any]) -> str:
    """Flat TOML (the keys of an agent.toml), values as JSON literals (valid TOML for strings, numbers, lists)."""
    lines = []
    for k, v in d.items():
        lines.append(f"{k} = {json.dumps(v)}")
    return "\n".join(lines) + "\n"


def build_image(recipe_path: Path, *, root: Path, manifest: Path, model: Path, keys: list[Ed25519PrivateKey],
                out: Path) -> dict[str, Any]:
    recipe = tomllib.loads(recipe_path.read_text())
    rel = json.loads(manifest.read_text())["signed"]
    if recipe["model"]["release"] != rel["name"]:
        raise ImageError(f"recipe wants release {recipe['model']['release']!r}, manifest is {rel['name']!r}")
    if recipe["device_class"] not in rel["device_classes"]:
        raise ImageError(f"release {rel['name']} is not for {recipe['device_class']}")
    contents = {"root.json": root.read_bytes(), "release.json": manifest.read_bytes(),
                "agent.toml": toml_dump(recipe.get("agent", {})).encode()}
    files = {name: {"length": len(b), "sha256": hashlib.sha256(b).hexdigest()} for name, b in contents.items()}
    files["model.gguf"] = {"length": model.stat().st_size, "sha256": rel["sha256"]}
    image = {"type": "image", "name": recipe_path.stem, "device_class": recipe["device_class"],
             "agent_version": recipe["agent_version"], "release": rel["name"], "release_version": rel["version"],
             "built": time.time(), "files": files}
    sig = sign(image, keys)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w") as tar:
        for name, data in [("image.json", canonical(image)), ("image.sig.json", json.dumps(sig).encode()),
                           *contents.items()]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        tar.add(model, arcname="model.gguf")
    return image


def verify_image(bundle: Path, trust_root: bytes, *, now: float | None = None) -> dict[str, Any]:
    """Check the bundle against an already trusted root; returns the verified ``image.json``."""
    now = time.time() if now is None else now
    root = load_trusted_root(trust_root, now=now)
    try:
        with tarfile.open(bundle, "r") as tar:
            image_raw = read_member(tar, "image.json")
            sig = parse_signed(read_member(tar, "image.sig.json"))
            if canonical(sig.signed) != image_raw:
                raise ImageError("image.json differs from what was signed")
            verify_role(sig, root, "release")
            image = json.loads(image_raw)
            if read_member(tar, "root.json") != trust_root:
                raise ImageError("the bundle's trust root is not the one you trust")
            for name in FILES:
                _checkread_member(tar, name, image["files"][name])
            verify_release(read_member(tar, "release.json"), root, now=now, installed_version=0,
                           device_class=image["device_class"])
    except (tarfile.TarError, KeyError, ValueError) as e:
        raise ImageError(f"{bundle} is not a valid image bundle: {e}") from e
    return image


def read_member(tar: tarfile.TarFile, name: str) -> bytes:
    f = tar.extractfile(name)
    if f is None:
        raise ImageError(f"bundle member {name} is not a file")
    return f.read()


def _checkread_member(tar: tarfile.TarFile, name: str, meta: dict[str, Any]) -> None:
    f = tar.extractfile(name)
    if f is None:
        raise ImageError(f"bundle member {name} missing")
    h = BoundedHasher(int(meta["length"]), str(meta["sha256"]))
    try:
        while chunk := f.read(1 << 20):
            h.update(chunk)
        h.finish()
    except ReleaseError as e:
        raise ImageError(f"{name} was tampered with: {e}") from e
