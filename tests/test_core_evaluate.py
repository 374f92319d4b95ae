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

# Tiny constants (conftest): Bs = 1 MB/s, Tdl = 10 ms, Bf = 2 MB/s, warm start 0.1 s (not
# billed), U = 0.4 ms per token at 1,769 MB, a token is 400 B (x = 0.4 ms per token on storage),
# an expert's weights 804,400 B (fetched every invocation: 0.01 + 0.8044 s), T_load = 0.11 s.
READY = 0.1 + 0.8144  # start + weight fetch: the handler can take its input


def done_storage(r: int) -> float:
    """A storage replica's upload of its output ends (its input, ready at 0.01 + 0.4 ms * r,
    is never later than READY for the loads here)."""
    return READY + 0.02 + r * (0.8e-3 + 0.4e-3)


def test_whole_plan_by_hand(tiny):
    plan = DeploymentPlan.uniform(tiny, 1769, 1, "storage")
    ev = evaluate(tiny, plan)
    # Batch 0 loads (600, 400) and (1000, 0); batch 1 (500, 500) and (700, 300). Each invoked
    # replica bills from its handler's start (done - 0.1) rounded up to 1 ms; an expert with no
    # tokens is not invoked.
    assert done_storage(600) == pytest.approx(1.6544)
    billed_0 = 1.555 + 1.315 + 2.035
    billed_1 = 1.435 + 1.435 + 1.675 + 1.195
    gb_s = (billed_0 + billed_1) / 2 * 1769 / 1024
    assert ev.cost_gb_s == pytest.approx(gb_s)
    assert ev.cost_usd == pytest.approx(gb_s * 0.0000166667)
    # Latency of batch 0 (the slower), the whole sum by hand:
    #   head: start 0.1 + fetch of no weights 0.01 + attention-and-gate block
    #   layer 0: the 600-token replica is done at 1.6544, then the next function gets its
    #            output: + 0.01 + 600 * 0.4 ms = 1.9044 (the 400-token one: 1.5844)
    #   block after layer 0; layer 1: 2.1344 + 0.01 + 0.4 = 2.5444; no tail after it
    block = 1000 * (4 * 10 * 100 + 2 * 100 * 2) / (1e9 * 3008 / 1769)
    lat0 = 0.11 + block + 1.9044 + block + 2.5444
    assert ev.latency_s == pytest.approx(lat0)
    assert ev.layer_latency_s == pytest.approx((1.9044, 2.5444))
    assert ev.throughput_tokens_per_s == pytest.approx(1000 / lat0)
    need = 100 + (804_400 + 1000 * 800 + 1000 * 4000) / 2**20
    assert ev.violations["memory"] == pytest.approx(need - 1769)
    assert ev.violations["time_limit"] == pytest.approx(lat0 - 100)
    assert ev.feasible


def test_pipelined_plan_by_hand(tiny):
    """Layer 0 pipelined with beta 250: the 600-token replica runs blocks of 250, 250, 100."""
    plan = DeploymentPlan(
        "tiny", tiny.fingerprint,
        (
            LayerPlan("pipelined_storage", 250, (FunctionPlan((0,), 1769), FunctionPlan((1,), 1769))),
            LayerPlan("storage", 1, (FunctionPlan((0,), 1769), FunctionPlan((1,), 1769))),
        ),
    )
    ev = evaluate(tiny, plan)
    # Stages per full block: download d = 0.01 + 250 * 0.4 ms = 0.11, compute 0.1, upload 0.11,
    # next function's download 0.11; the last block of 100 tokens: 0.05, 0.04, 0.05, 0.05.
    # The pipeline starts at READY = 0.9144 (the first block is in storage at 0.11).
    # downloads end 1.0244, 1.1344, 1.1844; computes 1.1244, 1.2344, 1.2744;
    # uploads 1.2344, 1.3444, 1.3944; the next function has them at 1.3444, 1.4544, 1.5044.
    # Batch 0's 400-token replica (blocks 250, 150) has its outputs with the next one at 1.3844,
    # so layer 0 takes 1.5044 on batch 0; batch 1 (500 and 500: two full blocks each) 1.4544.
    assert ev.layer_latency_s[0] == pytest.approx(1.5044)
    block = 1000 * (4 * 10 * 100 + 2 * 100 * 2) / (1e9 * 3008 / 1769)
    assert ev.latency_s == pytest.approx(0.11 + block + 1.5044 + block + 2.5444)


