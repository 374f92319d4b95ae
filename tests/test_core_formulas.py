"""Each time and cost formula against numbers worked out by hand (see conftest's tiny problem).

Tiny model: hidden 100, FFN 1000, fp32 -> a token is 400 B, an expert 201,100 params
(804,400 B) and 400,000 FLOPs per token. Bs = 1 MB/s, Tdl = 10 ms, Bf = 2 MB/s, warm start
100 ms, 1 GFLOP/s per vCPU, so at 1,769 MB (1 vCPU) U = 0.4 ms and H = 0.8044 + 0.01 + 0.1.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cost_models import lambda_model as lm
from cost_models.constants import DEFAULT_CONSTANTS, load_constants
from cost_models.cpu_cluster import cluster_run
from moeopt.model import ModelSpec, ServiceLevel

H = 0.8044 + 0.01 + 0.1


def test_model_sizes(tiny):
    m = tiny.model
    assert m.token_bytes == 400
    assert m.expert_params == 2 * 100 * 1000 + 1000 + 100
    assert m.expert_param_bytes == 804_400
    assert m.expert_flops_per_token == 400_000
    swiglu = ModelSpec("x", 1, 8, 2, 4096, 14336, "bfloat16", ffn_matrices=3)
    assert swiglu.expert_param_bytes == (3 * 4096 * 14336 + 2 * 14336 + 4096) * 2


def test_vcpu_share_and_compute_time(tiny):
    c = tiny.constants
    assert lm.vcpu_share(1769, c) == pytest.approx(1.0)
    assert lm.vcpu_share(10240, c) == pytest.approx(10240 / 1769)  # 5.79 < 6
    assert lm.vcpu_share(128, c) == pytest.approx(128 / 1769)
    assert lm.compute_time_per_token(1769, 400_000, c) == pytest.approx(4e-4)
    assert lm.compute_time_per_token(3538, 400_000, c) == pytest.approx(2e-4)
    assert lm.head_time(804_400, 0.1, c) == pytest.approx(H)
    assert lm.weights_fetch_s(804_400, c, False) == 0.0
    # threads beyond the first vCPU count at multi_vcpu_efficiency
    half = c.with_overrides({"multi_vcpu_efficiency": 0.5}, "test")
    assert lm.compute_time_per_token(3538, 400_000, half) == pytest.approx(4e-4 / 1.5)


def test_vcpu_caps_at_six():
    big = DEFAULT_CONSTANTS.with_overrides({"lambda_mb_per_vcpu": 1000.0}, "test")
    assert lm.vcpu_share(10240, big) == 6.0


def test_replica_times_each_method(tiny):
    c = tiny.constants
    u, w, start, load = 4e-4, 0.8144, 0.1, 0.11
    def times(method, r, beta=1):
        t = lm.replica_times(method, r, w, u, beta, 400, c, start, load)
        return float(t.billed_s), float(t.finish_s)
    # storage: input ready at max(start + w, 0.01 + r * 0.4 ms); 2 requests + r * (2x + U)
    billed, finish = times(lm.STORAGE, 600)
    assert billed == pytest.approx(0.8144 + 0.02 + 600 * (800 / 1e6 + u))  # 1.5544
    assert finish == pytest.approx(0.1 + billed + 0.01 + 600 * 400 / 1e6)  # + the gather
    # direct: payload in at r * Dw / Bf, then start, weights, r * (U + Dw / Bf)
    billed, finish = times(lm.DIRECT, 600)
    assert billed == pytest.approx(0.8144 + 600 * (400 / 2e6 + u))
    assert finish == pytest.approx(600 * 400 / 2e6 + 0.1 + billed)
    # pipelined, one block (beta above r): d + c + u after max(ready, d), then the gather
    billed, finish = times(lm.PIPELINED_STORAGE, 600, 1000)
    d = 0.01 + 600 * 400 / 1e6
    assert billed == pytest.approx(0.8144 + d + 600 * u + d)
    assert finish == pytest.approx(0.1 + billed + d)
    assert times(lm.STORAGE, 0) == (0.0, 0.0)
    # a cold start's init is billed
    cold = lm.replica_times(lm.STORAGE, 600, w, u, 1, 400, c, 5.0, load, start_billed=True)
    assert float(cold.billed_s) == pytest.approx(5.0 + 0.8144 + 0.02 + 600 * (800 / 1e6 + u))
    assert float(lm.layer_offset_s(lm.DIRECT, load)) == load
    assert float(lm.layer_offset_s(lm.STORAGE, load)) == 0.0


def test_billing_rounds_up_to_the_millisecond(tiny):
    c = tiny.constants
    assert lm.billed_seconds(1.6544, c) == pytest.approx(1.655)
    assert lm.billed_seconds(1.655, c) == pytest.approx(1.655)
    assert lm.billed_seconds(0.0001, c) == pytest.approx(0.001)
    assert lm.price_per_mb_second(False, c) * 1024 == pytest.approx(0.0000166667)
    assert lm.price_per_mb_second(True, c) * 1024 == pytest.approx(0.0000133334)


def test_payload_and_memory(tiny):
    c = tiny.constants
    assert lm.payload_bytes(1000, 400, c) == pytest.approx(400_000)
    default = DEFAULT_CONSTANTS  # base64 (4/3) plus a 1 KB envelope
    assert lm.payload_bytes(1000, 3072, default) == pytest.approx(1000 * 4096 + 1024)
    need = lm.memory_required_mb(lm.STORAGE, 1000, 804_400, 1, 400, 4000, c)
    assert need == pytest.approx(100 + (804_400 + 1000 * 800 + 1000 * 4000) / 2**20)
    piped = lm.memory_required_mb(lm.PIPELINED_STORAGE, 1000, 804_400, 100, 400, 4000, c)
    assert piped == pytest.approx(100 + (804_400 + 200 * 800 + 100 * 4000) / 2**20)


def test_service_level_throughput():
    slo = ServiceLevel.from_throughput(300.0, 10_240)
    assert slo.time_limit_s == pytest.approx(10_240 / 300)
    assert slo.throughput_target(10_240) == pytest.approx(300.0)


def test_cpu_cluster_cost_by_hand():
    m = ModelSpec("m", 1, 2, 1, 100, 1000, sequence_length=10)
    loads = np.array([[[600, 400]]])
    run = cluster_run(m, loads, 1000, usd_per_hour=3.6, cores=4, flops_per_core=1e9, instance="x",
                      requests_per_hour=60)
    # 2 experts on 2 cores each: 600 * 4e5 / 2e9 = 0.12 s; attention 1000 * 4000 / 4e9 = 0.001 s
    assert run.wall_time_s == pytest.approx(0.121)
    assert run.busy_cost_usd == pytest.approx(0.121 * 3.6 / 3600)
    # always on at 60 batches an hour: one instance, $3.60 / 60 per batch
    assert run.cost_usd == pytest.approx(3.6 / 60)
    assert run.instances == 1 and run.utilisation == pytest.approx(60 * 0.121 / 3600)


def test_constants_have_sources_and_profile_override(tmp_path):
    for name in DEFAULT_CONSTANTS.names():
        assert DEFAULT_CONSTANTS.sources.get(name), f"{name} has no source"
    profile = tmp_path / "p.json"
    profile.write_text('{"constants": {"storage_delay_s": 0.5}}')
    c = load_constants(profile)
    assert c.storage_delay_s == 0.5 and c.profile == str(profile)
    assert c.warm_start_s == DEFAULT_CONSTANTS.warm_start_s


# ---- properties -------------------------------------------------------------------------------

memories = st.integers(128, 10_240)


@given(memories, memories, st.floats(1e3, 1e12))
def test_more_memory_never_slows_compute(m1, m2, flops):
    lo, hi = sorted((m1, m2))
    c = DEFAULT_CONSTANTS
    assert lm.compute_time_per_token(hi, flops, c) <= lm.compute_time_per_token(lo, flops, c)


@given(
    st.sampled_from([lm.PIPELINED_STORAGE, lm.STORAGE, lm.DIRECT]),
    st.integers(0, 20_000),
    memories,
    st.integers(1, 4096),
    st.floats(0, 1e9),
)
def test_time_and_cost_never_negative(method, tokens, memory, beta, param_bytes):
    c = DEFAULT_CONSTANTS
    u = lm.compute_time_per_token(memory, 1e7, c)
    w = lm.weights_fetch_s(param_bytes, c)
    t = lm.replica_times(method, tokens, w, u, beta, 3072, c, c.warm_start_s, 0.5)
    assert t.billed_s >= 0 and t.finish_s >= 0
    assert (t.finish_s >= t.billed_s) or tokens == 0
    assert lm.billed_seconds(t.billed_s, c) * lm.price_per_mb_second(False, c) * memory >= 0


@given(st.integers(1, 20_000), st.integers(1, 4096), st.floats(0, 2), st.floats(0, 5))
def test_more_tokens_never_take_less_time(tokens, beta, weights, load):
    c = DEFAULT_CONSTANTS
    for method in (lm.PIPELINED_STORAGE, lm.STORAGE, lm.DIRECT):
        a = lm.replica_times(method, tokens, weights, 1e-4, beta, 3072, c, c.warm_start_s, load)
        b = lm.replica_times(method, tokens + 1, weights, 1e-4, beta, 3072, c, c.warm_start_s, load)
        assert b.billed_s >= a.billed_s - 1e-12
        assert b.finish_s >= a.finish_s - 1e-12


@settings(max_examples=50)
@given(st.integers(1, 5000), st.sampled_from([768, 2048, 4096, 7168]))
def test_payload_over_limit_is_a_violation_for_direct(tokens, hidden):
    """Direct invocation with a payload over 6 MB is always flagged by the evaluator."""
    from moeopt.evaluate import evaluate
    from moeopt.plan import DeploymentPlan
    from moeopt.problem import problem_from_dict

    spec = {
        "name": "p",
        "model": {"moe_layers": 1, "experts_per_layer": 1, "top_k": 1, "hidden_size": hidden,
                  "expert_ffn_size": 64},
        "workload": {"tokens_per_batch": tokens},
        "slo": {"time_limit_s": 1e9},
        "popularity": {"source": "loads", "loads": [[[tokens]]]},
    }
    problem = problem_from_dict(spec, "p.json")
    ev = evaluate(problem, DeploymentPlan.uniform(problem, 3008, 1, "direct"))
    size = lm.payload_bytes(tokens, hidden * 4, problem.constants)
    assert (ev.violations["payload"] > 0) == (size > problem.constants.lambda_payload_limit_bytes)
    if size > problem.constants.lambda_payload_limit_bytes:
        assert not ev.feasible
