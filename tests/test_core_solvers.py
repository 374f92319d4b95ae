"""Constructive solvers and deployment baselines: conformance, and what each must return."""

from __future__ import annotations

import pytest

from moeopt.builtin_problems import builtin_problem
from moeopt.registry import make_solver
from moeopt.solver import Budget, SolutionStatus, SolverStatus
from moeopt.testing import SolverConformance, small_problem


@pytest.mark.parametrize("name", ["greedy", "lambdaml", "eplb", "oracle"])
class TestBuiltinConformance(SolverConformance):
    @pytest.fixture
    def solver_name(self, name):
        return name


class TestCpuClusterConformance(SolverConformance):
    @pytest.fixture
    def solver_name(self):
        return "cpu-cluster"

    @pytest.fixture
    def impossible_problem(self):
        return small_problem(time_limit_s=1e-6, name="impossible")


def test_greedy_feasible_on_every_paper_problem():
    for name in ("bert-moe-4", "bert-moe-16", "gpt2-moe-4", "bert2bert-moe-4", "switch-base-128"):
        result = make_solver("greedy").solve(builtin_problem(name))
        assert result.solution_status == SolutionStatus.FEASIBLE, (name, result.message)
        assert result.evaluation.feasible
        assert result.plan.predicted["cost_usd"] == pytest.approx(result.cost_usd)


def test_greedy_ends_feasible_when_its_speed_up_steps_cannot_reach_the_slo_in_budget():
    """Mixtral's 32 layers start far over the limit; 20,000 evaluations of speed-up steps do
    not reach it (the full-suite budget), so the shared-bottleneck fallback must carry it."""
    result = make_solver("greedy").solve(builtin_problem("mixtral-8x7b"), Budget(evaluations=20_000))
    assert result.solution_status == SolutionStatus.FEASIBLE, result.message
    assert result.evaluations <= 20_000
    best_known = 0.338139  # ilp in 60 s with the current cost model (best found, not proven)
    assert result.cost_usd < 1.01 * best_known


def test_greedy_beats_lambdaml_cost_on_bert_moe_4():
    problem = builtin_problem("bert-moe-4")
    greedy = make_solver("greedy").solve(problem)
    lambdaml = make_solver("lambdaml").solve(problem)
    # 3,008 MB is not on the paper's menu: LambdaML takes the nearest option, 3,072 MB.
    assert lambdaml.plan.layers[0].functions[0].memory_mb == 3072
    assert lambdaml.solution_status == SolutionStatus.NONE  # too slow for the SLO
    assert greedy.evaluation.cost_usd < lambdaml.evaluation.cost_usd


def test_eplb_replicates_heavy_and_packs_cold_experts():
    problem = builtin_problem("switch-base-128")
    plan = make_solver("eplb").solve(problem).plan
    layer = plan.layers[0]
    assert sorted(e for f in layer.functions for e in f.experts) == list(range(128))
    assert any(f.replicas > 1 for f in layer.functions)
    assert any(len(f.experts) > 1 for f in layer.functions)


def test_oracle_is_a_bound_for_static_plans():
    problem = small_problem(time_limit_s=20)
    oracle = make_solver("oracle").solve(problem)
    greedy = make_solver("greedy").solve(problem)
    assert oracle.solver_status == SolverStatus.COMPLETED and oracle.plan is None
    assert oracle.evaluation.cost_usd <= greedy.evaluation.cost_usd * 1.0001


def test_objectives_change_the_answer():
    problem = small_problem(time_limit_s=60)
    cheap = make_solver("random", seed=1).solve(problem)
    fast = make_solver("random", seed=1, objective="fastest").solve(problem)
    assert fast.evaluation.latency_s <= cheap.evaluation.latency_s
    assert cheap.evaluation.cost_usd <= fast.evaluation.cost_usd
