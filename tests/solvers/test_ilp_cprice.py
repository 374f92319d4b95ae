"""The compiled pricing (solvers/_ilp_cprice.c) gives the numpy pricing's configurations, in the
same order, on paper-scope, full-scope (billed non-MoE waits), top-2 and many-option tables,
at multipliers with zeros and at limits that prune everything; it honours its deadline and
rejects inconsistent buffers instead of reading past them."""

from __future__ import annotations

import dataclasses
import math
import shutil
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import solvers._ilp_bounds as bounds
import solvers._ilp_model as model
from moeopt.builtin_problems import builtin_problem
from moeopt.problem import problem_from_dict
from moeopt.space import PIPELINE_DEGREES
from moeopt.testing import small_problem
from solvers._ilp_tables import build_tables, variants_of
from tests.solvers.test_ilp_tables import _spec

if model._cprice is None:  # pragma: no cover - depends on the install
    if shutil.which("cc") or shutil.which("gcc"):
        pytest.fail("a C compiler is here but solvers._ilp_cprice was not built (pip install -e .)",
                    pytrace=False)
    pytest.skip("no C compiler: ilp runs its numpy pricing", allow_module_level=True)


PROBLEMS = {
    "bert-moe-4": lambda: builtin_problem("bert-moe-4"),
    "bert-moe-16": lambda: builtin_problem("bert-moe-16"),
    "small": small_problem,
    "top2": lambda: problem_from_dict(_spec(), "test"),
    "full-scope-arm64": lambda: problem_from_dict(
        _spec(cost_scope="full", architectures=["x86_64", "arm64"]), "test"),
    "full-scope-cold": lambda: problem_from_dict(
        {**_spec(cost_scope="full", methods=["direct", "storage"], start="cold"),
         "slo": {"time_limit_s": 40.0}}, "test"),
    # Every memory size and 8 replicas: more than 64 options per expert (the prefilter).
    "many-options": lambda: problem_from_dict(
        _spec(memory_menu="full", max_replicas=8, cost_scope="full"), "test"),
}


def _both(t, mu, upper, extra):
    """(numpy, compiled) pricings of one table as comparable lists of (rows, the DP's value as
    bytes: bit for bit)."""
    out = []
    for price in (bounds._price_table_numpy, bounds._price_table_compiled):
        values: list[float] = []
        found = price(t, mu, upper, math.inf, extra, values)
        assert len(values) == len(found)
        out.append([(tuple(ch.rows.tolist()), np.float64(v).tobytes()) for ch, v in zip(found, values, strict=True)])
    return out


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_compiled_pricing_gives_the_numpy_configurations(name):
    problem = PROBLEMS[name]()
    tables = build_tables(problem, variants_of(problem, PIPELINE_DEGREES))
    assert not tables.binding
    rng = np.random.default_rng(11)
    B = len(tables.fixed_s)
    tabs = [t for layer in tables.layers[:2] for t in layer]
    if name == "bert-moe-16":
        tabs = tabs[:4]  # its numpy pricing takes seconds per table
    if name == "many-options":
        assert max(len(r) for t in tabs for r in t.expert_rows) > 64
    checked = 0
    for t in tabs:
        for scale in (0.0, 1e-6, 1e-4, 1e-2):
            mu = rng.exponential(scale, size=B) if scale else np.zeros(B)
            mu[rng.random(B) < 0.3] = 0.0
            numpy_rows, compiled_rows = _both(t, mu, math.inf, 4)
            assert compiled_rows == numpy_rows, (t.variant, scale)
            assert numpy_rows
            # A limit between the least and the fifth value: the pruning keeps the same ones.
            best = [bounds._price_table_numpy(t, mu, math.inf, math.inf, 4)]
            values = [ch.cost_usd + float(mu @ ch.latency_s) for ch in best[0]]
            for upper in (values[0], float(np.mean(values)), values[0] * (1 - 1e-6)):
                numpy_rows, compiled_rows = _both(t, mu, upper, 2)
                assert compiled_rows == numpy_rows
            checked += 1
    assert checked >= 8


@pytest.mark.parametrize("name", ["bert-moe-4", "full-scope-cold"])
def test_priced_rows_are_the_configurations_the_dp_valued(name):
    """The DPs pick experts in step order (slowest first); the rows they return, back in
    expert order (each expert its own row), are configurations whose cost + mu . latency is
    the DP's value."""
    problem = PROBLEMS[name]()
    tables = build_tables(problem, variants_of(problem, PIPELINE_DEGREES))
    rng = np.random.default_rng(2)
    B = len(tables.fixed_s)
    reordered = 0
    for t in tables.layers[0]:
        reordered += (t.slowest_first[0] != np.arange(t.experts)).any()
        mu = rng.exponential(1e-4, size=B)
        for price in (bounds._price_table_numpy, bounds._price_table_compiled):
            values: list[float] = []
            for ch, v in zip(price(t, mu, math.inf, math.inf, 3, values), values, strict=True):
                assert (t.expert[ch.rows] == np.arange(t.experts)).all()
                assert ch.cost_usd + float(mu @ ch.latency_s) == pytest.approx(v + t.direct_usd, rel=1e-12)
    assert reordered  # some table's step order is not the expert order


