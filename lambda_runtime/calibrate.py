"""Measure the cost model's constants on a backend and write a profile ``{"constants": {...}}``.

Per-token compute time by memory size (the vCPU share is the cgroup quota on the local
backend), cold and warm start, S3 transfer rate and first-byte delay, invoke payload rate and
invoke rate. Names match ``cost_models/data/constants.toml`` so problems can load the profile.
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

import numpy as np

from lambda_runtime.codec import encode_tensor
from lambda_runtime.deploy import deploy_plan, teardown
from lambda_runtime.local.limits import vcpu_share
from lambda_runtime.model import SeededMoE


def _plan(memory_mb: int) -> dict[str, Any]:
    return {
        "schema": "moeopt.plan/1",
        "problem": {"name": "calibrate", "fingerprint": ""},
        "layers": [
            {
                "layer": 0,
                "method": "direct",
                "pipeline_degree": 1,
                "functions": [{"experts": [0], "memory_mb": memory_mb, "replicas": 1}],
            }
        ],
    }


def _invoke(
    lam: Any, name: str, event: dict[str, Any]
) -> tuple[float, dict[str, Any], dict[str, Any]]:
    from lambda_runtime.coordinator import parse_report

    t = time.perf_counter()
    resp = lam.invoke(FunctionName=name, Payload=json.dumps(event).encode(), LogType="Tail")
    body = json.loads(resp["Payload"].read())
    wall = time.perf_counter() - t
    if resp.get("FunctionError"):
        raise RuntimeError(f"{name}: {body.get('errorType')}: {body.get('errorMessage')}")
    return wall, body, parse_report(resp.get("LogResult"))


def calibrate(
    lambda_client: Any,
    s3_client: Any,
    code: dict[str, Any],
    bucket: str,
    memory_sizes: tuple[int, ...] = (1024, 1769, 3538),
    hidden: int = 768,
    ffn: int = 3072,
    tokens: int = 256,
    repeats: int = 5,
) -> dict[str, Any]:
    """Run the measurements; returns the profile (constants plus the raw measurements)."""
    moe = SeededMoE(layers=1, experts=1, hidden=hidden, ffn=ffn, top_k=1, seed=0)
    flops_per_token = 4.0 * hidden * ffn
    x = moe.tokens(tokens)
    direct = {"method": "direct", "tokens": encode_tensor(x), "segments": [[0, tokens]]}
    empty = {"method": "direct", "tokens": encode_tensor(x[:0]), "segments": []}
    by_memory: dict[str, Any] = {}
    cold, warm, overhead_mb, rates, payload_rate, invoke_rate = [], [], [], [], [], 0.0
    for mem in memory_sizes:
        d = deploy_plan(
            _plan(mem),
            moe.export(),
            lambda_client,
            s3_client,
            bucket,
            code,
            prefix=f"calibrate-{mem}",
            timeout_s=300,
        )
        name = d.layers[0].functions[0].name
        try:
            wall, _, rep = _invoke(lambda_client, name, empty)  # cold start
            if rep.get("init_ms") is not None:
                cold.append(rep["init_ms"] / 1000.0 + rep["duration_ms"] / 1000.0)
            overhead_mb.append(
                rep.get("max_memory_mb", 0) - moe.export().experts[0][0].nbytes / 2**20
            )
            per_token = []
            for _ in range(repeats):
                _, body, _ = _invoke(lambda_client, name, direct)
                per_token.append(body["timing"]["compute_s"] / tokens)
            u = statistics.median(per_token)
            vcpu = vcpu_share(mem)
            by_memory[str(mem)] = {"compute_s_per_token": u, "vcpu": vcpu}
            rates.append(flops_per_token / u / vcpu)
            if mem == memory_sizes[-1]:
                walls = []
                for _ in range(repeats * 4):
                    w, body, _ = _invoke(lambda_client, name, empty)
                    walls.append(w - body["timing"]["handler_s"])
                warm.append(statistics.median(walls))
                invoke_rate = 1.0 / statistics.median(walls)
                rows = 4_000_000 // (
                    hidden * 4 * 4 // 3
                )  # about 4 MB of base64 each way, under 6 MB
                event = {
                    "method": "direct",
                    "tokens": encode_tensor(np.zeros((rows, hidden), np.float32)),
                    "segments": [[0, rows]],
                }
                size = len(json.dumps(event))
                w_big, body, _ = _invoke(lambda_client, name, event)
                extra = w_big - body["timing"]["handler_s"] - warm[-1]
                payload_rate = 2 * size / max(extra, 1e-6)  # request and response both carry it
        finally:
            teardown(d, lambda_client, s3_client)
    # object storage: first-byte delay (tiny object) and bandwidth (8 MB object)
    s3_client.put_object(Bucket=bucket, Key="calibrate/tiny", Body=b"x")
    blob = np.random.default_rng(0).bytes(8 << 20)
    s3_client.put_object(Bucket=bucket, Key="calibrate/blob", Body=blob)
    delays, bws = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        s3_client.get_object(Bucket=bucket, Key="calibrate/tiny")["Body"].read()
        delays.append(time.perf_counter() - t)
        t = time.perf_counter()
        s3_client.get_object(Bucket=bucket, Key="calibrate/blob")["Body"].read()
        bws.append(len(blob) / max(time.perf_counter() - t - delays[-1], 1e-6))
    s3_client.delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": "calibrate/tiny"}, {"Key": "calibrate/blob"}]}
    )
    constants = {
        "flops_per_second_per_vcpu": statistics.median(rates),
        "storage_bandwidth_bytes_per_s": statistics.median(bws),
        "storage_delay_s": statistics.median(delays),
        "function_bandwidth_bytes_per_s": payload_rate,
        "warm_start_s": statistics.median(warm),
        "cold_start_s": statistics.median(cold) if cold else None,
        "runtime_overhead_mb": max(overhead_mb) if overhead_mb else None,
    }
    return {
        "constants": {k: v for k, v in constants.items() if v is not None},
        "measurements": {
            "expert": {
                "hidden_size": hidden,
                "expert_ffn_size": ffn,
                "flops_per_token": flops_per_token,
            },
            "compute_by_memory_mb": by_memory,
            "invoke_rate_per_s_sequential": invoke_rate,
            "cold_start_samples_s": cold,
        },
    }
