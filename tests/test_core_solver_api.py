"""The solver API itself, on the random-search reference solver."""

from __future__ import annotations

import pytest

from moeopt.registry import list_solvers, make_solver
from moeopt.solver import Budget, SolutionStatus
from moeopt.testing import SolverConformance, small_problem


class TestRandomConformance(SolverConformance):
    @pytest.fixture
    def solver_name(self):
        return "random"


def test_registry_lists_broken_entries_without_crashing():
    entries = {e.name: e for e in list_solvers()}
    assert entries["random"].available
    for e in entries.values():
        assert e.available or e.reason


def test_unknown_option_is_a_clear_error():
    from moeopt.errors import InputError

    with pytest.raises(InputError, match="unknown option"):
        make_solver("random", seed=0, temperature=3)


def test_random_finds_feasible_on_loose_problem():
    result = make_solver("random", seed=3).solve(small_problem(time_limit_s=60), Budget(evaluations=300))
    assert result.solution_status == SolutionStatus.FEASIBLE
    assert result.evaluation.feasible
    costs = [t.cost_usd for t in result.trajectory]
    assert costs == sorted(costs, reverse=True)


def test_every_builtin_solver_imports_and_is_available():
    from moeopt.registry import BUILTIN_SOLVERS

    entries = {e.name: e for e in list_solvers()}
    for name in BUILTIN_SOLVERS:
        assert entries[name].available, (name, entries[name].reason)
        assert entries[name].solver_class.name == name
