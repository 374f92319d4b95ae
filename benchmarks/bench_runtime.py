"""Runtime throughput by scatter-gather method on the local backend, measured in the same run.

    python benchmarks/bench_runtime.py [--requests 3] [--json]

One MoE layer of BERT-MoE shape (hidden 768, FFN 3072, 4 experts, top-1), one function per
expert at 1,769 MB (1 vCPU), replicas 1. For 256 and 2,560 tokens per batch (the paper's two
points) it times direct invocation, storage and pipelined storage (β = 64) after a warm-up
request, and prints tokens/s with ratios against direct invocation at the same batch size (the
baseline). It also times the local backend's per-invoke overhead (a warm empty invoke against
the same handler called in-process), and, when the core package is importable, the cost model's
predicted billed GB-s (constants calibrated in this run, loads from this run's routing) against
the measured REPORT lines.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import numpy as np

from lambda_runtime.calibrate import calibrate
from lambda_runtime.codec import encode_tensor
from lambda_runtime.coordinator import Coordinator
from lambda_runtime.deploy import deploy_plan, teardown
from lambda_runtime.local import LocalBackend
from lambda_runtime.model import SeededMoE, gate_topk

HIDDEN, FFN, EXPERTS, MEMORY_MB, BETA = 768, 3072, 4, 1769, 64
TOKENS = (256, 2560)
METHODS = ("direct", "storage", "pipelined_storage")
BUCKET = "moeopt-bench"


def plan_for(method: str, fingerprint: str = "") -> dict[str, Any]:
    return {
        "schema": "moeopt.plan/1",
        "problem": {"name": "bench-runtime", "fingerprint": fingerprint},
        "layers": [
            {
                "layer": 0,
                "method": method,
                "pipeline_degree": BETA,
                "functions": [
                    {
                        "experts": [e],
                        "memory_mb": MEMORY_MB,
                        "replicas": 1,
                        "architecture": "x86_64",
                    }
                    for e in range(EXPERTS)
                ],
            }
        ],
    }


def predicted_gb_s(
    method: str, loads: list[int], tokens: int, constants: dict[str, float]
) -> float | None:
    """The core cost model's billed GB-s for this plan, or None without the core package."""
    try:
        from moeopt.evaluate import evaluate
        from moeopt.plan import plan_from_dict
        from moeopt.problem import problem_from_dict
    except ImportError:
        return None
    problem = problem_from_dict(
        {
            "name": "bench-runtime",
            "model": {
                "moe_layers": 1,
                "experts_per_layer": EXPERTS,
                "top_k": 1,
                "hidden_size": HIDDEN,
                "expert_ffn_size": FFN,
            },
            "workload": {"tokens_per_batch": tokens},
            "slo": {"time_limit_s": 1e6},
            "popularity": {"source": "loads", "loads": [[loads]]},
            "deployment": {"memory_menu": "full"},
            "cost_model": {"constants": constants},
        },
        "bench",
    )
    plan = plan_from_dict(plan_for(method, problem.fingerprint), "bench", problem)
    return evaluate(problem, plan).cost_gb_s


