"""The MILP solvers: conformance, agreement with exhaustive search, pricing identical to the
evaluator, infeasibility with the binding constraint, and bounds on the paper's problems."""

from __future__ import annotations

import os

import numpy as np
import pytest

from moeopt.builtin_problems import PAPER_PROBLEMS, builtin_problem
from moeopt.evaluate import evaluate_batch
from moeopt.problem import problem_from_dict
from moeopt.registry import make_solver
from moeopt.solver import Budget, SolutionStatus, SolverStatus
from moeopt.space import PIPELINE_DEGREES
from moeopt.testing import SolverConformance, small_problem, tiny_problem
from solvers._ilp_model import Lagrangian, exact_curve, solve_milp
from solvers._ilp_tables import build_tables, variants_of
from solvers.ilp import CbcIlpSolver, milp_cost, plan_arrays

SLOW = os.environ.get("MOEOPT_SLOW_TESTS") == "1"


class TestIlpConformance(SolverConformance):
    @pytest.fixture
    def solver_name(self):
        return "ilp"


class TestIlpOdsConformance(SolverConformance):
    @pytest.fixture
    def solver_name(self):
        return "ilp"

    @pytest.fixture
    def solver_options(self):
        return {"mode": "ods"}


@pytest.mark.skipif(not CbcIlpSolver.available()[0], reason="CBC not available")
class TestIlpCbcConformance(SolverConformance):
    @pytest.fixture
    def solver_name(self):
        return "ilp-cbc"


@pytest.mark.parametrize("time_limit_s", [30.0, 1.5, 1.1])
def test_ilp_agrees_with_exhaustive_on_tiny_problems(time_limit_s):
    problem = tiny_problem(time_limit_s=time_limit_s)
    exact = make_solver("exhaustive").solve(problem, Budget(evaluations=10**6))
    for name in ("ilp", "ilp-cbc") if CbcIlpSolver.available()[0] else ("ilp",):
        ilp = make_solver(name, mip_gap=0.0, pipeline_degrees=PIPELINE_DEGREES).solve(problem)
        assert ilp.solution_status == SolutionStatus.PROVEN_OPTIMAL, (name, ilp.message)
        assert ilp.cost_usd == pytest.approx(exact.cost_usd, rel=1e-9)


def _spec(**deployment):
    return {
        "name": "milp-pricing",
        "model": {"moe_layers": 2, "experts_per_layer": 4, "top_k": 2, "hidden_size": 768,
                  "expert_ffn_size": 3072, "nonmoe_params_per_layer": 2_362_368},
        "workload": {"tokens_per_batch": 4096},
        "slo": {"time_limit_s": 8.0},
        "popularity": {"source": "zipf", "exponent": 1.2, "batches": 3, "seed": 2},
        "deployment": {"memory_menu": [768, 1536, 3072], "max_replicas": 4, **deployment},
    }


@pytest.mark.parametrize("problem", [
    small_problem(),
    tiny_problem(time_limit_s=1.5),
    problem_from_dict(_spec(), "test"),
    problem_from_dict(_spec(cost_scope="full", architectures=["x86_64", "arm64"]), "test"),
], ids=["small", "tiny", "top2", "full-scope-arm64"])
def test_milp_objective_is_the_evaluators_cost(problem):
    tables = build_tables(problem, variants_of(problem, (64, 256)))
    result = solve_milp(tables, mip_gap=0.0)
    assert result.status == "optimal"
    batch = evaluate_batch(problem, plan_arrays(tables, result.choices))
    assert bool(batch.feasible[0])
    assert milp_cost(tables, result.choices) == pytest.approx(float(batch.cost_usd[0]), rel=1e-6)
    assert result.objective_usd == pytest.approx(float(batch.cost_usd[0]), rel=1e-6)
    assert result.bound_usd <= result.objective_usd * (1 + 1e-9)
    for ch, lat in zip(result.choices, batch.layer_latency_s[0], strict=True):
        assert ch.latency_s.max() == pytest.approx(lat, rel=1e-9)


MILP_PROBLEMS = {
    "small": small_problem(),
    "top2": problem_from_dict(_spec(), "test"),
    "full-scope-arm64": problem_from_dict(_spec(cost_scope="full", architectures=["x86_64", "arm64"]), "test"),
}


