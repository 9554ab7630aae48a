"""Server errors, split by cause: bad requests from outside vs. failures of our own parts."""

from __future__ import annotations

from linecrew.shared.errors import LinecrewError


class ServerError(LinecrewError):
    """Root of server-side errors."""


class EnrollmentError(ServerError):
    """An enrollment was refused: unknown, reused or expired token, bad proof, taken device id."""


class UnknownDeviceError(ServerError):
    """A message or request named a device the registry does not know."""


class BrokerStartError(ServerError):
    """The managed Mosquitto could not be started or did not come up."""


class UnknownEscalationError(ServerError):
    """No such escalation, or it was already answered."""


class RolloutError(ServerError):
    """A rollout request that cannot be done (bad spec, wrong state, unknown release)."""


class InvalidTransitionError(RolloutError):
    pass


class ForbiddenError(RolloutError):
    """The caller's token lacks the role this action needs."""


class AuthError(ServerError):
    """Missing, unknown or revoked token."""
