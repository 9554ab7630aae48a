"""One exception tree for the shared layer, split by cause.

``ProtocolError`` means a peer sent bad data (never retried as-is); ``StorageError`` means the local
disk or database refused (full disk, quota); ``CryptoError`` covers keys and ciphertexts.
"""

from __future__ import annotations


class LinecrewError(Exception):
    """Root of every error Linecrew raises on purpose."""


class ProtocolError(LinecrewError):
    """A message could not be accepted; ``reason`` is a short machine-readable cause."""

    reason = "malformed"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class MalformedMessageError(ProtocolError):
    reason = "malformed"


class OversizedMessageError(ProtocolError):
    reason = "oversized"


class UnknownMessageTypeError(ProtocolError):
    reason = "unknown_type"


class UnsupportedVersionError(ProtocolError):
    reason = "unsupported_version"


class SchemaError(ProtocolError):
    reason = "schema"


class WrongSenderError(ProtocolError):
    reason = "wrong_sender"


class RejectedError(ProtocolError):
    """Raised by an apply function: the message is valid but can never be applied here (``reason`` says why)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, reason=reason)


class NotOwnerError(RejectedError):
    """A device reported on something that is not its own (a job assigned to another technician)."""

    def __init__(self, message: str) -> None:
        super().__init__(f"not_owner: {message}")


class StorageError(LinecrewError):
    """The local store could not take or give data."""


class OutboxFullError(StorageError):
    """The outbox reached its disk quota and its policy is to refuse new messages."""


class MigrationError(StorageError):
    """A schema migration failed; the database stays at its previous version."""


class CryptoError(LinecrewError):
    """A key is missing or unreadable, or a ciphertext failed authentication."""


class ModelError(LinecrewError):
    """The local model failed to load or to generate."""


class ConfigError(LinecrewError):
    """A configuration file is missing, unreadable, or names an unknown key or a wrong type."""


class DeltaFormatError(LinecrewError):
    """Not a Linecrew delta, or a damaged one (bad data from the server: never retried as it is)."""


class ReleaseError(LinecrewError):
    """Root of release verification errors: the update is refused, the active model untouched."""


class MalformedMetadataError(ReleaseError):
    pass


class UnsignedError(ReleaseError):
    """No signature at all from a key of the required role."""


class BadSignatureError(ReleaseError):
    """A signature from a trusted key does not verify (tampered metadata or wrong key)."""


class ThresholdError(ReleaseError):
    """Fewer valid signatures than the role's threshold."""


class RollbackError(ReleaseError):
    """The offered version is not newer than the installed one."""


class ExpiredError(ReleaseError):
    """The metadata expired (freeze attack: an attacker replays old, once-valid metadata)."""


class DeviceClassError(ReleaseError):
    """The release is for other device classes."""


class LengthExceededError(ReleaseError):
    """More bytes arrived than the manifest's length (endless data): reading stopped at the bound."""


class HashMismatchError(ReleaseError):
    """The bytes do not hash to the manifest's sha256."""


class DeltaBaseMismatchError(ReleaseError):
    """A delta whose base is not the installed model (mix-and-match)."""


class ImageError(ReleaseError):
    """The bundle is malformed, tampered with, or not for this trust root."""


class ModelNotFoundError(LinecrewError):
    """A configured model path does not exist, or the default model package is not installed."""


class BrokerError(LinecrewError):
    """The broker refused us (bad credentials, not authorised) or cannot be reached."""
