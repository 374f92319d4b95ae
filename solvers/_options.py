"""Per-expert option tables shared by constructive solvers (greedy, EPLB): cost and time of
every (memory, replicas) choice for one expert under one method, computed with the same
cost_models formulas the evaluator uses."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cost_models import lambda_model as lm
from moeopt.evaluate import fixed_parts
from moeopt.problem import DeploymentProblem


@dataclass(frozen=True, eq=False)
class ExpertOptions:
    """Options of every expert of one layer under one method: arrays shaped (E, M, G)."""

    memory_mb: np.ndarray  # (M,)
    cost_usd: np.ndarray  # mean over batches
    time_s: np.ndarray  # worst batch: when the replica's outputs reach the next function
    feasible: np.ndarray  # memory and payload fit on the heaviest batch

    def cheapest(self, max_time: np.ndarray | float = np.inf) -> tuple[np.ndarray, np.ndarray]:
        """Per expert, the cheapest feasible (memory index, replicas - 1) within max_time."""
        cost = np.where(self.feasible & (self.time_s <= np.asarray(max_time)[..., None, None]),
                        self.cost_usd, np.inf)
        flat = cost.reshape(len(cost), -1).argmin(axis=1)
        m, g = np.unravel_index(flat, cost.shape[1:])
        return m, g


def expert_options(
    problem: DeploymentProblem, layer: int, method: int, pipeline_degree: float
) -> ExpertOptions:
    c, model = problem.constants, problem.model
    loads = problem.popularity.loads[:, layer, :].astype(float)  # (B, E)
    memory = np.asarray(problem.memory_options, dtype=float)  # (M,)
    g = np.arange(1, problem.max_replicas + 1, dtype=float)  # (G,)
    d = loads[:, :, None, None]  # (B, E, 1, 1)
    r = np.ceil(d / g)  # (B, E, 1, G)
    active = np.minimum(g, d)
    per_token = lm.compute_time_per_token(memory, model.expert_flops_per_token, c)[:, None]
    cpu = lm.data_vcpus(memory, c)[:, None]
    fetch = lm.weights_fetch_s(model.expert_param_bytes, c, problem.fetch_weights, cpu)
    gate = lm.gate_cpu_s(fixed_parts(problem).layer_tokens[:, layer], model.token_bytes, method, c)
    times = lm.replica_times(
        method, r, fetch, per_token, pipeline_degree, model.token_bytes, c, problem.start_s,
        fixed_parts(problem).next_load_s, problem.start == "cold",
        cpu=cpu, gate_s=gate[:, None, None, None],
    )  # (B, E, M, G)
    t = times.billed_s
    billed = lm.billed_seconds(t, c) * active
    cost = (billed * (lm.price_per_mb_second(False, c) * memory)[:, None]).mean(axis=0)
    r_max = r.max(axis=0)  # (E, 1, G)
    need = lm.memory_required_mb(
        method, r_max, model.expert_param_bytes, pipeline_degree, model.token_bytes,
        model.intermediate_bytes_per_token, c,
    )
    feasible = need <= memory[:, None]
    if method == lm.DIRECT:
        feasible &= lm.payload_bytes(r_max, model.token_bytes, c) <= c.lambda_payload_limit_bytes
    feasible &= t.max(axis=0) <= c.lambda_timeout_max_s
    finish = times.finish_s + lm.layer_offset_s(method, fixed_parts(problem).next_load_s)
    return ExpertOptions(memory, cost, finish.max(axis=0), np.broadcast_to(feasible, cost.shape))
