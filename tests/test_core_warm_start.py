"""The warm-start hook: Solver.suggest prices the plans first, counted, and hands them over."""

from __future__ import annotations

import doctest
import importlib

import numpy as np
import pytest

from moeopt.errors import InputError
from moeopt.evaluate import evaluate_batch
from moeopt.plan import DeploymentPlan, PlanArrays
from moeopt.problem import load_problem
from moeopt.registry import make_solver
from moeopt.solver import AskTellSolver, Budget, Solver
from moeopt.testing import small_problem


class Recorder(Solver):
    """Prices nothing itself: records what the hook handed over."""

    name = "recorder"

    def _solve(self, problem, tracker):
        self.seen = tracker.suggested
        self.evaluations_at_start = tracker.evaluations


class TellRecorder(AskTellSolver):
    name = "tell-recorder"

    def _start(self, space):
        self.told = []

    def _ask(self, n):
        raise AssertionError("the budget is used up by the suggestions")

    def _tell(self, x, score, violation):
        self.told.append((x, score, violation))


def _uniform(problem, memory_mb, replicas=1):
    return DeploymentPlan.uniform(problem, memory_mb, replicas, method="storage")


def test_suggested_plans_are_priced_first_and_counted():
    problem = small_problem()
    plans = [_uniform(problem, m) for m in (768, 1536, 3072)]
    calls = []

    def counting(problem, arrays):
        calls.append(arrays.size)
        return evaluate_batch(problem, arrays)

    solver = Recorder(seed=0).suggest(*plans)
    result = solver.solve(problem, Budget(evaluations=10), evaluator=counting)
    assert calls == [3] and result.evaluations == 3 == solver.evaluations_at_start
    assert len(solver.seen) == 3
    expected = evaluate_batch(problem, PlanArrays.from_plans(plans, problem))
    np.testing.assert_allclose(solver.seen.batch.cost_usd, expected.cost_usd)
    best = min(c for c, ok in zip(expected.cost_usd, expected.feasible, strict=True) if ok)
    assert result.cost_usd == pytest.approx(best)  # never worse than the best suggestion


def test_budget_cuts_the_suggestions_and_ask_tell_hears_them():
    problem = small_problem()
    plans = [_uniform(problem, m, g) for m in (768, 1536, 3072) for g in (1, 2)]
    solver = TellRecorder(seed=0).suggest(*plans)
    result = solver.solve(problem, Budget(evaluations=4))
    assert result.evaluations == 4
    (x, score, violation), = solver.told
    assert len(x) == len(score) == len(violation) == 4


def test_a_plan_for_another_problem_is_a_clear_error():
    other = _uniform(load_problem("bert-moe-4"), 1536)
    with pytest.raises(InputError, match="suggested plan 0"):
        Recorder(seed=0).suggest(other).solve(small_problem(), Budget(evaluations=5))
    with pytest.raises(TypeError):
        Recorder(seed=0).suggest({"layers": []})  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["bayes-egreedy", "nevergrad", "optuna-tpe", "random"])
def test_searchers_never_end_worse_than_what_they_were_given(name):
    problem = load_problem("bert-moe-4")
    start = make_solver("greedy").solve(problem).plan
    result = make_solver(name, seed=0).suggest(start).solve(problem, Budget(evaluations=48))
    assert result.cost_usd <= start.predicted["cost_usd"] * (1 + 1e-12)


def test_the_hook_docstring_example_runs():
    finder = doctest.DocTestFinder()
    tests = finder.find(Solver.suggest, "Solver.suggest", globs={"Budget": Budget})
    runner = doctest.DocTestRunner()
    for t in tests:
        runner.run(t)
    assert runner.failures == 0 and runner.tries > 0


@pytest.mark.parametrize(
    "module", ["solvers._bayesopt", "solvers.layer_curves", "solvers.bayes", "solvers.optuna_solver"]
)
def test_module_examples_run(module):
    result = doctest.testmod(importlib.import_module(module))
    assert result.failed == 0 and result.attempted > 0
