"""Nevergrad solvers: conformance, constraint violations told to Nevergrad, feasibility."""

from __future__ import annotations

import numpy as np
import pytest

from moeopt.evaluate import VIOLATIONS
from moeopt.problem import load_problem
from moeopt.registry import make_solver
from moeopt.solver import Budget, SolutionStatus, SolverStatus
from moeopt.testing import SolverConformance, small_problem
from solvers.nevergrad_solver import violation_vector

VARIANTS = ("nevergrad", "nevergrad-cma", "nevergrad-de", "nevergrad-oneplusone", "nevergrad-pso")


@pytest.fixture(params=VARIANTS)
def _variant(request):
    return request.param


class TestNevergradConformance(SolverConformance):
    """Every registered Nevergrad variant passes the shipped kit."""

    @pytest.fixture
    def solver_name(self, _variant):
        return _variant


@pytest.mark.parametrize("name", VARIANTS)
def test_variant_same_seed_same_plan_and_feasible(name):
    problem = small_problem()
    a = make_solver(name, seed=3).solve(problem, Budget(evaluations=200))
    b = make_solver(name, seed=3).solve(problem, Budget(evaluations=200))
    assert a.solver_status == SolverStatus.BUDGET, a.message
    assert a.evaluations == 200
    assert a.plan is not None and b.plan is not None
    assert a.plan.to_dict()["layers"] == b.plan.to_dict()["layers"]
    assert a.solution_status == SolutionStatus.FEASIBLE


def test_constraint_violations_are_named_and_positive_parts():
    violations = {k: np.array([-1.0, 2.0]) for k in VIOLATIONS}
    violations["time_limit"] = np.array([np.nan, 0.5])
    v = violation_vector(violations, small_problem())
    assert v.shape == (2, len(VIOLATIONS))
    assert (v >= 0).all() and np.isfinite(v).all()
    assert v[0, VIOLATIONS.index("memory")] == 0.0  # satisfied constraints tell 0
    assert v[0, VIOLATIONS.index("time_limit")] > 0  # NaN counts as broken


def test_nevergrad_told_the_violations(monkeypatch):
    import nevergrad as ng

    told = []
    original = ng.optimizers.base.Optimizer.tell

    def spy(self, candidate, loss, constraint_violation=None, penalty_style=None):
        told.append((loss, constraint_violation))
        return original(self, candidate, loss, constraint_violation, penalty_style)

    monkeypatch.setattr(ng.optimizers.base.Optimizer, "tell", spy)
    make_solver("nevergrad-oneplusone", seed=0).solve(small_problem(), Budget(evaluations=64))
    assert len(told) == 64
    assert all(len(cv) == len(VIOLATIONS) for _, cv in told)
    assert any(sum(cv) > 0 for _, cv in told) and all(np.isfinite(loss) for loss, _ in told)


@pytest.mark.parametrize("name", VARIANTS)
def test_feasible_on_bert_moe_4(name):
    result = make_solver(name, seed=0).solve(load_problem("bert-moe-4"), Budget(evaluations=600))
    assert result.solution_status == SolutionStatus.FEASIBLE, result.message


def test_cma_goes_diagonal_on_large_spaces_and_says_so():
    """Full-covariance CMA on deepseek-v3's 29,812 dimensions would need a 7 GB matrix."""
    problem = load_problem("deepseek-v3")
    result = make_solver("nevergrad-cma", seed=0).solve(problem, Budget(evaluations=64))
    assert result.evaluations == 64
    assert "DiagonalCMA" in result.message
    small = make_solver("nevergrad-cma", seed=0).solve(small_problem(), Budget(evaluations=64))
    assert "DiagonalCMA" not in small.message
