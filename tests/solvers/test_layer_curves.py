"""Layer curves: every point is what the evaluator bills, the path and the walk to the limit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moeopt.evaluate import evaluate_batch
from moeopt.problem import load_problem
from moeopt.testing import small_problem
from solvers.layer_curves import LayerCurves, _lower_hull, expert_estimate


@pytest.fixture(scope="module")
def bert4():
    problem = load_problem("bert-moe-4")
    return problem, LayerCurves.of(problem)


def test_curves_are_pareto_and_feasible_per_expert(bert4):
    problem, curves = bert4
    for c in curves.layers:
        assert (np.diff(c.time_s) > 0).all() and (np.diff(c.cost_usd) < 0).all()
        assert np.allclose(c.batch_time_s.max(axis=1), c.time_s)
    m = int(curves.sizes.max())
    k = np.stack([np.arange(m) % len(c) for c in curves.layers], axis=1)  # every point priced
    batch = evaluate_batch(problem, curves.plans(k))
    assert (batch.violations["memory"] <= 0).all() and (batch.violations["payload"] <= 0).all()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_estimate_is_the_evaluators_expert_cost_and_bounds_latency(seed):
    problem = small_problem()
    curves = LayerCurves.of(problem)
    rng = np.random.default_rng(seed)
    k = rng.integers(0, curves.sizes, size=(16, problem.layers))
    plans = curves.plans(k)
    batch = evaluate_batch(problem, plans)
    est = expert_estimate(problem, plans)
    np.testing.assert_allclose(est.cost_usd, batch.cost_breakdown_usd["experts"], rtol=1e-12)
    np.testing.assert_allclose(est.cost_usd, curves.cost_usd(k).sum(axis=1), rtol=1e-12)
    assert (batch.latency_s >= curves.time_lower_bound(k) - 1e-9).all()
    np.testing.assert_allclose(curves.time_lower_bound(k), est.bottleneck_s.sum(axis=2).max(axis=1))
    # Today's cost model composes a layer's latency from the same timelines: the estimate is
    # the evaluator's layer latency. If this breaks, solvers.layer_curves.replica_times no longer
    # wires lambda_model as the evaluator does (the searchers still work: they learn the gap).
    np.testing.assert_allclose(est.bottleneck_s.max(axis=1), batch.layer_latency_s, rtol=1e-12)


def test_path_gets_slower_and_cheaper(bert4):
    _, curves = bert4
    path = curves.lagrangian_path()
    cost = curves.cost_usd(path).sum(axis=1)
    time_s = curves.time_s(path).sum(axis=1)
    assert (np.diff(cost) < 0).all() and (np.diff(time_s) > 0).all()
    assert (np.abs(np.diff(path, axis=0)).sum(axis=1) >= 1).all()  # one layer moves per step


def test_walk_finds_the_cheapest_feasible_path_plan_in_three_rounds(bert4):
    problem, curves = bert4
    path = curves.lagrangian_path()
    batch = evaluate_batch(problem, curves.plans(path))
    best = np.where(batch.feasible, batch.cost_usd, np.inf).min()
    found = []

    def price(k):
        b = evaluate_batch(problem, curves.plans(k))
        found.extend(np.where(b.feasible, b.cost_usd, np.inf))
        return b.feasible.astype(int)

    priced = curves.walk_to_limit(price, n=16, rounds=3)
    assert len(priced) <= 36  # 16 + 16 + the few points the second round left open
    assert min(found) <= best * (1 + 1e-12)  # the last feasible point of the path was priced


@settings(max_examples=60, deadline=None)
@given(points=st.lists(st.tuples(st.floats(0, 100), st.floats(0, 100)), min_size=1, max_size=30))
def test_lower_hull_is_convex_and_below_every_point(points):
    t = np.asarray([p[0] for p in points])
    c = np.asarray([p[1] for p in points])
    hull = _lower_hull(t, c)
    ht, hc = t[hull], c[hull]
    assert (np.diff(ht) > 0).all() and (np.diff(hc) < 0).all()
    for a, b, d in zip(hull, hull[1:], hull[2:], strict=False):  # slopes increase: convex
        with np.errstate(over="ignore"):  # points a hair apart: a slope of -inf compares right
            s1 = (c[b] - c[a]) / (t[b] - t[a])
            s2 = (c[d] - c[b]) / (t[d] - t[b])
        assert s1 <= s2 + 1e-9
    for ti, ci in zip(t, c, strict=True):  # every point on or above the hull's segments
        if ti >= ht[0] and ti <= ht[-1] and len(hull) > 1:
            j = min(int(np.searchsorted(ht, ti, side="right")) - 1, len(hull) - 2)
            y = hc[j] + (hc[j + 1] - hc[j]) * (ti - ht[j]) / (ht[j + 1] - ht[j])
            assert ci >= y - 1e-6 * max(1.0, abs(y))
