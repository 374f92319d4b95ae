"""Tests written to catch realistic bugs that the rest of the suite let through (issue 16's
surviving mutants, and those found by ``benchmarks/mutants.py``): each says which bug it bites."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cost_models import lambda_model as lm
from moeopt.evaluate import evaluate_batch, expert_breaks
from moeopt.plan import PlanArrays
from moeopt.problem import problem_from_dict
from moeopt.solver import Budget, BudgetExhausted, Objective, Tracker
from tests.conftest import TINY_CONSTANTS, tiny_spec


def _direct_problem(loads: list[int], replicas_max: int = 4):
    """One layer, float32 tokens of 128 values (512 bytes, so 12,288 tokens fill 6 MiB)."""
    spec = tiny_spec(
        model={**tiny_spec()["model"], "moe_layers": 1, "experts_per_layer": len(loads),
               "hidden_size": 128},
        workload={"tokens_per_batch": sum(loads)},
        popularity={"source": "loads", "loads": [[loads]]},
        deployment={"memory_menu": [10240], "max_replicas": replicas_max,
                    "methods": ["direct"]},
    )
    return problem_from_dict(spec, "guard.json")


def _one_plan(problem, replicas: list[int]) -> PlanArrays:
    E = problem.experts
    return PlanArrays(
        memory_mb=np.full((1, 1, E), 10240.0),
        replicas=np.asarray([[replicas]], dtype=np.int64),
        method=np.full((1, 1), lm.DIRECT),
        pipeline_degree=np.ones((1, 1)),
    )


@pytest.mark.parametrize("extra_tokens", [-1, 0, 1])
def test_expert_breaks_agrees_with_the_evaluator_at_the_exact_payload_limit(extra_tokens):
    """Mutant: expert_breaks used ``>=`` where the evaluator's payload violation uses ``>``;
    exactly 6 MiB of payload is allowed by both, one token more breaks both."""
    problem = _direct_problem([12_288 + extra_tokens])
    limit = problem.constants.lambda_payload_limit_bytes
    assert float(lm.payload_bytes(12_288, problem.model.token_bytes, problem.constants)) == limit
    batch = evaluate_batch(problem, _one_plan(problem, [1]))
    evaluator_breaks = batch.violations["payload"][0] > 0
    breaks = expert_breaks(problem, np.array([[12_288.0 + extra_tokens]]), np.array([[lm.DIRECT]]),
                           np.ones((1, 1)), np.full((1, 1), 10240.0))
    assert bool(breaks.payload[0, 0]) == evaluator_breaks == (extra_tokens > 0)


def test_tokens_per_replica_round_up_on_odd_loads():
    """Mutant: floor instead of ceil for tokens per replica. 1,001 tokens on 2 replicas is
    501 on the busier one: the payload it carries says so, to the byte."""
    problem = _direct_problem([1001, 4], replicas_max=4)
    batch = evaluate_batch(problem, _one_plan(problem, [2, 3]))
    wire = lm.wire_token_bytes(problem.model.token_bytes, problem.constants)
    limit = problem.constants.lambda_payload_limit_bytes
    assert batch.violations["payload"][0] == pytest.approx((501 * wire - limit) / 2**20, abs=1e-12)
    # 4 tokens on 3 replicas: 2 on one, 1 on each other; all 3 replicas bill.
    one = evaluate_batch(problem, _one_plan(problem, [2, 1]))
    assert batch.cost_usd[0] > one.cost_usd[0]


def _storage_plan(memory: list[float], replicas: list[int]) -> PlanArrays:
    return PlanArrays(
        memory_mb=np.asarray([[memory]], dtype=float),
        replicas=np.asarray([[replicas]], dtype=np.int64),
        method=np.full((1, 1), lm.STORAGE),
        pipeline_degree=np.ones((1, 1)),
    )


def _storage_problem(loads: list[int]):
    spec = tiny_spec(
        model={**tiny_spec()["model"], "moe_layers": 1, "experts_per_layer": len(loads)},
        workload={"tokens_per_batch": sum(loads)},
        popularity={"source": "loads", "loads": [[loads]]},
    )
    return problem_from_dict(spec, "guard.json")


def test_only_replicas_that_receive_tokens_bill():
    """Mutant: every replica billed. 2 tokens on 4 replicas: two replicas get one token each,
    the other two are never invoked, so it costs what 2 replicas cost; an expert with no
    token costs nothing however many replicas it has."""
    problem = _storage_problem([1000, 2, 0])
    two = evaluate_batch(problem, _storage_plan([1769, 1769, 1769], [1, 2, 1]))
    four = evaluate_batch(problem, _storage_plan([1769, 1769, 1769], [1, 4, 4]))
    assert four.cost_usd[0] == pytest.approx(two.cost_usd[0], rel=1e-12)


def test_a_cold_experts_function_must_still_hold_its_weights():
    """Mutant: memory checked only where tokens arrive. A deployed function for an expert no
    batch routes to must still start and hold its weights (routing at run time differs)."""
    problem = _storage_problem([1000, 0])
    ok = evaluate_batch(problem, _storage_plan([1769, 1769], [1, 1]))
    starved = evaluate_batch(problem, _storage_plan([1769, 64], [1, 1]))
    assert ok.violations["memory"][0] <= 0
    assert starved.violations["memory"][0] > 0 and not starved.feasible[0]


def test_tracker_keeps_the_least_violating_plan_when_none_is_feasible():
    """Mutant: infeasible plans ranked by cost alone. With no feasible plan, the best plan is
    the one that breaks the constraints least (its binding constraint is what is reported)."""
    from moeopt.testing import small_problem

    problem = small_problem(time_limit_s=0.5)
    L, E = problem.layers, problem.experts
    slow_cheap = (768.0, 1)
    fast_dear = (3072.0, 4)
    plans = PlanArrays(
        memory_mb=np.array([np.full((L, E), m) for m, _ in (slow_cheap, fast_dear)]),
        replicas=np.array([np.full((L, E), g) for _, g in (slow_cheap, fast_dear)]),
        method=np.zeros((2, L), dtype=np.int64),
        pipeline_degree=np.ones((2, L)),
    )
    tracker = _tracker(problem, None)
    batch, _, violation = tracker.evaluate(plans)
    assert not batch.feasible.any() and violation[1] < violation[0]
    assert batch.cost_usd[0] < batch.cost_usd[1]
    assert tracker.best_eval.cost_usd == pytest.approx(batch.cost_usd[1])


def _tracker(problem, evaluations: int | None, evaluator=evaluate_batch) -> Tracker:
    return Tracker(problem, Budget(evaluations=evaluations), Objective(), evaluator)


def _plans(problem, n: int) -> PlanArrays:
    E = problem.experts
    return PlanArrays(
        memory_mb=np.full((n, problem.layers, E), 1769.0),
        replicas=np.tile(np.arange(1, n + 1)[:, None, None] % 4 + 1, (1, problem.layers, E)),
        method=np.zeros((n, problem.layers), dtype=np.int64),
        pipeline_degree=np.ones((n, problem.layers)),
    )


def test_tracker_prices_only_the_evaluations_left(tiny):
    """Mutant: the tracker no longer cuts a batch to the budget. 10 plans asked with 3
    evaluations left: exactly 3 priced, counted and returned; then the budget is spent."""
    priced: list[int] = []

    def counting(problem, plans):
        priced.append(plans.size)
        return evaluate_batch(problem, plans)

    tracker = _tracker(tiny, 5, counting)
    tracker.evaluate(_plans(tiny, 2))
    assert tracker.remaining_evaluations() == 3
    batch, score, violation = tracker.evaluate(_plans(tiny, 10))
    assert priced == [2, 3]
    assert len(batch) == len(score) == len(violation) == 3
    assert tracker.evaluations == 5 and tracker.remaining_evaluations() == 0
    with pytest.raises(BudgetExhausted):
        tracker.evaluate(_plans(tiny, 1))
    assert priced == [2, 3]


def test_tracker_counts_plans_not_calls(tiny):
    tracker = _tracker(tiny, None)
    for n in (1, 4, 7):
        tracker.evaluate(_plans(tiny, n))
    assert tracker.evaluations == 12


def test_tracker_keeps_the_first_of_equal_plans_and_feasible_before_cheaper(tiny):
    """Ties go to the plan met first; an infeasible plan never displaces a feasible one."""
    tracker = _tracker(tiny, None)
    plans = _plans(tiny, 3)
    tracker.evaluate(plans)
    first = tracker.best_plan
    tracker.evaluate(plans)
    assert tracker.best_plan is first
    assert tracker.seen_feasible and tracker.best_eval.feasible


def test_tracker_best_plan_is_the_plan_priced_even_when_the_solver_reuses_its_arrays(tiny):
    """The best plan is built when first read, from a copy of its arrays: a solver that
    overwrites its PlanArrays after pricing them does not change it."""
    tracker = _tracker(tiny, None)
    plans = _plans(tiny, 3)
    _, score, _ = tracker.evaluate(plans)
    want = plans.plan(int(np.argmin(score)), tiny)
    plans.memory_mb[...] = plans.memory_mb.max()
    plans.replicas[...] = 1
    assert tracker.best_plan == want


def test_tracker_marks_nothing_feasible_on_an_impossible_problem():
    from moeopt.testing import small_problem

    problem = small_problem(time_limit_s=0.5)
    tracker = _tracker(problem, None)
    tracker.evaluate(_plans(problem, 4))
    assert not tracker.seen_feasible and not tracker.trajectory
    assert tracker.best_eval is not None and not tracker.best_eval.feasible


def test_solve_reseeds_on_every_call():
    """Mutant: the RNG seeded only in __init__; a solver object solving twice must give the
    same plan both times (a comparison reuses solver objects)."""
    from moeopt.registry import make_solver
    from moeopt.testing import small_problem

    solver = make_solver("random", seed=3)
    problem = small_problem()
    a = solver.solve(problem, Budget(evaluations=50))
    b = solver.solve(problem, Budget(evaluations=50))
    assert a.plan == b.plan


def test_ilp_claims_a_proof_only_at_its_own_mip_gap(monkeypatch):
    """Mutant: the proving program run at mip_gap 1e-3 while the result says optimal. Every
    program whose answer is returned as proven must have been solved at the option's gap."""
    import solvers.ilp as ilp
    from moeopt.testing import tiny_problem

    gaps: list[float] = []
    real = ilp.solve_curves

    def spy(*args, **kw):
        if kw.get("with_bound"):
            gaps.append(kw["mip_gap"])
        return real(*args, **kw)

    monkeypatch.setattr(ilp, "solve_curves", spy)
    result = ilp.IlpSolver(mip_gap=1e-7).solve(tiny_problem())
    assert str(result.solution_status) == "proven_optimal"
    # The layered route proves by an exact search (HiGHS only when the search gives up): any
    # program it does run for the proof runs at the option's gap, and the claim holds it.
    assert all(g == 1e-7 for g in gaps)
    assert result.gap is not None and result.gap <= 1e-7


