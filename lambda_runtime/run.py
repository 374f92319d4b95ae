"""Run a plan for N requests and report measured cost and latency against the plan's prediction."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from lambda_runtime.coordinator import Coordinator, ForwardResult, RetryPolicy
from lambda_runtime.deploy import Deployment, NonMoe, deploy_plan, plan_dict, teardown
from lambda_runtime.model import RuntimeModel

# us-east-1 list prices, used only when cost_models is not importable (see cost_models/data)
_FALLBACK_PRICES = {"x86_64": 0.0000166667, "arm64": 0.0000133334, "request": 0.0000002}


def prices() -> dict[str, float]:
    """USD per GB-s by architecture and per request, from the project's cost constants."""
    try:
        from cost_models.constants import DEFAULT_CONSTANTS as c
    except ImportError:
        return dict(_FALLBACK_PRICES)
    return {
        "x86_64": c.lambda_price_x86_64_usd_per_gb_s,
        "arm64": c.lambda_price_arm64_usd_per_gb_s,
        "request": c.lambda_request_usd,
    }


@dataclass(frozen=True)
class RunSummary:
    """Measured over the requests of one run; ``predicted`` is the plan's own block."""

    requests: int
    ok_requests: int
    tokens_per_request: int
    latency_p50_s: float | None  # None when no request succeeded
    latency_p95_s: float | None
    latency_p99_s: float | None
    throughput_tokens_per_s: float
    billed_gb_s_per_request: float
    usd_per_request: float
    usd_per_request_with_fees: float
    invocations_per_request: float
    cold_starts: int
    retries: int
    failures: tuple[str, ...]
    predicted: dict[str, float] | None
    measured_vs_predicted: dict[str, float] | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(results: list[ForwardResult], deployment: Deployment, tokens: int) -> RunSummary:
    """Billed GB-s and USD from the REPORT lines (billed duration x memory), latency percentiles."""
    p = prices()
    arch = {f.name: f.architecture for f in deployment.functions}
    n = max(1, len(results))
    gb_s = sum(r.billed_gb_s for r in results) / n
    usd = (
        sum(
            i.billed_gb_s * p[arch.get(i.function, "x86_64")]
            for r in results
            for i in r.invocations
        )
        / n
    )
    invocations = sum(len(r.invocations) for r in results) / n
    ok = [r for r in results if r.ok]
    lat = np.array([r.latency_s for r in ok])
    throughput = tokens * len(ok) / sum(r.latency_s for r in ok) if ok else 0.0
    predicted = deployment.plan.get("predicted")
    versus = None
    if isinstance(predicted, dict) and ok:
        measured = {
            "cost_usd": usd,
            "cost_gb_s": gb_s,
            "latency_s": float(np.median(lat)),
            "throughput_tokens_per_s": throughput,
        }
        versus = {
            f"{k}_relative_error": (measured[k] - float(v)) / float(v)
            for k, v in predicted.items()
            if k in measured and isinstance(v, int | float) and v
        }
    return RunSummary(
        requests=len(results),
        ok_requests=len(ok),
        tokens_per_request=tokens,
        latency_p50_s=float(np.percentile(lat, 50)) if ok else None,
        latency_p95_s=float(np.percentile(lat, 95)) if ok else None,
        latency_p99_s=float(np.percentile(lat, 99)) if ok else None,
        throughput_tokens_per_s=throughput,
        billed_gb_s_per_request=gb_s,
        usd_per_request=usd,
        usd_per_request_with_fees=usd + invocations * p["request"],
        invocations_per_request=invocations,
        cold_starts=sum(r.cold_starts for r in results),
        retries=sum(r.retries for r in results),
        failures=tuple(
            f"request {r.request_id}: {f.function} replica {f.replica}: {f.error}"
            for r in results
            for f in r.failures
        ),
        predicted=predicted if isinstance(predicted, dict) else None,
        measured_vs_predicted=versus,
    )


def run_plan(
    plan: Any,
    moe: RuntimeModel,
    lambda_client: Any,
    s3_client: Any,
    code: dict[str, Any],
    bucket: str,
    requests: int = 1,
    tokens: int = 256,
    prefix: str | None = None,
    timeout_s: int = 300,
    retry: RetryPolicy | None = None,
    check: bool = True,
    role: str = "arn:aws:iam::123456789012:role/moeopt-local",
    warmup: int = 0,
    nonmoe: NonMoe | None = None,
    weights_fetch: str = "cached",
    prewarm: bool = True,
) -> tuple[RunSummary, list[ForwardResult]]:
    """Deploy, run ``warmup`` unmeasured then ``requests`` measured batches of ``tokens``, tear down;
    ``check`` compares every output with the monolithic forward."""
    data = plan_dict(plan)
    prefix = prefix or f"run{int(time.time() * 1000) % 10**9}"
    export = moe.export()
    deployment = deploy_plan(
        data,
        export,
        lambda_client,
        s3_client,
        bucket,
        code,
        prefix=prefix,
        timeout_s=timeout_s,
        role=role,
        nonmoe=nonmoe,
        weights_fetch=weights_fetch,
    )
    results = []
    served_tokens = tokens
    # The coordinator plays the non-MoE functions on one torch thread: idle OpenMP threads spin
    # and would take the functions' cores (a 0.4 s stall per layer was measured on 2 cores).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with Coordinator(deployment, export, lambda_client, s3_client, retry=retry) as coord:
            if prewarm:
                coord.prewarm()
            for i in range(warmup + requests):
                req = moe.request(tokens, i)
                served_tokens = req.tokens
                r = coord.forward(req.forward_input, request_id=f"{prefix}-{i}", between=req.between)
                if check and r.ok and r.output is not None:
                    err = float(np.abs(r.output - req.reference()).max())
                    if err > req.tolerance:
                        raise AssertionError(
                            f"distributed forward differs from monolithic by {err:.2e} "
                            f"(allowed {req.tolerance:.0e})"
                        )
                if i >= warmup:
                    results.append(r)
    finally:
        torch.set_num_threads(threads)
        teardown(deployment, lambda_client, s3_client)
    return summarize(results, deployment, served_tokens), results
