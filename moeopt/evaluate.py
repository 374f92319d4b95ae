"""Price plans exactly as DESIGN.md describes: cost, latency, throughput and named violations.

Everything is computed on arrays shaped (plans, batches, layers, function slots), so pricing a
thousand plans costs one pass of numpy, not a thousand Python loops. A plan is judged on every
batch of the problem's popularity: cost is the mean over batches, and each constraint must hold
on the worst batch (violation values > 0 break it, <= 0 is feasible).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from cost_models import lambda_model as lm
from moeopt.plan import DeploymentPlan, PlanArrays
from moeopt.problem import DeploymentProblem

VIOLATIONS = ("memory", "payload", "time_limit", "timeout", "concurrency")
VIOLATION_UNITS = {
    "memory": "MB over the function's memory",
    "payload": "MB over the 6 MB invoke payload limit",
    "time_limit": "s over the end-to-end time limit",
    "timeout": "s over Lambda's 900 s function timeout",
    "concurrency": "concurrent functions over the account limit",
}


def violation_scales(problem: DeploymentProblem) -> dict[str, float]:
    """A unit per violation so different constraints compare: a GB of memory, the payload
    limit, the time limit, Lambda's timeout, the concurrency limit."""
    c = problem.constants
    return {
        "memory": 1024.0,
        "payload": c.lambda_payload_limit_bytes / 2**20,
        "time_limit": problem.slo.time_limit_s,
        "timeout": c.lambda_timeout_max_s,
        "concurrency": float(c.lambda_concurrency_limit),
    }


@dataclass(frozen=True)
class Evaluation:
    """What one plan costs and how fast it serves one batch, on the problem's batches."""

    cost_usd: float
    cost_gb_s: float
    feasible: bool
    latency_s: float
    latency_mean_s: float
    throughput_tokens_per_s: float
    layer_latency_s: tuple[float, ...]
    violations: dict[str, float]
    cost_breakdown_usd: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "cost_usd": self.cost_usd,
            "cost_gb_s": self.cost_gb_s,
            "feasible": self.feasible,
            "latency_s": self.latency_s,
            "latency_mean_s": self.latency_mean_s,
            "throughput_tokens_per_s": self.throughput_tokens_per_s,
            "layer_latency_s": list(self.layer_latency_s),
            "violations": dict(self.violations),
            "cost_breakdown_usd": dict(self.cost_breakdown_usd),
        }

    def broken(self) -> list[str]:
        return [name for name, v in self.violations.items() if not v <= 0]


@dataclass(frozen=True, eq=False)
class EvaluationBatch:
    """Evaluations of P plans as arrays of shape (P,); ``[p]`` gives one Evaluation."""

    cost_usd: np.ndarray
    cost_gb_s: np.ndarray
    latency_s: np.ndarray
    latency_mean_s: np.ndarray
    layer_latency_s: np.ndarray  # (P, L), worst batch per layer
    violations: dict[str, np.ndarray]
    cost_breakdown_usd: dict[str, np.ndarray]
    tokens_per_batch: int

    @property
    def feasible(self) -> np.ndarray:
        ok = np.ones_like(self.cost_usd, dtype=bool)
        for v in self.violations.values():
            ok &= v <= 0
        return ok & np.isfinite(self.cost_usd)

    @property
    def throughput_tokens_per_s(self) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return self.tokens_per_batch / self.latency_s

    def __len__(self) -> int:
        return len(self.cost_usd)

    def __getitem__(self, p: int) -> Evaluation:
        return Evaluation(
            cost_usd=float(self.cost_usd[p]),
            cost_gb_s=float(self.cost_gb_s[p]),
            feasible=bool(self.feasible[p]),
            latency_s=float(self.latency_s[p]),
            latency_mean_s=float(self.latency_mean_s[p]),
            throughput_tokens_per_s=float(self.throughput_tokens_per_s[p]),
            layer_latency_s=tuple(float(x) for x in self.layer_latency_s[p]),
            violations={k: float(v[p]) for k, v in self.violations.items()},
            cost_breakdown_usd={k: float(v[p]) for k, v in self.cost_breakdown_usd.items()},
        )


@dataclass(frozen=True, eq=False)
class FixedParts:
    """Plan-independent parts of a problem, computed once per problem (public: the ILP's
    tables price options with the same terms as the evaluator)."""

    loads: np.ndarray  # (B, L, E) token assignments
    layer_tokens: np.ndarray  # (B, L)
    next_load_s: float  # T_load: start the next non-MoE function and fetch its weights
    nonmoe_compute_s: np.ndarray  # (L,): attention + gate after MoE layer l (0 after the last)
    head_s: float  # the first non-MoE function: start, fetch weights, attention + gate
    nonmoe_fetch_s: float  # a non-MoE function's weight fetch (0 when weights stay warm)
    head_fetch_s: float  # the first non-MoE function's weight fetch (embeddings too)
    nonmoe_functions: int  # head + one after each MoE layer (the last one is the tail)
    nonmoe_price_usd_per_s: float  # a non-MoE function at nonmoe_memory_mb

    @property
    def head_tail_s(self) -> float:
        """Head plus tail of the end-to-end sum. The tail is only what the last non-MoE
        function does once it has its input (PAPER.md, notes to 12d): nothing here, since its
        start, weight fetch and the gather are already inside the last layer's latency."""
        return self.head_s


