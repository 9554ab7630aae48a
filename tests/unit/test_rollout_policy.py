"""The rollout's pure decisions, as tables: transitions, roles, wave quotas, gates, report mapping."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from linecrew.server.errors import ForbiddenError, InvalidTransitionError
from linecrew.server.rollout_policy import (
    ClassCounts,
    DeviceState,
    Principal,
    Role,
    RolloutSpec,
    RolloutState,
    WaveSpec,
    allowed_actions,
    authorize,
    count_states,
    device_order,
    evaluate_wave,
    offers_allowed,
    state_after_report,
    transition,
    wave_quotas,
)
from linecrew.shared.db import _to_pg

S = RolloutState


@pytest.mark.parametrize(("state", "action", "expected"), [
    (S.WAITING_FOR_APPROVAL, "approve", S.READY),
    (S.READY, "start", S.RUNNING),
    (S.RUNNING, "pause", S.PAUSED),
    (S.PAUSED, "resume", S.RUNNING),
    (S.RUNNING, "abort", S.ABORTED),
    (S.WAITING_FOR_APPROVAL, "abort", S.ABORTED),
    (S.FINISHED, "rollback", S.ROLLED_BACK),
    (S.ABORTED, "rollback", S.ROLLED_BACK),
    (S.RUNNING, "gate_rollback", S.ROLLED_BACK),
    (S.RUNNING, "gate_pause", S.PAUSED),
    (S.RUNNING, "finish", S.FINISHED),
])
def test_allowed_transitions(state: RolloutState, action: str, expected: RolloutState) -> None:
    assert transition(state, action) == expected


@pytest.mark.parametrize(("state", "action"), [
    (S.WAITING_FOR_APPROVAL, "start"),  # never started unapproved
    (S.READY, "approve"),
    (S.PAUSED, "pause"),
    (S.RUNNING, "resume"),
    (S.FINISHED, "abort"),
    (S.ROLLED_BACK, "rollback"),
    (S.ROLLED_BACK, "resume"),
    (S.READY, "rollback"),
])
def test_refused_transitions(state: RolloutState, action: str) -> None:
    with pytest.raises(InvalidTransitionError):
        transition(state, action)


@pytest.mark.parametrize(("roles", "action", "allowed"), [
    ({Role.RELEASE_MANAGER}, "approve", True),
    ({Role.RELEASE_MANAGER}, "start", True),
    ({Role.ADMIN}, "approve", False),
    ({Role.ADMIN}, "start", False),
    ({Role.ADMIN}, "pause", True),
    ({Role.ADMIN}, "rollback", True),
    ({Role.PLANNER}, "pause", False),
    ({Role.EXPERT}, "create", False),
    ({Role.PLANNER}, "status", True),
])
def test_roles(roles: set[Role], action: str, allowed: bool) -> None:
    who = Principal("x", frozenset(roles))
    if allowed:
        authorize(who, action)
    else:
        with pytest.raises(ForbiddenError):
            authorize(who, action)


@pytest.mark.parametrize(("sizes", "waves", "expected"), [
    ({"a": 1000}, [1, 10, 50, 100], [{"a": 10}, {"a": 100}, {"a": 500}, {"a": 1000}]),
    ({"a": 90, "b": 10}, [1, 100], [{"a": 1, "b": 1}, {"a": 90, "b": 10}]),  # every class in the canary
    ({"a": 3}, [50, 100], [{"a": 2}, {"a": 3}]),
])
def test_percent_waves_are_stratified_by_class(sizes: dict[str, int], waves: list[float],
                                               expected: list[dict[str, int]]) -> None:
    assert wave_quotas(sizes, [WaveSpec(percent=p) for p in waves]) == expected


def test_count_waves_split_in_proportion_with_every_class_present() -> None:
    q = wave_quotas({"a": 80, "b": 20}, [WaveSpec(count=5), WaveSpec(count=50), WaveSpec(percent=100)])
    assert q == [{"a": 4, "b": 1}, {"a": 40, "b": 10}, {"a": 80, "b": 20}]


def test_last_wave_must_reach_everyone_and_a_wave_has_one_size() -> None:
    with pytest.raises(ValidationError):
        RolloutSpec(release="m", version=2, waves=[WaveSpec(percent=10)])
    with pytest.raises(ValidationError):
        WaveSpec(percent=10, count=5)


def test_device_order_puts_online_devices_first_and_is_stable() -> None:
    devices = [(f"d{i}", i % 3 == 0) for i in range(9)]
    order = device_order("r1", devices)
    assert set(order[:3]) == {"d0", "d3", "d6"}
    assert order == device_order("r1", list(reversed(devices)))
    assert order != device_order("r2", devices)


W = WaveSpec(percent=100, soak_s=60, success_threshold=0.9, error_threshold=0.1)


@pytest.mark.parametrize(("counts", "success_at", "now", "verdict"), [
    ({"a": ClassCounts(total=10, healthy=3, pending=7)}, None, 0, "wait"),
    ({"a": ClassCounts(total=10, healthy=9, pending=1)}, None, 0, "soak"),  # 90 %: soak starts
    ({"a": ClassCounts(total=10, healthy=9, pending=1)}, 0.0, 59, "soak"),
    ({"a": ClassCounts(total=10, healthy=9, pending=1)}, 0.0, 60, "advance"),
    ({"a": ClassCounts(total=10, healthy=8, failed=2)}, None, 0, "fail"),  # 20 % > 10 %
    ({"a": ClassCounts(total=10, healthy=9, failed=1)}, 0.0, 60, "advance"),  # 10 % is not more than 10 %
    # one class failing is not hidden by a healthy majority
    ({"a": ClassCounts(total=90, healthy=90), "b": ClassCounts(total=10, healthy=8, failed=2)}, None, 0, "fail"),
    # offline devices are neither successes nor failures: judged over the reachable ones
    ({"a": ClassCounts(total=10, healthy=7, waiting=3)}, 0.0, 60, "advance"),
    ({"a": ClassCounts(total=10, waiting=10)}, None, 0, "wait"),
    # everyone answered, no failure over the limit, but too few healthy: stop rather than hang
    ({"a": ClassCounts(total=20, healthy=17, failed=2, pending=0)}, None, 0, "fail"),
])
def test_gates(counts: dict[str, ClassCounts], success_at: float | None, now: float, verdict: str) -> None:
    assert evaluate_wave(counts, W, now=now, success_at=success_at).verdict == verdict


def test_count_states_maps_device_states_to_gate_counts() -> None:
    c = count_states([("a", "healthy"), ("a", "timed_out"), ("a", "failed"), ("a", "waiting"), ("a", "offered"),
                      ("b", "installing")])
    assert (c["a"].healthy, c["a"].failed, c["a"].waiting, c["a"].pending) == (1, 2, 1, 1)
    assert c["b"].pending == 1


D = DeviceState


@pytest.mark.parametrize(("current", "reported", "rolling_back", "expected"), [
    (D.OFFERED, "downloading", False, D.INSTALLING),
    (D.INSTALLING, "installing", False, None),
    (D.INSTALLING, "committed", False, D.HEALTHY),  # success only after the device's health check
    (D.INSTALLING, "rolled_back", False, D.FAILED),
    (D.TIMED_OUT, "committed", False, D.HEALTHY),  # a late success still counts
    (D.HEALTHY, "installing", False, None),
    (D.ROLLING_BACK, "rolled_back", False, D.ROLLED_BACK),
    (D.ROLLING_BACK, "committed", True, None),
    (D.CANCELLED, "committed", False, None),
])
def test_reports_move_device_states(current: DeviceState, reported: str, rolling_back: bool,
                                    expected: DeviceState | None) -> None:
    assert state_after_report(current, reported, rolling_back=rolling_back) == expected


def test_offer_rate_limit_is_a_token_bucket() -> None:
    assert offers_allowed(10, 0, 0.5, burst=10) == (5, 0.0)
    assert offers_allowed(10, 0, 100, burst=10) == (10, 0.0)
    n, left = offers_allowed(3, 0.5, 0.2, burst=3)
    assert n == 1 and left == pytest.approx(0.1)


@pytest.mark.parametrize(("sql", "pg"), [
    ("SELECT a FROM t WHERE b=? AND c LIKE 'x%'", "SELECT a FROM t WHERE b=%s AND c LIKE 'x%%'"),
    ("CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL, body BLOB, n INTEGER)",
     "CREATE TABLE t (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, at DOUBLE PRECISION, body BYTEA,"
     " n BIGINT)"),
    ("UPDATE t SET real_name=? WHERE id=?", "UPDATE t SET real_name=%s WHERE id=%s"),
])
def test_sql_is_translated_for_postgresql(sql: str, pg: str) -> None:
    assert _to_pg(sql) == pg


@pytest.mark.parametrize(("state", "roles", "actions"), [
    ("waiting_for_approval", {Role.RELEASE_MANAGER}, ["approve", "abort"]),
    ("waiting_for_approval", {Role.ADMIN}, ["abort"]),
    ("running", {Role.RELEASE_MANAGER}, ["pause", "abort", "rollback"]),
    ("paused", {Role.RELEASE_MANAGER}, ["resume", "abort", "rollback"]),
    ("paused", {Role.ADMIN}, ["abort", "rollback"]),
    ("finished", {Role.ADMIN, Role.RELEASE_MANAGER}, ["rollback"]),
    ("rolled_back", set(Role), []),
    ("running", {Role.PLANNER, Role.EXPERT}, []),
])
def test_allowed_actions_need_both_role_and_state(state: str, roles: set[Role], actions: list[str]) -> None:
    assert allowed_actions(state, Principal("p", frozenset(roles))) == actions


def test_nobody_approves_a_rollout_they_created() -> None:
    from linecrew.server.rollout_policy import ForbiddenError, check_approver

    rita = Principal("rita", frozenset({Role.RELEASE_MANAGER}))
    sam = Principal("sam", frozenset({Role.RELEASE_MANAGER}))
    assert "approve" not in allowed_actions("waiting_for_approval", rita, created_by="rita")
    assert "approve" in allowed_actions("waiting_for_approval", sam, created_by="rita")
    with pytest.raises(ForbiddenError, match="two-person rule"):
        check_approver("rita", rita)
    check_approver("rita", sam)
