"""The local runtime by scatter-gather method, with the network model on and off, in one run.

    nice -n -19 python benchmarks/bench_runtime.py [--requests 5] [--profile FILE] [--json]

It calibrates this machine (unless --profile names a calibration), then runs the validation
plans (lambda_runtime/validate.py: direct, storage and pipelined storage at 256 and 2,560 tokens)
twice: through Lambda's network model (the default) and at loopback speed (``--no-network``).
For each it prints tokens/s with the ratio against direct invocation at the same batch size (the
baseline, measured in the same run), and the model's predicted median latency and billed GB-s
against the measured ones. Last, the local backend's per-invoke overhead: a warm empty invoke's
round trip against the same handler called in-process.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from lambda_runtime.commands.calibrate import DEFAULT_MEMORY, run_calibration
from lambda_runtime.commands.common import local_backend
from lambda_runtime.validate import PLANS, validate


def rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    direct = {r["tokens"]: r for r in report["plans"] if r["method"] == "direct" and r["replicas"] == 1}
    direct.update({r["tokens"]: r for r in report["plans"] if r["name"] == "direct-2560-x3"})
    out = []
    for r in report["plans"]:
        tps = r["tokens"] / r["measured"]["latency_s"]
        base = direct.get(r["tokens"])
        out.append({
            "plan": r["name"], "method": r["method"], "tokens": r["tokens"], "tokens_per_s": tps,
            "vs_direct": tps / (r["tokens"] / base["measured"]["latency_s"]) if base else None,
            "latency_error": r["error"]["latency"], "cost_error": r["error"]["cost"],
        })
    return out


def invoke_overhead(repeats: int = 50) -> dict[str, float]:
    """A warm empty invoke through boto3 -> local Lambda API -> Runtime API -> awslambdaric ->
    handler, against the handler called in-process (no network model: overhead only)."""
    import lambda_runtime.handler as h
    from lambda_runtime.codec import encode_tensor
    from lambda_runtime.deploy import deploy_plan, teardown
    from lambda_runtime.model import SeededMoE

    moe = SeededMoE(1, 1, 64, 32)
    plan = {"layers": [{"layer": 0, "method": "direct", "pipeline_degree": 1,
                        "functions": [{"experts": [0], "memory_mb": 1769, "replicas": 1}]}]}
    empty = {"method": "direct", "tokens": encode_tensor(np.zeros((0, 64), np.float32)),
             "segments": [], "weights": {"0": "file:///dev/null"}}
    h._experts["file:///dev/null"] = {}  # no weights needed for an empty batch
    t = time.perf_counter()
    for _ in range(repeats):
        h.handler(dict(empty), None)
    inproc = (time.perf_counter() - t) / repeats
    with local_backend(True, None) as b:
        lam, s3 = b.lambda_client(), b.s3_client()
        d = deploy_plan(plan, moe.export(), lam, s3, "moeopt-bench", b.code(), prefix="oh")
        name = d.layers[0].functions[0].name
        payload = json.dumps({"method": "direct", "tokens": empty["tokens"], "segments": []}).encode()
        lam.invoke(FunctionName=name, Payload=payload)
        walls = []
        for _ in range(repeats):
            t = time.perf_counter()
            lam.invoke(FunctionName=name, Payload=payload)["Payload"].read()
            walls.append(time.perf_counter() - t)
        teardown(d, lam, s3)
    return {"invoke_ms": statistics.median(walls) * 1e3, "in_process_ms": inproc * 1e3}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=5)
    ap.add_argument("--profile", default=None, help="a calibration of this machine (default: calibrate now)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    profile = args.profile
    if profile is None:
        sizes = tuple(int(m) for m in DEFAULT_MEMORY.split(","))
        data = run_calibration(sizes, 2048, 256, (256, 1024, 2560), 3)
        profile = str(Path(tempfile.mkdtemp()) / "profile.json")
        Path(profile).write_text(json.dumps(data))
    out: dict[str, Any] = {"profile": profile}
    for label, no_network in (("network model", False), ("loopback", True)):
        with local_backend(no_network, None) as b:
            report = validate(b, profile, args.requests, 1, PLANS)
        out[label] = {"plans": rows(report), "pipelined_over_storage": report["pipelined_over_storage"]}
    out["overhead"] = invoke_overhead()
    if args.json:
        json.dump(out, sys.stdout, indent=2)
        return
    for label in ("network model", "loopback"):
        print(f"== {label}")
        print(f"{'plan':24}{'tokens':>7}{'tokens/s':>10}{'vs direct':>11}{'lat err':>9}{'cost err':>10}")
        for r in out[label]["plans"]:
            vs = f"{r['vs_direct']:.2f}x" if r["vs_direct"] else "-"
            print(f"{r['plan']:24}{r['tokens']:>7}{r['tokens_per_s']:>10.0f}{vs:>11}"
                  f"{r['latency_error']:>+9.1%}{r['cost_error']:>+10.1%}")
        ratio = out[label]["pipelined_over_storage"]
        print(f"pipelined over storage at 2,560 tokens: predicted {ratio['predicted']:.2f}x, "
              f"measured {ratio['measured']:.2f}x")
    o = out["overhead"]
    print(f"per-invoke overhead: {o['invoke_ms']:.2f} ms through the local API, "
          f"{o['in_process_ms']:.3f} ms in-process ({o['invoke_ms'] / o['in_process_ms']:.0f}x)")


if __name__ == "__main__":
    main()
