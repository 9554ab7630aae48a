"""Routing policy: answer locally, defer heavy work to the server, or escalate to a human expert.

Pure decisions on values, tested with tables. The policy is explicit and configurable:
``always_escalate`` intents go to a human whatever the confidence (``safety_emergency`` is always
in it), low confidence escalates, and requests matching a heavy-task rule are deferred.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from linecrew.agent.intents import Intent
from linecrew.shared.protocol import TaskKind

RouteKind = Literal["local", "deferred", "escalated"]


@dataclass(frozen=True)
class RoutingPolicy:
    escalate_below: float = 0.0  # intent confidence below which to escalate; 0: never (answerability decides)
    always_escalate: frozenset[str] = frozenset({"safety_emergency", "escalate_to_expert"})
    defer_rules: tuple[tuple[str, str], ...] = (
        (r"\bsummar(y|i[sz]e|i[sz]ing)\b.*\b(job|log|notes|day|shift|work)\b", TaskKind.SUMMARIZE_JOB_LOG),
    )
    local_only_intents: frozenset[str] = frozenset({"log_note", "job_status", "parts_request"})

    def __post_init__(self) -> None:
        if "safety_emergency" not in self.always_escalate:
            raise ValueError("safety_emergency must always escalate")


@dataclass(frozen=True)
class Route:
    kind: RouteKind
    reason: str
    task: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


def decide(intent: Intent, text: str, policy: RoutingPolicy) -> Route:
    if intent.name in policy.always_escalate:
        return Route("escalated", f"{intent.name} always goes to a human expert")
    if intent.source != "guard":  # a heavy task is deferred whatever the classifier took it for
        for pattern, task in policy.defer_rules:
            if re.search(pattern, text, re.I):
                return Route("deferred", f"heavy task {task} runs on the server", task=task)
    if intent.name in policy.local_only_intents:
        return Route("local", f"{intent.name} is handled on the device")
    if intent.confidence < policy.escalate_below:
        return Route("escalated", f"confidence {intent.confidence:.2f} below {policy.escalate_below:.2f}")
    return Route("local", "answered on the device")