def test_billed_waits_a_hair_past_a_millisecond_round_down_as_in_numpy():
    """billed_seconds' 1e-9 guard: a wait 5e-10 ms past a whole millisecond is billed that
    millisecond, not the next. Options whose finish lands there, on a full-scope storage
    table, price the same both ways (without the guard the compiled values differ)."""
    problem = PROBLEMS["full-scope-arm64"]()
    tables = build_tables(problem, variants_of(problem, PIPELINE_DEGREES))
    t = next(t for layer in tables.layers for t in layer if t.nonmoe is not None and t.variant.storage)
    n = t.nonmoe
    whole = np.ceil((t.lat - n.start_s + n.compute_s + n.cold_s) * 1000.0)
    hair = n.start_s - n.compute_s - n.cold_s + (whole + 5e-10) / 1000.0
    lat = np.maximum(hair, t.base)
    # The layer's latency floor lowered to the storage floor, so these finishes are the layer's.
    t = dataclasses.replace(t, lat=lat, lower=t.base.copy())
    rng = np.random.default_rng(3)
    for _ in range(20):
        mu = rng.exponential(1e-5, size=lat.shape[1])
        numpy_rows, compiled_rows = _both(t, mu, math.inf, 4)
        assert compiled_rows == numpy_rows


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), zeros=st.floats(0, 1), extra=st.integers(0, 6))
def test_compiled_pricing_matches_numpy_at_any_multipliers(seed, zeros, extra):
    rng = np.random.default_rng(seed)
    tables = _SMALL_TABLES
    t = tables.layers[rng.integers(len(tables.layers))][0]
    t = tables.layers[t.layer][rng.integers(len(tables.layers[t.layer]))]
    B = t.lat.shape[1]
    mu = rng.exponential(10.0 ** rng.uniform(-8, -1), size=B)
    mu[rng.random(B) < zeros] = 0.0
    numpy_rows, compiled_rows = _both(t, mu, math.inf, extra)
    assert compiled_rows == numpy_rows


_SMALL_TABLES = build_tables(small_problem(), variants_of(small_problem(), PIPELINE_DEGREES))


def test_compiled_pricing_stops_at_its_deadline():
    t = _SMALL_TABLES.layers[0][0]
    mu = np.full(t.lat.shape[1], 1e-5)
    with pytest.raises(TimeoutError):
        bounds._price_table_compiled(t, mu, math.inf, time.perf_counter() - 1.0, 0)


def test_compiled_pricing_rejects_buffers_of_the_wrong_size():
    """The C code reads only what the sizes it checks allow: a short latency array, offsets
    past the rows, or a row outside the table are errors, not reads out of bounds."""
    t = _SMALL_TABLES.layers[0][0]
    groups, offsets = t.rows_slowest_first
    B = t.lat.shape[1]
    args = [t.cost, np.ascontiguousarray(t.lat), groups, offsets, np.zeros(t.experts),
            np.zeros(B), np.zeros(B), np.zeros(B), np.ones(B), np.empty((1, t.experts), dtype=np.int64),
            np.empty(1), B, 1, 0.0, 0.0, 0.0, 0.0, 0.0, math.inf, math.inf]
    assert model._cprice.price_table(*args) == 1
    for i, bad in ((1, np.ascontiguousarray(t.lat)[:-1]), (3, offsets + 1),
                   (2, np.where(groups == groups[0], len(t.cost), groups)), (9, np.empty(1, dtype=np.int64)),
                   (10, np.empty(3))):
        broken = list(args)
        broken[i] = bad
        with pytest.raises(ValueError):
            model._cprice.price_table(*broken)


def test_ties_go_to_the_first_state_and_option_as_in_numpy():
    """Equal values (every option of the last expert at one cost, no latency price) are broken
    in (state, option) order, and among options that fit under a state the first of equal cost
    is kept, as numpy's stable sort and argmin do."""
    t = _SMALL_TABLES.layers[0][0]
    order, _ = t.slowest_first
    for e in (order[-1], order[0]):
        rows = t.expert_rows[e]
        cost = t.cost.copy()
        cost[rows] = cost[rows].min()
        tied = dataclasses.replace(t, cost=cost)
        B = t.lat.shape[1]
        for mu in (np.zeros(B), np.full(B, 1e-9)):
            numpy_rows, compiled_rows = _both(tied, mu, math.inf, 5)
            assert compiled_rows == numpy_rows