@pytest.mark.parametrize("name", list(MILP_PROBLEMS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lagrangian_prune_keeps_exactly_the_admitted_front(name, seed):
    """Pruning inside the DP must lose nothing it admits and keep nothing it does not."""
    tables = build_tables(MILP_PROBLEMS[name], variants_of(MILP_PROBLEMS[name], (64, 256)))
    rng = np.random.default_rng(seed)
    for layer in range(tables.problem.layers):
        full = exact_curve(tables, layer, deadline=np.inf)
        mu = rng.exponential(full.cost.mean() / full.latency.mean(), size=full.latency.shape[1])
        values = full.cost + full.latency @ mu
        prune = Lagrangian(mu, float(np.quantile(values, rng.uniform(0.1, 0.9))))
        pruned = exact_curve(tables, layer, deadline=np.inf, prune=prune)
        admitted = prune.admits(full.cost, full.latency)
        assert admitted.any() and not admitted.all()

        def points(cost, latency):
            return sorted(map(tuple, np.round(np.column_stack([cost, latency]), 12)))

        assert points(pruned.cost, pruned.latency) == points(full.cost[admitted], full.latency[admitted])


@pytest.mark.parametrize("name", list(MILP_PROBLEMS))
def test_monolithic_ilp_agrees_with_the_x_program(name):
    """The layered route (column generation, Lagrangian-pruned exact curves, exact search) and
    the full program over every option reach the same optimum."""
    problem = MILP_PROBLEMS[name]
    tables = build_tables(problem, variants_of(problem, (64, 256)))
    x_program = solve_milp(tables, mip_gap=0.0)
    ilp = make_solver("ilp", mip_gap=0.0, pipeline_degrees=(64, 256)).solve(problem)
    assert ilp.solution_status == SolutionStatus.PROVEN_OPTIMAL, ilp.message
    assert "best bound" in ilp.message
    assert ilp.cost_usd == pytest.approx(x_program.objective_usd, rel=1e-9)


def test_time_limit_binding_is_named():
    result = make_solver("ilp").solve(small_problem(time_limit_s=0.5, name="impossible"))
    assert result.solver_status == SolverStatus.INFEASIBLE
    assert result.binding_constraints == ("time_limit",)
    assert result.plan is None or not result.evaluation.feasible


def test_memory_binding_is_named():
    problem = problem_from_dict(_spec(memory_menu=[128]), "test")
    result = make_solver("ilp").solve(problem)
    assert result.solver_status == SolverStatus.INFEASIBLE
    assert result.binding_constraints == ("memory",)


def test_payload_binding_is_named():
    problem = problem_from_dict(
        {**_spec(methods=["direct"], max_replicas=1), "workload": {"tokens_per_batch": 40_000}},
        "test",
    )
    result = make_solver("ilp").solve(problem)
    assert result.solver_status == SolverStatus.INFEASIBLE
    assert result.binding_constraints == ("payload",)


def test_monolithic_is_never_worse_than_ods():
    problem = small_problem(time_limit_s=12.0)
    mono = make_solver("ilp-monolithic").solve(problem)
    ods = make_solver("ilp", mode="ods").solve(problem)
    assert mono.solution_status == SolutionStatus.PROVEN_OPTIMAL
    assert mono.cost_usd <= ods.cost_usd * (1 + 1e-9)


def test_bad_options_are_input_errors():
    from moeopt.errors import InputError

    with pytest.raises(InputError, match="mode"):
        make_solver("ilp", mode="fast").solve(small_problem())


PROBLEMS = [*PAPER_PROBLEMS, "switch-base-128"] if SLOW else ["bert-moe-4"]


def plan_solvers() -> list[str]:
    """Every registered solver that returns a plan for any problem, except ilp itself (what is
    checked), exhaustive (refuses this space) and bo-popularity (needs a routing trace)."""
    from moeopt.registry import list_solvers

    skip = {"ilp", "ilp-monolithic", "exhaustive", "bo-popularity"}
    return [
        e.name for e in list_solvers()
        if e.available and e.name not in skip and "no-plan" not in e.solver_class.tags
    ]


@pytest.mark.parametrize("name", PROBLEMS)
def test_paper_problems_proven_or_gap_and_never_beaten(name):
    problem = builtin_problem(name)
    ilp = make_solver("ilp", time_limit_s=20.0).solve(problem)
    assert ilp.solution_status != SolutionStatus.NONE, ilp.message
    assert ilp.evaluation.feasible
    assert ilp.lower_bound_usd is not None and ilp.gap is not None
    assert ilp.lower_bound_usd <= ilp.cost_usd * (1 + 1e-9)
    for other in plan_solvers():
        result = make_solver(other).solve(problem, Budget(evaluations=300, seconds=10))
        if result.solution_status != SolutionStatus.NONE:
            assert result.cost_usd >= ilp.lower_bound_usd * (1 - 1e-9), other
            if ilp.solution_status == SolutionStatus.PROVEN_OPTIMAL:
                assert result.cost_usd >= ilp.cost_usd * (1 - 1e-9), other


def test_library_stdout_carries_no_highs_banner():
    """HiGHS prints a licence banner to fd 1 on its first model; a library user's stdout
    (piped JSON, say) must stay theirs: the banner goes to stderr."""
    import subprocess
    import sys

    code = (
        "from moeopt.testing import tiny_problem\n"
        "from solvers.ilp import IlpSolver\n"
        "print(IlpSolver().solve(tiny_problem()).solution_status)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "proven_optimal\n"
    assert "HiGHS" in done.stderr


def test_highs_run_with_default_threads_first_does_not_break_later_programs():
    """HiGHS keeps one thread pool per process: after a run with two threads, the one-thread
    PuLP programs (ODS's per-method programs) used to fail before starting, and ODS fell back
    to its equal-slack incumbent. A fresh process, so the pool is the one this test starts."""
    import subprocess
    import sys

    code = (
        "import highspy\n"
        "h = highspy.Highs(); h.setOptionValue('output_flag', False)\n"
        "h.setOptionValue('threads', 2)\n"
        "x = h.addVariable(0, 10); h.addConstr(x >= 1); h.minimize(x)\n"
        "from moeopt.testing import small_problem\n"
        "from moeopt.registry import make_solver\n"
        "print(make_solver('ilp-ods').solve(small_problem()).message)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith("ODS (mixed methods"), done.stdout


def test_a_bound_computed_before_the_budget_ends_is_reported(monkeypatch):
    """When the budget ends after column generation (here: the incumbent search over the
    generated configurations outlasts it, as the LP-rounding step did on mixtral-8x7b at 8 s),
    the Lagrangian bound already proven is reported, not the weaker cheapest-options bound, and
    a plan that could not be priced is not used."""
    import time

    import solvers.ilp as ilp_module

    real = ilp_module.IlpSolver._search
    seen = {}

    def slow_search(self, *args, **kwargs):
        out = real(self, *args, **kwargs)
        seen["called"] = True
        time.sleep(max(budget_s - (time.perf_counter() - started), 0.0) + 0.05)  # past the budget
        return out

    monkeypatch.setattr(ilp_module.IlpSolver, "_search", slow_search)
    problem = builtin_problem("bert-moe-4")
    budget_s = 3.0
    started = time.perf_counter()
    result = make_solver("ilp").solve(problem, Budget(evaluations=10**9, seconds=budget_s))
    assert seen.get("called")
    tables = build_tables(problem, variants_of(problem, PIPELINE_DEGREES))
    assert result.solver_status == SolverStatus.TIME_LIMIT
    assert "Lagrangian" in result.message, result.message
    assert result.lower_bound_usd > tables.lower_bound_usd
    assert result.evaluation.feasible and result.lower_bound_usd <= result.cost_usd
    assert result.gap == pytest.approx((result.cost_usd - result.lower_bound_usd) / result.cost_usd, abs=1e-15)


def test_ilp_runs_numpy_blas_on_one_thread_and_restores_it(monkeypatch):
    """ilp's matrix products are tiny: a second BLAS thread only spins (CPU 1.6x the wall
    time on bert-moe-4). Inside the solve numpy's BLAS has one thread; afterwards, what it had.
    Also when another BLAS (scipy's) was loaded after the first solve looked the pools up."""
    from threadpoolctl import ThreadpoolController

    import solvers.ilp as ilp_module

    def numpy_blas_threads() -> list[int]:
        return [i["num_threads"] for i in ThreadpoolController().info()
                if i["user_api"] == "blas" and "numpy" in i["filepath"]]

    make_solver("ilp").solve(tiny_problem(), Budget(evaluations=10**6, seconds=20))
    import scipy.linalg  # noqa: F401 - loads scipy's own OpenBLAS, which ilp never calls

    before = numpy_blas_threads()
    if not before:
        pytest.skip("threadpoolctl finds no numpy BLAS thread pool in this process")
    seen = []
    real = ilp_module.build_tables

    def spying(*args, **kwargs):
        seen.append(numpy_blas_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(ilp_module, "build_tables", spying)
    make_solver("ilp").solve(tiny_problem(), Budget(evaluations=10**6, seconds=20))
    assert seen and seen[0] and all(n == 1 for n in seen[0])
    assert numpy_blas_threads() == before


def _search_targets(monkeypatch, status_at):
    """Run ilp's incumbent search on bert-moe-4's generated configurations with a scripted
    exact search: ``status_at(room / first room)`` says what each search returns. -> (the
    rooms it asked for, relative to the first, what _search returned)."""
    import time

    import solvers.ilp as ilp_module
    from solvers._ilp_bounds import LayerCurve, SearchResult, column_generation
    from solvers._ilp_model import quick_incumbent

    problem = builtin_problem("bert-moe-4")
    tables = build_tables(problem, variants_of(problem, PIPELINE_DEGREES))
    incumbent = quick_incumbent(tables)
    upper = milp_cost(tables, incumbent)
    B = len(tables.fixed_s)
    columns = [LayerCurve((ch,), np.array([ch.cost_usd]), ch.latency_s[None], np.zeros((1, B)))
               for ch in incumbent]
    bound = column_generation(tables, columns, time.perf_counter() + 30, upper)
    goals: list[float] = []

    def scripted(costs, lats, cap, mu, goal, deadline, max_candidates, **kw):
        assert max_candidates == ilp_module.INCUMBENT_SEARCH_CANDIDATES
        goals.append(goal / (1 + 1e-9) + tables.cost_const_usd)
        first = goals[0] / (1 + ilp_module.SEARCH_FIRST_ROOM)  # the search's own lower bound
        status = status_at((goals[-1] - first) / (goals[0] - first))
        picks = tuple(0 for _ in costs) if status == "optimal" else None
        return SearchResult(status, picks, None, 1)

    monkeypatch.setattr(ilp_module, "search", scripted)
    found = make_solver("ilp")._search(tables, bound.curves, bound.usd, upper, time.perf_counter() + 30)
    first = goals[0] / (1 + ilp_module.SEARCH_FIRST_ROOM)
    return [(g - first) / (goals[0] - first) for g in goals], found


def test_incumbent_search_targets_double_and_back_off_halfway_when_a_search_gives_up(monkeypatch):
    """Targets rise x2 while nothing is below them; a search that gives up on size is retried
    halfway between the last target proven empty and its own; the first plan found is it."""
    def status(r):
        return "none" if r <= 3.0 + 1e-9 else "aborted" if r >= 4 - 1e-9 else "optimal"

    rooms, found = _search_targets(monkeypatch, status)
    assert rooms == pytest.approx([1, 2, 4, 3, 3.5], rel=1e-6)
    assert found is not None and len(found) == builtin_problem("bert-moe-4").layers


def test_incumbent_search_stops_after_its_backoffs(monkeypatch):
    import solvers.ilp as ilp_module

    assert ilp_module.SEARCH_BACKOFFS == 3
    rooms, found = _search_targets(monkeypatch, lambda r: "none" if r < 1.5 else "aborted")
    assert found is None
    assert rooms == pytest.approx([1, 2, 1.5, 1.25, 1.375], rel=1e-6)  # then it stops


def test_incumbent_search_gives_up_at_once_when_its_first_target_is_too_much(monkeypatch):
    rooms, found = _search_targets(monkeypatch, lambda r: "aborted")
    assert found is None and rooms == [1.0]


def test_incumbent_search_stops_at_the_incumbent(monkeypatch):
    """Nothing below the targets up to the incumbent's cost: no plan, and no target above it."""
    rooms, found = _search_targets(monkeypatch, lambda r: "none")
    assert found is None
    assert rooms == sorted(rooms) and len(rooms) > 3
    assert all(b == pytest.approx(2 * a, rel=1e-6) for a, b in zip(rooms[:-2], rooms[1:-1], strict=True))
    assert rooms[-1] <= 2 * rooms[-2] * (1 + 1e-9)  # the last one is the incumbent's cost


def test_lp_rounding_runs_only_where_the_incumbent_search_finds_nothing(monkeypatch):
    """bert-moe-8: the search over the generated configurations finds a plan, no LP rounding.
    With a search that finds nothing, LP rounding runs once, its configurations are searched
    again, and the proof still reaches the same optimum."""
    import solvers.ilp as ilp_module

    calls = {"rounding": 0, "search": 0}
    real_rounding = ilp_module.lp_rounding_columns

    def rounding(*args, **kwargs):
        calls["rounding"] += 1
        return real_rounding(*args, **kwargs)

    monkeypatch.setattr(ilp_module, "lp_rounding_columns", rounding)
    problem = builtin_problem("bert-moe-8")
    optimum = make_solver("ilp").solve(problem)
    assert optimum.solution_status == SolutionStatus.PROVEN_OPTIMAL and calls["rounding"] == 0

    caps = []

    def nothing(self, *args, max_candidates=ilp_module.INCUMBENT_SEARCH_CANDIDATES, **kwargs):
        calls["search"] += 1
        caps.append(max_candidates)
        return None

    monkeypatch.setattr(ilp_module.IlpSolver, "_search", nothing)
    again = make_solver("ilp").solve(problem)
    assert calls == {"rounding": 1, "search": 2}
    assert caps == [ilp_module.INCUMBENT_SEARCH_CANDIDATES, ilp_module.ROUNDED_SEARCH_CANDIDATES]
    assert again.solution_status == SolutionStatus.PROVEN_OPTIMAL and again.cost_usd == pytest.approx(optimum.cost_usd, rel=1e-6)


@pytest.mark.parametrize("name", ["small", "full-scope-arm64"])
def test_cheapest_choice_is_each_experts_cheapest_option_in_the_cheapest_variant(name):
    from solvers._ilp_model import Choice, cheapest_choice

    problem = small_problem() if name == "small" else problem_from_dict(
        _spec(cost_scope="full", architectures=["x86_64", "arm64"]), "test")
    tables = build_tables(problem, variants_of(problem, PIPELINE_DEGREES))
    for layer in tables.layers:
        ch = cheapest_choice(layer)
        assert (ch.table.cost[ch.rows] == ch.table.least_cost).all()
        assert (ch.table.expert[ch.rows] == np.arange(ch.table.experts)).all()
        others = [Choice(t, np.array([r[np.argmin(t.cost[r])] for r in t.expert_rows])) for t in layer]
        assert ch.cost_usd == min(o.cost_usd for o in others)
        assert ch.table is layer[[o.cost_usd for o in others].index(ch.cost_usd)]  # first of equals


def test_cheapest_choice_prices_past_a_variant_whose_latency_cost_its_bound_misses():
    """Full scope: a storage layer's latency costs (the next function waits), so a variant's
    bound (cheapest options at its latency lower bound) can be far below what its cheapest
    options cost. A storage variant made cheap and slow, its lower bound untouched: it has the
    least bound, yet the choice is the variant whose cheapest options cost least."""
    import dataclasses

    from solvers._ilp_model import Choice, cheapest_choice

    problem = problem_from_dict(_spec(cost_scope="full", architectures=["x86_64", "arm64"]), "test")
    tables = build_tables(problem, variants_of(problem, PIPELINE_DEGREES))
    layer = tables.layers[0]

    def cheapest_options(t):
        return Choice(t, np.array([r[np.argmin(t.cost[r])] for r in t.expert_rows]))

    storage = min((t for t in layer if t.variant.storage), key=lambda t: cheapest_options(t).cost_usd)
    assert storage.nonmoe is not None
    # Its options at half the price, and 5 s slower: the least bound, not the least cost.
    slow = dataclasses.replace(storage, cost=storage.cost / 2, lat=storage.lat + 5.0)
    layer = tuple(slow if t is storage else t for t in layer)
    bounds = [float(t.least_cost.sum()) + float(t.extra_usd(t.lower)) for t in layer]
    assert min(bounds) == bounds[layer.index(slow)]
    costs = [cheapest_options(t).cost_usd for t in layer]
    ch = cheapest_choice(layer)
    assert ch.table is not slow and ch.cost_usd == min(costs)
    assert ch.table is layer[costs.index(min(costs))]
