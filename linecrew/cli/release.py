"""``linecrew release ...`` and ``linecrew image ...``: signed releases and device images."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from linecrew.cli._common import (
    _friendly,
    read_manifest,
)


@click.group()
def release() -> None:
    """Signed model releases: keys, root of trust, manifests, deltas, verification."""


def _key(path: Path) -> Any:
    from linecrew.shared.identity import load_or_create_key

    if not path.exists():
        raise click.BadParameter(f"key file {path} not found")
    return load_or_create_key(path)


@release.command("keygen")
@click.option("--out", "out", type=click.Path(path_type=Path), required=True, help="private key file (0600)")
@_friendly
def release_keygen(out: Path) -> None:
    """Make an Ed25519 signing key; prints its public key (base64) and key id."""
    from linecrew.shared.identity import load_or_create_key
    from linecrew.shared.release import keyid, public_b64

    if out.exists():
        raise click.ClickException(f"{out} exists; refusing to overwrite a key")
    pub = public_b64(load_or_create_key(out))
    out.with_suffix(".pub").write_text(pub + "\n")
    click.echo(f"{keyid(pub)} {pub}")


@release.command("root")
@click.option("--root-key", "root_keys", type=click.Path(path_type=Path), multiple=True, required=True,
              help="offline root signing key (repeat for several)")
@click.option("--root-threshold", type=int, default=1, help="root signatures needed to change the root")
@click.option("--release-pub", "release_pubs", type=click.Path(path_type=Path), multiple=True, required=True,
              help="public key files (.pub) of release signers")
@click.option("--release-threshold", type=int, default=1, help="release-key signatures a release needs")
@click.option("--version", "version", type=int, default=1, help="version of this root metadata (rotation: old + 1)")
@click.option("--expires-days", type=float, default=365, help="days until this root metadata expires")
@click.option("--sign-with", "extra_signers", type=click.Path(path_type=Path), multiple=True,
              help="old root keys too, when rotating")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="file to write")
@_friendly
def release_root(root_keys: tuple[Path, ...], root_threshold: int, release_pubs: tuple[Path, ...],
                 release_threshold: int, version: int, expires_days: float, extra_signers: tuple[Path, ...],
                 out: Path) -> None:
    """Write root metadata (run it where the offline root key lives)."""
    from linecrew.shared.release import make_root

    keys = [_key(p) for p in root_keys]
    doc = make_root(version=version, expires=time.time() + expires_days * 86400, root_keys=keys,
                    root_threshold=root_threshold, release_public=[p.read_text().strip() for p in release_pubs],
                    release_threshold=release_threshold, signers=keys + [_key(p) for p in extra_signers])
    out.write_text(json.dumps(doc, indent=1))
    click.echo(f"root v{version} written to {out}")


@release.command("create")
@click.argument("model", type=click.Path(exists=True, path_type=Path))
@click.option("--name", required=True, help="release name, e.g. smollm2-field")
@click.option("--version", "version", type=int, required=True, help="release version (must grow)")
@click.option("--device-class", "device_classes", multiple=True, required=True,
              help="device class it is for (repeat for several)")
@click.option("--key", "keys", type=click.Path(path_type=Path), multiple=True, required=True,
              help="release signing key(s); as many as the threshold")
@click.option("--expires-days", type=float, default=90, help="days until devices refuse this release")
@click.option("--source", default="local build", help="provenance: where the model came from")
@click.option("--base-model", default=None, help="provenance: the model it was fine-tuned from")
@click.option("--training-data", default=None, help="provenance: the data it was trained on")
@click.option("--builder", default="linecrew release create", help="provenance: the tool that built it")
@click.option("--delta", "deltas", type=click.Path(exists=True, path_type=Path), multiple=True,
              help="delta file(s) (from 'release delta') to list in the manifest")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="file to write")
@_friendly
def release_create(model: Path, name: str, version: int, device_classes: tuple[str, ...], keys: tuple[Path, ...],
                   expires_days: float, source: str, base_model: str | None, training_data: str | None,
                   builder: str, deltas: tuple[Path, ...], out: Path) -> None:
    """Sign a release manifest for a model file."""
    from linecrew.shared.delta import read_header, sha256_file
    from linecrew.shared.release import sign

    listed = []
    for d in deltas:
        header, _ = read_header(d)
        listed.append({"base_sha256": header["old_sha256"], "length": d.stat().st_size, "sha256": sha256_file(d),
                       "format": "linecrew-delta-1"})
    now = time.time()
    digest = sha256_file(model)
    signed: dict[str, Any] = {
              "type": "release", "name": name, "version": version, "device_classes": list(device_classes),
              "length": model.stat().st_size, "sha256": digest, "created": now,
              "expires": now + expires_days * 86400, "deltas": listed,
              "provenance": {"source": source, "base_model": base_model, "training_data": training_data,
                             "builder": builder}}
    out.write_text(json.dumps(sign(signed, [_key(k) for k in keys]), indent=1))
    click.echo(f"{name} v{version} ({digest[:12]}, {len(listed)} delta(s)) signed -> {out}")


@release.command("delta")
@click.argument("old", type=click.Path(exists=True, path_type=Path))
@click.argument("new", type=click.Path(exists=True, path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="file to write")
@_friendly
def release_delta(old: Path, new: Path, out: Path) -> None:
    """Make a delta (GGUF: tensor by tensor; other files: whole-file bsdiff4)."""
    from linecrew.shared.delta import make_delta

    header = make_delta(old, new, out)
    size = out.stat().st_size
    click.echo(f"{out}: {size} bytes ({100 * size / new.stat().st_size:.2f}% of the new file), "
               f"{len(header['ops'])} operations")


@release.command("verify")
@click.argument("manifest", type=click.Path(exists=True, path_type=Path))
@click.option("--trust-root", "trust_root", type=click.Path(exists=True, path_type=Path), required=True,
              help="the root metadata (root.json) releases are checked against")
@click.option("--device-class", default=None, help="check it is for this class")
@click.option("--installed-version", type=int, default=0, help="version the device runs now (a release must be newer)")
@click.option("--model", type=click.Path(exists=True, path_type=Path), default=None, help="check this file too")
@_friendly
def release_verify(manifest: Path, trust_root: Path, device_class: str | None, installed_version: int,
                   model: Path | None) -> None:
    """Verify signatures, threshold, expiry, version (and the model's length and hash)."""
    from linecrew.shared.release import BoundedHasher, load_trusted_root, verify_release

    root = load_trusted_root(trust_root.read_bytes(), now=time.time())
    doc = read_manifest(manifest)
    cls = device_class or doc.get("signed", {}).get("device_classes", ["?"])[0]
    rel = verify_release(doc, root, now=time.time(), installed_version=installed_version, device_class=cls)
    if model is not None:
        h = BoundedHasher(rel.length, rel.sha256)
        with open(model, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        h.finish()
    click.echo(f"OK: {rel.name} v{rel.version} for {rel.device_classes}, sha256 {rel.sha256[:12]}"
               + (", model matches" if model else ""))



@click.group()
def image() -> None:
    """Device image bundles per device class (recipes in firmware-images/)."""


@image.command("build")
@click.argument("recipe")
@click.option("--trust-root", "trust_root", type=click.Path(exists=True, path_type=Path), required=True,
              help="the root metadata (root.json) releases are checked against")
@click.option("--manifest", type=click.Path(exists=True, path_type=Path), required=True, help="signed release")
@click.option("--model", type=click.Path(exists=True, path_type=Path), default=None,
              help="the release's model file (default: the packaged SmolLM2 GGUF)")
@click.option("--key", "keys", type=click.Path(path_type=Path), multiple=True, required=True,
              help="release signing key(s)")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="default firmware-images/out/NAME.tar")
@_friendly
def image_build(recipe: str, trust_root: Path, manifest: Path, model: Path | None, keys: tuple[Path, ...],
                out: Path | None) -> None:
    """Make a signed image bundle for one device class. RECIPE: a recipe file, or the name of one shipped with
    Linecrew (jetson-orin-nano, rpi5, x86-dev)."""
    from linecrew.shared.image import build_image, find_recipe
    from linecrew.shared.models import default_llm_path

    recipe_path = find_recipe(recipe)
    target = out or Path("firmware-images/out") / f"{recipe_path.stem}.tar"
    img = build_image(recipe_path, root=trust_root, manifest=manifest, model=model or default_llm_path(),
                      keys=[_key(k) for k in keys], out=target)
    click.echo(f"{target}: {img['device_class']} image, agent {img['agent_version']}, "
               f"{img['release']} v{img['release_version']}")