def _curve_bytes(curve):
    if curve is None:
        return None
    return ([(id(ch.table), tuple(ch.rows.tolist())) for ch in curve.choices],
            curve.cost.tobytes(), curve.latency.tobytes(), curve.active.tobytes())


SMALL_CURVES = ("small", "top2", "full-scope-arm64", "full-scope-cold", "concurrency-can-bind")


@pytest.mark.parametrize("name", ["bert-moe-4", *SMALL_CURVES])
def test_compiled_exact_curves_are_the_numpy_curves(name, monkeypatch):
    """exact_curve with the compiled DP and with numpy's: the same configurations in the same
    order, the same floats, with and without Lagrangian pruning and the proof's front limit
    (concurrency: active replicas join the states)."""
    from solvers._ilp_model import Lagrangian, exact_curve, quick_incumbent

    if name == "concurrency-can-bind":
        top2 = PROBLEMS["top2"]()
        problem = dataclasses.replace(
            top2, constants=dataclasses.replace(top2.constants, lambda_concurrency_limit=14))
    else:
        problem = PROBLEMS[name]()
    tables = build_tables(problem, variants_of(problem, PIPELINE_DEGREES))
    assert name != "concurrency-can-bind" or tables.concurrency
    incumbent = quick_incumbent(tables)
    rng = np.random.default_rng(5)
    B = len(tables.fixed_s)
    compiled = model._cprice
    seen = 0
    for li in range(min(problem.layers, 2)):
        for k in range(4):
            mu = rng.exponential(1e-4, size=B) * (k > 0)
            ch = incumbent[li] if incumbent is not None else None
            limit = (ch.cost_usd + float(ch.latency_s @ mu)) * (1 + 0.01 * k) if ch is not None else math.inf
            # Unpruned only where the whole curve is small (bert-moe-16's has millions of states).
            prune = None if k == 0 and name in SMALL_CURVES else Lagrangian(mu, limit)
            max_front = None if k < 3 and name in SMALL_CURVES else 4000
            curves = []
            for dp in (None, compiled):
                monkeypatch.setattr(model, "_cprice", dp)
                curves.append(_curve_bytes(exact_curve(tables, li, math.inf, prune=prune, max_front=max_front)))
            assert curves[0] == curves[1], (li, k)
            seen += curves[0] is not None
            # Each table's DP alone too (the curve's own front would hide extra states).
            for t in tables.layers[li]:
                dps = [model._exact_table_numpy(t, tables.concurrency, math.inf, prune, max_front),
                       model._exact_table_compiled(t, tables.concurrency, math.inf, prune, max_front)]
                assert (dps[0] is None) == (dps[1] is None)
                if dps[0] is not None:
                    assert dps[0].tolist() == dps[1].tolist()
    assert seen >= 4


def test_exact_curve_points_are_their_configurations_cost_and_latency():
    """The curve's cost and latency of each configuration are Choice.cost_usd and .latency_s to
    the bit (exact_curve computes them for all configurations at once)."""
    from solvers._ilp_model import exact_curve

    problem = PROBLEMS["full-scope-cold"]()
    tables = build_tables(problem, variants_of(problem, PIPELINE_DEGREES))
    curve = exact_curve(tables, 0, math.inf)
    assert curve is not None and len(curve.cost) > 3
    for ch, c, lat in zip(curve.choices, curve.cost, curve.latency, strict=True):
        assert np.float64(ch.cost_usd).tobytes() == np.float64(c).tobytes()
        assert ch.latency_s.tobytes() == lat.tobytes()


@pytest.mark.parametrize("name", ["bert-moe-4", "full-scope-cold"])
def test_priced_configurations_carry_their_own_cost_and_latency(name):
    """Pricing fills in each configuration's cost and latency for all of a table's at once:
    what a fresh Choice of the same rows computes, to the bit."""
    from solvers._ilp_model import Choice

    problem = PROBLEMS[name]()
    tables = build_tables(problem, variants_of(problem, PIPELINE_DEGREES))
    mu = np.full(len(tables.fixed_s), 1e-4)
    seen = 0
    for t in tables.layers[0]:
        for ch in bounds._price_table(t, mu, math.inf, math.inf, extra=4):
            fresh = Choice(t, ch.rows.copy())
            assert np.float64(ch.cost_usd).tobytes() == np.float64(fresh.cost_usd).tobytes()
            assert ch.latency_s.tobytes() == fresh.latency_s.tobytes()
            assert not ch.latency_s.flags.writeable
            seen += 1
    assert seen > len(tables.layers[0])


def test_compiled_exact_curve_stops_at_its_deadline_and_its_limits():
    from solvers._ilp_model import _exact_table_compiled

    t = _SMALL_TABLES.layers[0][0]
    assert _exact_table_compiled(t, False, time.perf_counter() - 1.0, None, None) is None
    assert _exact_table_compiled(t, False, math.inf, None, 1) is None  # the front passes 1
    assert len(_exact_table_compiled(t, False, math.inf, None, None)) > 1