def test_scores_are_clipped_at_zero_for_a_cost_below_the_best_known():
    """Mutant: raw scores not clipped below at 0 (a run cheaper than the best known, which
    happens when the references are stale, must score 0, not below)."""
    from moeopt.bench.scoring import InstanceScale, _score_run

    scale = InstanceScale("i", "fp", "b", 1.0, "best_found", "x", 2.0, "random")
    run = {"run_id": "r", "instance": {"name": "i", "fingerprint": "fp"}, "solver": {"name": "s"},
           "seed_index": 0, "status": "ok", "feasible": True, "cost_usd": 0.9, "wall_seconds": 1.0,
           "trajectory": [], "budget": {}}
    assert _score_run(run, scale).score == 0.0
    assert _score_run({**run, "cost_usd": 1.5}, scale).score == pytest.approx(0.5)
    assert _score_run({**run, "cost_usd": 9.0}, scale).score == 2.0


def test_billed_seconds_round_up_to_the_millisecond():
    c = problem_from_dict(tiny_spec(), "t").constants
    assert float(lm.billed_seconds(0.0101, c)) == pytest.approx(0.011)
    assert float(lm.billed_seconds(0.010, c)) == pytest.approx(0.010)
    assert math.isclose(float(lm.billed_seconds(1e-5, c)), 0.001)


