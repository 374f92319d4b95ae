"""Measured experiments: plans run on the local Lambda backend (Lambda's network emulated),
each held to the model's prediction for the loads it served on this host.

The paper measured Figs. 4, 11, 12 and 14 on AWS Lambda; here the same plans run on one local
backend started for all measured experiments (``LocalLab``): real expert functions (torch)
behind boto3's Lambda API, S3 on loopback behind the network model, every invocation admitted
within this host's vCPUs. The model predicts each run with this machine's calibration
(``lambda_runtime.commands.calibrate.machine_profile``, measured once and cached) and
``moeopt.hostsim`` (the queueing of a host with a few cores). The served model is a seeded MoE
with the paper model's expert shape, scaled down to a few MoE layers (a full 12-layer model at
10,240 tokens would take minutes per request here); its non-MoE part is left out (no
attention, no embeddings), so what is measured is the MoE layers the paper bills.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from moeopt.plan import DeploymentPlan
from moeopt.popularity.predictors import largest_remainder
from moeopt.problem import DeploymentProblem, problem_from_dict
from moeopt.profiles import apply_profile

BUCKET = "moeopt-reproduce"


def scaled_spec(base: DeploymentProblem, layers: int, tokens: int) -> dict[str, Any]:
    """A problem file for ``base``'s experts, routing and memory menu, with ``layers`` MoE layers,
    one batch of ``tokens`` routed like ``base``'s first layers on average, and no non-MoE part."""
    m = base.model
    shares = base.popularity.mean()[:layers]
    loads = largest_remainder(shares, tokens * m.top_k)
    return {
        "name": f"{m.name}-scaled-{layers}x{m.experts_per_layer}-{tokens}",
        "description": f"{base.name}'s experts and routing, {layers} MoE layers, no non-MoE part",
        "model": {"name": f"{m.name}-scaled", "moe_layers": layers,
                  "experts_per_layer": m.experts_per_layer, "top_k": m.top_k,
                  "hidden_size": m.hidden_size, "expert_ffn_size": m.expert_ffn_size,
                  "dtype": m.dtype, "sequence_length": 1, "nonmoe_params_per_layer": 0,
                  "embedding_params": 0},
        "workload": {"tokens_per_batch": tokens},
        "slo": {"time_limit_s": 600.0},
        "popularity": {"source": "loads", "loads": [loads.tolist()]},
        "deployment": {"memory_menu": list(base.memory_options), "max_replicas": base.max_replicas,
                       "weights": "per_invocation"},
    }


@dataclass(frozen=True)
class Measured:
    """One plan's run: medians over the measured requests, and the prediction for them."""

    name: str
    tokens: int
    requests: int
    measured: dict[str, float | None]
    predicted: dict[str, float]
    error: dict[str, float]
    queued_replicas: int
    over_committed: int

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "tokens": self.tokens, "requests": self.requests,
                "measured": self.measured, "predicted": self.predicted, "error": self.error,
                "queued_replicas": self.queued_replicas, "over_committed": self.over_committed}


