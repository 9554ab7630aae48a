"""Encryption at rest for sensitive columns, and key files that never leave their owner.

``FieldCipher`` seals values with AES-256-GCM. The 32-byte key lives in its own file, mode 0600,
outside the database, so a copied database file alone reveals no transcripts or notes. Each value
gets a fresh 96-bit nonce; an optional associated-data string binds a value to its row.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from linecrew.shared.errors import CryptoError
from linecrew.shared.fsutil import create_exclusive

_FORMAT = b"\x01"


class FieldCipher:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise CryptoError("field key must be 32 bytes")
        self._aead = AESGCM(key)

    @classmethod
    def from_key_file(cls, path: Path, *, create: bool = True) -> FieldCipher:
        return cls(load_or_create_secret(path, 32, create=create))

    def encrypt(self, plaintext: bytes, aad: bytes = b"") -> bytes:
        nonce = os.urandom(12)
        return _FORMAT + nonce + self._aead.encrypt(nonce, plaintext, aad)

    def decrypt(self, blob: bytes, aad: bytes = b"") -> bytes:
        if len(blob) < 29 or blob[:1] != _FORMAT:
            raise CryptoError("not a sealed value")
        try:
            return self._aead.decrypt(blob[1:13], blob[13:], aad)
        except InvalidTag as e:
            raise CryptoError("sealed value failed authentication (wrong key or tampered)") from e

    def encrypt_text(self, text: str, aad: bytes = b"") -> bytes:
        return self.encrypt(text.encode(), aad)

    def decrypt_text(self, blob: bytes, aad: bytes = b"") -> str:
        return self.decrypt(blob, aad).decode()


def load_or_create_secret(path: Path, length: int, *, create: bool = True) -> bytes:
    """Read a secret file, refusing one readable by group or others; create it (0600) if asked."""
    path = Path(path)
    if not path.exists():
        if not create:
            raise CryptoError(f"key file {path} is missing")
        # two processes starting together (``agent run &`` and ``agent note``) must end with one key: the first
        # to create the file wins and the other reads it (a key kept only in memory seals rows no one can open)
        create_exclusive(path, os.urandom(length), mode=0o600)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise CryptoError(f"{path} is readable by others (mode {mode:o}); chmod 600 it")
    data = path.read_bytes()
    if len(data) != length:
        raise CryptoError(f"{path} holds {len(data)} bytes, expected {length}")
    return data