@lru_cache(maxsize=64)
def fixed_parts(problem: DeploymentProblem) -> FixedParts:
    c, m = problem.constants, problem.model
    loads = np.ascontiguousarray(problem.popularity.loads, dtype=float)  # (B, L, E)
    n = problem.workload.tokens_per_batch
    start = problem.start_s
    gate_flops = 2.0 * m.hidden_size * m.experts_per_layer
    block_s = n * (m.nonmoe_flops_per_token + gate_flops) / lm.nonmoe_flops_per_second(c)
    nonmoe_compute = np.full(problem.layers, block_s)
    nonmoe_compute[-1] = 0.0
    fetch = problem.fetch_weights
    nonmoe_fetch = float(lm.weights_fetch_s(m.nonmoe_param_bytes, c, fetch))
    head_fetch = float(
        lm.weights_fetch_s(m.embedding_params * m.dtype_bytes + m.nonmoe_param_bytes, c, fetch)
    )
    return FixedParts(
        loads=loads,
        layer_tokens=loads.sum(axis=2),
        next_load_s=start + nonmoe_fetch,
        nonmoe_compute_s=nonmoe_compute,
        head_s=start + head_fetch + block_s,
        nonmoe_fetch_s=nonmoe_fetch,
        head_fetch_s=head_fetch,
        nonmoe_functions=problem.layers + 1,
        nonmoe_price_usd_per_s=float(lm.price_per_mb_second(False, c)) * c.nonmoe_memory_mb,
    )


def nonmoe_billed_s(
    problem: DeploymentProblem, method: np.ndarray, layer_latency: np.ndarray
) -> np.ndarray:
    """Billed seconds of the non-MoE functions per batch ("full" scope), shape of
    ``layer_latency`` without its last axis. After a storage layer the next function runs from
    the layer's start (its start overlaps the experts) and waits, billed, for their outputs;
    after a direct layer it is invoked with the outputs and bills its weight fetch."""
    fx = fixed_parts(problem)
    start = problem.start_s
    cold = start if problem.start == "cold" else 0.0
    per_layer = np.where(method == lm.DIRECT, fx.nonmoe_fetch_s, layer_latency - start)
    per_layer = per_layer + fx.nonmoe_compute_s + cold
    head = fx.head_s - start + cold
    return lm.billed_seconds(head, problem.constants) + lm.billed_seconds(
        per_layer, problem.constants
    ).sum(axis=-1)