class LocalLab:
    """One local backend (Lambda's network, this host's vCPUs) for every measured experiment."""

    def __init__(self, recalibrate: bool = False) -> None:
        self.recalibrate = recalibrate
        self.backend: Any = None
        self.calibrations: dict[str, str] = {}

    def __enter__(self) -> LocalLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop()

    def _start(self) -> Any:
        if self.backend is None:
            from lambda_runtime.local import LocalBackend

            self.backend = LocalBackend(network="lambda", host_vcpus="host").__enter__()
        return self.backend

    def _stop(self) -> None:
        if self.backend is not None:
            self.backend.__exit__(None, None, None)
            self.backend = None

    @property
    def host_vcpus(self) -> float | None:
        from lambda_runtime.local.host import default_host_vcpus

        return self.backend.host_vcpus if self.backend is not None else default_host_vcpus()

    def calibrated(self, problem: DeploymentProblem) -> DeploymentProblem:
        """``problem`` with this machine's calibration at its expert size (cached per machine;
        measured again once per run with ``recalibrate``). A calibration runs a backend of its
        own: ours is stopped meanwhile, so the two never share the cores."""
        from lambda_runtime.commands.calibrate import machine_profile

        key = f"{problem.model.name}:{problem.model.hidden_size}x{problem.model.expert_ffn_size}"
        if key not in self.calibrations:
            self._stop()  # no plan is deployed between measurements
            path, _ = machine_profile(problem, refresh=self.recalibrate)
            self.calibrations[key] = str(path)
        return apply_profile(problem, self.calibrations[key])

    def model(self, problem: DeploymentProblem) -> Any:
        """A seeded MoE of the problem's shape, its gates fitted to route like its loads."""
        from lambda_runtime.model import SeededMoE

        m = problem.model
        moe = SeededMoE(m.moe_layers, m.experts_per_layer, m.hidden_size, m.expert_ffn_size,
                        m.top_k, seed=0)
        return moe.match_loads(problem.popularity.mean())

    def measure(
        self, name: str, plan: DeploymentPlan, problem: DeploymentProblem, moe: Any,
        requests: int, warmup: int,
    ) -> Measured:
        """Run ``plan`` (warm-up first), measure, and predict the same requests."""
        from lambda_runtime.deploy import NonMoe
        from lambda_runtime.predict import predict_run, served_loads
        from lambda_runtime.run import run_plan

        b = self._start()
        tokens = problem.workload.tokens_per_batch
        nonmoe = NonMoe(b.network.warm_start_s, 0, 0, fetch_weights=True) if b.network else None
        summary, results = run_plan(
            plan.to_dict(), moe, b.lambda_client(read_timeout=600), b.s3_client(), b.code(),
            BUCKET, requests=requests, tokens=tokens, warmup=warmup, nonmoe=nonmoe,
            weights_fetch="per_invocation", prefix=f"repro-{name}",
        )
        ok = [r for r in results if r.ok]
        if not ok:
            failures = [f.error for r in results for f in r.failures][:1]
            raise RuntimeError(f"measured plan {name}: every request failed: {failures}")
        loads = served_loads(results)
        pred = predict_run(plan.to_dict(), problem, loads, self.host_vcpus)
        lat = np.array([r.latency_s for r in ok])
        cost = np.array([r.billed_gb_s for r in ok])
        measured = {
            "cost_gb_s": float(np.median(cost)),
            "latency_s": float(np.median(lat)),
            "latency_p95_s": float(np.percentile(lat, 95)),
            "latency_max_s": float(lat.max()),
            "cost_gb_s_iqr": float(np.subtract(*np.percentile(cost, [75, 25]))),
            "latency_s_iqr": float(np.subtract(*np.percentile(lat, [75, 25]))),
            "usd_per_request": summary.usd_per_request,
            "tokens_per_s": tokens / float(np.median(lat)),
            "cold_starts": summary.cold_starts,
            "retries": summary.retries,
        }
        predicted = {"cost_gb_s": float(np.median(pred.per_request_gb_s)),
                     "latency_s": pred.latency_s, "tokens_per_s": tokens / pred.latency_s}
        return Measured(
            name=name, tokens=tokens, requests=len(ok), measured=measured, predicted=predicted,
            error={"cost": measured["cost_gb_s"] / predicted["cost_gb_s"] - 1,
                   "latency": measured["latency_s"] / predicted["latency_s"] - 1},
            queued_replicas=pred.queued_replicas, over_committed=pred.over_committed,
        )


def scaled_problem(base: DeploymentProblem, layers: int, tokens: int) -> DeploymentProblem:
    return problem_from_dict(scaled_spec(base, layers, tokens), f"scaled:{base.name}",
                             base_dir=Path.cwd())