@pytest.mark.parametrize("name", ["bert-moe-4", "small", "full-scope-arm64", "full-scope-cold", "many-options"])
def test_compiled_layer_floors_are_each_tables_numpy_floor(name, monkeypatch):
    """A whole layer's floors in one compiled call (Tables.layer_flats): each table's numpy
    floor, bit for bit, on every layer, at multipliers from zero to large."""
    problem = PROBLEMS[name]()
    tables = build_tables(problem, variants_of(problem, PIPELINE_DEGREES))
    rng = np.random.default_rng(3)
    B = len(tables.fixed_s)
    for layer in range(len(tables.layers)):
        for scale in (0.0, 1e-6, 1e-3, 10.0):
            mu = rng.exponential(scale, size=B) if scale else np.zeros(B)
            got = bounds.layer_floors(tables, layer, mu)
            monkeypatch.setattr(model, "_cprice", None)
            want = [bounds.variant_floor(t, mu) for t in tables.layers[layer]]
            monkeypatch.undo()
            assert np.array(got).tobytes() == np.array(want).tobytes()


def test_compiled_layer_floors_reject_offsets_outside_the_arrays():
    problem = PROBLEMS["small"]()
    tables = build_tables(problem, variants_of(problem, PIPELINE_DEGREES))
    f = tables.layer_flats[0]
    B, T = f.lat.shape[1], len(f.params)
    mu = np.zeros(B)
    args = dict(cost=f.cost, lat=f.lat, expert=f.expert, least=f.least, start=f.start, add=f.add,
                base=f.base, mu=mu, rows=f.rows, experts=f.experts, params=f.params)
    assert len(model._cprice.variant_floors(*args.values(), B)) == 8 * T
    bad_rows, bad_experts, bad_expert = f.rows.copy(), f.experts.copy(), f.expert.copy()
    bad_rows[-1] -= 1
    bad_experts[1] = bad_experts[0]
    bad_expert[-1] = 10**6
    for name, value in [("rows", bad_rows), ("experts", bad_experts), ("expert", bad_expert),
                        ("params", f.params[:-1]), ("start", f.start[:-1]), ("lat", f.lat[:-1])]:
        with pytest.raises(ValueError):
            model._cprice.variant_floors(*{**args, name: value}.values(), B)


def _layer_pricing(price, tables, layer, mu, upper, extra):
    """One layer's pricing as comparable values: (value as bytes, best rows, extra rows)."""
    near: list | None = [] if extra else None
    value, best = price(tables, layer, mu, upper, math.inf, near)
    return (np.float64(value).tobytes(), None if best is None else (best.table.variant, best.rows.tolist()),
            None if near is None else [(ch.table.variant, ch.rows.tolist()) for ch in near])


@pytest.mark.parametrize("name", ["bert-moe-4", "small", "top2", "full-scope-arm64", "full-scope-cold",
                                  "many-options"])
def test_compiled_layer_pricing_is_the_table_by_table_loop(name):
    """price_layer in one compiled call: the loop's value (bit for bit), configuration and
    near-least configurations in the same order, on every layer, with and without extras, at
    multipliers from zero to large and at upper values that prune none, some and all."""
    problem = PROBLEMS[name]()
    tables = build_tables(problem, variants_of(problem, PIPELINE_DEGREES))
    rng = np.random.default_rng(5)
    B = len(tables.fixed_s)
    pruned = 0
    for layer in range(len(tables.layers)):
        for scale in (0.0, 1e-6, 1e-4, 1e-2, 10.0):
            mu = rng.exponential(scale, size=B) if scale else np.zeros(B)
            mu[rng.random(B) < 0.2] = 0.0
            least, _ = bounds._price_layer_loop(tables, layer, mu, math.inf, math.inf, None)
            for upper in (math.inf, least * (1 + 1e-3), least, least * (1 - 1e-3)):
                for extra in (False, True):
                    want = _layer_pricing(bounds._price_layer_loop, tables, layer, mu, upper, extra)
                    got = _layer_pricing(bounds._price_layer_compiled, tables, layer, mu, upper, extra)
                    assert got == want, (layer, scale, upper, extra)
                    pruned += want[1] is None
    assert pruned  # some upper values leave nothing below them


