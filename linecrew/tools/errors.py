"""Errors of the tools layer (simulator, rehearsals, admin API client)."""

from __future__ import annotations

from linecrew.shared.errors import LinecrewError


class AdminApiError(LinecrewError):
    """The admin API refused a request (the server's reason is in the message) or was unreachable."""
