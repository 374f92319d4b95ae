"""Conformance kit for solvers, shipped with the package (after Optuna's ``pytest_samplers``).

A plugin's test module subclasses :class:`SolverConformance` and supplies the solver itself,
a class or a factory ``(seed=..., **options) -> Solver``; nothing has to be installed::

    import pytest
    from moeopt.testing import SolverConformance
    from my_package import MySolver

    class TestMySolver(SolverConformance):
        @pytest.fixture
        def solver(self):
            return MySolver

(A registered solver can be named instead: a ``solver_name`` fixture returning its name.)

What it checks, on a small problem and on five tiny ones (:data:`KIT_PROBLEMS`: one layer, top-2
routing, cold experts worth grouping, loads no replica count divides, a tight time limit):

- same seed, same plan; and, unless the solver is tagged ``deterministic``, different seeds
  can price different plans (a seeded solver that ignores its seed fails);
- the evaluation and seconds budgets hold;
- every plan priced is counted: the kit's evaluator is the only way to price a plan during a
  solve (``moeopt.evaluate.evaluate_batch`` and every module's reference to it are swapped
  for a guard that counts), and the plans priced must equal ``result.evaluations``;
- the returned plan is feasible whenever a feasible plan was seen, and it re-prices (from its
  ``DeploymentPlan`` form) to the cost the result reports;
- a reported ``lower_bound_usd`` is never above the solver's own cost, nor above the optimum
  of the tiny problem's plan space found by exhaustive search (the referee);
- NaN/inf evaluations never become the answer;
- an impossible problem is reported as such (no feasible solution, ``time_limit`` binding).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import math
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from moeopt.evaluate import EvaluationBatch, evaluate, evaluate_batch
from moeopt.plan import PlanArrays
from moeopt.problem import DeploymentProblem, problem_from_dict
from moeopt.solver import Budget, SolutionStatus, Solver, SolveResult, SolverStatus
from moeopt.space import PlanSpace

SolverFactory = Callable[..., Solver]
TOLERANCE = 1e-9  # relative slack for float noise in cost comparisons

_BERT_EXPERT = {"hidden_size": 768, "expert_ffn_size": 3072, "nonmoe_params_per_layer": 2_362_368}


def small_problem(time_limit_s: float = 30.0, name: str = "conformance") -> DeploymentProblem:
    """3 MoE layers x 4 experts, BERT-sized experts: small enough for every solver."""
    return problem_from_dict(
        {
            "name": name,
            "model": {
                "moe_layers": 3, "experts_per_layer": 4, "top_k": 1, **_BERT_EXPERT,
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
            "model": {"moe_layers": 1, "experts_per_layer": 2, "top_k": 1, **_BERT_EXPERT},
            "workload": {"tokens_per_batch": 2048},
            "slo": {"time_limit_s": time_limit_s},
            "popularity": {"source": "zipf", "exponent": 1.0, "batches": 2, "seed": 5},
            "deployment": {"memory_menu": [768, 3072], "max_replicas": 2},
        },
        f"conformance:{name}",
    )


def top2_problem() -> DeploymentProblem:
    """1 layer x 3 experts, top-2 routing: every token visits two experts."""
    return problem_from_dict(
        {
            "name": "conformance-top2",
            "model": {"moe_layers": 1, "experts_per_layer": 3, "top_k": 2, **_BERT_EXPERT},
            "workload": {"tokens_per_batch": 2048},
            "slo": {"time_limit_s": 30.0},
            "popularity": {"source": "zipf", "exponent": 0.8, "batches": 2, "seed": 3},
            "deployment": {"memory_menu": [768, 3072], "max_replicas": 2},
        },
        "conformance:top2",
    )


def cold_experts_problem() -> DeploymentProblem:
    """1 layer x 4 experts, two of them cold (no token on any batch): grouping them in one
    function is worth it, and a solver must still deploy every expert."""
    return problem_from_dict(
        {
            "name": "conformance-cold",
            "model": {"moe_layers": 1, "experts_per_layer": 4, "top_k": 1, **_BERT_EXPERT},
            "workload": {"tokens_per_batch": 2048},
            "slo": {"time_limit_s": 30.0},
            "popularity": {"source": "loads", "loads": [[[1500, 548, 0, 0]], [[1200, 848, 0, 0]]]},
            "deployment": {"memory_menu": [768, 3072], "max_replicas": 2},
        },
        "conformance:cold",
    )


def odd_loads_problem() -> DeploymentProblem:
    """1 layer x 2 experts, odd loads and up to 3 replicas: no replica count divides a load, so
    tokens per replica round up (ceil), never down."""
    return problem_from_dict(
        {
            "name": "conformance-odd",
            "model": {"moe_layers": 1, "experts_per_layer": 2, "top_k": 1, **_BERT_EXPERT},
            "workload": {"tokens_per_batch": 2047},
            "slo": {"time_limit_s": 30.0},
            "popularity": {"source": "loads", "loads": [[[1361, 686]], [[1025, 1022]]]},
            "deployment": {"memory_menu": [768, 3072], "max_replicas": 3},
        },
        "conformance:odd",
    )


def tight_problem() -> DeploymentProblem:
    """The tiny problem with a time limit its cheapest options break: a solver must buy speed."""
    return tiny_problem(time_limit_s=1.3, name="conformance-tight")


KIT_PROBLEMS: dict[str, Callable[[], DeploymentProblem]] = {
    "tiny": tiny_problem,
    "top2": top2_problem,
    "cold": cold_experts_problem,
    "odd": odd_loads_problem,
    "tight": tight_problem,
}


@functools.cache
def referee_optimum(name: str) -> float:
    """The cheapest feasible cost over every plan of ``PlanSpace`` of ``KIT_PROBLEMS[name]``
    (inf: none is feasible), by pricing all of them: what no lower bound may exceed."""
    problem = KIT_PROBLEMS[name]()
    space = PlanSpace.of(problem)
    upper = space.upper
    total = int(np.prod(upper))
    best = math.inf
    for start in range(0, total, 8192):
        index = np.arange(start, min(start + 8192, total), dtype=np.int64)
        digits = np.zeros((len(index), len(upper)), dtype=np.int64)
        rest = index
        for d in range(len(upper) - 1, -1, -1):
            rest, digits[:, d] = np.divmod(rest, upper[d])
        batch = evaluate_batch(problem, space.decode(digits))
        cost = np.where(batch.feasible, batch.cost_usd, np.inf)
        best = min(best, float(cost.min()))
    return best


def nan_evaluator(problem: DeploymentProblem, plans: PlanArrays) -> EvaluationBatch:
    """The real evaluator, but every plan with 3,072 MB somewhere costs NaN or inf."""
    batch = evaluate_batch(problem, plans)
    poisoned = (np.asarray(plans.memory_mb) >= 3072).any(axis=(1, 2))
    cost = np.where(poisoned, np.where(np.arange(len(batch)) % 2 == 0, np.nan, np.inf), batch.cost_usd)
    return EvaluationBatch(
        cost, batch.cost_gb_s, batch.latency_s, batch.latency_mean_s, batch.layer_latency_s,
        batch.violations, batch.cost_breakdown_usd, batch.tokens_per_batch,
    )


@dataclass
class PricingLog:
    """What the kit saw priced during one solve."""

    through_tracker: int = 0  # plans priced by the evaluator the tracker was given
    around_tracker: int = 0  # plans priced by calling the evaluator some other way
    digest: Any = field(default_factory=hashlib.sha256)  # of every plan priced, in order
    cheapest_feasible: float = math.inf  # on the problem under test (not on a sub-problem)
    fingerprint: str | None = None  # of the problem under test

    def record(self, problem: DeploymentProblem, plans: PlanArrays, batch: EvaluationBatch) -> None:
        for a in (plans.memory_mb, plans.replicas, plans.method, plans.pipeline_degree,
                  plans.group, plans.arm64):
            if a is not None:
                self.digest.update(np.ascontiguousarray(a, dtype=float).tobytes())
        ok = batch.feasible & np.isfinite(batch.cost_usd)
        if ok.any() and problem.fingerprint == self.fingerprint:
            self.cheapest_feasible = min(self.cheapest_feasible, float(batch.cost_usd[ok].min()))


@contextlib.contextmanager
def tracker_only_pricing(log: PricingLog) -> Iterator[None]:
    """Swap ``moeopt.evaluate.evaluate_batch`` and every loaded module's reference to it for a
    guard that counts what it prices in ``log.around_tracker``; restored on exit."""
    original = evaluate_batch

    def around(problem: DeploymentProblem, plans: PlanArrays) -> EvaluationBatch:
        log.around_tracker += plans.size
        return original(problem, plans)

    swapped = []
    for module in list(sys.modules.values()):
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict) or namespace is globals():  # the kit's own pricing
            continue
        for attr, value in list(namespace.items()):
            if value is original:
                swapped.append((namespace, attr))
                namespace[attr] = around
    try:
        yield
    finally:
        for namespace, attr in swapped:
            namespace[attr] = original
        sys.modules["moeopt.evaluate"].evaluate_batch = original


def counting(log: PricingLog, inner: Callable[[DeploymentProblem, PlanArrays], EvaluationBatch] = evaluate_batch,
             ) -> Callable[[DeploymentProblem, PlanArrays], EvaluationBatch]:
    """An evaluator for ``Solver.solve`` that records every plan it prices in ``log``."""

    def priced(problem: DeploymentProblem, plans: PlanArrays) -> EvaluationBatch:
        log.through_tracker += plans.size
        batch = inner(problem, plans)
        log.record(problem, plans, batch)
        return batch

    return priced


def _plan_key(result: SolveResult) -> Any:
    return None if result.plan is None else result.plan.to_dict()["layers"]


def _tags(make: SolverFactory, options: dict[str, Any]) -> frozenset[str]:
    return frozenset(make(seed=0, **options).tags)


class SolverConformance:
    """Subclass and provide the ``solver`` fixture (a Solver class or factory), or the
    ``solver_name`` fixture (a registered name); override ``solver_options`` if needed."""

    budget = Budget(evaluations=400, seconds=60.0)
    tiny_budget = Budget(evaluations=300, seconds=20.0)

    @pytest.fixture
    def solver_name(self) -> str | None:
        """A registered name to test, when no ``solver`` fixture is given."""
        return None

    @pytest.fixture
    def solver(self, solver_name: str | None) -> SolverFactory:
        """The solver under test; by default the registered one named by ``solver_name``."""
        if solver_name is None:
            pytest.fail("define a `solver` fixture (a Solver class or factory) or a "
                        "`solver_name` fixture (a registered name)")
        from moeopt.registry import make_solver

        return functools.partial(make_solver, solver_name)

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

    def _solve(self, make: SolverFactory, options: dict[str, Any], problem: DeploymentProblem,
               seed: int = 0, budget: Budget | None = None,
               evaluator: Callable[..., EvaluationBatch] = evaluate_batch,
               ) -> tuple[SolveResult, PricingLog]:
        """Solve with every plan priced counted; checks the count before returning."""
        log = PricingLog(fingerprint=problem.fingerprint)
        solver = make(seed=seed, **options)
        with tracker_only_pricing(log):
            result = solver.solve(problem, budget or self.budget, evaluator=counting(log, evaluator))
        assert log.around_tracker == 0, (
            f"{log.around_tracker} plans were priced around the tracker (not counted)")
        assert log.through_tracker == result.evaluations, (
            f"{log.through_tracker} plans priced, {result.evaluations} reported")
        return result, log

    def test_same_seed_same_plan(self, solver, solver_options, problem):
        """Two solver objects with one seed agree, and so does one object solving twice."""
        first = solver(seed=7, **solver_options)
        a, _ = self._solve(lambda **_: first, {}, problem)
        b, _ = self._solve(solver, solver_options, problem, seed=7)
        again, _ = self._solve(lambda **_: first, {}, problem)
        assert a.solver_status != SolverStatus.ERROR, a.message
        assert _plan_key(a) == _plan_key(b) == _plan_key(again)
        assert a.solution_status == b.solution_status == again.solution_status

    def test_different_seeds_can_differ(self, solver, solver_options, problem):
        """A solver not tagged ``deterministic`` owns a seeded RNG: four seeds must not all
        price the same plans in the same order."""
        if "deterministic" in _tags(solver, solver_options):
            pytest.skip("tagged deterministic")
        digests = set()
        for seed in range(4):
            result, log = self._solve(solver, solver_options, problem, seed=seed,
                                      budget=Budget(evaluations=60, seconds=20.0))
            assert result.solver_status != SolverStatus.ERROR, result.message
            digests.add(log.digest.hexdigest())
        assert len(digests) > 1, "seeds 0-3 priced identical plans: is the seed used?"

    def test_evaluation_budget_holds(self, solver, solver_options, problem):
        result, _ = self._solve(solver, solver_options, problem, budget=Budget(evaluations=25))
        assert result.solver_status != SolverStatus.ERROR, result.message
        assert result.evaluations <= 25

    def test_time_budget_holds(self, solver, solver_options, problem):
        result, _ = self._solve(solver, solver_options, problem, budget=Budget(seconds=2.0))
        assert result.solver_status != SolverStatus.ERROR, result.message
        assert result.wall_seconds <= 2.0 + 3.0  # one in-flight step may finish past the limit

    def test_feasible_whenever_feasible_seen(self, solver, solver_options, problem):
        result, log = self._solve(solver, solver_options, problem)
        assert result.solver_status != SolverStatus.ERROR, result.message
        if result.trajectory or math.isfinite(log.cheapest_feasible):  # a feasible plan was seen
            assert result.solution_status != SolutionStatus.NONE
            assert result.evaluation is not None and result.evaluation.feasible
            if result.trajectory:
                assert result.cost_usd == pytest.approx(min(t.cost_usd for t in result.trajectory))

    @pytest.mark.parametrize("kit_problem", list(KIT_PROBLEMS))
    def test_tiny_problems(self, solver, solver_options, kit_problem):
        """Each tiny problem: the plan re-prices to what is reported, and a lower bound is
        never above the solver's own cost, any plan it priced, nor the referee's optimum."""
        problem = KIT_PROBLEMS[kit_problem]()
        result, log = self._solve(solver, solver_options, problem, budget=self.tiny_budget)
        assert result.solver_status != SolverStatus.ERROR, result.message
        optimum = referee_optimum(kit_problem)
        if result.plan is not None and result.evaluation is not None:
            again = evaluate(problem, result.plan)
            assert again.cost_usd == pytest.approx(result.evaluation.cost_usd, rel=1e-9)
            assert again.feasible == result.evaluation.feasible
        bound = result.lower_bound_usd
        if bound is not None and math.isfinite(bound):
            ceiling = min(optimum, log.cheapest_feasible)
            if result.solution_status != SolutionStatus.NONE:
                ceiling = min(ceiling, result.cost_usd)
            assert bound <= ceiling * (1 + TOLERANCE), (
                f"lower bound {bound!r} above a feasible cost {ceiling!r}")
        self._check_claims(result, optimum)
        # A proof must hold however early the budget stops the solver.
        short, _ = self._solve(solver, solver_options, problem, budget=Budget(evaluations=20, seconds=20.0))
        assert short.solver_status != SolverStatus.ERROR, short.message
        self._check_claims(short, optimum)

    @staticmethod
    def _check_claims(result: SolveResult, optimum: float) -> None:
        """What a result proves must agree with the referee: a proven optimum costs the
        optimum, a problem said infeasible has no feasible plan, a bound is below the optimum."""
        if result.solution_status == SolutionStatus.PROVEN_OPTIMAL:
            assert result.cost_usd <= optimum * (1 + 1e-6), (
                f"proven optimal at {result.cost_usd!r}, but the referee found {optimum!r}")
        if result.solver_status == SolverStatus.INFEASIBLE:
            assert not math.isfinite(optimum), f"said infeasible; the referee found {optimum!r}"
        if result.lower_bound_usd is not None and math.isfinite(optimum):
            assert result.lower_bound_usd <= optimum * (1 + TOLERANCE)

    def test_nan_and_inf_survive(self, solver, solver_options, problem):
        result, _ = self._solve(solver, solver_options, problem, evaluator=nan_evaluator)
        assert result.solver_status != SolverStatus.ERROR, result.message
        if result.evaluation is not None and result.solution_status != SolutionStatus.NONE:
            assert math.isfinite(result.cost_usd)
            if result.plan is not None:  # "no-plan" baselines (cpu-cluster, oracle) have none
                mems = [f.memory_mb for layer in result.plan.layers for f in layer.functions]
                assert max(mems) < 3072  # a NaN/inf-priced plan is never the answer

    def test_infeasible_problem_reported(self, solver, solver_options, impossible_problem):
        result, _ = self._solve(
            solver, solver_options, impossible_problem, budget=Budget(evaluations=60, seconds=30)
        )
        assert result.solver_status != SolverStatus.ERROR, result.message
        assert result.solution_status == SolutionStatus.NONE
        assert "time_limit" in result.binding_constraints
