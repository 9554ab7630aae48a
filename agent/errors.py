"""Agent errors, split by cause."""

from __future__ import annotations

from linecrew.shared.errors import LinecrewError


class AgentError(LinecrewError):
    """Root of agent-side errors."""


class NotEnrolledError(AgentError):
    """The device has no identity or broker credentials yet: run ``linecrew agent enroll``."""


class EnrollmentRefusedError(AgentError):
    """The server refused the enrollment (bad, reused or expired token; taken device id)."""


class ServerUnreachableError(AgentError):
    """The server's HTTP API could not be reached (transient: retry later)."""


class UpdateStateError(AgentError):
    """An update event that its current state does not allow (a bug or a corrupt update record)."""


class AudioError(AgentError):
    """Audio could not be read: missing, corrupt or truncated file, bad PCM format, no device."""


class NoMicrophoneError(AudioError):
    """No input device is present (the message lists what was found)."""


class UpdateError(AgentError):
    """An update step failed; the device keeps (or returns to) its previous model."""


class HealthCheckError(UpdateError):
    pass


class DocumentError(AgentError):
    """A procedure document could not be imported: unsupported format, unreadable, too large or empty."""


class KnowledgeError(AgentError):
    """A knowledge-base request that cannot be met (unknown document, nothing indexed)."""
