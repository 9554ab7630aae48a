"""Planner errors."""

from __future__ import annotations

from linecrew.server.errors import ServerError


class PlannerError(ServerError):
    """Root of planner errors."""


class InstanceFormatError(PlannerError):
    """A benchmark or plan input file could not be parsed."""


class InfeasiblePlanError(PlannerError):
    """No plan satisfies the hard constraints; ``conflicts`` names them."""

    def __init__(self, message: str, conflicts: list[str]) -> None:
        super().__init__(message)
        self.conflicts = conflicts