def test_compiled_layer_pricing_stops_at_its_deadline_and_rejects_wrong_sizes():
    tables = _SMALL_TABLES
    f = tables.layer_flats[0]
    B, T = f.lat.shape[1], len(f.params)
    mu = np.full(B, 1e-5)
    with pytest.raises(TimeoutError):
        bounds._price_layer_compiled(tables, 0, mu, math.inf, time.perf_counter() - 1.0, None)
    picks, which, values = np.empty(len(f.least), dtype=np.int64), np.empty(T, dtype=np.int64), np.empty(T)
    args = dict(cost=f.cost, lat=f.lat, expert=f.expert, least=f.least, start=f.start, add=f.add,
                base=f.base, mu=mu, rows=f.rows, experts=f.experts, params=f.params, groups=f.groups,
                offsets=f.offsets, rest=f.rest, picks=picks, tables=which, values=values)
    assert model._cprice.price_layer(*args.values(), B, math.inf, 1e-12, 1, math.inf)[0] >= 1
    bad_offsets, short, bad_groups = f.offsets.copy(), f.offsets.copy(), f.groups.copy()
    bad_offsets[1] = -1
    short[f.experts[1]] -= 1  # the first table's offsets end before its last row
    bad_groups[0] = 10**6
    for name, value in [("offsets", bad_offsets), ("offsets", short), ("groups", bad_groups), ("rest", f.rest[:-1]),
                        ("picks", picks[:-1]), ("tables", which[:-1]), ("values", values[:-1]),
                        ("rows", f.rows[:-1]), ("lat", f.lat[:-1])]:
        with pytest.raises(ValueError):
            model._cprice.price_layer(*{**args, name: value}.values(), B, math.inf, 1e-12, 1, math.inf)
    with pytest.raises(ValueError):
        model._cprice.price_layer(*args.values(), B, math.inf, 1e-12, 2, math.inf)  # want 2: picks too small


@pytest.mark.parametrize("name", ["small", "full-scope-cold"])
def test_ilp_without_the_extension_gives_the_same_proven_plan(name, monkeypatch):
    """An install without a C compiler runs the numpy DPs: the same proven plan, cost and
    bound as with the extension."""
    from moeopt.registry import make_solver
    from moeopt.solver import SolutionStatus

    problem = PROBLEMS[name]()
    results = []
    for dp in (model._cprice, None):
        monkeypatch.setattr(model, "_cprice", dp)
        r = make_solver("ilp", seed=0).solve(problem)
        assert r.solution_status == SolutionStatus.PROVEN_OPTIMAL, r.message
        results.append((r.cost_usd, r.lower_bound_usd, r.plan.to_dict()["layers"]))
    assert results[0] == results[1]


def _random_curves(seed: int, L: int, B: int, n: int, mu_zero: bool = False):
    """Random layer curves; at mu = 0 a bound is tight wherever the plan takes the remaining
    layers' cheapest points (a bound that cut a hair too early would change the answer)."""
    rng = np.random.default_rng(seed)
    lats = [rng.uniform(1, 3, size=(int(rng.integers(2, n + 1)), B)) for _ in range(L)]
    costs = [3.0 / la.mean(axis=1) + rng.uniform(0, 0.2, size=len(la)) for la in lats]
    return costs, lats, np.full(B, 2.0 * L), np.zeros(B) if mu_zero else rng.uniform(0, 1, size=B)


def _both_searches(monkeypatch, *args, **kw):
    out = []
    for dp in (None, model._cprice):
        monkeypatch.setattr(model, "_cprice", dp)
        r = bounds.search(*args, **kw)
        out.append((r.status, r.picks, None if r.cost_usd is None else np.float64(r.cost_usd).tobytes(),
                    r.candidates))
    return out


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31), L=st.integers(1, 7), B=st.integers(1, 4), n=st.integers(2, 14),
       slack=st.sampled_from([-1e-6, 0.0, 1e-4, 3e-3, 0.05, 1e9]), mu_zero=st.booleans(),
       cap=st.sampled_from([1.0, 0.8, 0.6]))
def test_compiled_search_is_the_numpy_search(seed, L, B, n, slack, mu_zero, cap):
    """Same status, plan, cost (to the bit) and candidate count, at targets below the optimum
    (a proof of none), at it, and far above it (where hundreds of partial plans survive and the
    cut pool's LPs join in)."""
    costs, lats, full, mu = _random_curves(seed, L, B, n, mu_zero)
    cap = full * cap  # from every plan fitting to few
    with pytest.MonkeyPatch.context() as mp:
        best = bounds.search(costs, lats, cap, mu, 1e12, math.inf)
        target = (best.cost_usd * (1 + slack) if slack < 1e9 else 1e12) if best.cost_usd else 1e12
        numpy_result, compiled = _both_searches(mp, costs, lats, cap, mu, target, math.inf)
    assert compiled == numpy_result


def test_compiled_search_runs_the_cut_pool_as_numpy_does(monkeypatch):
    """A search where the survivors would expand to more than CUT_MIN_CANDIDATES (lowered
    here): the pool's LP cuts are generated and applied between layers; the two paths still
    agree to the bit."""
    monkeypatch.setattr(bounds, "CUT_MIN_CANDIDATES", 256 * 14)
    costs, lats, cap, mu = _random_curves(7, 7, 3, 14)
    calls = []
    prune = bounds._CutPool.prune
    monkeypatch.setattr(bounds._CutPool, "prune", lambda self, *a: calls.append(1) or prune(self, *a))
    best = bounds.search(costs, lats, cap, mu, 1e12, math.inf)
    assert best.status == "optimal"
    numpy_result, compiled = _both_searches(monkeypatch, costs, lats, cap, mu, best.cost_usd * 1.01, math.inf)
    assert calls and compiled == numpy_result


