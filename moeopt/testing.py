"""Conformance kit for solvers, shipped with the package (after Optuna's ``pytest_samplers``).

A plugin's test module subclasses :class:`SolverConformance` and supplies the ``solver_name``
fixture (a name registered in the ``moeopt.solvers`` entry-point group)::

    import pytest
    from moeopt.testing import SolverConformance

    class TestMySolver(SolverConformance):
        @pytest.fixture
        def solver_name(self):
            return "my-solver"

The checks: same seed gives the same plan; evaluation and time budgets hold; the returned plan
is feasible whenever a feasible plan was seen; NaN/inf evaluations do not become the answer;
an infeasible problem is reported as such (no feasible solution, the binding constraint named).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from moeopt.evaluate import EvaluationBatch, evaluate_batch
from moeopt.plan import PlanArrays
from moeopt.problem import DeploymentProblem, problem_from_dict
from moeopt.registry import make_solver
from moeopt.solver import Budget, SolutionStatus, SolveResult, SolverStatus


def small_problem(time_limit_s: float = 30.0, name: str = "conformance") -> DeploymentProblem:
    """3 MoE layers x 4 experts, BERT-sized experts: small enough for every solver."""
    return problem_from_dict(
        {
            "name": name,
            "model": {
                "moe_layers": 3, "experts_per_layer": 4, "top_k": 1, "hidden_size": 768,
                "expert_ffn_size": 3072, "nonmoe_params_per_layer": 2_362_368,
                "embedding_params": 23_837_184,
            },
            "workload": {"tokens_per_batch": 4096},
            "slo": {"time_limit_s": time_limit_s},
            "popularity": {"source": "zipf", "exponent": 1.0, "batches": 3, "seed": 11},
            "deployment": {"memory_menu": [768, 1536, 3072], "max_replicas": 4},
        },
        f"conformance:{name}",
    )


def tiny_problem(time_limit_s: float = 30.0, name: str = "conformance-tiny") -> DeploymentProblem:
    """1 MoE layer x 2 experts, 2 memory sizes, 2 replicas: exhaustive search covers it."""
    return problem_from_dict(
        {
            "name": name,
            "model": {"moe_layers": 1, "experts_per_layer": 2, "top_k": 1, "hidden_size": 768,
                      "expert_ffn_size": 3072, "nonmoe_params_per_layer": 2_362_368},
            "workload": {"tokens_per_batch": 2048},
            "slo": {"time_limit_s": time_limit_s},
            "popularity": {"source": "zipf", "exponent": 1.0, "batches": 2, "seed": 5},
            "deployment": {"memory_menu": [768, 3072], "max_replicas": 2},
        },
        f"conformance:{name}",
    )


def nan_evaluator(problem: DeploymentProblem, plans: PlanArrays) -> EvaluationBatch:
    """The real evaluator, but every plan with 3,072 MB somewhere costs NaN or inf."""
    batch = evaluate_batch(problem, plans)
    poisoned = (np.asarray(plans.memory_mb) >= 3072).any(axis=(1, 2))
    cost = np.where(poisoned, np.where(np.arange(len(batch)) % 2 == 0, np.nan, np.inf), batch.cost_usd)
    return EvaluationBatch(
        cost, batch.cost_gb_s, batch.latency_s, batch.latency_mean_s, batch.layer_latency_s,
        batch.violations, batch.cost_breakdown_usd, batch.tokens_per_batch,
    )


def _plan_key(result: SolveResult) -> Any:
    return None if result.plan is None else result.plan.to_dict()["layers"]


class SolverConformance:
    """Subclass and provide the ``solver_name`` fixture; override ``solver_options`` if needed."""

    budget = Budget(evaluations=400, seconds=60.0)

    @pytest.fixture
    def solver_options(self) -> dict[str, Any]:
        return {}

    @pytest.fixture
    def problem(self) -> DeploymentProblem:
        return small_problem()

    @pytest.fixture
    def impossible_problem(self) -> DeploymentProblem:
        """Same shape, a time limit no plan meets."""
        return small_problem(time_limit_s=0.5, name="impossible")

    def _solve(self, name: str, options: dict[str, Any], problem: DeploymentProblem, seed: int = 0,
               budget: Budget | None = None, **kw: Any) -> SolveResult:
        return make_solver(name, seed=seed, **options).solve(problem, budget or self.budget, **kw)

    def test_same_seed_same_plan(self, solver_name, solver_options, problem):
        a = self._solve(solver_name, solver_options, problem, seed=7)
        b = self._solve(solver_name, solver_options, problem, seed=7)
        assert a.solver_status != SolverStatus.ERROR, a.message
        assert _plan_key(a) == _plan_key(b)
        assert a.solution_status == b.solution_status

    def test_evaluation_budget_holds(self, solver_name, solver_options, problem):
        result = self._solve(solver_name, solver_options, problem, budget=Budget(evaluations=25))
        assert result.solver_status != SolverStatus.ERROR, result.message
        assert result.evaluations <= 25

    def test_time_budget_holds(self, solver_name, solver_options, problem):
        result = self._solve(solver_name, solver_options, problem, budget=Budget(seconds=2.0))
        assert result.solver_status != SolverStatus.ERROR, result.message
        assert result.wall_seconds <= 2.0 + 3.0  # one in-flight step may finish past the limit

    def test_feasible_whenever_feasible_seen(self, solver_name, solver_options, problem):
        result = self._solve(solver_name, solver_options, problem)
        assert result.solver_status != SolverStatus.ERROR, result.message
        if result.trajectory:  # a feasible plan was seen
            assert result.solution_status != SolutionStatus.NONE
            assert result.evaluation is not None and result.evaluation.feasible
            assert result.cost_usd == pytest.approx(min(t.cost_usd for t in result.trajectory))

    def test_nan_and_inf_survive(self, solver_name, solver_options, problem):
        result = self._solve(solver_name, solver_options, problem, evaluator=nan_evaluator)
        assert result.solver_status != SolverStatus.ERROR, result.message
        if result.evaluation is not None and result.solution_status != SolutionStatus.NONE:
            assert math.isfinite(result.cost_usd)
            if result.plan is not None:  # "no-plan" baselines (cpu-cluster, oracle) have none
                mems = [f.memory_mb for layer in result.plan.layers for f in layer.functions]
                assert max(mems) < 3072  # a NaN/inf-priced plan is never the answer

    def test_infeasible_problem_reported(self, solver_name, solver_options, impossible_problem):
        result = self._solve(
            solver_name, solver_options, impossible_problem, budget=Budget(evaluations=60, seconds=30)
        )
        assert result.solver_status != SolverStatus.ERROR, result.message
        assert result.solution_status == SolutionStatus.NONE
        assert "time_limit" in result.binding_constraints