def evaluate_batch(problem: DeploymentProblem, plans: PlanArrays) -> EvaluationBatch:
    """Price P plans at once. Inside, arrays are (P, B, L, S): plan arrays broadcast over
    batches as (P, 1, L, S), loads over plans as (1, B, L, S); out come arrays of shape (P,)."""
    c, m, fx = problem.constants, problem.model, fixed_parts(problem)
    P, L = plans.method.shape
    memory = np.asarray(plans.memory_mb, dtype=float)  # (P, L, S)
    replicas = np.asarray(plans.replicas, dtype=float)
    method = np.asarray(plans.method)  # (P, L)
    beta = np.asarray(plans.pipeline_degree, dtype=float)
    arm = plans.arm64 if plans.arm64 is not None else False

    # Tokens and weights per function slot.
    if plans.group is None:
        tokens = fx.loads[None]  # (1, B, L, S)
        experts_in_slot = np.ones(memory.shape)
    else:
        B, S = fx.loads.shape[0], memory.shape[2]
        group = np.asarray(plans.group)  # (P, L, E)
        slot = np.arange(P)[:, None, None, None] * B + np.arange(B)[None, :, None, None]
        slot = (slot * L + np.arange(L)[None, None, :, None]) * S + group[:, None]  # (P, B, L, E)
        weights = np.broadcast_to(fx.loads[None], slot.shape)
        tokens = np.bincount(slot.ravel(), weights=weights.ravel(), minlength=P * B * L * S)
        tokens = tokens.reshape(P, B, L, S)
        experts_in_slot = np.zeros(memory.shape)
        np.add.at(experts_in_slot, (np.arange(P)[:, None, None], np.arange(L)[None, :, None], group), 1)
    param_bytes = experts_in_slot * m.expert_param_bytes  # (P, L, S)

    per_token = lm.compute_time_per_token(memory, m.expert_flops_per_token, c, arm)
    cpu = lm.data_vcpus(memory, c)  # (P, L, S)
    fetch = lm.weights_fetch_s(param_bytes, c, problem.fetch_weights, cpu)
    rep = replicas[:, None]
    r = np.ceil(tokens / rep)  # tokens per replica (P, B, L, S)
    active = np.minimum(rep, tokens)  # replicas that receive any token
    timing = dict(token_bytes=m.token_bytes, c=c, start_s=problem.start_s,
                  load_s=fx.next_load_s, start_billed=problem.start == "cold")
    gate = lm.gate_cpu_s(fx.layer_tokens[None], m.token_bytes, method[:, None, :], c)  # (P, B, L)
    # Direct and storage everywhere, then the pipelined formula only on pipelined layers.
    piped = method == lm.PIPELINED_STORAGE  # (P, L)
    linear = np.where(piped, lm.STORAGE, method)[:, None, :, None]
    times = lm.replica_times(linear, r, fetch[:, None], per_token[:, None], 1.0, **timing,
                             cpu=cpu[:, None], gate_s=gate[..., None])
    t, finish = times.billed_s, times.finish_s
    if piped.any():
        t_pl, f_pl = t.transpose(0, 2, 1, 3), finish.transpose(0, 2, 1, 3)  # views (P, L, B, S)
        r_sel = r.transpose(0, 2, 1, 3)[piped]
        sel = lm.replica_times(
            lm.PIPELINED_STORAGE, r_sel, fetch[piped][:, None, :], per_token[piped][:, None, :],
            beta[piped][:, None, None], **timing, cpu=cpu[piped][:, None, :],
            gate_s=gate.transpose(0, 2, 1)[piped][:, :, None],
        )
        t_pl[piped], f_pl[piped] = sel.billed_s, sel.finish_s

    # Cost: every active replica bills its own rounded duration.
    billed = lm.billed_seconds(t, c) * active
    price = lm.price_per_mb_second(arm, c) * memory  # (P, L, S)
    expert_usd = np.einsum("pbls,pls->pb", billed, price)
    gb_s = np.einsum("pbls,pls->pb", billed, memory) / 1024.0

    # Latency per batch and layer (the paper's Eqs. 7, 9, 11 in our network model), (P, B, L).
    layer_lat = finish.max(axis=3) + lm.layer_offset_s(method, fx.next_load_s)[:, None, :]
    e2e = fx.head_tail_s + (layer_lat + fx.nonmoe_compute_s).sum(axis=2)  # (P, B)

    breakdown = {"experts": expert_usd.mean(axis=1)}
    total = expert_usd
    if problem.cost_scope == "full":
        requests = active.sum(axis=(2, 3)) + fx.nonmoe_functions
        storage = storage_requests_usd(method[:, None, :, None], r, active, beta[:, None, :, None], c,
                                       problem.fetch_weights)
        storage = storage + (fx.nonmoe_functions * c.storage_get_usd if problem.fetch_weights else 0.0)
        nonmoe_s = nonmoe_billed_s(problem, method[:, None, :], layer_lat)  # (P, B)
        nonmoe = nonmoe_s * fx.nonmoe_price_usd_per_s
        breakdown["requests"] = (requests * c.lambda_request_usd).mean(axis=1)
        breakdown["storage_requests"] = storage.mean(axis=1)
        breakdown["nonmoe"] = nonmoe.mean(axis=1)
        total = total + requests * c.lambda_request_usd + storage + nonmoe
        gb_s = gb_s + nonmoe_s * c.nonmoe_memory_mb / 1024.0

    # Constraints on the heaviest batch.
    r_max = r.max(axis=1)  # (P, L, S)
    need_mb = lm.memory_required_mb(
        method[:, :, None], r_max, param_bytes, beta[:, :, None], m.token_bytes,
        m.intermediate_bytes_per_token, c,
    )
    used = r_max > 0
    # Every deployed function must at least start and hold its weights, even one that no
    # batch here sends tokens to: routing at run time may differ from the sample.
    deployed = experts_in_slot > 0
    memory_v = np.where(deployed, need_mb - memory, -np.inf).max(axis=(1, 2))
    payload = lm.payload_bytes(r_max, m.token_bytes, c) - c.lambda_payload_limit_bytes
    payload_v = np.where(used & (method[:, :, None] == lm.DIRECT), payload, -np.inf).max(axis=(1, 2))
    payload_v = np.maximum(payload_v, -c.lambda_payload_limit_bytes) / lm.MIB
    concurrency_v = active.sum(axis=3).max(axis=(1, 2)) - c.lambda_concurrency_limit
    violations = {
        "memory": np.where(np.isfinite(memory_v), memory_v, -float(c.lambda_memory_max_mb)),
        "payload": payload_v,
        "time_limit": e2e.max(axis=1) - problem.slo.time_limit_s,
        "timeout": t.max(axis=(1, 2, 3)) - c.lambda_timeout_max_s,
        "concurrency": np.broadcast_to(concurrency_v, (P,)).astype(float),
    }
    return EvaluationBatch(
        cost_usd=total.mean(axis=1),
        cost_gb_s=gb_s.mean(axis=1),
        latency_s=e2e.max(axis=1),
        latency_mean_s=e2e.mean(axis=1),
        layer_latency_s=layer_lat.max(axis=1),
        violations=violations,
        cost_breakdown_usd=breakdown,
        tokens_per_batch=problem.workload.tokens_per_batch,
    )


