"""Lambda or an always-on CPU cluster? The request rate decides (``moeopt breakeven``).

Lambda bills each batch for what it uses, so its cost per batch does not depend on the rate;
an always-on cluster costs its hourly price whether busy or not, so its cost per batch falls as
the rate rises, until one instance is saturated and another must start. The two cross at the
break-even rate. The paper's "at least 75.67 % cheaper than a CPU cluster" is a statement about
one rate; this module says at which rates it holds (cost_models.cpu_cluster has the formulas).

>>> from moeopt.problem import load_problem
>>> from moeopt.breakeven import break_even
>>> be = break_even(load_problem("bert-moe-4"), lambda_cost_usd=0.0016)
>>> round(be.break_even_per_hour)
4637
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from cost_models.cpu_cluster import (
    ClusterRun,
    always_on_cost_per_batch,
    break_even_rate,
    rate_sweep,
    rate_text,
    saving_holds_below,
)
from moeopt.baselines import (
    DEFAULT_CLUSTER_REQUESTS_PER_HOUR,
    cluster_started_per_batch_usd,
    cpu_cluster,
)
from moeopt.problem import DeploymentProblem

#: The paper's headline: serverless at least 75.67 % cheaper than the CPU cluster (PAPER.md 6).
PAPER_CPU_SAVING = 0.7567


@dataclass(frozen=True)
class BreakEven:
    """Lambda's cost per batch against the cluster's, over request rates (batches per hour)."""

    problem: str
    lambda_cost_usd: float  # per batch, at every rate
    lambda_label: str  # which plan: solver and status
    cluster: ClusterRun  # at the stated rate
    started_per_batch_usd: float  # a cluster started for each batch (60 s minimum)
    rates_per_hour: tuple[float, ...]
    cluster_cost_usd: tuple[float, ...]  # per batch, always on, at each rate
    break_even_per_hour: float | None  # the cluster no dearer from here (None: never)
    saving: float  # the saving checked (the paper's 0.7567 by default)
    saving_holds_below_per_hour: float  # Lambda that much cheaper below this rate

    @property
    def saving_at_rate(self) -> float:
        """Lambda's saving against the cluster at the stated rate (negative: the cluster wins)."""
        return 1.0 - self.lambda_cost_usd / self.cluster.cost_usd

    @property
    def saving_everywhere(self) -> bool:
        """True when the saving holds at every rate (even a saturated cluster is dearer)."""
        return self.saving_holds_below_per_hour >= self.cluster.capacity_per_hour

    def cluster_wins(self) -> np.ndarray:
        """Per sweep rate, whether the always-on cluster is cheaper than Lambda."""
        return np.asarray(self.cluster_cost_usd) < self.lambda_cost_usd

    def summary(self) -> list[str]:
        """The answer in a few lines (``moeopt breakeven`` prints them)."""
        c = self.cluster
        lines = [
            f"{self.problem}: Lambda ${self.lambda_cost_usd:.6g} per batch at any rate "
            f"({self.lambda_label})",
            f"CPU cluster: {c.assumption}: ${c.cost_usd:.6g} per batch; Lambda saves "
            f"{self.saving_at_rate:.1%} there",
            f"busy seconds only (saturated): ${c.busy_cost_usd:.6g} per batch; started for each "
            f"batch instead (60 s minimum, boot not counted): ${self.started_per_batch_usd:.6g}",
        ]
        if self.break_even_per_hour is None:
            lines.append("break-even: none; Lambda is cheaper at every rate (even a saturated "
                         "instance costs more per batch)")
        else:
            lines.append(
                f"break-even: {rate_text(self.break_even_per_hour)} batches/h "
                f"({self.break_even_per_hour / 3600:.3g} per second); the always-on cluster is "
                f"cheaper from there to saturation ({rate_text(c.capacity_per_hour)}/h)"
            )
        if self.saving_everywhere:
            lines.append(f"Lambda at least {self.saving:.2%} cheaper: at every rate")
        else:
            lines.append(
                f"Lambda at least {self.saving:.2%} cheaper (the paper's claim): up to "
                f"{rate_text(self.saving_holds_below_per_hour)} batches/h"
            )
        return lines

    def to_dict(self) -> dict[str, Any]:
        c = self.cluster
        return {
            "problem": self.problem,
            "lambda_cost_usd": self.lambda_cost_usd,
            "lambda_plan": self.lambda_label,
            "cluster": {
                "instance": c.instance, "usd_per_hour": c.usd_per_hour,
                "requests_per_hour": c.requests_per_hour, "instances": c.instances,
                "utilisation": c.utilisation, "cost_usd": c.cost_usd,
                "busy_cost_usd": c.busy_cost_usd, "wall_time_s": c.wall_time_s,
                "throughput_tokens_per_s": c.throughput_tokens_per_s,
                "capacity_per_hour": c.capacity_per_hour, "assumption": c.assumption,
                "started_per_batch_usd": self.started_per_batch_usd,
            },
            "saving_at_rate": self.saving_at_rate,
            "break_even_per_hour": self.break_even_per_hour,
            "saving": self.saving,
            "saving_holds_below_per_hour": self.saving_holds_below_per_hour,
            "saving_everywhere": self.saving_everywhere,
            "sweep": {"rates_per_hour": list(self.rates_per_hour),
                      "cluster_cost_usd": list(self.cluster_cost_usd)},
        }


def break_even(
    problem: DeploymentProblem,
    lambda_cost_usd: float,
    lambda_label: str = "given",
    requests_per_hour: float = DEFAULT_CLUSTER_REQUESTS_PER_HOUR,
    saving: float = PAPER_CPU_SAVING,
) -> BreakEven:
    """The break-even analysis for a Lambda plan that costs ``lambda_cost_usd`` per batch."""
    if not (lambda_cost_usd > 0 and math.isfinite(lambda_cost_usd)):
        raise ValueError(f"lambda_cost_usd must be a positive cost, got {lambda_cost_usd!r}")
    run = cpu_cluster(problem, requests_per_hour)
    rates = rate_sweep(run.capacity_per_hour)
    cost = [always_on_cost_per_batch(run.usd_per_hour, run.capacity_per_hour, r) for r in rates]
    return BreakEven(
        problem=problem.name,
        lambda_cost_usd=lambda_cost_usd,
        lambda_label=lambda_label,
        cluster=run,
        started_per_batch_usd=cluster_started_per_batch_usd(problem, run),
        rates_per_hour=tuple(float(r) for r in rates),
        cluster_cost_usd=tuple(float(x) for x in cost),
        break_even_per_hour=break_even_rate(lambda_cost_usd, run.usd_per_hour, run.capacity_per_hour),
        saving=saving,
        saving_holds_below_per_hour=saving_holds_below(saving, lambda_cost_usd, run.usd_per_hour),
    )
