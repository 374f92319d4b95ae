"""The evaluator: a whole plan priced by hand, and batch evaluation equal to one by one."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moeopt.evaluate import evaluate, evaluate_batch, evaluate_many
from moeopt.plan import DeploymentPlan, FunctionPlan, LayerPlan, PlanArrays
from moeopt.problem import problem_from_dict
from tests.conftest import tiny_spec

H = 0.8044 + 0.01 + 0.1


def t_storage(r: int) -> float:
    return H + 0.02 + r * (800 / 1e6 + 4e-4)


def test_whole_plan_by_hand(tiny):
    plan = DeploymentPlan.uniform(tiny, 1769, 1, "storage")
    ev = evaluate(tiny, plan)
    # Batch 0 loads (600, 400) and (1000, 0); batch 1 (500, 500) and (700, 300). Each invoked
    # replica bills its duration rounded up to 1 ms; an expert with no tokens is not invoked.
    billed_0 = 1.655 + 1.415 + 2.135
    billed_1 = 1.535 + 1.535 + 1.775 + 1.295
    assert t_storage(600) == pytest.approx(1.6544)
    gb_s = (billed_0 + billed_1) / 2 * 1769 / 1024
    assert ev.cost_gb_s == pytest.approx(gb_s)
    assert ev.cost_usd == pytest.approx(gb_s * 0.0000166667)
    # Latency, batch 0 (the slower): per layer max(slowest replica, next load) + gather, where
    # gather = Tdl + 1000 tokens * 400 B / Bs = 0.41; plus head, tail and attention blocks.
    block = 1000 * (4 * 10 * 100 + 2 * 100 * 2) / (1e9 * 3008 / 1769)
    head, tail = 0.1 + 0.01 + block, 0.1 + 0.01 + 0.4
    lat0 = head + tail + (t_storage(600) + 0.41 + block) + (t_storage(1000) + 0.41)
    assert ev.latency_s == pytest.approx(lat0)
    assert ev.layer_latency_s[1] == pytest.approx(t_storage(1000) + 0.41)
    assert ev.throughput_tokens_per_s == pytest.approx(1000 / lat0)
    need = 100 + (804_400 + 1000 * 800 + 1000 * 4000) / 2**20
    assert ev.violations["memory"] == pytest.approx(need - 1769)
    assert ev.violations["time_limit"] == pytest.approx(lat0 - 100)
    assert ev.feasible


def test_replicas_split_tokens_and_each_bills(tiny):
    one = evaluate(tiny, DeploymentPlan.uniform(tiny, 1769, 1, "storage"))
    two = evaluate(tiny, DeploymentPlan.uniform(tiny, 1769, 2, "storage"))
    # Two replicas of 1000 tokens: each 500 tokens, both billed: 2 * 1.535 instead of 2.135.
    assert two.cost_gb_s > one.cost_gb_s
    assert two.layer_latency_s[1] < one.layer_latency_s[1]


def test_direct_layer_latency_and_payload(tiny):
    plan = DeploymentPlan.uniform(tiny, 1769, 1, "direct")
    ev = evaluate(tiny, plan)
    t1000 = H + 1000 * (400 / 2e6 + 4e-4)
    # Eq. 11: scatter of the biggest replica's payload + slowest replica + next function load.
    assert ev.layer_latency_s[1] == pytest.approx(1000 * 400 / 2e6 + t1000 + 0.11)
    assert ev.violations["payload"] == pytest.approx((1000 * 400 - 6_291_456) / 2**20)


def test_grouped_function_hosts_two_experts(tiny):
    grouped = DeploymentPlan(
        "tiny", tiny.fingerprint,
        (LayerPlan("storage", 1, (FunctionPlan((0, 1), 1769, 1),)),) * 2,
    )
    ev = evaluate(tiny, grouped)
    # One function with both experts' weights and all 1000 tokens of the layer.
    t = (2 * 804_400) / 1e6 + 0.11 + 0.02 + 1000 * (800 / 1e6 + 4e-4)
    assert ev.layer_latency_s[0] == pytest.approx(t + 0.41)


def test_full_scope_adds_requests_storage_and_nonmoe():
    spec = tiny_spec()
    spec["deployment"] = dict(spec["deployment"], cost_scope="full")
    full = problem_from_dict(spec, "full.json")
    paper = problem_from_dict(tiny_spec(), "paper.json")
    plan_f = DeploymentPlan.uniform(full, 1769, 1, "storage")
    ev_full, ev_paper = evaluate(full, plan_f), evaluate(paper, DeploymentPlan.uniform(paper, 1769, 1))
    b = ev_full.cost_breakdown_usd
    # Batch 0 invokes 3 expert replicas, batch 1 four; plus 4 non-MoE functions each.
    assert b["requests"] == pytest.approx((3.5 + 4) * 2e-7)
    # Per replica: one weights GET, one PUT + GET for input and for output.
    assert b["storage_requests"] == pytest.approx(3.5 * (2 * (5e-6 + 4e-7) + 4e-7))
    assert b["nonmoe"] > 0
    assert ev_full.cost_usd == pytest.approx(ev_paper.cost_usd + sum(v for k, v in b.items() if k != "experts"))


def _random_arrays(problem, n, seed, grouped=False):
    rng = np.random.default_rng(seed)
    L, E = problem.layers, problem.experts
    menu = np.array(problem.memory_options)
    group = None
    if grouped:
        group = rng.integers(0, E, (n, L, E))
    return PlanArrays(
        memory_mb=menu[rng.integers(0, len(menu), (n, L, E))].astype(float),
        replicas=rng.integers(1, problem.max_replicas + 1, (n, L, E)),
        method=rng.integers(0, 3, (n, L)),
        pipeline_degree=rng.integers(1, 300, (n, L)).astype(float),
        group=group,
    )


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.booleans())
def test_batch_equals_one_by_one(seed, grouped):
    from moeopt.builtin_problems import builtin_problem

    problem = builtin_problem("bert-moe-8")
    arrays = _random_arrays(problem, 6, seed, grouped)
    batch = evaluate_batch(problem, arrays)
    plans = [arrays.plan(p, problem) for p in range(6)]
    for p, plan in enumerate(plans):
        single = evaluate(problem, plan)
        assert single.cost_usd == pytest.approx(batch.cost_usd[p], rel=1e-12)
        assert single.latency_s == pytest.approx(batch.latency_s[p], rel=1e-12)
        assert single.feasible == bool(batch.feasible[p])
        for k, v in single.violations.items():
            assert v == pytest.approx(batch.violations[k][p], rel=1e-12, abs=1e-12)
    many = evaluate_many(problem, plans, chunk=4)
    np.testing.assert_allclose(many.cost_usd, batch.cost_usd, rtol=1e-12)


def test_plan_round_trip_through_arrays(tiny):
    plan = DeploymentPlan(
        "tiny", tiny.fingerprint,
        (
            LayerPlan("pipelined_storage", 64, (FunctionPlan((1,), 3538, 2, "x86_64"), FunctionPlan((0,), 1769, 1))),
            LayerPlan("direct", 1, (FunctionPlan((0, 1), 1769, 3),)),
        ),
    )
    back = PlanArrays.from_plans([plan], tiny).plan(0, tiny)
    assert evaluate(tiny, back) == evaluate(tiny, plan)
