"""The CPU-cluster baseline: the same MoE work on an always-on EC2 instance, billed for its time.

The paper compares with a two-socket 64-core EPYC cluster running every expert of a layer
concurrently, but gives no price; we charge an on-demand EC2 instance of that size (see the
``ec2_catalogue`` in ``data/constants.toml``) for the wall time of a run: per second with
EC2's 60 s minimum, as for an instance started for the run. ``busy_cost_usd`` charges only the
busy seconds, as if the cluster were shared perfectly; it is the cluster's best case.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


class ModelSpec(Protocol):
    """What the cluster model needs of a model (``moeopt.model.ModelSpec`` has it); a protocol,
    so cost_models does not import the domain package."""

    @property
    def expert_flops_per_token(self) -> float: ...

    @property
    def nonmoe_flops_per_token(self) -> float: ...


@dataclass(frozen=True)
class ClusterRun:
    instance: str
    wall_time_s: float
    cost_usd: float
    busy_cost_usd: float
    throughput_tokens_per_s: float


def cluster_run(
    model: ModelSpec,
    loads: np.ndarray,
    tokens_per_batch: int,
    usd_per_hour: float,
    cores: int,
    flops_per_core: float,
    instance: str,
    min_billed_s: float = 0.0,
) -> ClusterRun:
    """Wall time and cost of one batch per loads[b] (shape (B, L, E)), averaged over batches.

    Per MoE layer the experts run side by side, each on cores/E cores (at least one), so the
    heaviest expert sets the pace; attention runs on all cores.
    """
    experts = loads.shape[2]
    per_expert_cores = max(cores // experts, 1)
    waves = int(np.ceil(experts / cores))  # experts beyond the core count wait their turn
    expert_s = loads.max(axis=2) * model.expert_flops_per_token / (per_expert_cores * flops_per_core)
    attention_s = tokens_per_batch * model.nonmoe_flops_per_token / (cores * flops_per_core)
    wall = (expert_s * waves + attention_s).sum(axis=1)  # (B,)
    mean_wall = float(wall.mean())
    return ClusterRun(
        instance=instance,
        wall_time_s=mean_wall,
        cost_usd=max(mean_wall, min_billed_s) * usd_per_hour / 3600.0,
        busy_cost_usd=mean_wall * usd_per_hour / 3600.0,
        throughput_tokens_per_s=tokens_per_batch / float(wall.max()),
    )
