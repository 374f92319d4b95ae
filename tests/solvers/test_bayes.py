"""bayes-egreedy and its ablations: conformance, the epsilon schedule, feasibility."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moeopt.evaluate import evaluate_batch
from moeopt.problem import load_problem
from moeopt.registry import make_solver
from moeopt.solver import Budget, SolutionStatus, SolverStatus
from moeopt.space import PlanSpace, structured_design
from moeopt.testing import SolverConformance, small_problem
from solvers.bayes import BrokenCells, broken_cells, epsilon, rho_prime

SOLVERS = ("bayes-egreedy", "bayes-single-eps", "bayes-random")


class TestBayesEGreedyConformance(SolverConformance):
    @pytest.fixture
    def solver_name(self):
        return "bayes-egreedy"


class TestBayesSingleEpsConformance(SolverConformance):
    @pytest.fixture
    def solver_name(self):
        return "bayes-single-eps"


class TestBayesRandomConformance(SolverConformance):
    @pytest.fixture
    def solver_name(self):
        return "bayes-random"


def test_epsilon_decays_as_eps0_over_one_plus_rho_tau():
    eps0 = np.array([0.2, 0.4])
    for tau in (0, 1, 5, 50):
        assert np.allclose(epsilon(eps0, tau, 0.1, 0.0), eps0 / (1 + 0.1 * tau))


def test_epsilon_boost_is_one_plus_rho_prime_tau_and_capped():
    eps0, tau, rho = np.full(3, 0.1), 7, 0.1
    rho_p = np.array([0.08, 0.05, 0.02])  # memory, payload, otherwise
    eps = epsilon(eps0, tau, rho, rho_p)
    assert np.allclose(eps, 0.1 / (1 + rho * tau) * (1 + rho_p * tau))
    assert eps[0] > eps[1] > eps[2]  # rho3 < rho2 < rho1: memory-broken dims explore most
    assert epsilon(np.array([0.9]), 100, 0.1, 0.5)[0] == 1.0  # a probability never passes 1
    # Theorem 2: with rho' < rho the boosted epsilon still decays.
    assert epsilon(0.5, 1000, rho, 0.08) < epsilon(0.5, 10, rho, 0.08)


def test_broken_memory_is_localised_to_its_expert_dimensions():
    problem = load_problem("bert-moe-4")  # its menu starts at 128 MB: too small for an expert
    space = PlanSpace.of(problem)
    C, L = space.cells, problem.layers
    x = np.zeros((2, space.dims), dtype=np.int64)
    x[:, :C] = space.upper[0] - 1  # 3,072 MB everywhere: nothing breaks
    x[:, C : 2 * C] = space.upper[C] - 1
    x[:, 2 * C : 2 * C + L] = 1  # storage
    x[1, 5] = 0  # expert 5 (layer 1, expert 1) at 128 MB
    broken = broken_cells(space, x)
    assert not broken.memory[0].any()
    assert broken.memory[1].reshape(-1).tolist() == [i == 5 for i in range(C)]
    assert broken.memory_factor[1].reshape(-1)[5] >= 2  # the paper's n_new = ceil(M_real / M)
    violation = evaluate_batch(problem, space.decode(x)).violations["memory"]
    assert violation[0] <= 0 < violation[1]  # agrees with the evaluator
    rho = rho_prime(space, broken_cells(space, x[1:]), 0.08, 0.05, 0.02)
    hit = {5, C + 5, 2 * C + 1, 2 * C + L + 1}  # memory, replicas, layer's method and degree
    assert {int(i) for i in np.flatnonzero(rho == 0.08)} == hit
    assert np.all(np.delete(rho, sorted(hit)) == 0.02)


def test_payload_boost_is_rho2():
    space = PlanSpace.of(small_problem())
    none = np.zeros((1, 3, 4), dtype=bool)
    pay = none.copy()
    pay[0, 2, 3] = True
    one = np.ones((1, 3, 4))
    rho = rho_prime(space, BrokenCells(none, pay, one, one), 0.08, 0.05, 0.02)
    assert sorted(set(rho.tolist())) == [0.02, 0.05]
    assert rho[11] == 0.05 and rho[space.cells + 11] == 0.05


def test_rho_order_is_enforced():
    from moeopt.errors import InputError

    solver = make_solver("bayes-egreedy", rho1=0.2, rho=0.1)
    with pytest.raises(InputError):
        solver.solve(small_problem(), Budget(evaluations=10))


@pytest.mark.parametrize("name", SOLVERS)
def test_registered_and_feasible_on_small_problem(name):
    result = make_solver(name, seed=1).solve(small_problem(), Budget(evaluations=400))
    assert result.solver_status != SolverStatus.ERROR, result.message
    assert result.solution_status == SolutionStatus.FEASIBLE


@pytest.mark.parametrize("name", SOLVERS)
def test_feasible_on_bert_moe_4_where_random_search_is_not(name):
    problem = load_problem("bert-moe-4")
    budget = Budget(evaluations=600, seconds=60)
    result = make_solver(name, seed=0).solve(problem, budget)
    assert result.solution_status == SolutionStatus.FEASIBLE, result.message
    assert result.evaluation is not None and result.evaluation.feasible
    random = make_solver("random", seed=0).solve(problem, budget)
    assert random.cost_usd > result.cost_usd  # random search finds nothing feasible here


def test_bo_loop_improves_on_its_warm_start_and_reaches_one_percent_in_200():
    """The Lagrangian walk alone (32 plans) vs the full loop at 200 evaluations, against the
    optimum ilp proves in the same run (issue 15's target: within 1 %)."""
    problem = load_problem("bert-moe-4")
    optimum = make_solver("ilp").solve(problem)
    assert optimum.solution_status == SolutionStatus.PROVEN_OPTIMAL
    walk = make_solver("bayes-egreedy", seed=0).solve(problem, Budget(evaluations=32))
    full = make_solver("bayes-egreedy", seed=0).solve(problem, Budget(evaluations=200))
    assert full.evaluations <= 200
    assert full.cost_usd < walk.cost_usd
    assert full.cost_usd <= 1.01 * optimum.cost_usd


def test_different_seeds_give_different_plans():
    """The seed must steer the search (a solver that ignores it passes the same-seed check).
    bert-moe-4, not bert-moe-8: from the warm start every seed reaches bert-moe-8's optimum by
    evaluation 49, so plans there agree for a good reason."""
    problem = load_problem("bert-moe-4")
    plans = {
        str(make_solver("bayes-egreedy", seed=s).solve(problem, Budget(evaluations=120)).plan.to_dict()["layers"])
        for s in range(3)
    }
    assert len(plans) > 1


def test_surrogate_predicts_latency_within_half_a_percent_of_the_limit():
    """Fitted on 64 priced plans around the Lagrangian path, it predicts 200 others."""
    from moeopt.evaluate import evaluate_batch
    from solvers._bayes_surrogate import Observed, PlanSurrogate
    from solvers.layer_curves import LayerCurves, expert_estimate

    problem = load_problem("bert2bert-moe-4")
    curves = LayerCurves.of(problem)
    path = curves.lagrangian_path()
    rng = np.random.default_rng(0)
    k = curves.clip(path[rng.integers(len(path), size=264)] + rng.integers(-3, 4, size=(264, problem.layers)))
    space = PlanSpace.of(problem)
    x = space.encode(curves.plans(k))
    arrays = space.decode(x)
    batch = evaluate_batch(problem, arrays)
    est = expert_estimate(problem, arrays)

    def rows(idx):
        e = type(est)(*(getattr(est, f)[idx] for f in est.__dataclass_fields__))
        return Observed(x[idx], e, arrays.method[idx], arrays.pipeline_degree[idx],
                        batch.cost_usd[idx], batch.latency_s[idx], batch.layer_latency_s[idx],
                        batch.cost_usd[idx], batch.feasible[idx])

    train, test = np.arange(64), np.arange(64, 264)
    surrogate = PlanSurrogate(problem, seed=0).fit(rows(train), train, refit=True)
    t = rows(test)
    pred = surrogate.predict(t.x, t.estimate, t.method, t.beta)
    limit = problem.slo.time_limit_s
    error = (pred.time_slack * limit + limit) - t.latency
    assert np.abs(error).max() < 0.005 * limit
    np.testing.assert_allclose(np.exp(pred.log_score), t.cost, rtol=1e-9)  # cost: exact


def test_suggested_plan_is_trained_on_not_priced_again():
    problem = small_problem()
    start = make_solver("greedy").solve(problem).plan
    priced = []

    def recording(problem, plans):
        priced.extend(
            plans.plan(i, problem).to_dict()["layers"] == start.to_dict()["layers"] for i in range(plans.size)
        )
        return evaluate_batch(problem, plans)

    result = make_solver("bayes-egreedy", seed=0).suggest(start).solve(
        problem, Budget(evaluations=80), evaluator=recording
    )
    assert sum(priced) == 1 and result.cost_usd <= start.predicted["cost_usd"] * (1 + 1e-12)


def test_structured_design_is_unique_in_range_and_reaches_the_feasible_region():
    problem = load_problem("bert-moe-4")
    space = PlanSpace.of(problem)
    design = structured_design(space, np.random.default_rng(0))
    assert len(np.unique(design, axis=0)) == len(design)
    assert (design >= 0).all() and (design < space.upper).all()
    assert evaluate_batch(problem, space.decode(design)).feasible.any()
    # The seed orders the design, it does not change its rows; 1,120 distinct plans is what the
    # row-wise np.unique over every candidate kept before the keyed de-duplication.
    other = structured_design(space, np.random.default_rng(1))
    assert {tuple(r) for r in design} == {tuple(r) for r in other} and len(design) == 1120


def test_stops_when_a_tiny_space_is_used_up():
    from moeopt.problem import problem_from_dict

    spec = {
        "name": "27-plans",
        "model": {
            "moe_layers": 1,
            "experts_per_layer": 2,
            "top_k": 1,
            "hidden_size": 768,
            "expert_ffn_size": 3072,
            "nonmoe_params_per_layer": 2_362_368,
        },
        "workload": {"tokens_per_batch": 512},
        "slo": {"time_limit_s": 30.0},
        "popularity": {"source": "zipf", "exponent": 1.0, "batches": 2, "seed": 5},
        "deployment": {"memory_menu": [3072], "max_replicas": 1},
    }
    problem = problem_from_dict(spec, "test")
    result = make_solver("bayes-egreedy").solve(problem, Budget(evaluations=50))
    # 27 vectors (3 methods x 9 pipeline degrees) but 11 plans: the degree of a layer that is not
    # pipelined changes nothing, so each of the 9 pipelined plans, storage and direct once.
    space = PlanSpace.of(problem)
    assert space.size() == 27 and len(np.unique(space.canonical(space.sample(np.random.default_rng(0), 500)), axis=0)) == 11
    assert result.evaluations == 11
    assert result.solver_status == SolverStatus.COMPLETED


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 12),
    dims=st.integers(1, 40),
    m=st.integers(1, 5),
    seed=st.integers(0, 2**32 - 1),
)
def test_span_embedding_keeps_every_distance_the_kernel_sees(n, dims, m, seed):
    from scipy.spatial.distance import cdist

    from solvers._bayesopt import SpanEmbedding

    rng = np.random.default_rng(seed)
    train = rng.integers(0, 4, size=(n, dims)) / 3.0  # plan-like: few levels, repeats allowed
    cand = rng.integers(0, 4, size=(m, dims)) / 3.0
    span = SpanEmbedding.of(train)
    assert span.coords.shape[1] <= n + 1  # the GP's width no longer grows with dims
    np.testing.assert_allclose(cdist(span.coords, span.coords), cdist(train, train), atol=1e-6)
    np.testing.assert_allclose(cdist(span.apply(cand), span.coords), cdist(cand, train), atol=1e-6)
