"""Signed model releases with TUF-style trust: pure verification, no I/O, no clock of its own.

* **Root** metadata lists keys and, per role (``root``, ``release``), which keys count and how many
  valid signatures are needed (threshold). The root key stays offline; it certifies the release keys.
  A device pins a root (at enrollment or from its firmware image). A new root version is trusted only
  when signed by a threshold of the *current* root's keys and of its own (key rotation, as in TUF).
* **Release** manifest: name, monotonically increasing version, device classes, length, sha256,
  created/expires, provenance; optionally a delta (its base's sha256, its own length and sha256).
  Signed by a threshold of release keys.

``verify_release`` raises one error per attack, and never touches the active model: missing or bad
signatures, below threshold, rollback (version not newer), freeze (expired), wrong device class.
Download-time checks (endless data, hash mismatch, mix-and-match delta) live in :class:`BoundedHasher`
and :func:`check_delta_base`. Signatures cover the canonical JSON of the ``signed`` part.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from linecrew.shared.errors import (
    BadSignatureError,
    DeltaBaseMismatchError,
    DeviceClassError,
    ExpiredError,
    HashMismatchError,
    LengthExceededError,
    MalformedMetadataError,
    RollbackError,
    ThresholdError,
    UnsignedError,
)


# ---------------------------------------------------------------------------------------------- errors
# ------------------------------------------------------------------------------------------- schemas
class Role(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keyids: list[str]
    threshold: int = Field(ge=1)


class RootSigned(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str = "root"
    version: int = Field(ge=1)
    expires: float
    keys: dict[str, str]  # keyid → base64 raw Ed25519 public key
    roles: dict[str, Role]


class Provenance(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: str
    base_model: str | None = None
    training_data: str | None = None
    builder: str


class DeltaInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base_sha256: str
    length: int = Field(ge=0)
    sha256: str
    format: str


class ReleaseSigned(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str = "release"
    name: str
    version: int = Field(ge=1)
    device_classes: list[str] = Field(min_length=1)
    length: int = Field(ge=0)
    sha256: str = Field(min_length=64, max_length=64)
    created: float
    expires: float
    provenance: Provenance
    deltas: list[DeltaInfo] = Field(default_factory=list)


class Signature(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keyid: str
    sig: str


class Signed(BaseModel):
    model_config = ConfigDict(extra="forbid")
    signed: dict[str, Any]
    signatures: list[Signature]


# ---------------------------------------------------------------------------------------------- keys
def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def public_b64(key: Ed25519PrivateKey) -> str:
    return base64.b64encode(key.public_key().public_bytes(serialization.Encoding.Raw,
                                                          serialization.PublicFormat.Raw)).decode()


def keyid(public_b64_: str) -> str:
    return hashlib.sha256(public_b64_.encode()).hexdigest()[:16]


def sign(signed: dict[str, Any], keys: list[Ed25519PrivateKey]) -> dict[str, Any]:
    payload = canonical(signed)
    sigs = [{"keyid": keyid(public_b64(k)), "sig": base64.b64encode(k.sign(payload)).decode()} for k in keys]
    return {"signed": signed, "signatures": sigs}


def make_root(*, version: int, expires: float, root_keys: list[Ed25519PrivateKey], root_threshold: int,
              release_public: list[str], release_threshold: int, signers: list[Ed25519PrivateKey]) -> dict[str, Any]:
    keys = {keyid(public_b64(k)): public_b64(k) for k in root_keys}
    keys.update({keyid(p): p for p in release_public})
    signed = RootSigned(version=version, expires=expires, keys=keys, roles={
        "root": Role(keyids=[keyid(public_b64(k)) for k in root_keys], threshold=root_threshold),
        "release": Role(keyids=[keyid(p) for p in release_public], threshold=release_threshold),
    }).model_dump()
    return sign(signed, signers)


# ------------------------------------------------------------------------------------ verification
def parse_manifest(raw: bytes) -> dict[str, Any]:
    """A signed release document, checked for shape only (``verify_release`` checks signatures and the rest);
    anything else is one ``MalformedMetadataError``."""
    try:
        doc = json.loads(raw)
        ReleaseSigned.model_validate(parse_signed(doc).signed)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise MalformedMetadataError(f"not a signed release manifest: {where}: {err['msg']}") from e
    except ValueError as e:  # not JSON
        raise MalformedMetadataError(f"not a signed release manifest: {e}") from e
    return dict(doc)


def parse_signed(doc: dict[str, Any] | bytes) -> Signed:
    try:
        return Signed.model_validate_json(doc) if isinstance(doc, bytes) else Signed.model_validate(doc)
    except ValidationError as e:
        raise MalformedMetadataError(f"malformed signed metadata: {e.errors()[0]['msg']}") from e


def verify_role(doc: Signed, root: RootSigned, role: str) -> int:
    """Count valid signatures of ``role`` keys; raise if none, if one is bad, or below threshold."""
    r = root.roles.get(role)
    if r is None:
        raise MalformedMetadataError(f"root defines no {role!r} role")
    payload = canonical(doc.signed)
    relevant = [s for s in doc.signatures if s.keyid in r.keyids]
    if not relevant:
        raise UnsignedError(f"no signature from any {role} key")
    valid = set()
    for s in relevant:
        try:
            Ed25519PublicKey.from_public_bytes(base64.b64decode(root.keys[s.keyid])).verify(
                base64.b64decode(s.sig), payload)
        except (InvalidSignature, ValueError, KeyError) as e:
            raise BadSignatureError(f"signature by {role} key {s.keyid} does not verify") from e
        valid.add(s.keyid)
    if len(valid) < r.threshold:
        raise ThresholdError(f"{len(valid)} valid {role} signature(s), {r.threshold} required")
    return len(valid)


def load_trusted_root(doc: dict[str, Any] | bytes, *, now: float) -> RootSigned:
    """A pinned root: self-signed by a threshold of its root keys and not expired."""
    signed = parse_signed(doc)
    root = _root(signed)
    verify_role(signed, root, "root")
    if now >= root.expires:
        raise ExpiredError(f"root v{root.version} expired")
    return root


def update_root(trusted: RootSigned, new_doc: dict[str, Any] | bytes, *, now: float) -> RootSigned:
    """Key rotation: v+1 signed by a threshold of the trusted root's keys and of its own."""
    signed = parse_signed(new_doc)
    new = _root(signed)
    if new.version != trusted.version + 1:
        raise RollbackError(f"root v{new.version} does not follow trusted v{trusted.version}")
    verify_role(signed, trusted, "root")
    verify_role(signed, new, "root")
    if now >= new.expires:
        raise ExpiredError(f"root v{new.version} expired")
    return new