@pytest.mark.parametrize("name", ["small", "top2", "full-scope-cold"])
def test_compiled_search_finds_the_numpy_plan_on_problem_curves(name, monkeypatch):
    """On a problem's own layer curves (the proof's exact curves), at the optimum and just
    below it."""
    problem = PROBLEMS[name]()
    tables = build_tables(problem, variants_of(problem, PIPELINE_DEGREES))
    curves = [model.exact_curve(tables, li, math.inf) for li in range(problem.layers)]
    costs = [c.cost for c in curves]
    lats = [c.latency for c in curves]
    cap = bounds.capacity(tables)
    mu = np.full(len(cap), 1e-4)
    best = bounds.search(costs, lats, cap, mu, 1e12, math.inf)
    assert best.status == "optimal"
    for target in (best.cost_usd, best.cost_usd * (1 - 1e-9), best.cost_usd * 1.001):
        numpy_result, compiled = _both_searches(monkeypatch, costs, lats, cap, mu, target, math.inf)
        assert compiled == numpy_result


def test_compiled_search_takes_the_first_of_equally_cheap_plans(monkeypatch):
    """Ties at the final layer go to the first (state, option), as numpy's argmin does."""
    lats = [np.array([[1.0], [1.0]]), np.array([[1.0], [1.0], [1.0]])]
    costs = [np.array([1.0, 1.0]), np.array([2.0, 2.0, 2.0])]
    numpy_result, compiled = _both_searches(monkeypatch, costs, lats, np.array([5.0]), np.zeros(1), 10.0,
                                            math.inf)
    assert compiled == numpy_result and compiled[1] == (0, 0)


def test_compiled_search_layer_stops_at_its_deadline_and_rejects_wrong_sizes():
    cp = model._cprice
    B = 2
    st_c, st_s = np.zeros(64), np.zeros((64, B))
    cost, lat = np.ones(4), np.ones((4, B))
    none_f, none_b = np.zeros(0), np.zeros(0, dtype=np.int64)
    args = [st_c, st_s, cost, lat, np.full(B, 10.0), np.zeros(B), 0.0, 1e9, np.zeros((0, B)), none_f,
            none_b, np.zeros(1, dtype=np.int64), np.zeros((0, B)), none_f, none_f, B, math.inf]
    k, c, s = cp.search_layer(*args)
    assert len(k) == 64 * 4 * 8 and len(s) == 64 * 4 * B * 8
    late = list(args)
    late[-1] = time.perf_counter() - 1.0
    with pytest.raises(TimeoutError):
        cp.search_layer(*late)
    for i, bad in ((1, np.zeros((63, B))), (3, np.ones((3, B))), (8, np.zeros(3)),
                   (10, np.array([0], dtype=np.int64)), (10, np.array([5], dtype=np.int64))):
        broken = list(args)
        broken[i] = bad
        if i == 10:  # one front: its batch must exist and its offsets lie inside the points
            broken[11] = np.array([0, 3], dtype=np.int64)
            broken[12] = np.zeros((1, B))
        with pytest.raises(ValueError):
            cp.search_layer(*broken)
    with pytest.raises(ValueError):
        cp.search_last(st_c, st_s[:-1], cost, lat, np.full(B, 10.0), 1e9, B)


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_compiled_cheapest_within_is_the_numpy_choice(name, monkeypatch):
    """The same rows per expert (or None) at caps from below every option to above all and at
    a row's own latency, on every table of the first layers; with costs tied per expert the
    first row is kept."""
    problem = PROBLEMS[name]()
    tables = build_tables(problem, variants_of(problem, PIPELINE_DEGREES))
    rng = np.random.default_rng(5)
    for t in (t for layer in tables.layers[:2] for t in layer):
        tied = dataclasses.replace(t, cost=np.round(t.cost, 7))  # many equal costs
        for table in (t, tied):
            span = table.add + table.lat
            for q in (0.0, 0.1, 0.5, 0.9, 1.0, "a row's own latency"):
                if isinstance(q, str):  # that row fits exactly at the cap: <=, not <
                    cap = span[rng.integers(len(span))]
                else:
                    cap = np.quantile(span, q, axis=0) + rng.uniform(0, 1e-9, size=span.shape[1])
                found = []
                for dp in (None, model._cprice):
                    monkeypatch.setattr(model, "_cprice", dp)
                    rows = model.cheapest_within(table, cap)
                    found.append(None if rows is None else rows.tolist())
                assert found[0] == found[1]