def test_replica_times_closed_form_equals_block_by_block():
    """The closed-form pipeline against the stage-by-stage recursion it stands for, with the
    data-handling CPU terms on (so the gate's pace and the function's differ)."""
    from cost_models import lambda_model as lm
    from cost_models.constants import DEFAULT_CONSTANTS
    from tests.conftest import TINY_CONSTANTS

    rng = np.random.default_rng(0)
    for trial in range(400):
        ks = [0.0, 2e-7, 1e-6][trial % 3]
        c = DEFAULT_CONSTANTS.with_overrides({**TINY_CONSTANTS, "storage_cpu_s_per_byte": ks}, "t")
        r, beta = int(rng.integers(1, 3000)), int(rng.integers(1, 1200))
        ready, u, load = rng.uniform(0, 2), rng.uniform(0, 2e-3), rng.uniform(0, 3)
        cpu = rng.choice([0.25, 0.5, 1.0])
        times = lm.replica_times(lm.PIPELINED_STORAGE, r, ready - 0.1, u, beta, 400, c, 0.1, load,
                                 cpu=cpu, gate_s=rng.uniform(0, 1))
        b = min(beta, r)
        sizes = [b] * (r // b) + ([r % b] if r % b else [])
        x, tdl, y = 400 / 1e6, 0.01, 400 * ks
        landed = 0.0
        dl, cm, up, ga = ready, -np.inf, -np.inf, -np.inf
        for s_ in sizes:
            landed += tdl + s_ * x + s_ * y  # the gate encodes and puts the blocks in turn
            dl = max(dl, landed) + tdl + s_ * x
            cm = max(cm, dl) + s_ * (u + 2 * y / cpu)
            up = max(up, cm) + tdl + s_ * x
            ga = max(ga, up, load) + tdl + s_ * x + s_ * y
        assert float(times.billed_s) == pytest.approx(up - 0.1, rel=1e-9, abs=1e-12)
        assert float(times.finish_s) == pytest.approx(ga, rel=1e-9, abs=1e-12)


def test_replicas_split_tokens_and_each_bills(tiny):
    one = evaluate(tiny, DeploymentPlan.uniform(tiny, 1769, 1, "storage"))
    two = evaluate(tiny, DeploymentPlan.uniform(tiny, 1769, 2, "storage"))
    # Two replicas of 1000 tokens: each 500 tokens, both billed: 2 * 1.535 instead of 2.135.
    assert two.cost_gb_s > one.cost_gb_s
    assert two.layer_latency_s[1] < one.layer_latency_s[1]


def test_direct_layer_latency_and_payload(tiny):
    plan = DeploymentPlan.uniform(tiny, 1769, 1, "direct")
    ev = evaluate(tiny, plan)
    # Layer 1, batch 0, the 1000-token replica: its payload arrives at 1000 * 400 / 2e6 = 0.2,
    # it starts (0.1), fetches its weights (0.8144), computes and sends its outputs
    # (1000 * (0.4 ms + 0.2 ms)); then the next function starts and fetches (T_load = 0.11).
    assert ev.layer_latency_s[1] == pytest.approx(0.2 + 0.1 + 0.8144 + 0.6 + 0.11)
    assert ev.violations["payload"] == pytest.approx((1000 * 400 - 6_291_456) / 2**20)


def test_grouped_function_hosts_two_experts(tiny):
    grouped = DeploymentPlan(
        "tiny", tiny.fingerprint,
        (LayerPlan("storage", 1, (FunctionPlan((0, 1), 1769, 1),)),) * 2,
    )
    ev = evaluate(tiny, grouped)
    # One function with both experts' weights (fetched in 0.01 + 1.6088 s) and all 1000 tokens.
    done = 0.1 + 0.01 + 2 * 0.8044 + 0.02 + 1000 * (0.8e-3 + 0.4e-3)
    assert ev.layer_latency_s[0] == pytest.approx(done + 0.41)


def test_full_scope_adds_requests_storage_and_nonmoe():
    spec = tiny_spec()
    spec["deployment"] = dict(spec["deployment"], cost_scope="full")
    full = problem_from_dict(spec, "full.json")
    paper = problem_from_dict(tiny_spec(), "paper.json")
    plan_f = DeploymentPlan.uniform(full, 1769, 1, "storage")
    ev_full, ev_paper = evaluate(full, plan_f), evaluate(paper, DeploymentPlan.uniform(paper, 1769, 1))
    b = ev_full.cost_breakdown_usd
    # Batch 0 invokes 3 expert replicas, batch 1 four; plus 3 non-MoE functions each (the
    # head and one after each MoE layer).
    assert b["requests"] == pytest.approx((3.5 + 3) * 2e-7)
    # Per replica: one weights GET, one PUT + GET for input and for output; a weights GET per
    # non-MoE function.
    assert b["storage_requests"] == pytest.approx(3.5 * (2 * (5e-6 + 4e-7) + 4e-7) + 3 * 4e-7)
    # The non-MoE functions bill from their start: the head (0.01 + block), and after each
    # storage layer the whole layer but its start (0.1) plus the next block.
    block = 1000 * (4 * 10 * 100 + 2 * 100 * 2) / (1e9 * 3008 / 1769)
    ms = lambda s: np.ceil(s * 1000 - 1e-6) / 1000  # noqa: E731
    batch0 = ms(0.01 + block) + ms(1.9044 - 0.1 + block) + ms(2.5444 - 0.1)
    batch1 = ms(0.01 + block) + ms(1.7444 - 0.1 + block) + ms(2.0644 - 0.1)
    assert b["nonmoe"] == pytest.approx((batch0 + batch1) / 2 * 3008 / 1024 * 0.0000166667)
    assert ev_full.cost_usd == pytest.approx(ev_paper.cost_usd + sum(v for k, v in b.items() if k != "experts"))


def test_cached_weights_are_fetched_only_by_cold_functions():
    warm = problem_from_dict(tiny_spec(deployment={"memory_menu": [1769], "weights": "cached"}), "t")
    per_call = problem_from_dict(tiny_spec(deployment={"memory_menu": [1769]}), "t")
    plan_w, plan_p = (DeploymentPlan.uniform(p, 1769, 1, "storage") for p in (warm, per_call))
    # Without the 0.8144 s fetch the 600-token replica waits for the gate's put of its input
    # (0.01 + 600 * 0.4 ms = 0.25), is done at 0.25 + 0.02 + 0.72, and its output reaches the
    # next function 0.25 later.
    assert evaluate(warm, plan_w).layer_latency_s[0] == pytest.approx(0.99 + 0.25)
    assert evaluate(per_call, plan_p).layer_latency_s[0] == pytest.approx(1.6544 + 0.25)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 2))
def test_beta_above_every_replica_changes_nothing(seed, which):
    """A pipeline degree at or above every replica's tokens is one block per replica."""
    from moeopt.builtin_problems import builtin_problem

    problem = builtin_problem(["bert-moe-4", "minilm-moe-8", "gpt2-moe-4"][which])
    arrays = _random_arrays(problem, 4, seed)
    arrays.method[:] = 0  # pipelined everywhere
    loads = problem.popularity.loads.max()
    r_max = float(loads)
    a = PlanArrays(arrays.memory_mb, arrays.replicas, arrays.method, np.full_like(arrays.pipeline_degree, r_max))
    b = PlanArrays(arrays.memory_mb, arrays.replicas, arrays.method, np.full_like(arrays.pipeline_degree, 4 * r_max + 7))
    ea, eb = evaluate_batch(problem, a), evaluate_batch(problem, b)
    np.testing.assert_allclose(ea.cost_usd, eb.cost_usd, rtol=1e-12)
    np.testing.assert_allclose(ea.latency_s, eb.latency_s, rtol=1e-12)
    for k in ea.violations:
        np.testing.assert_allclose(ea.violations[k], eb.violations[k], rtol=1e-12)


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
