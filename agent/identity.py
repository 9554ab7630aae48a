"""What enrollment leaves on the device: key pair, broker credentials, CA and the release trust root.

``identity.key`` and ``credentials.json`` are 0600; the broker password is only ever in that file.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from linecrew.agent.errors import NotEnrolledError
from linecrew.shared.fsutil import atomic_write_text
from linecrew.shared.mqtt import BrokerAddress


@dataclass(frozen=True)
class Credentials:
    device_id: str
    device_class: str
    broker_url: str
    username: str
    password: str

    def address(self, folder: Path) -> BrokerAddress:
        ca = folder / "ca.crt"
        return BrokerAddress(self.broker_url, self.username, self.password, str(ca) if ca.exists() else None)

    def __repr__(self) -> str:  # never print the password
        return f"Credentials(device_id={self.device_id!r}, broker_url={self.broker_url!r})"


SEAL_KEY_FILE = "seal.key"  # this device's X25519 key (end-to-end sealing), 0600
SERVER_SEAL_KEY_FILE = "server_seal.pub"  # the server's public sealing key, from the enrollment answer


def save(folder: Path, creds: Credentials, ca_pem: str, trust_root: str | None,
         server_seal_key: str | None = None) -> None:
    """Store what enrollment returned. A release root already pinned (from the firmware image) is
    kept: enrollment pins one only on a device that has none."""
    atomic_write_text(folder / "credentials.json", json.dumps(asdict(creds), indent=2), mode=0o600)
    if server_seal_key:
        atomic_write_text(folder / SERVER_SEAL_KEY_FILE, server_seal_key + "\n")
    if ca_pem:
        atomic_write_text(folder / "ca.crt", ca_pem)
    root = folder / "root.json"
    if trust_root and not root.exists():
        atomic_write_text(root, trust_root)


def load(folder: Path) -> Credentials:
    path = folder / "credentials.json"
    if not path.exists():
        raise NotEnrolledError(f"no credentials in {folder}: run 'linecrew agent enroll' first")
    return Credentials(**json.loads(path.read_text()))