def _root(signed: Signed) -> RootSigned:
    try:
        root = RootSigned.model_validate(signed.signed)
    except ValidationError as e:
        raise MalformedMetadataError(f"bad root metadata: {e.errors()[0]['msg']}") from e
    if root.type != "root":
        raise MalformedMetadataError("not root metadata")
    return root


def verify_release(doc: dict[str, Any] | bytes, root: RootSigned, *, now: float, installed_version: int,
                   device_class: str) -> ReleaseSigned:
    signed = parse_signed(doc)
    try:
        rel = ReleaseSigned.model_validate(signed.signed)
    except ValidationError as e:
        raise MalformedMetadataError(f"bad release manifest: {e.errors()[0]['msg']}") from e
    verify_role(signed, root, "release")
    if now >= rel.expires:
        raise ExpiredError(f"release {rel.name} v{rel.version} expired")
    if rel.version <= installed_version:
        raise RollbackError(f"release v{rel.version} is not newer than installed v{installed_version}")
    if device_class not in rel.device_classes:
        raise DeviceClassError(f"release is for {rel.device_classes}, this device is {device_class}")
    return rel


def check_delta_base(delta: DeltaInfo, installed_sha256: str) -> None:
    if delta.base_sha256 != installed_sha256:
        raise DeltaBaseMismatchError(
            f"delta is for base {delta.base_sha256[:12]}, installed model is {installed_sha256[:12]}")


@dataclass
class BoundedHasher:
    """Hash bytes as they stream in, refusing to accept more than ``length`` (endless-data attack)."""

    length: int
    sha256: str

    def __post_init__(self) -> None:
        self._h = hashlib.sha256()
        self.received = 0

    def update(self, data: bytes) -> None:
        if self.received + len(data) > self.length:
            raise LengthExceededError(f"more than the {self.length} bytes the manifest allows")
        self.received += len(data)
        self._h.update(data)

    def finish(self) -> None:
        if self.received != self.length:
            raise HashMismatchError(f"got {self.received} of {self.length} bytes")
        if self._h.hexdigest() != self.sha256:
            raise HashMismatchError("sha256 does not match the manifest")
