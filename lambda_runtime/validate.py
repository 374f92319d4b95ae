"""Hold the cost model to measurement: a fixed set of plans, run on the local backend, each
compared with what the model predicts for the loads it served.

The set spans what a plan can be: direct invocation, storage and pipelined storage, 256 and
2,560 tokens per batch, memory sizes from 442 to 1,769 MB, replicas and a grouped function.
Its model is a seeded MoE with fine-grained experts (hidden 2,048, FFN 256: an expert's tokens
take about as long to move as to compute, the regime where the paper's pipelining matters), two
MoE layers of two experts, top-1, routed evenly. Every plan but one fits one vCPU at once (the
local backend's budget on a 2-core machine); direct-2560-x3 (six 442 MB replicas, 1.5 vCPUs)
runs in waves, which the prediction for this host includes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

HIDDEN, FFN, LAYERS, EXPERTS = 2048, 256, 2, 2
MEMORY_MENU = (442, 884, 1769, 3008)


@dataclass(frozen=True)
class ValidationPlan:
    name: str
    method: str
    tokens: int
    memory_mb: int
    replicas: int = 1
    pipeline_degree: int = 1
    grouped: bool = False  # one function hosts both experts of a layer

    def functions(self) -> list[dict[str, Any]]:
        groups = [list(range(EXPERTS))] if self.grouped else [[e] for e in range(EXPERTS)]
        return [{"experts": g, "memory_mb": self.memory_mb, "replicas": self.replicas}
                for g in groups]


PLANS = (
    ValidationPlan("direct-256", "direct", 256, 884),
    ValidationPlan("direct-2560-x3", "direct", 2560, 884, replicas=3),
    ValidationPlan("storage-256", "storage", 256, 884),
    ValidationPlan("storage-2560", "storage", 2560, 884),
    ValidationPlan("storage-2560-x2", "storage", 2560, 442, replicas=2),
    ValidationPlan("grouped-2560", "storage", 2560, 1769, grouped=True),
    ValidationPlan("pipelined-256", "pipelined_storage", 256, 884, pipeline_degree=64),
    ValidationPlan("pipelined-2560", "pipelined_storage", 2560, 884, pipeline_degree=320),
    ValidationPlan("pipelined-grouped-2560", "pipelined_storage", 2560, 1769, pipeline_degree=512,
                   grouped=True),
)
#: The pair whose throughput ratio shows the paper's pipelining: one function per layer moving
#: all 2,560 tokens, same memory, the gate's upload overlapped or not.
RATIO_PAIR = ("pipelined-grouped-2560", "grouped-2560")


def problem_spec(tokens: int) -> dict[str, Any]:
    """The validation model as a problem file (evenly routed batches)."""
    half = tokens // 2
    return {
        "name": f"validate-{tokens}",
        "model": {"moe_layers": LAYERS, "experts_per_layer": EXPERTS, "top_k": 1,
                  "hidden_size": HIDDEN, "expert_ffn_size": FFN, "sequence_length": 1,
                  "nonmoe_params_per_layer": 0, "embedding_params": 0},
        "workload": {"tokens_per_batch": tokens},
        "slo": {"time_limit_s": 600.0},
        "popularity": {"source": "loads", "loads": [[[half, tokens - half]] * LAYERS]},
        # Warm functions keep their weights (the steady state of a served model): what a plan
        # moves per request is its tokens, where pipelining shows.
        "deployment": {"memory_menu": list(MEMORY_MENU), "max_replicas": 8, "weights": "cached"},
    }


def plan_dict(p: ValidationPlan, problem: Any) -> dict[str, Any]:
    return {
        "schema": "moeopt.plan/1",
        "problem": {"name": problem.name, "fingerprint": problem.fingerprint},
        "layers": [
            {"layer": li, "method": p.method, "pipeline_degree": p.pipeline_degree,
             "functions": p.functions()}
            for li in range(LAYERS)
        ],
    }


def _iqr(values: list[float]) -> float:
    q1, q3 = np.percentile(values, [25, 75])
    return float(q3 - q1)


def validate(
    backend: Any, profile: str | None = None, requests: int = 5, warmup: int = 1,
    plans: tuple[ValidationPlan, ...] = PLANS, progress: Any = None,
) -> dict[str, Any]:
    """Run every plan on a started local backend; the report ``moeopt validate --json`` prints."""
    from lambda_runtime.commands.common import BUCKET, nonmoe_of
    from lambda_runtime.model import SeededMoE
    from lambda_runtime.predict import predict_run, served_loads
    from lambda_runtime.run import run_plan
    from moeopt.problem import problem_from_dict
    from moeopt.profiles import apply_profile

    moe = SeededMoE(LAYERS, EXPERTS, HIDDEN, FFN, 1, seed=0).match_loads(
        np.full((LAYERS, EXPERTS), 1.0 / EXPERTS)
    )
    rows = []
    latency: dict[str, float] = {}
    predicted_latency: dict[str, float] = {}
    problem_profile = "built-in"
    for p in plans:
        problem = apply_profile(problem_from_dict(problem_spec(p.tokens), "validate"), profile)
        problem_profile = problem.constants.profile
        plan = plan_dict(p, problem)
        _, results = run_plan(
            plan, moe, backend.lambda_client(), backend.s3_client(), backend.code(), BUCKET,
            requests=requests, tokens=p.tokens, warmup=warmup,
            nonmoe=nonmoe_of(problem, backend.network),
            weights_fetch="per_invocation" if problem.fetch_weights else "cached",
            prefix=f"validate-{p.name}",
        )
        ok = [r for r in results if r.ok]
        if not ok:
            raise RuntimeError(f"validate: plan {p.name}: every request failed: "
                               f"{[f.error for r in results for f in r.failures][:1]}")
        pred = predict_run(plan, problem, served_loads(results), backend.host_vcpus)
        cost = [r.billed_gb_s for r in ok]
        lat = [r.latency_s for r in ok]
        measured = {
            "cost_gb_s": float(np.median(cost)), "latency_s": float(np.median(lat)),
            "cost_gb_s_iqr": _iqr(cost), "latency_s_iqr": _iqr(lat),
        }
        predicted = {"cost_gb_s": float(np.median(pred.per_request_gb_s)), "latency_s": pred.latency_s}
        rows.append({
            "name": p.name, "method": p.method, "tokens": p.tokens, "memory_mb": p.memory_mb,
            "replicas": p.replicas, "grouped": p.grouped, "pipeline_degree": p.pipeline_degree,
            "requests": len(ok), "predicted": predicted, "measured": measured,
            "error": {
                "cost": measured["cost_gb_s"] / predicted["cost_gb_s"] - 1.0,
                "latency": measured["latency_s"] / predicted["latency_s"] - 1.0,
            },
            "queued_replicas": pred.queued_replicas, "over_committed": pred.over_committed,
        })
        latency[p.name], predicted_latency[p.name] = measured["latency_s"], predicted["latency_s"]
        if progress is not None:
            progress(rows[-1])
    piped, plain = RATIO_PAIR
    ratio = None
    if piped in latency and plain in latency:
        ratio = {
            "predicted": predicted_latency[plain] / predicted_latency[piped],
            "measured": latency[plain] / latency[piped],
        }
        ratio["error"] = ratio["measured"] / ratio["predicted"] - 1.0
    return {
        "plans": rows,
        "pipelined_over_storage": ratio,
        "profile": problem_profile,
        "emulation": backend.network.to_dict() if backend.network is not None else None,
        "host_vcpus": backend.host_vcpus,
        "model": moe.description,
    }


def failures(report: dict[str, Any], tolerance: float) -> list[str]:
    """Plans (and the pipelining ratio) whose median error is over ``tolerance``."""
    out = [
        f"{row['name']}: {k} error {row['error'][k]:+.1%}"
        for row in report["plans"]
        for k in ("cost", "latency")
        if abs(row["error"][k]) > tolerance
    ]
    ratio = report.get("pipelined_over_storage")
    if ratio is not None and abs(ratio["error"]) > tolerance:
        out.append(f"pipelined/storage throughput ratio error {ratio['error']:+.1%}")
    return out
