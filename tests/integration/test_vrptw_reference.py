"""The dispatch benchmark's reference solver (PyVRP) through the same instance model and evaluator, and the
25/50-customer instances taken from the 100-customer files."""

from __future__ import annotations

import pytest

from linecrew.server.planner.vrptw import evaluate_routes, parse_vrplib
from linecrew.server.planner.vrptw_pyvrp import solve_vrptw_pyvrp
from tests.conftest import SHARED_DATA

DISPATCH = SHARED_DATA / "dispatch"
pytestmark = pytest.mark.skipif(not DISPATCH.exists(), reason="../shared/data/dispatch missing")


def test_the_first_25_customers_of_c101_are_solomons_25_customer_instance() -> None:
    small, big = parse_vrplib(DISPATCH / "C101.25.3.vrptw"), parse_vrplib(DISPATCH / "C101.100.10.vrptw")
    sub = big.first(25)
    assert sub.coords == small.coords and sub.windows == small.windows and sub.demand == small.demand
    assert sub.name == "C101.25"


def test_pyvrp_solves_an_instance_our_evaluator_accepts() -> None:
    inst = parse_vrplib(DISPATCH / "C101.25.3.vrptw")
    r = solve_vrptw_pyvrp(inst, time_limit_s=5)
    assert r.objective is not None and not r.violations and not r.unassigned
    assert evaluate_routes(inst, r.routes) == (r.objective, [])
    assert r.objective <= 191.3 * 1.01  # Solomon's best known