def storage_requests_usd(
    method: np.ndarray, r: np.ndarray, active: np.ndarray, beta: np.ndarray, c: Any,
    fetch_weights: bool = True,
) -> np.ndarray:
    """S3 requests per batch: a weights GET per replica (when weights are fetched per
    invocation); inputs and outputs by storage.

    Non-pipelined: one PUT and one GET for the input and for the output of each replica.
    Pipelined: one object per minibatch each way.
    """
    blocks = np.where(r > 0, np.ceil(r / np.minimum(beta, np.maximum(r, 1.0))), 0.0)
    objects = np.where(method == lm.DIRECT, 0.0, np.where(method == lm.PIPELINED_STORAGE, 2 * blocks, 2.0))
    weights_get = c.storage_get_usd if fetch_weights else 0.0
    per_replica = objects * (c.storage_put_usd + c.storage_get_usd) + weights_get
    return (per_replica * active).sum(axis=(2, 3))


@dataclass(frozen=True, eq=False)
class ExpertBreaks:
    """Per expert: does it break memory, or a direct layer's payload limit, and by what factor
    (replicas that would fix it). What the paper's ε boosts and Alg. 2's feedback act on;
    :func:`evaluate_batch` reports only each plan's worst violation."""

    memory: np.ndarray
    payload: np.ndarray
    memory_factor: np.ndarray  # ceil(need / memory size) where memory broke, else 1
    payload_factor: np.ndarray  # ceil(payload / limit) where the payload broke, else 1


def expert_breaks(
    problem: DeploymentProblem,
    tokens_per_replica: np.ndarray,
    method: np.ndarray,
    pipeline_degree: np.ndarray,
    memory_mb: np.ndarray,
) -> ExpertBreaks:
    """With the evaluator's own formulas; arguments broadcast over (..., layers, experts)."""
    c, m = problem.constants, problem.model
    r = tokens_per_replica
    need = lm.memory_required_mb(
        method, r, m.expert_param_bytes, pipeline_degree, m.token_bytes,
        m.intermediate_bytes_per_token, c,
    )
    used = r > 0
    memory = used & (need > memory_mb)
    pay = lm.payload_bytes(r, m.token_bytes, c)
    payload = used & (method == lm.DIRECT) & (pay > c.lambda_payload_limit_bytes)
    return ExpertBreaks(
        memory,
        payload,
        np.where(memory, np.ceil(need / memory_mb), 1.0),
        np.where(payload, np.ceil(pay / c.lambda_payload_limit_bytes), 1.0),
    )


def evaluate(problem: DeploymentProblem, plan: DeploymentPlan) -> Evaluation:
    """Price one plan (checked against the problem first)."""
    return evaluate_batch(problem, PlanArrays.from_plans([plan], problem))[0]


def evaluate_many(problem: DeploymentProblem, plans: list[DeploymentPlan], chunk: int = 128) -> EvaluationBatch:
    """Price a list of plans in chunks that keep memory bounded."""
    parts = [
        evaluate_batch(problem, PlanArrays.from_plans(plans[i : i + chunk], problem))
        for i in range(0, len(plans), chunk)
    ]
    return concat(parts)


def concat(parts: list[EvaluationBatch]) -> EvaluationBatch:
    return EvaluationBatch(
        cost_usd=np.concatenate([p.cost_usd for p in parts]),
        cost_gb_s=np.concatenate([p.cost_gb_s for p in parts]),
        latency_s=np.concatenate([p.latency_s for p in parts]),
        latency_mean_s=np.concatenate([p.latency_mean_s for p in parts]),
        layer_latency_s=np.concatenate([p.layer_latency_s for p in parts]),
        violations={k: np.concatenate([p.violations[k] for p in parts]) for k in VIOLATIONS},
        cost_breakdown_usd={
            k: np.concatenate([p.cost_breakdown_usd[k] for p in parts])
            for k in parts[0].cost_breakdown_usd
        },
        tokens_per_batch=parts[0].tokens_per_batch,
    )


def json_safe(value: float) -> float | None:
    """inf/NaN have no JSON form; report them as null."""
    return value if math.isfinite(value) else None