def test_compiled_cheapest_within_rejects_rows_outside_the_table():
    t = _SMALL_TABLES.layers[0][0]
    a = t.flat
    lat, add, by, expert = a.lat, a.add, a.by_expert_cost, a.expert
    rows = np.empty(t.experts, dtype=np.int64)
    cap = np.full(len(add), np.inf)
    assert model._cprice.cheapest_within(lat, add, by, expert, cap, rows, len(add))
    for i, bad in ((0, lat[:-1]), (2, np.where(by == by[0], len(by), by)), (3, expert + t.experts),
                   (4, cap[:-1])):
        args = [lat, add, by, expert, cap, rows, len(add)]
        args[i] = bad
        with pytest.raises(ValueError):
            model._cprice.cheapest_within(*args)


@pytest.mark.parametrize("seed", range(8))
def test_compiled_dominance_is_the_numpy_dominance(seed, monkeypatch):
    """Random option vectors with ties, infinite and NaN terms, -inf costs, rows at the floor
    and rows past the pairwise limit: the same options dominated. Odd seeds: enough cells for
    the compiled pass's second thread (every other row)."""
    from solvers._ilp_tables import PAIRWISE_MAX, _dominated

    rng = np.random.default_rng(seed)
    rows, k, d = 40, int(rng.integers(2, PAIRWISE_MAX + 150)), int(rng.integers(2, 7))
    if seed % 2:
        rows, k = 241, max(k, 100)  # >= 20,000 cells, an odd row count
    vec = rng.integers(0, 4 + seed, size=(rows, k, d)).astype(float)
    vec[rng.random((rows, k, d)) < 0.05] = np.inf
    vec[rng.random((rows, k)) < 0.2] = np.inf
    vec[:3, :, 1:] = 0.0
    vec[3:6, :, 1:] = np.inf
    vec[6, ::7, 0] = -np.inf
    vec[7, ::5, 0] = np.nan
    vec[8, ::3, 2 % d] = np.nan
    vec[9, ::4, 1] = -np.inf  # a floor over the finite terms only
    vec = np.ascontiguousarray(vec.transpose(2, 0, 1))
    found = []
    for dp in (None, model._cprice):
        monkeypatch.setattr(model, "_cprice", dp)
        with np.errstate(invalid="ignore"):  # numpy's term sums meet inf - inf here
            found.append(_dominated(vec))
    np.testing.assert_array_equal(found[1], found[0])


def test_compiled_dominance_rejects_a_wrong_size():
    vec = np.zeros((3, 4, 5))
    out = np.zeros((4, 5), dtype=bool)
    model._cprice.dominated(vec, 3, 4, 5, 256, out)
    with pytest.raises(ValueError):
        model._cprice.dominated(vec, 3, 4, 6, 256, out)
    with pytest.raises(ValueError):
        model._cprice.dominated(vec, 3, 4, 5, 256, np.zeros((4, 4), dtype=bool))


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_tables_are_the_same_with_and_without_the_extension(name, monkeypatch):
    problem = PROBLEMS[name]()
    built = []
    for dp in (None, model._cprice):
        monkeypatch.setattr(model, "_cprice", dp)
        tables = build_tables(problem, variants_of(problem, PIPELINE_DEGREES))
        built.append([(t.variant, t.expert.tolist(), t.option.tolist(), t.cost.tobytes(), t.lat.tobytes())
                      for layer in tables.layers for t in layer])
    assert built[0] == built[1]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), B=st.integers(1, 6), K=st.integers(1, 8), n=st.integers(0, 300),
       cut=st.floats(0.0, 1.0))
def test_compiled_pool_filter_keeps_what_numpy_keeps(seed, B, K, n, cut):
    """_CutPool's filter of survivors under several multipliers: the same indices kept, for a
    subset of the states, at limits from none kept to all. The limits sit halfway between two
    states' bounds: a bound within an ulp of the limit is judged by each path's own sum order
    (numpy's matmul may sum in another), as docs/ilp.md says."""
    rng = np.random.default_rng(seed)
    c, s = rng.uniform(0, 1, n), rng.uniform(0, 2, (n, B))
    cap, mus, rest = np.full(B, 2.0), rng.exponential(1.0, (K, B)), rng.uniform(0, 1, K)
    ok = np.flatnonzero(rng.random(n) < 0.7)
    bounds_ = np.sort((c[:, None] + (rest[None, :] - (cap - s) @ mus.T)).max(axis=1)) if n else np.zeros(0)
    at = int(cut * n)
    limit = (float(bounds_[0]) - 1.0 if at == 0 else float(bounds_[-1]) + 1.0 if at >= n
             else float(bounds_[at - 1] + bounds_[at]) / 2) if n else 0.0
    pool = bounds._CutPool([np.zeros(1)], [np.zeros((1, B))], [0], cap, 1.0)
    kept = []
    with pytest.MonkeyPatch.context() as mp:
        for dp in (None, model._cprice):
            mp.setattr(model, "_cprice", dp)
            kept.append(pool._keep(ok, c, s, mus, rest, limit).tolist())
    assert kept[0] == kept[1]


