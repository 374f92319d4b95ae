"""A plan's run, replica by replica, on a platform with a limited number of vCPUs.

Lambda runs every invocation at once; a host of a few cores does not. The local backend admits
an invocation only when its vCPUs fit (first come, first served; ``lambda_runtime.local.host``),
so a layer whose replicas ask for more vCPUs than the host has runs in waves. This module
predicts that: the same per-replica timelines as :mod:`moeopt.evaluate` (the same formulas of
``cost_models.lambda_model``), each shifted to when the host admits it. Waiting for admission is
not billed, so cost does not change; latency does. With ``host_vcpus=None`` (Lambda) it gives
the evaluator's numbers exactly (a test holds it to that), which makes it an independent check of
the vectorized evaluator too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cost_models import lambda_model as lm
from moeopt.evaluate import fixed_parts
from moeopt.plan import DeploymentPlan
from moeopt.problem import DeploymentProblem


@dataclass(frozen=True)
class BatchRun:
    """One batch as a run on the platform would go, predicted."""

    latency_s: float
    billed_gb_s: float
    layer_latency_s: tuple[float, ...]
    queued_replicas: int  # replicas that waited for the host's vCPUs
    over_committed: int  # replicas that ask for more vCPUs than the host has


def simulate(
    problem: DeploymentProblem, plan: DeploymentPlan, host_vcpus: float | None = None
) -> list[BatchRun]:
    """Predict every batch of the problem's popularity for ``plan`` on a platform whose
    functions may use ``host_vcpus`` vCPUs at once (None: no limit, as on Lambda).

    Replicas reach the platform in the coordinator's order (plan order; a direct invocation
    once its payload has arrived) and are admitted first come, first served."""
    c, m, fx = problem.constants, problem.model, fixed_parts(problem)
    wire = lm.wire_token_bytes(m.token_bytes, c) / c.function_bandwidth_bytes_per_s
    runs = []
    for b in range(problem.popularity.batches):
        layer_lat: list[float] = []
        billed_gb_s = 0.0
        queued = over = 0
        for li, layer in enumerate(plan.layers):
            method = lm.METHODS.index(layer.method)
            replicas: list[_Replica] = []
            for f in layer.functions:
                tokens = float(sum(fx.loads[b, li, e] for e in f.experts))
                if tokens == 0:
                    continue
                r = float(np.ceil(tokens / f.replicas))
                arrival = 0.0
                if method == lm.DIRECT:
                    arrival = float(lm.gate_cpu_s(fx.layer_tokens[b, li], m.token_bytes, method, c))
                    arrival += r * wire
                replicas += [
                    _Replica(arrival, float(lm.vcpu_share(f.memory_mb, c)), r, f.memory_mb,
                             len(f.experts) * m.expert_param_bytes, f.architecture == "arm64")
                ] * int(min(f.replicas, tokens))
            replicas.sort(key=lambda x: x.arrival)  # stable: plan order among equal arrivals
            gate = float(lm.gate_cpu_s(fx.layer_tokens[b, li], m.token_bytes, method, c))
            finish = 0.0
            for rep, admit in zip(replicas, _admission(problem, method, layer.pipeline_degree,
                                                       replicas, host_vcpus, gate), strict=True):
                billed, _, done_finish = _replica(problem, method, layer.pipeline_degree, rep, admit,
                                                  gate)
                queued += admit > rep.arrival + 1e-9
                over += host_vcpus is not None and rep.vcpu > host_vcpus + 1e-9
                billed_gb_s += float(lm.billed_seconds(billed, c)) * rep.memory_mb / 1024.0
                finish = max(finish, done_finish)
            layer_lat.append(finish + float(lm.layer_offset_s(method, fx.next_load_s)))
        e2e = fx.head_tail_s + float(np.sum(layer_lat) + fx.nonmoe_compute_s.sum())
        runs.append(BatchRun(e2e, billed_gb_s, tuple(layer_lat), queued, over))
    return runs


@dataclass(frozen=True)
class _Replica:
    arrival: float  # when the invocation reaches the platform (direct: after its payload)
    vcpu: float
    tokens: float
    memory_mb: int
    param_bytes: float
    arm64: bool


def _replica(
    problem: DeploymentProblem, method: int, beta: float, rep: _Replica, admit: float,
    gate: float,
) -> tuple[float, float, float]:
    """(billed, done, finish) of a replica admitted at ``admit``: the evaluator's timeline with
    the replica's own clock shifted (the gate's puts and T_load still start with the layer)."""
    c, m, fx = problem.constants, problem.model, fixed_parts(problem)
    start, r = problem.start_s, rep.tokens
    u = float(lm.compute_time_per_token(rep.memory_mb, m.expert_flops_per_token, c, rep.arm64))
    cpu = float(lm.data_vcpus(rep.memory_mb, c))
    w = float(lm.weights_fetch_s(rep.param_bytes, c, problem.fetch_weights, cpu))
    # The replica's timeline from its handler's start: the formulas with the start moved by
    # ``admit`` and the gate's puts (storage methods) still counted from the layer's start.
    shift = admit if method != lm.DIRECT else admit - rep.arrival
    t = lm.replica_times(method, r, w + shift if method != lm.DIRECT else w, u, beta,
                         m.token_bytes, c, start, fx.next_load_s, problem.start == "cold",
                         cpu=cpu, gate_s=gate)
    billed, finish = float(t.billed_s), float(t.finish_s)
    if method == lm.DIRECT:
        return billed, rep.arrival + shift + start + billed, finish + shift
    # Storage methods: ``w + shift`` moved the handler's readiness; the wait for admission is
    # not billed, and the handler starts at admit + start.
    billed -= shift
    done = admit + start + billed - (start if problem.start == "cold" else 0.0)
    return billed, done, finish


def _admission(
    problem: DeploymentProblem, method: int, beta: float, replicas: list[_Replica],
    host_vcpus: float | None, gate: float,
) -> list[float]:
    """Admission times, first come, first served on ``host_vcpus`` (as
    ``lambda_runtime.local.host.HostCpu`` admits): a replica waits until its vCPUs fit next to
    those running (one asking for more than the host runs alone) and never overtakes one that
    arrived before it."""
    if host_vcpus is None:
        return [rep.arrival for rep in replicas]
    out: list[float] = []
    running: list[tuple[float, float]] = []  # (release, vcpu)
    t = 0.0
    for rep in replicas:
        t = max(t, rep.arrival)
        running.sort()
        while running:
            live = [(end, v) for end, v in running if end > t + 1e-12]
            used = sum(v for _, v in live)
            fits = used + rep.vcpu <= host_vcpus + 1e-9 if rep.vcpu <= host_vcpus + 1e-9 else not live
            running = live
            if fits:
                break
            t = min(end for end, _ in live)
        _, done, _ = _replica(problem, method, beta, rep, t, gate)
        running.append((done, rep.vcpu))
        out.append(t)
    return out
