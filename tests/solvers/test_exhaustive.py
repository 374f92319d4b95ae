"""Exhaustive search: conformance on a tiny problem, the size guard, and the proof it gives."""

from __future__ import annotations

import pytest

from moeopt.builtin_problems import builtin_problem
from moeopt.errors import InputError
from moeopt.registry import make_solver
from moeopt.solver import Budget, SolutionStatus, SolverStatus
from moeopt.testing import SolverConformance, tiny_problem


class TestExhaustiveConformance(SolverConformance):
    @pytest.fixture
    def solver_name(self):
        return "exhaustive"

    @pytest.fixture
    def problem(self):
        return tiny_problem()

    @pytest.fixture
    def impossible_problem(self):
        return tiny_problem(time_limit_s=0.5, name="impossible")


def test_refuses_large_spaces_naming_size_and_limit():
    with pytest.raises(InputError, match=r"more than the limit of 1,000,000"):
        make_solver("exhaustive").solve(builtin_problem("bert-moe-4"))


def test_full_enumeration_proves_the_optimum():
    result = make_solver("exhaustive").solve(tiny_problem(), Budget(evaluations=10**6))
    assert result.solver_status == SolverStatus.OPTIMAL
    assert result.solution_status == SolutionStatus.PROVEN_OPTIMAL
    assert result.evaluations == 432  # 2^2 memories x 2^2 replicas x 3 methods x 9 degrees
    assert result.lower_bound_usd == result.cost_usd


def test_infeasible_when_nothing_fits():
    result = make_solver("exhaustive").solve(tiny_problem(time_limit_s=0.9), Budget(evaluations=10**6))
    assert result.solver_status == SolverStatus.INFEASIBLE
    assert result.binding_constraints == ("time_limit",)