def test_compiled_pool_filter_rejects_indices_outside_the_states():
    c, s = np.zeros(3), np.zeros((3, 2))
    args = [np.array([0, 2], dtype=np.int64), c, s, np.ones(2), np.ones((1, 2)), np.zeros(1), 1.0, 2]
    assert np.frombuffer(model._cprice.pool_keep(*args), dtype=np.int64).tolist() == [0, 2]
    for i, bad in ((0, np.array([3], dtype=np.int64)), (2, np.zeros((2, 2))), (4, np.ones((2, 3)))):
        broken = list(args)
        broken[i] = bad
        with pytest.raises(ValueError):
            model._cprice.pool_keep(*broken)


def _steps(front, times):
    """The front's least value at each time (what the search reads: _front_at)."""
    return bounds._front_at(front, times)


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**31), L=st.integers(1, 6), B=st.integers(1, 3), n=st.integers(1, 9),
       grid=st.booleans(), cut=st.floats(-0.5, 2.0))
def test_compiled_suffix_fronts_have_the_numpy_fronts_least_values(seed, L, B, n, grid, cut):
    """Every batch's fronts in one call, C against numpy layer by layer: the same least value
    at every time (at every breakpoint of either, and between), with equal times and values
    when ``grid`` (the C sort breaks ties in another order), and limits from none kept to all;
    front sets in any batch order, values differing per set."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, n + 1, size=L)
    draw = (lambda k: rng.integers(0, 4, size=k) / 2.0) if grid else (lambda k: rng.uniform(0, 2, size=k))
    lats = [draw(k * B).reshape(k, B) for k in sizes]
    order = [int(x) for x in rng.permutation(L)]
    batch = rng.permutation(B).astype(np.int64)
    vals = [[draw(k) for k in sizes] for _ in batch]
    limits = np.empty((B, L))
    for f in range(B):
        suffix = np.concatenate([np.cumsum([vals[f][li].min() for li in order][::-1])[::-1], [0.0]])
        limits[f] = suffix[:L] + cut * (1 + suffix[:L])  # cut < 0: nothing fits at some layers
    m = np.zeros((B, B))
    got = {}
    for dp in (None, model._cprice):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(model, "_cprice", dp)
            got[dp is None] = bounds._batch_fronts(vals, lats, order, limits, batch, m, math.inf)
    numpy_fr, c_fr = got[True], got[False]
    assert len(c_fr.at) == len(numpy_fr.at) == (L + 1) * B + 1
    for j in range(L + 1):
        for f in range(B):
            (nc, nt), (cc, ct) = numpy_fr.front(j, f), c_fr.front(j, f)
            assert np.all(np.diff(ct) >= 0) and np.all(np.diff(cc) < 0)  # a staircase
            if j == L:
                assert cc.tolist() == [0.0] and ct.tolist() == [0.0]
            times = np.concatenate([nt, ct, nt - 1e-3, ct + 1e-3, [-1.0, 1e9]])
            assert np.array_equal(_steps((nc, nt), times), _steps((cc, ct), times))


def test_compiled_suffix_fronts_stop_at_their_deadline_and_reject_wrong_sizes():
    vals, lat = np.zeros(3), np.zeros((3, 2))
    off, order, lim = np.array([0, 3], dtype=np.int64), np.array([0], dtype=np.int64), np.ones(1)
    one = np.array([1], dtype=np.int64)
    fc, ft, st = model._cprice.suffix_fronts(vals, lat, off, order, lim, one, 2, math.inf)
    assert np.frombuffer(st, dtype=np.int64).tolist() == [0, 1, 2]  # front 0: one point; front 1: (0, 0)
    with pytest.raises(TimeoutError):
        model._cprice.suffix_fronts(vals, lat, off, order, lim, one, 2, 0.0)
    two = np.array([0, 1], dtype=np.int64)
    for args in [(vals, lat[:2], off, order, lim, one, 2),  # lat rows
                 (vals, lat, np.array([0, 2], dtype=np.int64), order, lim, one, 2),  # offsets end
                 (vals, lat, np.array([1, 3], dtype=np.int64), order, lim, one, 2),  # offsets start
                 (vals, lat, off, np.array([1], dtype=np.int64), lim, one, 2),  # a layer outside
                 (vals, lat, off, order, np.ones(2), one, 2),  # limits
                 (vals, lat, off, order, lim, two, 2),  # vals for one set, two sets
                 (vals, lat, off, order, lim, np.array([2], dtype=np.int64), 2),  # batch outside
                 (vals, lat, off, order, lim, one, 0)]:  # no batch
        with pytest.raises(ValueError):
            model._cprice.suffix_fronts(*args, math.inf)