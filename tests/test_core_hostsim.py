"""The host simulation: on an unlimited platform it is the evaluator, replica by replica; on a
few vCPUs it queues first come, first served and never bills the wait."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moeopt.evaluate import evaluate_batch
from moeopt.hostsim import simulate
from moeopt.plan import DeploymentPlan, FunctionPlan, LayerPlan, PlanArrays
from moeopt.problem import problem_from_dict
from tests.conftest import tiny_spec


def _random_plans(problem, n, seed):
    rng = np.random.default_rng(seed)
    L, E = problem.layers, problem.experts
    menu = np.array(problem.memory_options)
    arrays = PlanArrays(
        memory_mb=menu[rng.integers(0, len(menu), (n, L, E))].astype(float),
        replicas=rng.integers(1, problem.max_replicas + 1, (n, L, E)),
        method=rng.integers(0, 3, (n, L)),
        pipeline_degree=rng.integers(1, 3000, (n, L)).astype(float),
        group=rng.integers(0, E, (n, L, E)) if seed % 2 else None,
    )
    return arrays, [arrays.plan(p, problem) for p in range(n)]


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from(["bert-moe-4", "minilm-moe-8", "mixtral-8x7b"]),
       st.sampled_from(["warm", "cold"]))
def test_unlimited_host_is_the_evaluator(seed, name, start):
    from moeopt.builtin_problems import builtin_spec

    spec = builtin_spec(name)
    spec["deployment"] = dict(spec["deployment"], start=start)
    problem = problem_from_dict(spec, name)
    arrays, plans = _random_plans(problem, 4, seed)
    batch = evaluate_batch(problem, arrays)
    for p, plan in enumerate(plans):
        runs = simulate(problem, plan)
        assert max(r.latency_s for r in runs) == pytest.approx(batch.latency_s[p], rel=1e-9)
        gb_s = np.mean([r.billed_gb_s for r in runs])
        assert gb_s == pytest.approx(batch.cost_gb_s[p], rel=1e-9)
        assert all(r.queued_replicas == 0 for r in runs)


def test_waves_on_a_small_host_by_hand():
    """Two 1-vCPU storage replicas on a 1-vCPU host run one after the other."""
    problem = problem_from_dict(tiny_spec(), "tiny")
    plan = DeploymentPlan(
        "tiny", problem.fingerprint,
        (LayerPlan("storage", 1, (FunctionPlan((0,), 1769), FunctionPlan((1,), 1769))),
         LayerPlan("storage", 1, (FunctionPlan((0,), 1769), FunctionPlan((1,), 1769)))),
    )
    free = simulate(problem, plan)[0]
    tight = simulate(problem, plan, host_vcpus=1.0)[0]
    # Batch 0, layer 0: (600, 400) tokens. Alone, the 600-token replica is done at 1.6544 (see
    # tests/test_core_evaluate.py). On one vCPU the 400-token one is admitted when it ends; its
    # input has been in storage since 0.17, so it starts at 1.6544 + 0.1 + 0.8144 (weights) and
    # is done 0.02 + 400 * 1.2 ms later: 3.0688; its output reaches the next function 0.17 later.
    assert tight.layer_latency_s[0] == pytest.approx(3.0688 + 0.17)
    assert free.layer_latency_s[0] == pytest.approx(1.9044)
    assert tight.queued_replicas == 1  # layer 1 of batch 0 has one replica (1000, 0)
    # waiting is not billed: the 400-token replica bills the same 1.315 s either way
    assert tight.billed_gb_s == pytest.approx(free.billed_gb_s)


def test_a_function_bigger_than_the_host_runs_alone_and_is_counted():
    problem = problem_from_dict(tiny_spec(), "tiny")
    plan = DeploymentPlan.uniform(problem, 3538, 1, "storage")
    runs = simulate(problem, plan, host_vcpus=1.0)
    assert runs[0].over_committed == 3 and runs[1].over_committed == 4