assert TINY_CONSTANTS  # the hand-priced constants these problems share


@pytest.mark.parametrize("kit_problem", ["tiny", "top2", "cold", "odd"])
def test_ods_takes_each_layers_cheapest_method_when_the_time_limit_is_loose(kit_problem):
    """Mutant: ODS picks each layer's dearest method. With a loose time limit the layers do not
    interact, so ODS's per-layer cheapest method is the optimum of the space."""
    from moeopt.registry import make_solver
    from moeopt.testing import KIT_PROBLEMS, referee_optimum

    result = make_solver("ilp-ods").solve(KIT_PROBLEMS[kit_problem]())
    assert result.cost_usd == pytest.approx(referee_optimum(kit_problem), rel=1e-9)


@pytest.mark.parametrize("name", ["bert-moe-4", "gpt2-moe-4"])
def test_greedy_finishes_its_descent_in_a_few_thousand_evaluations(name):
    """Mutant: greedy's slack phase adopts infeasible proposals and wanders (7x the
    evaluations, a dearer plan on gpt2-moe-4). Greedy stops by itself, well inside budget."""
    from moeopt.builtin_problems import builtin_problem
    from moeopt.registry import make_solver

    result = make_solver("greedy").solve(builtin_problem(name))
    assert str(result.solver_status) == "completed" and result.evaluation.feasible
    assert result.evaluations < 8_000, result.evaluations


def test_eplb_gives_redundant_replicas_to_the_hottest_experts():
    """Mutant: EPLB's redundant replicas go to the coldest expert."""
    from moeopt.builtin_problems import builtin_problem
    from moeopt.registry import make_solver

    problem = builtin_problem("switch-base-128")
    plan = make_solver("eplb").solve(problem).plan
    for li, layer in enumerate(plan.layers):
        load = problem.popularity.mean()[li]
        replicas = {e: f.replicas for f in layer.functions for e in f.experts}
        hottest = int(np.argmax(load))
        assert replicas[hottest] == max(replicas.values()) > 1


@pytest.mark.parametrize("name", ["bert-moe-4", "gpt2-moe-4"])
def test_an_ilp_proof_reports_a_gap_within_its_mip_gap(name):
    """A proof claimed at a looser gap than the option (say 1e-3) must show in the result:
    on these problems the Lagrangian root bound sits ~0.04 % below the optimum, so a claim made
    from it is visible as a reported gap above mip_gap."""
    from moeopt.problem import load_problem
    from moeopt.registry import make_solver
    from moeopt.solver import SolutionStatus

    result = make_solver("ilp").solve(load_problem(name))
    assert result.solution_status == SolutionStatus.PROVEN_OPTIMAL, result.message
    assert result.gap is not None and result.gap <= 1e-6 + 1e-12, result.message
