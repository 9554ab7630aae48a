"""Pure rollout decisions: the state machine, roles, wave quotas, device order and health gates.

Nothing here touches the network, the disk or the clock: functions take values (``now`` included)
and return decisions, so they are tested with tables of cases. ``server.rollouts`` does the I/O.

Rules we hold (and hawkBit, Mender and AWS IoT Jobs do not): success counts only after the device's
own post-install health check (``committed``); a device that is online but silent past its deadline
counts as failed; an offline device is not a failure, it waits and catches up when it returns; gates
are judged per device class, so failures concentrated in one class cannot hide in a healthy majority;
on a failed gate the policy either pauses or rolls every device that took the release back.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from linecrew.server.errors import ForbiddenError, InvalidTransitionError, RolloutError
from linecrew.shared.protocol import UpdateState


# --------------------------------------------------------------------------- states and roles
class RolloutState(StrEnum):
    WAITING_FOR_APPROVAL = "waiting_for_approval"
    READY = "ready"
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"
    ABORTED = "aborted"
    ROLLED_BACK = "rolled_back"


S = RolloutState
ACTIVE = (S.WAITING_FOR_APPROVAL, S.READY, S.RUNNING, S.PAUSED)

# action → {from state: to state}. "gate_pause"/"gate_rollback"/"finish" are the system's own.
TRANSITIONS: dict[str, dict[RolloutState, RolloutState]] = {
    "approve": {S.WAITING_FOR_APPROVAL: S.READY},
    "start": {S.READY: S.RUNNING},
    "pause": {S.RUNNING: S.PAUSED},
    "resume": {S.PAUSED: S.RUNNING},
    "abort": {s: S.ABORTED for s in ACTIVE},
    "rollback": {S.RUNNING: S.ROLLED_BACK, S.PAUSED: S.ROLLED_BACK, S.FINISHED: S.ROLLED_BACK,
                 S.ABORTED: S.ROLLED_BACK},
    "finish": {S.RUNNING: S.FINISHED},
    "gate_pause": {S.RUNNING: S.PAUSED},
    "gate_rollback": {S.RUNNING: S.ROLLED_BACK},
}


def transition(state: RolloutState, action: str) -> RolloutState:
    table = TRANSITIONS.get(action)
    if table is None:
        raise RolloutError(f"unknown rollout action {action!r}")
    if state not in table:
        raise InvalidTransitionError(f"cannot {action} a rollout that is {state}")
    return table[state]


class Role(StrEnum):
    ADMIN = "admin"
    RELEASE_MANAGER = "release-manager"
    PLANNER = "planner"
    EXPERT = "expert"


# Approving and starting put a model on devices: only a release manager, never "admin" by seniority.
ROLES_FOR: dict[str, frozenset[Role]] = {
    "create": frozenset({Role.RELEASE_MANAGER}),
    "approve": frozenset({Role.RELEASE_MANAGER}),
    "start": frozenset({Role.RELEASE_MANAGER}),
    "pause": frozenset({Role.RELEASE_MANAGER, Role.ADMIN}),
    "resume": frozenset({Role.RELEASE_MANAGER}),
    "abort": frozenset({Role.RELEASE_MANAGER, Role.ADMIN}),
    "rollback": frozenset({Role.RELEASE_MANAGER, Role.ADMIN}),
    "status": frozenset(Role),
}


@dataclass(frozen=True)
class Principal:
    name: str
    roles: frozenset[Role]


SYSTEM = Principal("system", frozenset(Role))


def allowed_actions(state: RolloutState | str, who: Principal, *, created_by: str | None = None) -> list[str]:
    """What ``who`` may do to a rollout in ``state`` now: the role allows it, so does the state, and nobody
    approves a rollout they created (the two-person rule)."""
    return [a for a, moves in TRANSITIONS.items()
            if a in ROLES_FOR and who.roles & ROLES_FOR[a] and RolloutState(state) in moves
            and not (a == "approve" and created_by == who.name)]


def authorize(who: Principal, action: str) -> None:
    allowed = ROLES_FOR.get(action)
    if allowed is None or not (who.roles & allowed):
        need = " or ".join(sorted(allowed or ()))
        raise ForbiddenError(f"{who.name} may not {action} rollouts (needs role {need})")


def check_approver(created_by: str, approver: Principal) -> None:
    """Two people for every rollout: whoever created it may not approve it."""
    if approver.name == created_by:
        raise ForbiddenError(f"two-person rule: {created_by} created this rollout; a second release manager must "
                             "approve it")


# --------------------------------------------------------------------------- the spec
class WaveSpec(BaseModel):
    """One wave: how many devices in all once it is done (percent of the target, or a count)."""

    percent: float | None = Field(None, gt=0, le=100)
    count: int | None = Field(None, gt=0)
    soak_s: float = Field(300, ge=0, description="wait after the success threshold is reached")
    success_threshold: float = Field(0.95, gt=0, le=1, description="healthy share needed to go on")
    error_threshold: float = Field(0.05, ge=0, lt=1, description="failed share (per class) that stops it")
    device_timeout_s: float = Field(1800, gt=0, description="online but silent this long → failed")

    @model_validator(mode="after")
    def _one_size(self) -> WaveSpec:
        if (self.percent is None) == (self.count is None):
            raise ValueError("give a wave either percent or count")
        return self


class RolloutSpec(BaseModel):
    release: str = Field(min_length=1, max_length=128)
    version: int = Field(ge=1)
    device_classes: list[str] = Field(default_factory=list, description="empty: all the release supports")
    tags: list[str] = Field(default_factory=list, description="devices must carry all of these")
    waves: list[WaveSpec] = Field(min_length=1, max_length=20)
    on_failure: Literal["pause", "rollback"] = "rollback"
    rate_per_s: float = Field(20, gt=0, description="new offers per second")
    bandwidth_bytes_s: float = Field(50_000_000, gt=0, description="chunk bytes per second, whole rollout")
    require_approval: bool = True

    @model_validator(mode="after")
    def _growing(self) -> RolloutSpec:
        last = self.waves[-1]
        if last.percent != 100:
            raise ValueError("the last wave must be percent=100 so every targeted device is reached")
        return self


def default_waves(percents: Sequence[float] = (1, 10, 50, 100), **kw: float) -> list[WaveSpec]:
    return [WaveSpec(percent=p, **kw) for p in percents]


# --------------------------------------------------------------------------- wave quotas and order
def wave_quotas(class_sizes: Mapping[str, int], waves: Sequence[WaveSpec]) -> list[dict[str, int]]:
    """Cumulative devices per class after each wave, stratified so every class is in the canary.

    Percent waves take ``ceil(p * N_c)`` of each class; count waves split the count across classes in
    proportion (largest remainder, at least one per class while the count allows).
    """
    total = sum(class_sizes.values())
    out: list[dict[str, int]] = []
    prev = {c: 0 for c in class_sizes}
    for w in waves:
        if w.percent is not None:
            cur = {c: min(n, math.ceil(w.percent / 100 * n - 1e-9)) for c, n in class_sizes.items()}
        else:
            cur = _split(min(w.count or 0, total), class_sizes)
        cur = {c: max(cur[c], prev[c]) for c in class_sizes}  # waves only grow
        out.append(cur)
        prev = cur
    return out


def _split(k: int, sizes: Mapping[str, int]) -> dict[str, int]:
    total = sum(sizes.values()) or 1
    raw = {c: k * n / total for c, n in sizes.items()}
    got = {c: min(sizes[c], max(1 if k >= len(sizes) and sizes[c] else 0, math.floor(v))) for c, v in raw.items()}
    for c in sorted(raw, key=lambda c: raw[c] - math.floor(raw[c]), reverse=True):
        if sum(got.values()) >= k:
            break
        if got[c] < sizes[c]:
            got[c] += 1
    return got


def device_order(rollout_id: str, devices: Iterable[tuple[str, bool]]) -> list[str]:
    """Online devices first, then a stable pseudo-random order (so waves do not follow id order)."""
    def key(d: tuple[str, bool]) -> tuple[bool, str]:
        return (not d[1], hashlib.sha256(f"{rollout_id}:{d[0]}".encode()).hexdigest())

    return [d for d, _ in sorted(devices, key=key)]


# --------------------------------------------------------------------------- device states and gates
class DeviceState(StrEnum):
    SCHEDULED = "scheduled"  # in a wave, not offered yet (rate limit)
    WAITING = "waiting"  # offered while offline: its clock starts when it returns
    OFFERED = "offered"
    INSTALLING = "installing"  # downloading, installing or checking health
    HEALTHY = "healthy"  # committed after its own health check: the only success
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"
    CANCELLED = "cancelled"


D = DeviceState
PENDING = (D.SCHEDULED, D.OFFERED, D.INSTALLING)
FAILURES = (D.FAILED, D.TIMED_OUT)

# what a device's update_report says → its state in the rollout
U = UpdateState
REPORT_STATES: dict[str, DeviceState] = {
    U.DOWNLOADING: D.INSTALLING, U.INSTALLING: D.INSTALLING, U.ACTIVATING: D.INSTALLING,
    U.HEALTH: D.INSTALLING, U.COMMITTED: D.HEALTHY, U.ROLLED_BACK: D.FAILED, U.FAILED: D.FAILED,
}


def state_after_report(current: DeviceState, reported: str, *, rolling_back: bool) -> DeviceState | None:
    """The new state for a report, or ``None`` to keep the current one."""
    if current in (D.ROLLING_BACK, D.ROLLED_BACK) or rolling_back:
        return D.ROLLED_BACK if reported == U.ROLLED_BACK else None
    if current == D.CANCELLED:
        return None
    new = REPORT_STATES.get(reported)
    if new is None or new == current:
        return None
    if current == D.HEALTHY and new == D.INSTALLING:
        return None  # a late progress report never undoes a success
    return new  # a late success after a timeout counts: the device did prove healthy


@dataclass
class ClassCounts:
    total: int = 0
    healthy: int = 0
    failed: int = 0
    pending: int = 0
    waiting: int = 0

    @property
    def reachable(self) -> int:
        return self.total - self.waiting


def count_states(rows: Iterable[tuple[str, str]]) -> dict[str, ClassCounts]:
    """(device class, device state) pairs → counts per class."""
    out: dict[str, ClassCounts] = {}
    for cls, state in rows:
        c = out.setdefault(cls, ClassCounts())
        c.total += 1
        if state == D.HEALTHY:
            c.healthy += 1
        elif state in FAILURES or state in (D.ROLLED_BACK, D.ROLLING_BACK):
            c.failed += 1
        elif state == D.WAITING:
            c.waiting += 1
        elif state in PENDING:
            c.pending += 1
    return out


@dataclass(frozen=True)
class GateDecision:
    verdict: Literal["wait", "soak", "advance", "fail"]
    reason: str
    success_at: float | None = None
    detail: dict[str, object] = field(default_factory=dict)


def evaluate_wave(counts: Mapping[str, ClassCounts], spec: WaveSpec, *, now: float,
                  success_at: float | None) -> GateDecision:
    """Judge one wave. Failure is checked first and per class; success needs the healthy share over
    the reachable devices of the whole wave, held through the soak time."""
    for cls, c in sorted(counts.items()):
        if c.reachable and c.failed / c.reachable > spec.error_threshold:
            return GateDecision("fail", f"class {cls}: {c.failed} of {c.reachable} devices failed or timed out"
                                f" (> {spec.error_threshold:.0%})", detail={"class": cls})
    reachable = sum(c.reachable for c in counts.values())
    healthy = sum(c.healthy for c in counts.values())
    if reachable == 0 or healthy / reachable < spec.success_threshold:
        pending = sum(c.pending for c in counts.values())
        if reachable and pending == 0:
            return GateDecision("fail", f"only {healthy} of {reachable} devices healthy and none still working"
                                f" (< {spec.success_threshold:.0%})")
        return GateDecision("wait", f"{healthy} of {reachable} reachable devices healthy")
    start = success_at if success_at is not None else now
    if now - start >= spec.soak_s:
        return GateDecision("advance", f"{healthy} of {reachable} healthy through {spec.soak_s:g} s of soak",
                            success_at=start)
    return GateDecision("soak", f"healthy; soaking until {start + spec.soak_s:.0f}", success_at=start)


def offers_allowed(rate_per_s: float, credit: float, elapsed_s: float, *, burst: float) -> tuple[int, float]:
    """Token bucket for new offers: how many may go now, and the credit left."""
    credit = min(burst, credit + max(0.0, elapsed_s) * rate_per_s)
    n = int(credit)
    return n, credit - n
