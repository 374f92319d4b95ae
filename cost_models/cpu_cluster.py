"""The CPU-cluster baseline: the same MoE work on always-on EC2 instances at a stated request rate.

The paper compares with a cluster of two 64-core AMD EPYC CPUs (512 GB) that runs every expert
of a layer at once, and says only that a cluster is paid per coarse period, idle or not; it gives
no price. We map it to an on-demand EC2 instance (``ec2_catalogue`` in ``data/constants.toml``,
with the price's source) that is always on: at ``requests_per_hour`` batches an hour the cluster
costs ``instances x usd_per_hour / requests_per_hour`` per batch. One instance serves one batch
at a time, so it saturates at ``3,600 / wall time`` batches an hour; above that more instances
are started (utilisation never exceeds 1). At saturation the cost per batch falls to the busy
seconds' price (``busy_cost_usd``), the cluster's best case; at one batch a day it pays for a
whole day per batch.

Lambda's cost per batch does not depend on the rate (functions are billed per use), so the two
cross at a break-even rate: :func:`break_even_rate`. Primitive figures only: this module imports
nothing from moeopt.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

SECONDS_PER_HOUR = 3600.0
HOURS_PER_DAY = 24.0


class ModelSpec(Protocol):
    """What the cluster model needs of a model (``moeopt.model.ModelSpec`` has it); a protocol,
    so cost_models does not import the domain package."""

    @property
    def expert_flops_per_token(self) -> float: ...

    @property
    def nonmoe_flops_per_token(self) -> float: ...


@dataclass(frozen=True)
class ClusterRun:
    """One batch on the always-on cluster at ``requests_per_hour``, averaged over batches."""

    instance: str
    usd_per_hour: float
    wall_time_s: float  # mean busy seconds of one batch
    worst_wall_time_s: float  # the slowest batch: what the time limit is held to
    throughput_tokens_per_s: float  # on the slowest batch
    capacity_per_hour: float  # batches one instance serves an hour, back to back
    requests_per_hour: float
    instances: int
    utilisation: float  # busy share of the instances' hours, <= 1
    cost_usd: float  # per batch: instances x hourly price / batches an hour
    busy_cost_usd: float  # per batch if only busy seconds were paid (= cost at saturation)

    @property
    def assumption(self) -> str:
        """What the cost assumes, in one line (``compare`` and ``breakeven`` print it)."""
        return (
            f"always-on {self.instance} (${self.usd_per_hour:.4g}/h on demand) at "
            f"{rate_text(self.requests_per_hour)} batches/h: {self.instances} instance(s), "
            f"{self.utilisation:.1%} busy; one instance saturates at "
            f"{rate_text(self.capacity_per_hour)} batches/h"
        )


def rate_text(rate: float) -> str:
    """A rate for people: 40,000 or 1,141 or 85.1 or 0.0417."""
    return f"{rate:,.0f}" if rate >= 100 else f"{rate:.3g}"


def batch_seconds(
    model: ModelSpec, loads: np.ndarray, tokens_per_batch: int, cores: int, flops_per_core: float
) -> np.ndarray:
    """Busy seconds of each batch of ``loads`` (shape (B, L, E)) on one instance.

    Per MoE layer the experts run side by side, each on cores/E cores (at least one; experts
    beyond the core count wait their turn), so the heaviest expert sets the pace; attention
    runs on all cores.
    """
    experts = loads.shape[2]
    per_expert_cores = max(cores // experts, 1)
    waves = int(np.ceil(experts / cores))
    expert_s = loads.max(axis=2) * model.expert_flops_per_token / (per_expert_cores * flops_per_core)
    attention_s = tokens_per_batch * model.nonmoe_flops_per_token / (cores * flops_per_core)
    return (expert_s * waves + attention_s).sum(axis=1)


def instances_needed(requests_per_hour: float, capacity_per_hour: float) -> int:
    """Always-on instances that serve the rate (at least one)."""
    return max(1, math.ceil(requests_per_hour / capacity_per_hour - 1e-12))


def always_on_cost_per_batch(
    usd_per_hour: float, capacity_per_hour: float, requests_per_hour: float
) -> float:
    """What one batch costs on always-on instances at this rate."""
    if not requests_per_hour > 0:
        raise ValueError(f"requests_per_hour must be > 0, got {requests_per_hour!r}")
    return instances_needed(requests_per_hour, capacity_per_hour) * usd_per_hour / requests_per_hour


def cluster_run(
    model: ModelSpec,
    loads: np.ndarray,
    tokens_per_batch: int,
    usd_per_hour: float,
    cores: int,
    flops_per_core: float,
    instance: str,
    requests_per_hour: float,
) -> ClusterRun:
    """The cluster serving ``requests_per_hour`` batches like those of ``loads``."""
    wall = batch_seconds(model, loads, tokens_per_batch, cores, flops_per_core)
    mean_wall, worst = float(wall.mean()), float(wall.max())
    capacity = SECONDS_PER_HOUR / mean_wall
    n = instances_needed(requests_per_hour, capacity)
    return ClusterRun(
        instance=instance,
        usd_per_hour=usd_per_hour,
        wall_time_s=mean_wall,
        worst_wall_time_s=worst,
        throughput_tokens_per_s=tokens_per_batch / worst,
        capacity_per_hour=capacity,
        requests_per_hour=requests_per_hour,
        instances=n,
        utilisation=requests_per_hour / (n * capacity),
        cost_usd=always_on_cost_per_batch(usd_per_hour, capacity, requests_per_hour),
        busy_cost_usd=mean_wall * usd_per_hour / SECONDS_PER_HOUR,
    )


def break_even_rate(
    lambda_cost_per_batch: float, usd_per_hour: float, capacity_per_hour: float
) -> float | None:
    """The lowest rate (batches/h) from which one always-on instance is no dearer per batch
    than Lambda; None when even a saturated instance costs more than Lambda."""
    rate = usd_per_hour / lambda_cost_per_batch
    return rate if rate <= capacity_per_hour * (1 + 1e-12) else None


def saving_holds_below(saving: float, lambda_cost_per_batch: float, usd_per_hour: float) -> float:
    """The highest rate (batches/h, one instance) at which Lambda still costs at least
    ``saving`` (a fraction in [0, 1)) less than the cluster; below it the saving holds. A rate
    at or above saturation means it holds at every rate: the cluster never gets cheaper than
    its busy seconds."""
    if not 0 <= saving < 1:
        raise ValueError(f"saving must be in [0, 1), got {saving!r}")
    return (1.0 - saving) * usd_per_hour / lambda_cost_per_batch


def rate_sweep(
    capacity_per_hour: float, low_per_hour: float = 1.0 / HOURS_PER_DAY, instances: int = 3,
    points: int = 400,
) -> np.ndarray:
    """Rates from ``low_per_hour`` (one batch a day) to ``instances`` x saturation, log-spaced,
    with every saturation point (where another instance starts) and the point just past it."""
    high = max(capacity_per_hour * instances, low_per_hour * 10)
    grid = np.geomspace(low_per_hour, high, points)
    steps = capacity_per_hour * np.arange(1, instances + 1)
    return np.unique(np.concatenate([grid, steps, steps * (1 + 1e-6)]))
