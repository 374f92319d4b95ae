"""Optuna solvers: conformance, the compact encoding, warm start and constraints."""

from __future__ import annotations

import numpy as np
import pytest

from moeopt.problem import load_problem
from moeopt.registry import make_solver
from moeopt.solver import Budget, SolutionStatus, SolverStatus
from moeopt.testing import SolverConformance, small_problem
from solvers.layer_curves import LayerCurves
from solvers.optuna_solver import _Encoding

pytest.importorskip("optuna")


class TestOptunaTPEConformance(SolverConformance):
    """TPE's ask grows with the trials (and on the kit's 3-layer problem most asks repeat a
    known plan, told without pricing): 150 evaluations keep the kit in seconds."""

    budget = Budget(evaluations=150, seconds=60.0)

    @pytest.fixture
    def solver_name(self):
        return "optuna-tpe"


class TestOptunaCmaEsConformance(SolverConformance):
    @pytest.fixture
    def solver_name(self):
        return "optuna-cmaes"


class TestOptunaGPConformance(SolverConformance):
    """GPSampler re-fits per ask (about half a second): a smaller budget keeps the kit fast."""

    budget = Budget(evaluations=24, seconds=60.0)

    @pytest.fixture
    def solver_name(self):
        return "optuna-gp"

    @pytest.fixture
    def solver_options(self):
        return {"design_batch": 6}  # a 12-plan warm start, then a dozen GP asks


@pytest.mark.parametrize("continuous", [False, True])
def test_encoding_round_trips_within_reach(continuous):
    curves = LayerCurves.of(small_problem())
    enc = _Encoding(curves, reach=3, continuous=continuous)
    rng = np.random.default_rng(0)
    for _ in range(50):
        base = enc.path[rng.integers(len(enc.path))]
        k = curves.clip(base + rng.integers(-3, 4, size=base.shape))
        assert (enc.positions(enc.params(k)) == k).all()


def test_warm_start_is_the_walk_to_the_limit_and_counted():
    problem = load_problem("bert-moe-4")
    seen = []

    def counting(problem, plans):
        from moeopt.evaluate import evaluate_batch

        seen.append(plans.size)
        return evaluate_batch(problem, plans)

    result = make_solver("optuna-cmaes", seed=0).solve(problem, Budget(evaluations=40), evaluator=counting)
    assert sum(seen) == result.evaluations == 40
    assert result.solution_status == SolutionStatus.FEASIBLE


def test_tpe_sets_the_violation_constraint_on_every_told_trial(monkeypatch):
    import optuna

    told = []
    original = optuna.trial.Trial.set_constraint

    def spy(self, key, value):
        told.append((key, value))
        return original(self, key, value)

    monkeypatch.setattr(optuna.trial.Trial, "set_constraint", spy)
    result = make_solver("optuna-tpe", seed=0, batch_size=4).solve(small_problem(), Budget(evaluations=60))
    assert result.solver_status != SolverStatus.ERROR, result.message
    assert told and {k for k, _ in told} == {"violation"}
    assert any(v > 0 for _, v in told) or all(v <= 0 for _, v in told)


def test_suggested_plan_is_priced_once_and_bounds_the_result():
    problem = small_problem()
    start = make_solver("greedy").solve(problem).plan
    priced = []

    def recording(problem, plans):
        from moeopt.evaluate import evaluate_batch

        priced.extend(plans.plan(i, problem).to_dict()["layers"] == start.to_dict()["layers"] for i in range(plans.size))
        return evaluate_batch(problem, plans)

    result = make_solver("optuna-tpe", seed=1).suggest(start).solve(problem, Budget(evaluations=50), evaluator=recording)
    assert sum(priced) == 1  # the base priced it; the study was told, not asked to price it again
    assert result.cost_usd <= start.predicted["cost_usd"] + 1e-15
