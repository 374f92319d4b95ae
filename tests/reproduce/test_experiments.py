"""The experiments' building blocks, each against the library it stands on."""

from __future__ import annotations

import math

import numpy as np
import pytest

from moeopt.builtin_problems import builtin_problem
from moeopt.evaluate import evaluate
from moeopt.jsonout import strict
from moeopt.plan import DeploymentPlan
from moeopt.space import PIPELINE_DEGREES
from reproduce.beyond import group_cold_experts, on_arm64, variant
from reproduce.designs import NO_TIME_LIMIT, design_plan, largest_payload_mb
from reproduce.solving import heldout, lambdaml, optimum, plan_summary, with_ratio, with_tokens


def test_with_ratio_sets_the_target_from_lambdamls_throughput():
    p = builtin_problem("bert-moe-4")
    q = with_ratio(p, 0.5)
    target = q.slo.throughput_target(q.workload.tokens_per_batch)
    assert target == pytest.approx(0.5 * lambdaml(p).throughput_tokens_per_s)


def test_with_tokens_and_heldout_keep_the_routing():
    p = builtin_problem("gpt2-moe-4")
    small = with_tokens(p, 2560)
    assert (small.popularity.loads.sum(axis=2) == 2560).all()
    share = p.popularity.loads / p.popularity.loads.sum(axis=2, keepdims=True)
    assert np.abs(small.popularity.loads / 2560 - share).max() < 1 / 2560 + 1e-12
    held = heldout(p, 5, seed=7)
    assert held.popularity.batches == 5 and (held.popularity.loads.sum(axis=2) == 10_240).all()
    assert held.slo == p.slo and not np.array_equal(held.popularity.loads[:1], p.popularity.loads[:1])


def test_design_plan_takes_the_cheapest_pipeline_degree_and_the_payload_by_hand():
    p = with_tokens(builtin_problem("bert-moe-4"), 2560).with_slo(NO_TIME_LIMIT)
    plan = design_plan(p, "pipelined_storage")
    costs = {b: evaluate(p, DeploymentPlan.uniform(p, 3072, 1, "pipelined_storage", b)).cost_usd
             for b in PIPELINE_DEGREES}
    assert costs[plan.layers[0].pipeline_degree] == pytest.approx(min(costs.values()))
    heaviest = p.popularity.loads.max()
    assert largest_payload_mb(p) == pytest.approx((heaviest * 768 * 4 * 4 / 3 + 1024) / 2**20)


def test_grouping_never_costs_more_and_stays_feasible():
    base = builtin_problem("bert-moe-16")
    full = variant("bert-moe-16", None, base, cost_scope="full")
    opt = optimum(full, greedy_seconds=5, ilp_seconds=0)
    grouped = group_cold_experts(full, opt.plan)
    before, after = evaluate(full, opt.plan), evaluate(full, grouped)
    assert after.feasible and after.cost_usd <= before.cost_usd + 1e-15
    assert plan_summary(grouped)["functions"] <= plan_summary(opt.plan)["functions"]


def test_arm64_plan_is_the_same_plan_at_arm64s_price():
    p = builtin_problem("bert-moe-4")
    arm = variant("bert-moe-4", None, p, architectures=["x86_64", "arm64"])
    plan = DeploymentPlan.uniform(p, 1536, 2)
    ratio = evaluate(arm, on_arm64(plan)).cost_usd / evaluate(p, plan).cost_usd
    c = p.constants
    assert ratio == pytest.approx(c.lambda_price_arm64_usd_per_gb_s / c.lambda_price_x86_64_usd_per_gb_s)


def test_results_are_strict_json():
    out = strict({"a": math.inf, "b": [np.float64("nan"), np.int64(3), np.bool_(True)], 2: (1.5,)})
    assert out == {"a": None, "b": [None, 3, True], "2": [1.5]}
