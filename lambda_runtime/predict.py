"""What the cost model predicts for a run that happened: the same plan, the loads it served.

A run's requests route their tokens as the model's gate decides, which is close to, but not
the same as, the problem's sample batches. So the prediction a measurement is held to is made
on the loads each request actually served, on the platform it ran on (the local host's vCPU
budget: ``moeopt.hostsim``), with the problem's constants (a calibrated profile for the local
backend). What is left between the two is the model's error, not the routing's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class RunPrediction:
    """Predicted per request, and their median latency and mean billed GB-s."""

    latency_s: float
    cost_gb_s: float
    per_request_latency_s: tuple[float, ...]
    per_request_gb_s: tuple[float, ...]
    host_vcpus: float | None
    queued_replicas: int
    over_committed: int
    profile: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def predict_run(
    plan: dict[str, Any], problem: Any, loads: np.ndarray, host_vcpus: float | None
) -> RunPrediction:
    """``loads`` (requests, layers, experts): tokens each request sent to each expert."""
    from moeopt.hostsim import simulate
    from moeopt.model import Workload
    from moeopt.plan import plan_from_dict
    from moeopt.popularity import Popularity

    loads = np.asarray(loads)
    tokens = int(round(loads[0, 0].sum() / problem.model.top_k))
    served = problem.with_popularity(Popularity(loads, source="served")).with_workload(
        Workload(tokens_per_batch=tokens)
    )
    runs = simulate(served, plan_from_dict(plan, "plan"), host_vcpus)
    lat = tuple(r.latency_s for r in runs)
    gb_s = tuple(r.billed_gb_s for r in runs)
    return RunPrediction(
        latency_s=float(np.median(lat)),
        cost_gb_s=float(np.mean(gb_s)),
        per_request_latency_s=lat,
        per_request_gb_s=gb_s,
        host_vcpus=host_vcpus,
        queued_replicas=sum(r.queued_replicas for r in runs),
        over_committed=sum(r.over_committed for r in runs),
        profile=problem.constants.profile,
    )


def served_loads(results: list[Any]) -> np.ndarray | None:
    """(requests, layers, experts) from the runs' ForwardResults (None when a request failed
    before its last layer)."""
    rows = [np.stack(r.loads) for r in results if r.loads]
    if not rows or len({row.shape for row in rows}) != 1:
        return None
    full = [row for row, r in zip(rows, results, strict=False) if r.ok]
    return np.stack(full) if full else None