def invoke_overhead(
    backend: LocalBackend, lam: Any, s3: Any, moe: SeededMoE, n: int = 40
) -> dict[str, float]:
    """Warm empty invoke round trip (boto3 → local API → runtime API → handler) vs the handler alone."""
    from lambda_runtime import handler as h

    d = deploy_plan(
        plan_for("direct"), moe.export(), lam, s3, BUCKET, backend.code(), prefix="overhead"
    )
    name = d.layers[0].functions[0].name
    event = {
        "method": "direct",
        "tokens": encode_tensor(np.zeros((0, HIDDEN), np.float32)),
        "segments": [],
    }
    payload = json.dumps(event).encode()
    lam.invoke(FunctionName=name, Payload=payload)  # cold start
    walls = []
    for _ in range(n):
        t = time.perf_counter()
        lam.invoke(FunctionName=name, Payload=payload)["Payload"].read()
        walls.append(time.perf_counter() - t)
    teardown(d, lam, s3)
    import os

    os.environ["MOEOPT_WEIGHTS"] = json.dumps({"0": "file:///dev/null"})
    h._experts["file:///dev/null"] = {}  # no weights needed for an empty batch
    inproc = []
    for _ in range(n):
        t = time.perf_counter()
        h.handler(json.loads(payload), None)
        inproc.append(time.perf_counter() - t)
    base = statistics.median(inproc)
    return {
        "invoke_round_trip_ms": 1000 * statistics.median(walls),
        "handler_in_process_ms": 1000 * base,
        "overhead_ms": 1000 * (statistics.median(walls) - base),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    moe = SeededMoE(layers=1, experts=EXPERTS, hidden=HIDDEN, ffn=FFN, top_k=1, seed=0)
    rows: list[dict[str, Any]] = []
    with LocalBackend() as backend:
        lam, s3 = backend.lambda_client(), backend.s3_client()
        s3.create_bucket(Bucket=BUCKET)
        profile = calibrate(
            lam,
            s3,
            backend.code(),
            BUCKET,
            memory_sizes=(MEMORY_MB,),
            hidden=HIDDEN,
            ffn=FFN,
            tokens=256,
            repeats=3,
        )
        constants = {k: v for k, v in profile["constants"].items() if k != "cold_start_s"}
        overhead = invoke_overhead(backend, lam, s3, moe)
        for method in METHODS:
            d = deploy_plan(
                plan_for(method),
                moe.export(),
                lam,
                s3,
                BUCKET,
                backend.code(),
                prefix=f"b-{method}",
                create_bucket=False,
            )
            with Coordinator(d, moe.export(), lam, s3) as coord:
                for tokens in TOKENS:
                    x = moe.tokens(tokens, seed=tokens)
                    coord.forward(x)  # warm-up: cold starts and weight downloads
                    results = [coord.forward(x) for _ in range(args.requests)]
                    ok = [r for r in results if r.ok]
                    lat = statistics.median(r.latency_s for r in ok) if ok else float("nan")
                    measured = statistics.median(r.billed_gb_s for r in ok) if ok else float("nan")
                    experts, _ = gate_topk(x, moe.export().gates[0], 1)
                    loads = np.bincount(experts[:, 0], minlength=EXPERTS).tolist()
                    predicted = predicted_gb_s(method, loads, tokens, constants)
                    rows.append(
                        {
                            "method": method,
                            "tokens": tokens,
                            "ok": len(ok),
                            "latency_s": lat,
                            "tokens_per_s": tokens / lat if ok else 0.0,
                            "billed_gb_s": measured,
                            "predicted_gb_s": predicted,
                            "cost_error": None
                            if predicted is None or not ok
                            else (measured - predicted) / predicted,
                            "failure": None if ok else results[0].failures[0].error[:80],
                        }
                    )
            teardown(d, lam, s3)
        status = backend.status()
    base = {r["tokens"]: r["tokens_per_s"] for r in rows if r["method"] == "direct"}
    for r in rows:
        r["vs_direct"] = r["tokens_per_s"] / base[r["tokens"]] if base.get(r["tokens"]) else None
    if args.json:
        print(
            json.dumps(
                {
                    "rows": rows,
                    "overhead": overhead,
                    "constants": profile["constants"],
                    "cpu_limit": status["cpu_limit"],
                },
                indent=2,
            )
        )
        return
    print(
        f"vCPU share: {'cgroup ' + status['cpu_limit']['mechanism'] if status['cpu_limit']['enforced'] else 'NOT enforced'}"
    )
    print(
        f"per-invoke overhead: {overhead['overhead_ms']:.2f} ms (round trip {overhead['invoke_round_trip_ms']:.2f} ms,"
        f" handler in-process {overhead['handler_in_process_ms']:.3f} ms)"
    )
    print("error = (measured - predicted) / predicted billed GB-s per request")
    print(
        f"{'method':<18}{'tokens':>7}{'tokens/s':>11}{'vs direct':>10}{'GB-s meas':>11}{'GB-s pred':>11}{'error':>8}"
    )
    for r in rows:
        pred = "-" if r["predicted_gb_s"] is None else f"{r['predicted_gb_s']:.4f}"
        err = "-" if r["cost_error"] is None else f"{r['cost_error']:+.0%}"
        ratio = "-" if r["vs_direct"] is None else f"{r['vs_direct']:.2f}x"
        line = (
            f"{r['method']:<18}{r['tokens']:>7}{r['tokens_per_s']:>11.1f}{ratio:>10}"
            f"{r['billed_gb_s']:>11.4f}{pred:>11}{err:>8}"
        )
        print(line + (f"  FAILED: {r['failure']}" if r["failure"] else ""))


if __name__ == "__main__":
    main()
